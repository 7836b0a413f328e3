#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds configured_model (optimised) and runs its checkpoint benchmark: save/load speed and
# peak memory against raw write()/read() and torch::save/load, on one model in one run.
#
#   scripts/bench.sh                      # 25 x Linear(2048, 2048) fp32, about 420 MB
#   scripts/bench.sh --layers 50 --reps 9 # any zanj_bench option (see --help)
#
# Needs about 8x the model size of free disk space in --dir (default /tmp) and 7x in RAM
# (the --big-factor 4 model is built to write the big file). The s3_* figures run against a
# moto_server this script starts on 127.0.0.1 (scripts/with_s3_server.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
build="${BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target zanj_bench
exec "$root/scripts/with_s3_server.sh" "$build/bench/zanj_bench" "$@"
