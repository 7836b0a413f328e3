#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Checks a .zanj file the way Python ZANJ 0.6.0 reads it (docs/FORMAT.md, sections 4-8).

Written from the format description with Python's zipfile/json and Debian's numpy; Python ZANJ
itself is not used (it is not installable here).

    check_checkpoint.py FILE                 # structure + every external entry with numpy
    check_checkpoint.py FILE --mynn-probe    # also build the README's MyNN in PyTorch, load it
                                             # strictly, print its output for arange(30)/10

Exit status 0 when every check passes; otherwise each problem is printed to stderr.
"""
import argparse
import io
import json
import sys
import zipfile

import numpy as np

TENSOR_MODES = ("array_list_meta", "array_hex_meta", "array_b64_meta", "zero_dim", "external")
NUMPY_NAMES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
               "bool", "complex64", "complex128"}
# Keys of Python's TORCH_DTYPE_MAP that matter here (plain and torch.-prefixed names).
TORCH_NAMES = NUMPY_NAMES | {"torch." + n for n in NUMPY_NAMES} | {"torch.bfloat16", "bool_",
                                                                    "longlong"}

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def npy_data_offset(raw):
    major = raw[6]
    if major == 1:
        return 10 + int.from_bytes(raw[8:10], "little")
    return 12 + int.from_bytes(raw[8:12], "little")


def file_data_offset(zf, info):
    """Where an entry's bytes start in the file: after its local header (name and extra field)."""
    fp = zf.fp
    fp.seek(info.header_offset)
    header = fp.read(30)
    n = int.from_bytes(header[26:28], "little")
    m = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + n + m


def load_externals(zf, meta):
    if "externals_info" not in meta:
        problem("__zanj_meta__.json", "no externals_info (Python raises KeyError)")
        return {}
    loaded = {}
    for name, info in meta["externals_info"].items():
        if info.get("item_type") not in ("npy", "jsonl"):
            problem(name, f"item_type {info.get('item_type')!r} is not npy or jsonl")
            continue
        path = info.get("path")
        if not isinstance(path, list) or not all(isinstance(p, (str, int)) for p in path):
            problem(name, f"path {path!r} is not a list of str/int")
            continue
        try:
            raw = zf.read(name)
        except KeyError:
            problem(name, "listed in externals_info but not in the zip")
            continue
        if info["item_type"] == "npy":
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
            if npy_data_offset(raw) % 64 != 0:
                problem(name, f"npy data starts at {npy_data_offset(raw)}, not 64-aligned")
            info_zip = zf.getinfo(name)
            if info_zip.compress_type == zipfile.ZIP_STORED:
                at = file_data_offset(zf, info_zip) + npy_data_offset(raw)
                if at % 64 != 0:
                    problem(name, f"tensor data at file offset {at}, not 64-aligned (cannot be mapped)")
            loaded[name] = (path, arr)
        else:
            text = raw.decode("utf-8")
            items = [json.loads(line) for line in text.split("\n") if line.strip()]
            loaded[name] = (path, items)
    return loaded


def populate(tree, loaded):
    # Python walks each externals_info path (shortest first) and checks "$ref" == entry name.
    for name, (path, data) in sorted(loaded.items(), key=lambda kv: len(kv[1][0])):
        node = tree
        try:
            for p in path:
                if isinstance(node, dict) and "$ref" in node and "data" in node:
                    node = node["data"]
                node = node[p]
        except (KeyError, IndexError, TypeError) as e:
            problem(name, f"path {path} does not resolve in __zanj__.json ({e!r})")
            continue
        if not isinstance(node, dict) or node.get("$ref") != name:
            problem(name, f"item at {path} has $ref {node.get('$ref') if isinstance(node, dict) else None!r}")
            continue
        node["data"] = data


def load_item(item, where, torch_mode):
    if isinstance(item, list):
        return [load_item(v, f"{where}/{i}", torch_mode) for i, v in enumerate(item)]
    if not isinstance(item, dict):
        return item
    tag = item.get("__muutils_format__")
    if isinstance(tag, str) and (tag.startswith("torch.Tensor") or tag.startswith("numpy.ndarray")):
        return load_array(item, tag, where)
    if tag in ("list:external", "tuple:external"):
        if "data" not in item:
            problem(where, f"external list {item.get('$ref')!r} not listed in externals_info")
            return None
        return [load_item(v, f"{where}/{i}", torch_mode) for i, v in enumerate(item["data"])]
    return {k: load_item(v, f"{where}/{k}", torch_mode) for k, v in item.items()}


def load_array(item, tag, where):
    mode = tag.split(":", 1)[1]
    if mode not in TENSOR_MODES:
        problem(where, f"unknown array mode {mode!r}")
        return None
    dtype = item.get("dtype")
    if mode == "external":
        if "data" not in item:
            problem(where, f"external {item.get('$ref')!r} not listed in externals_info")
            return None
        arr = item["data"]
        if tag.startswith("torch.Tensor") and dtype not in TORCH_NAMES:
            problem(where, f"dtype {dtype!r} is not in Python's TORCH_DTYPE_MAP")
        expected_kind = str(dtype).replace("torch.", "")
        if expected_kind == "bfloat16":
            if arr.dtype != np.float32:
                problem(where, f"bfloat16 must be stored as <f4, found {arr.dtype}")
        elif expected_kind in NUMPY_NAMES and arr.dtype != np.dtype(expected_kind):
            problem(where, f"npy holds {arr.dtype}, JSON says {dtype}")
        if "shape" in item and list(arr.shape) != item["shape"]:
            problem(where, f"npy shape {list(arr.shape)} != JSON shape {item['shape']}")
        return arr
    if "shape" not in item or "dtype" not in item:
        problem(where, "inline array without shape/dtype (Python raises KeyError)")
        return None
    if mode == "zero_dim":
        if item["shape"] != []:
            problem(where, "zero_dim with non-empty shape")
        if tag.startswith("torch.Tensor") and dtype not in TORCH_NAMES:
            problem(where, f"dtype {dtype!r} is not in Python's TORCH_DTYPE_MAP")
        return np.array(item["data"])
    if dtype not in NUMPY_NAMES:
        problem(where, f"inline dtype {dtype!r} is not a numpy name (Python raises TypeError)")
        return None
    if mode == "array_list_meta":
        arr = np.array(item["data"], dtype=dtype)
    elif mode == "array_hex_meta":
        arr = np.frombuffer(bytes.fromhex(item["data"]), dtype=dtype)
    else:
        import base64
        arr = np.frombuffer(base64.b64decode(item["data"]), dtype=dtype)
    if mode != "array_list_meta":
        arr = arr.reshape(item["shape"])
    if list(arr.shape) != item["shape"]:
        problem(where, f"inline data shape {list(arr.shape)} != {item['shape']} (Python fails)")
    return arr


def mynn_probe(tree):
    import torch

    cfg = tree["zanj_model_config"]
    net = torch.nn.Sequential(
        torch.nn.Linear(cfg["input_dim"], cfg["hidden_dim"]),
        getattr(torch.nn, cfg["act_fn"])(),
        torch.nn.Linear(cfg["hidden_dim"], cfg["output_dim"]),
    )

    class MyNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    model = MyNN()
    state = {}
    for key, arr in tree["state_dict"].items():
        tag = arr_tags[key]
        if not tag.startswith("torch.Tensor"):
            problem(f"state_dict/{key}", f"tagged {tag}; Python's load_state_dict needs torch.Tensor")
        state[key] = torch.tensor(np.asarray(arr))
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        out = model(torch.arange(3 * cfg["input_dim"], dtype=torch.float32).reshape(3, -1) / 10)
    print(json.dumps(out.double().tolist()))


arr_tags = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--mynn-probe", action="store_true")
    args = ap.parse_args()

    with zipfile.ZipFile(args.file) as zf:
        bad = zf.testzip()
        if bad is not None:
            problem(bad, "CRC mismatch")
        names = zf.namelist()
        if len(names) != len(set(names)):
            problem(args.file, "duplicate entry names")
        meta = json.loads(zf.read("__zanj_meta__.json"))
        tree = json.loads(zf.read("__zanj__.json"))
        loaded = load_externals(zf, meta)
        listed = set(meta.get("externals_info", {}))
        for n in names:
            if n not in ("__zanj__.json", "__zanj_meta__.json") and n not in listed:
                problem(n, "zip entry not listed in externals_info")
    if isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict):
        for k, v in tree["state_dict"].items():
            arr_tags[k] = v.get("__muutils_format__", "") if isinstance(v, dict) else ""
    populate(tree, loaded)
    result = load_item(tree, "__zanj__.json", True)
    if args.mynn_probe and not problems:
        if result.get("__muutils_format__") != "MyNN":
            problem("__muutils_format__", f"expected 'MyNN', found {result.get('__muutils_format__')!r}")
        else:
            mynn_probe(result)
    for p in problems:
        print(f"check_checkpoint: {args.file}: {p}", file=sys.stderr)
    if not problems:
        print(f"check_checkpoint: {args.file}: OK ({len(loaded)} external entries)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
