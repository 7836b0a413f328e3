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

# Seed corpora from the committed test data.
seeds="$build/seeds"
rm -rf "$seeds" && mkdir -p "$seeds/npy_fuzz" "$seeds/tree_fuzz" "$seeds/file_fuzz" "$seeds/zip_fuzz"
cp "$root"/tests/data/npy/*.npy "$seeds/npy_fuzz/"
for f in "$root"/tests/data/python/*.zanj "$root"/tests/data/cpp/*.zanj; do
  cp "$f" "$seeds/file_fuzz/"
  /usr/bin/python3 - "$f" "$seeds/tree_fuzz/$(basename "$f").json" "$seeds/npy_fuzz" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("__zanj__.json"))
    for n in z.namelist():
        if n.endswith(".npy"):
            open(os.path.join(sys.argv[3], os.path.basename(sys.argv[1]) + "_" + n.replace("/", "_")), "wb").write(z.read(n))
PY
done
cp "$root"/tests/data/hostile/* "$seeds/file_fuzz/" 2>/dev/null || true
# The container fuzzer starts from every archive: Python's are deflated (zlib), ours stored and
# deflated (ISA-L).
cp "$seeds"/file_fuzz/* "$seeds/zip_fuzz/"
# Foreign formats: files written by Debian's python3-torch and by the safetensors fixture
# writer; the unpickler also gets each bare data.pkl.
mkdir -p "$seeds/torch_fuzz" "$seeds/safetensors_fuzz" "$build/fixtures"
/usr/bin/python3 "$root/scripts/make_torch_fixtures.py" "$build/fixtures/torch"
/usr/bin/python3 "$root/scripts/make_safetensors_fixtures.py" "$build/fixtures/st"
for f in "$build"/fixtures/torch/*.pt; do
  cp "$f" "$seeds/torch_fuzz/"
  /usr/bin/python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
open(sys.argv[2], "wb").write(z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0]))' \
    "$f" "$seeds/torch_fuzz/$(basename "$f").pkl" 2>/dev/null || true
done
cp "$build"/fixtures/st/*.safetensors "$build"/fixtures/st/sharded/*.safetensors "$seeds/safetensors_fuzz/"
# The distributed index: one a real 3-rank save of examples/ddp wrote.
mkdir -p "$seeds/dist_index_fuzz"
cp "$root"/tests/data/distributed/*.json "$seeds/dist_index_fuzz/"

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
