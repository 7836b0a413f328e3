#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Writes a seed corpus for every fuzz target into OUT/<target>/, made from the committed test
# data and from files Debian's python3-torch and the safetensors fixture writer produce.
# scripts/fuzz.sh starts from it; the test build replays it (ctest -L fuzz).
#   scripts/fuzz_seeds.sh OUT
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seeds="${1:?usage: fuzz_seeds.sh OUT}"
rm -rf "$seeds"
mkdir -p "$seeds/npy_fuzz" "$seeds/tree_fuzz" "$seeds/file_fuzz" "$seeds/zip_fuzz" \
  "$seeds/torch_fuzz" "$seeds/safetensors_fuzz" "$seeds/dist_index_fuzz" "$seeds/fixtures"
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
cp "$root"/tests/data/hostile/* "$seeds/file_fuzz/"
# The container fuzzer starts from every archive: Python's are deflated (zlib), ours stored and
# deflated (ISA-L).
cp "$seeds"/file_fuzz/* "$seeds/zip_fuzz/"
# Foreign formats; the unpickler also gets each bare data.pkl.
/usr/bin/python3 "$root/scripts/make_torch_fixtures.py" "$seeds/fixtures/torch" >/dev/null
/usr/bin/python3 "$root/scripts/make_safetensors_fixtures.py" "$seeds/fixtures/st" >/dev/null
for f in "$seeds"/fixtures/torch/*.pt; do
  cp "$f" "$seeds/torch_fuzz/"
  /usr/bin/python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
open(sys.argv[2], "wb").write(z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0]))' \
    "$f" "$seeds/torch_fuzz/$(basename "$f").pkl" 2>/dev/null || true
done
cp "$seeds"/fixtures/st/*.safetensors "$seeds"/fixtures/st/sharded/*.safetensors "$seeds/safetensors_fuzz/"
# The distributed index: one a real 3-rank save of examples/ddp wrote.
cp "$root"/tests/data/distributed/*.json "$seeds/dist_index_fuzz/"
rm -rf "$seeds/fixtures"
