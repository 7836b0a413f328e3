#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Hostile and odd input files, and the rule every one of them must obey.

    scripts/hostile_corpus.py --zanj build/tools/zanj --dir /tmp/hostile

writes a corpus of files into --dir (torch.save zips and pickles built by hand, safetensors
files, .zanj archives; no torch needed) and runs `zanj ls`, `zanj verify` and `zanj convert` on
each, in a process limited to 4 GiB of address space and 20 s, checking:

- nothing crashes (no signal) and nothing hangs;
- a file marked "refuse" is refused by every verb (exit 1 or 2) with a message naming the file;
  a file marked "read" is listed and verified (exit 0);
- the rule `zanj verify X` exits 0 <=> `zanj convert X out.zanj` succeeds and `out.zanj` verifies;
- every verb peaks under 1 GiB of resident memory.

With --also DIR and --fixtures the test fixtures (and with --mutants N, damaged copies of them)
are held to the same rule, bounds and messages, without a verdict of their own.

Exits 1 and prints each broken expectation, 0 when all hold.
"""
import argparse
import io
import json
import os
import shutil
import pickle
import random
import resource
import struct
import subprocess
import sys
import threading
import time
import zipfile

GIB = 1 << 30


# ---- pickles built opcode by opcode (protocol 2 unless said) ----

def p_str(s):
    b = s.encode() if isinstance(s, str) else s
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(v):
    return b"J" + struct.pack("<i", v)


def p_long(v):
    b = v.to_bytes(8, "little", signed=True)
    return b"\x8a\x08" + b


def p_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p_tuple(items):
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(storage_key, dtype_storage, numel, size, stride, offset=0):
    """_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    pid = p_tuple([p_str("storage"), p_global("torch", dtype_storage), p_str(storage_key),
                   p_str("cpu"), p_long(numel)])
    args = p_tuple([pid + b"Q", p_long(offset), p_tuple([p_long(s) for s in size]),
                    p_tuple([p_long(s) for s in stride]), b"\x89",
                    p_global("collections", "OrderedDict") + b")R"])
    return p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def torch_zip(path, payload, storages=(), compress=False):
    """A torch.save zip: archive/data.pkl, archive/data/<key>, archive/byteorder."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        for key, data in storages:
            z.writestr("archive/data/" + key, data)


def safetensors(path, header, data=b""):
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def zanj_file(path, tree_text, meta=None, extra=()):
    meta = meta if meta is not None else {"zanj_cfg": {}, "externals_info": {}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__zanj_meta__.json", json.dumps(meta))
        z.writestr("__zanj__.json", tree_text)
        for name, data in extra:
            z.writestr(name, data)


def make_corpus(d):
    """Writes the corpus; returns {file name: "read" | "refuse"}."""
    os.makedirs(d, exist_ok=True)
    expect = {}

    def add(name, verdict):
        expect[name] = verdict
        return os.path.join(d, name)

    one_float = [("0", struct.pack("<f", 1.5))]
    # Amplification: 10 M empty lists built and dropped (20 MB), stored so that the pickle's
    # own budget, not the zip's compression-ratio limit, is what refuses it.
    torch_zip(add("amp_lists.pt", "refuse"), b"\x80\x02" + b"]0" * 10_000_000 + b"N.")
    # One 1 MiB string referenced 20,000 times: 20 GB once expanded.
    big = b"\x80\x02" + p_str("x" * (1 << 20)) + b"q\x00" + b"0" + b"(" + b"h\x00" * 20000 + b"l."
    torch_zip(add("amp_shared_string.pt", "refuse"), big)
    # A list that holds the previous level twice: 2^levels leaves. A million (64 MiB counted) is
    # within the default budget and reads; a billion is refused by it.
    for levels, verdict in ((20, "read"), (30, "refuse")):
        nest = b"\x80\x02N"
        for _ in range(levels):
            nest += b"q\x00" + b"0" + b"(h\x00h\x00l"
        torch_zip(add(f"amp_nested_sharing_{levels}.pt", verdict), nest + b".")
    # Views: a 1-float storage seen as 2^28 and 2^32 elements through a zero stride.
    for name, n in (("view_zero_stride_2p28.pt", 1 << 28), ("view_zero_stride_2p32.pt", 1 << 32)):
        torch_zip(add(name, "refuse"),
                  b"\x80\x02}(" + p_str("w") + tensor_pickle("0", "FloatStorage", 1, [n], [0]) +
                  b"u.", one_float)
    # A view past its storage, and one whose size * stride overflows.
    torch_zip(add("view_past_storage.pt", "refuse"),
              b"\x80\x02}(" + p_str("w") + tensor_pickle("0", "FloatStorage", 1, [2], [1]) +
              b"u.", one_float)
    torch_zip(add("view_overflow.pt", "refuse"),
              b"\x80\x02}(" + p_str("w") +
              tensor_pickle("0", "FloatStorage", 1, [(1 << 63) - 1], [0]) + b"u.", one_float)
    # Keys: a dict key that is not UTF-8; 100k keys (legitimate, read).
    torch_zip(add("key_not_utf8.pt", "refuse"),
              b"\x80\x02}(" + p_str(b"\xff\xfe") + p_int(1) + b"u.")
    many = pickle.dumps({f"k{i}": i for i in range(100_000)}, protocol=2)
    torch_zip(add("keys_100k.pt", "read"), many)
    # Protocol 0 and 1 pickles of plain data (STRING, UNICODE, INT, LONG, FLOAT opcodes).
    plain = {"a": 1.5, "b": [1, "x", 2 ** 40], "c": {"d": None, "e": True}, "f": "caf\u00e9"}
    torch_zip(add("protocol0.pt", "read"), pickle.dumps(plain, protocol=0))
    torch_zip(add("protocol1.pt", "read"), pickle.dumps(plain, protocol=1))
    torch_zip(add("protocol0_string.pt", "read"), b"(dp0\nS'a\\x41\\n'\np1\nI7\ns.")
    # A global outside the allow-list, and an object built by NEWOBJ.
    torch_zip(add("global_os_system.pt", "refuse"),
              b"\x80\x02" + p_global("os", "system") + p_tuple([p_str("true")]) + b"R.")
    torch_zip(add("newobj.pt", "refuse"),
              b"\x80\x02" + p_global("collections", "OrderedDict") + b")\x81.")
    # Truncated and trailing bytes.
    torch_zip(add("truncated.pt", "refuse"), b"\x80\x02}(" + p_str("a"))
    torch_zip(add("trailing.pt", "refuse"), b"\x80\x02N.junk")

    # safetensors
    f32 = struct.pack("<6f", *range(6))
    ok = {"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}}
    safetensors(add("st_ok.safetensors", "read"), ok, f32)
    safetensors(add("st_duplicate_key.safetensors", "refuse"),
                b'{"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}, '
                b'"a": {"dtype": "I32", "shape": [6], "data_offsets": [0, 24]}}', f32)
    safetensors(add("st_duplicate_metadata.safetensors", "refuse"),
                b'{"__metadata__": {"x": "1"}, "__metadata__": {"x": "2"}, '
                b'"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}}', f32)
    safetensors(add("st_huge_empty.safetensors", "refuse"),
                {"a": {"dtype": "F32", "shape": [0, 1 << 62], "data_offsets": [0, 0]}})
    safetensors(add("st_shape_overflow.safetensors", "refuse"),
                {"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 24]}}, f32)
    safetensors(add("st_offsets_past_end.safetensors", "refuse"),
                {"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 1 << 40]}}, f32)
    safetensors(add("st_overlap.safetensors", "refuse"),
                {"a": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]},
                 "b": {"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}}, f32)
    many_st = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
               for i in range(100_000)}
    safetensors(add("st_keys_100k.safetensors", "read"), many_st, b"\0" * 400_000)

    # .zanj
    zanj_file(add("zanj_duplicate_key.zanj", "refuse"), '{"a": 1, "a": 2}')
    zanj_file(add("zanj_deep.zanj", "refuse"), "[" * 100_000 + "]" * 100_000)
    zanj_file(add("zanj_not_json.zanj", "refuse"), '{"a": ')
    zanj_file(add("zanj_missing_ref.zanj", "refuse"),
              json.dumps({"w": {"__muutils_format__": "torch.Tensor:external",
                                "$ref": "w.npy", "shape": [2], "dtype": "torch.float32"}}))
    many_tree = "{" + ", ".join(f'"k{i}": {i}' for i in range(100_000)) + "}"
    zanj_file(add("zanj_keys_100k.zanj", "read"), many_tree)
    # Not any format.
    with open(add("empty.pt", "refuse"), "wb"):
        pass
    with open(add("random.zanj", "refuse"), "wb") as f:
        f.write(os.urandom(4096))
    return expect


# ---- the checks ----

def limited():
    resource.setrlimit(resource.RLIMIT_AS, (4 * GIB, 4 * GIB))


def run(cmd, timeout=20):
    """(exit code or -signal or None on timeout, output, peak RSS in bytes, seconds)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         preexec_fn=limited)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()))
    reader.start()
    while True:  # reaped here, not by Popen, to get the child's own rusage
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            p.kill()
            os.wait4(p.pid, 0)
            reader.join()
            return None, b"".join(chunks).decode(errors="replace"), 0, timeout
        time.sleep(0.01)
    p.returncode = 0  # already reaped
    reader.join()
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return (code, b"".join(chunks).decode(errors="replace"), usage.ru_maxrss * 1024,
            time.monotonic() - start)


def check(zanj, d, expect):
    problems = []
    for name, verdict in sorted(expect.items()):
        path = os.path.join(d, name)
        out_path = os.path.join(d, name + ".out.zanj")
        if os.path.exists(out_path):
            os.remove(out_path)
        results = {}
        for verb, cmd in (("ls", [zanj, "ls", path]), ("verify", [zanj, "verify", path]),
                          ("convert", [zanj, "convert", path, out_path])):
            code, out, rss, secs = run(cmd)
            results[verb] = code
            what = f"{name}: zanj {verb}"
            if code is None:
                problems.append(f"{what}: did not finish in 20 s")
                continue
            if code < 0:
                problems.append(f"{what}: killed by signal {-code}:\n{out[-2000:]}")
                continue
            if rss > GIB:
                problems.append(f"{what}: peak RSS {rss >> 20} MiB (limit 1024 MiB)")
            if verdict == "read" and code != 0:
                problems.append(f"{what}: exit {code}, expected a read:\n{out[-2000:]}")
            if verdict == "refuse":
                if code not in (1, 2):
                    problems.append(f"{what}: exit {code}, expected a refusal (1 or 2)")
                elif name not in out:
                    problems.append(f"{what}: the refusal does not name the file:\n{out[-2000:]}")
                elif "json.exception" in out or "enforce fail" in out:
                    problems.append(f"{what}: raw third-party text escapes:\n{out[-2000:]}")
            print(f"{what}: exit {code}, {rss >> 20} MiB, {secs:.2f} s", flush=True)
        # verify X == 0  <=>  convert X out.zanj succeeds and out.zanj verifies
        converted_ok = results["convert"] == 0
        if converted_ok:
            code, out, _, _ = run([zanj, "verify", out_path])
            converted_ok = code == 0
            if code != 0:
                problems.append(f"{name}: convert wrote a file that fails verify:\n{out[-2000:]}")
        if (results["verify"] == 0) != converted_ok:
            problems.append(f"{name}: verify exit {results['verify']} but convert "
                            f"{'succeeded' if converted_ok else 'failed'} (must agree)")
        if os.path.exists(out_path):
            os.remove(out_path)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zanj", required=True, help="the zanj CLI")
    ap.add_argument("--dir", required=True, help="where the corpus is written")
    ap.add_argument("--make-only", action="store_true", help="write the corpus, check nothing")
    ap.add_argument("--also", action="append", default=[], metavar="DIR",
                    help="also check every .zanj/.pt/.safetensors under DIR (the test fixtures) "
                         "against the verify <=> convert rule, bounds and messages")
    ap.add_argument("--mutants", type=int, default=0, metavar="N",
                    help="also check N damaged copies of the fixtures (a flipped byte, a "
                         "truncation or a zeroed span; seeded, so reproducible)")
    ap.add_argument("--seed", type=int, default=22, help="of the mutants")
    ap.add_argument("--fixtures", action="store_true",
                    help="also write and check the Python fixtures (scripts/make_*_fixtures.py)")
    args = ap.parse_args()
    expect = make_corpus(args.dir)
    here = os.path.dirname(os.path.abspath(__file__))
    extra_dirs = list(args.also)
    if args.fixtures:
        for script in ("make_torch_fixtures.py", "make_safetensors_fixtures.py"):
            out = os.path.join(args.dir, "fixtures_" + script[5:-12])
            os.makedirs(out, exist_ok=True)
            subprocess.run([sys.executable, os.path.join(here, script), out], check=True,
                           stdout=subprocess.DEVNULL)
            extra_dirs.append(out)
    for extra in extra_dirs:
        for root, _, names in os.walk(extra):
            for n in sorted(names):
                if not n.endswith((".zanj", ".pt", ".safetensors")) or ".out." in n:
                    continue
                # Fixtures are checked against the rule, not a verdict: copied in flat.
                flat = "fixture_" + os.path.relpath(os.path.join(root, n), extra).replace("/", "_")
                shutil.copyfile(os.path.join(root, n), os.path.join(args.dir, flat))
                expect[flat] = "either"
    fixtures = sorted(n for n, v in expect.items() if v == "either")
    rng = random.Random(args.seed)
    for i in range(args.mutants if fixtures else 0):
        source = fixtures[i % len(fixtures)]
        data = bytearray(open(os.path.join(args.dir, source), "rb").read())
        if not data:
            continue
        kind = rng.choice(("flip", "truncate", "zero"))
        at = rng.randrange(len(data))
        if kind == "flip":
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at + 16] = bytes(len(data[at:at + 16]))
        stem, ext = os.path.splitext(source)
        name = f"mutant_{i:03d}_{kind}_{at}_{stem}{ext}"
        with open(os.path.join(args.dir, name), "wb") as f:
            f.write(data)
        expect[name] = "either"
    if args.make_only:
        return 0
    problems = check(args.zanj, args.dir, expect)
    for p in problems:
        print("FAILED " + p)
    print(f"{len(expect)} files, {len(problems)} broken expectations")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
