#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds, and runs examples/ddp: N local processes training the MyNN
# example data-parallel over Gloo (127.0.0.1), checkpointing into DIR through the
# CheckpointManager. The last line printed is final_state_digest=<hex> (equal on every rank).
#
#   scripts/run_ddp_example.sh --world-size N --steps K --ckpt-dir DIR [--resume] [--save-every S]
#
# With --resume it continues from the latest checkpoint in DIR, at whatever N is given.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
build="${BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target ddp_example >&2
"$build/examples/ddp/ddp_example" "$@"
