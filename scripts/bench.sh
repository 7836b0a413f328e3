#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds configured_model (optimised) and runs its checkpoint benchmark: save/load speed and
# peak memory against raw write()/read() and torch::save/load, on one model in one run.
#
#   scripts/bench.sh                      # 25 x Linear(2048, 2048) fp32, about 420 MB
#   scripts/bench.sh --layers 50 --reps 9 # any zanj_bench option (see --help)
#
# Needs about 8x the model size of free disk space in --dir (default /tmp) and 7x in RAM
# (the --big-factor 4 model is built to write the big file).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
build="${BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target zanj_bench
exec "$build/bench/zanj_bench" "$@"
