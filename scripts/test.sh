#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing (Debian 12 packages), builds and runs every test, each once, where it
# means most, printing the time of each stage:
#   asan   the library, the CLI and the unit tests under AddressSanitizer + UndefinedBehavior-
#          Sanitizer, and every fuzz target replaying its regression inputs and seed corpus
#          (ctest -L 'unit|fuzz');
#   plain  what needs an uninstrumented build: multi-process tests (crash stages, resume in new
#          processes, distributed over Gloo), the examples, the benchmark's smoke run and the
#          install + find_package consumer (ctest -L 'multiprocess|example|install');
#   tsan   the concurrency tests under ThreadSanitizer, built without precompiled headers so a
#          missing #include fails (ctest -L concurrency);
#   format clang-format --dry-run -Werror on every C++ file, and scripts/check_layers.py (no
#          file of src/ includes one of a higher layer; docs/architecture.md).
# Choose stages with CONFIGURED_MODEL_STAGES (default "format asan plain tsan").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stages="${CONFIGURED_MODEL_STAGES:-format asan plain tsan}"
build="${BUILD_DIR:-$root/build}"
# Line tables only (-g1): sanitizer reports and backtraces still name file and line, and
# libtorch-heavy code compiles ~20% faster than with -g. Sanitizer builds use -O1, as their
# documentation recommends.
common=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONFIGURED_MODEL_WERROR=ON)
jobs="$(nproc)"

start_all=$SECONDS
stage_start=$SECONDS
report() { echo "== stage $1: $((SECONDS - stage_start)) s"; stage_start=$SECONDS; }

"$root/scripts/install_deps.sh"
report install

for stage in $stages; do
  case "$stage" in
    format)
      (cd "$root" && git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror)
      /usr/bin/python3 "$root/scripts/check_layers.py"
      report format
      ;;
    asan)
      dir="${ASAN_BUILD_DIR:-$build-asan}"
      cmake -S "$root" -B "$dir" "${common[@]}" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
        -DCONFIGURED_MODEL_SANITIZE=ON -DCONFIGURED_MODEL_INSTALL=OFF \
        -DCONFIGURED_MODEL_BUILD_EXAMPLES=OFF -DCONFIGURED_MODEL_BUILD_BENCH=OFF \
        "-DCONFIGURED_MODEL_TEST_SETS=unit;fuzz" >/dev/null
      cmake --build "$dir"
      report asan-build
      ASAN_OPTIONS="detect_leaks=1:strict_init_order=1:check_initialization_order=1" \
        LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L 'unit|fuzz'
      report asan-test
      ;;
    plain)
      dir="$build"
      cmake -S "$root" -B "$dir" "${common[@]}" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
        "-DCONFIGURED_MODEL_TEST_SETS=multiprocess;install" >/dev/null
      cmake --build "$dir"
      report plain-build
      ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L 'multiprocess|example|install'
      report plain-test
      ;;
    tsan)
      # libtorch is kept single-threaded (its OpenMP runtime is not instrumented).
      dir="${TSAN_BUILD_DIR:-$build-tsan}"
      cmake -S "$root" -B "$dir" "${common[@]}" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
        -DCONFIGURED_MODEL_TSAN=ON -DCONFIGURED_MODEL_PCH=OFF -DCONFIGURED_MODEL_DISTRIBUTED=OFF -DCONFIGURED_MODEL_S3=OFF \
        -DCONFIGURED_MODEL_INSTALL=OFF -DCONFIGURED_MODEL_BUILD_TOOLS=OFF \
        -DCONFIGURED_MODEL_BUILD_EXAMPLES=OFF -DCONFIGURED_MODEL_BUILD_BENCH=OFF \
        -DCONFIGURED_MODEL_TEST_SETS=concurrency >/dev/null
      cmake --build "$dir"
      report tsan-build
      TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp" \
        OMP_NUM_THREADS=1 ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L concurrency
      report tsan-test
      ;;
    *) echo "test.sh: unknown stage '$stage'" >&2; exit 2 ;;
  esac
done
echo "== all stages: $((SECONDS - start_all)) s"
