#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets (clang 14, ASan + UBSan) and runs each for SECONDS (default 60),
# seeded from tests/data. Fails on any crash, leak, timeout or sanitizer report. Inputs that once
# crashed are kept in tests/data/fuzz_regressions/<target>/ and replayed first.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
if ! command -v clang++-14 >/dev/null || ! dpkg-query -W libclang-rt-14-dev >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null
fi
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCONFIGURED_MODEL_FUZZ=ON -DCONFIGURED_MODEL_BUILD_TESTS=OFF -DCONFIGURED_MODEL_BUILD_EXAMPLES=OFF \
  -DCONFIGURED_MODEL_BUILD_TOOLS=OFF -DCONFIGURED_MODEL_INSTALL=OFF >/dev/null
cmake --build "$build" --target npy_fuzz tree_fuzz file_fuzz zip_fuzz torch_fuzz safetensors_fuzz dist_index_fuzz

# Seed corpora from the committed test data and Python-written fixtures.
seeds="$build/seeds"
"$root/scripts/fuzz_seeds.sh" "$seeds"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for target in npy_fuzz tree_fuzz file_fuzz zip_fuzz torch_fuzz safetensors_fuzz dist_index_fuzz; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus" "$build/artifacts/$target"
  regressions="$root/tests/data/fuzz_regressions/$target"
  if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
    echo "== $target: replaying $(ls "$regressions" | wc -l) regression inputs"
    "$build/fuzz/$target" -rss_limit_mb=4096 "$regressions"/* || status=1
  fi
  echo "== $target: fuzzing for ${seconds}s"
  if ! "$build/fuzz/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -artifact_prefix="$build/artifacts/$target/" "$corpus" "$seeds/$target" \
      > "$build/$target.log" 2>&1; then
    echo "$target FAILED; last lines of $build/$target.log:"
    tail -n 40 "$build/$target.log"
    status=1
  else
    grep -E "^#[0-9]+ *DONE|Done [0-9]+ runs" "$build/$target.log" | tail -n 1 || true
  fi
done
exit "$status"
