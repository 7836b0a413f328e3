#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing (Debian 12 packages), builds everything and runs every test via ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
build="${BUILD_DIR:-$root/build}"
# Test builds keep line tables only (-g1): sanitizer reports and gdb backtraces still name file
# and line, and libtorch-heavy code compiles ~20% faster than with full debug info (-g). The
# sanitizer builds use -O1, as the sanitizers' documentation recommends.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" -DCONFIGURED_MODEL_WERROR=ON >/dev/null
cmake --build "$build"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer (libtorch itself is
# not instrumented). Set CONFIGURED_MODEL_SANITIZE_RUN=0 to skip it locally.
if [ "${CONFIGURED_MODEL_SANITIZE_RUN:-1}" = 1 ]; then
  asan="${ASAN_BUILD_DIR:-$build-asan}"
  # The example and the benchmark run in the plain build above; here the library, the CLI and
  # the test suite.
  cmake -S "$root" -B "$asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DCONFIGURED_MODEL_SANITIZE=ON -DCONFIGURED_MODEL_INSTALL=OFF \
    -DCONFIGURED_MODEL_BUILD_EXAMPLES=OFF -DCONFIGURED_MODEL_BUILD_BENCH=OFF >/dev/null
  cmake --build "$asan"
  export ASAN_OPTIONS="detect_leaks=1:strict_init_order=1:check_initialization_order=1"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  ctest --test-dir "$asan" --output-on-failure -j "$(nproc)" --timeout 900
fi

# ThreadSanitizer: the concurrency tests (many threads reading one file every way, several
# saving at once), with libtorch kept single-threaded (its OpenMP runtime is not instrumented).
# Set CONFIGURED_MODEL_TSAN_RUN=0 to skip it locally.
if [ "${CONFIGURED_MODEL_TSAN_RUN:-1}" = 1 ]; then
  tsan="${TSAN_BUILD_DIR:-$build-tsan}"
  cmake -S "$root" -B "$tsan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" -DCONFIGURED_MODEL_TSAN=ON \
    -DCONFIGURED_MODEL_DISTRIBUTED=OFF -DCONFIGURED_MODEL_INSTALL=OFF -DCONFIGURED_MODEL_BUILD_EXAMPLES=OFF \
    -DCONFIGURED_MODEL_BUILD_BENCH=OFF >/dev/null
  cmake --build "$tsan" --target concurrency_tests
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/tsan.supp" \
    OMP_NUM_THREADS=1 \
    "$tsan/tests/concurrency_tests"
fi
