#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Builds .zanj files exactly as Python ZANJ 0.6.0 writes them, into tests/data/python/.

Follows docs/FORMAT.md (the researched description of Python ZANJ's output): json.dumps with
indent="\\t" (NaN tokens, ensure_ascii), __zanj_meta__.json first, externals written with
force_zip64=True, deflate by default. Tensor values follow formulas the C++ tests recompute:
  weights: value[k] = ((k % 17) - 8) / 16 over the C-order flat index k (exact in float32).
Run with Debian's /usr/bin/python3 (python3-numpy); the outputs are committed.
"""
import io
import json
import os
import time
import zipfile

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "python")


def formula(shape, dtype="float32"):
    n = int(np.prod(shape)) if shape else 1
    return (((np.arange(n) % 17) - 8) / 16).astype(dtype).reshape(shape)


def npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def inline(arr, tag="torch.Tensor"):
    return {"__muutils_format__": f"{tag}:array_list_meta", "data": arr.tolist(),
            "shape": list(arr.shape), "dtype": str(arr.dtype), "n_elements": int(arr.size)}


def external(name, arr, dtype=None, tag="torch.Tensor"):
    return {"__muutils_format__": f"{tag}:external", "$ref": name, "shape": list(arr.shape),
            "dtype": dtype or f"torch.{arr.dtype}", "n_elements": int(arr.size)}


def meta(externals, compress):
    return {
        "zanj_cfg": {
            "error_mode": "ErrorMode.Except", "array_mode": "array_list_meta",
            "external_array_threshold": 256, "external_list_threshold": 256,
            "compress": compress, "serialization_handlers": {}, "load_handlers": {},
        },
        "sysinfo": {
            "python": {"version": "3.11.2 (main) [GCC 12.2.0]",
                       "version_info": [3, 11, 2, "final", 0], "major": 3, "minor": 11,
                       "micro": 2, "releaselevel": "final", "serial": 0},
            "pytorch": {"importable": True, "torch.__version__": "1.13.0a0",
                        "torch.version.cuda": None, "torch.cuda.is_available()": False,
                        "torch.cuda.device_count()": 0},
        },
        # Python sorts by the number of path components (stable).
        "externals_info": dict(sorted(((n, info) for n, info, _ in externals),
                                      key=lambda kv: len(kv[1]["path"]))),
        "timestamp": 1795430596.6601813,
    }


def write(name, tree, externals, compress=zipfile.ZIP_DEFLATED):
    path = os.path.join(OUT, name)
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        now = time.localtime(time.time())[:6]
        for entry, obj in (("__zanj_meta__.json", meta(externals, compress)),
                           ("__zanj__.json", tree)):
            info = zipfile.ZipInfo(entry, date_time=now)
            info.external_attr = 0o600 << 16
            info.compress_type = compress
            zf.writestr(info, json.dumps(obj, indent="\t"))
        for entry, _, data in externals:
            with zf.open(entry, "w", force_zip64=True) as f:
                f.write(data)
    print("wrote", os.path.normpath(path))


def npy_info(path, arr):
    return {"item_type": "npy", "path": path, "type(data)": "<class 'numpy.ndarray'>",
            "len(data)": int(arr.shape[0]) if arr.ndim else 0}


def jsonl_info(path, items):
    return {"item_type": "jsonl", "path": path, "type(data)": "<class 'list'>",
            "len(data)": len(items), "data[0]": items[0]}


def jsonl_bytes(items):
    return "".join(json.dumps(i) + "\n" for i in items).encode()


def mynn(hidden, weight0_external):
    config = {"__muutils_format__": "MyNNConfig(SerializableDataclass)", "input_dim": 10,
              "hidden_dim": hidden, "output_dim": 2, "act_fn": "ReLU",
              "loss_kwargs": {"reduction": "mean"}, "loss_factory": "CrossEntropyLoss"}
    shapes = {"net.0.weight": (hidden, 10), "net.0.bias": (hidden,),
              "net.2.weight": (2, hidden), "net.2.bias": (2,)}
    externals = []
    state = {}
    for key, shape in shapes.items():
        arr = formula(shape)
        if arr.size >= 256:
            name = f"state_dict/{key}.npy"
            data = np.asfortranarray(arr) if weight0_external == "fortran" else arr
            state[key] = external(name, arr)
            externals.append((name, npy_info(["state_dict", key], arr), npy_bytes(data)))
        else:
            state[key] = inline(arr)
    losses = [float(1.0 / (i + 1)) for i in range(300)]
    externals.insert(0, ("training_records/loss_per_step.jsonl",
                         jsonl_info(["training_records", "loss_per_step"], losses),
                         jsonl_bytes(losses)))
    tree = {
        "zanj_model_config": config,
        "meta": {"class_name": "MyNN", "class_doc": [], "class_source": ["class MyNN(...)"],
                 "module_name": "__main__", "module_mro": ["<class '__main__.MyNN'>"],
                 "num_params": 0, "as_str": ["MyNN("]},
        "training_records": {"loss_per_step": {"__muutils_format__": "list:external",
                                               "$ref": "training_records/loss_per_step.jsonl"},
                             "note": "h\u00e9llo \u2603", "nan_loss": float("nan")},
        "state_dict": state,
        "__muutils_format__": "MyNN",
    }
    return tree, externals


def tree_modes():
    externals = []
    np_large = formula((16, 20))
    externals.append(("np_large.npy", npy_info(["np_large"], np_large), npy_bytes(np_large)))
    bf16 = formula((300,))  # every value is exact in bfloat16
    externals.append(("bf16.npy", npy_info(["bf16"], bf16), npy_bytes(bf16)))
    long_tuple = list(range(300))
    externals.append(("long_tuple.jsonl", jsonl_info(["long_tuple"], long_tuple),
                      jsonl_bytes(long_tuple)))
    dict_rows = [{"i": i, "sq": i * i, "name": f"n{i}"} for i in range(260)]
    externals.append(("long_dict_list.jsonl", jsonl_info(["long_dict_list"], dict_rows),
                      jsonl_bytes(dict_rows)))
    # A long list whose item 1 is itself an external tensor (nested external).
    nested = formula((20, 20))
    tensor_items = [0, external("tensor_list/1.npy", nested)] + list(range(2, 256))
    externals.append(("tensor_list.jsonl", jsonl_info(["tensor_list"], tensor_items),
                      jsonl_bytes(tensor_items)))
    externals.append(("tensor_list/1.npy", npy_info(["tensor_list", 1], nested), npy_bytes(nested)))

    tree = {
        "__muutils_format__": "BasicZanj(SerializableDataclass)",
        "float32_small": inline(np.array([[-0.75, -0.5, -0.25], [0.0, 0.25, 0.5]], dtype="float32")),
        "int16_hex": {"__muutils_format__": "torch.Tensor:array_hex_meta",
                      "data": np.array([1, -2, 300, -32768], dtype="<i2").tobytes().hex(),
                      "shape": [4], "dtype": "int16", "n_elements": 4},
        "float64_b64": {"__muutils_format__": "torch.Tensor:array_b64_meta",
                        "data": __import__("base64").b64encode(
                            np.array([[1.5, -2.25], [1e-300, 3.0]], dtype="<f8").tobytes()).decode(),
                        "shape": [2, 2], "dtype": "float64", "n_elements": 4},
        "t_0d_float32": {"__muutils_format__": "torch.Tensor:zero_dim", "data": 3.5, "shape": [],
                         "dtype": "torch.float32", "n_elements": 1},
        "t_0d_int64": {"__muutils_format__": "torch.Tensor:zero_dim", "data": -7, "shape": [],
                       "dtype": "torch.int64", "n_elements": 1},
        "np_uint8": inline(np.array([0, 7, 255], dtype="uint8"), tag="numpy.ndarray"),
        "np_large": external("np_large.npy", np_large, dtype="float32", tag="numpy.ndarray"),
        "bool_small": inline(np.array([[True, False], [False, True]])),
        "special": inline(np.array([np.nan, np.inf, -np.inf], dtype="float64")),
        "empty_1d": inline(np.zeros((0,), dtype="float32")),
        "bf16": external("bf16.npy", bf16, dtype="torch.bfloat16"),
        "long_tuple": {"__muutils_format__": "tuple:external", "$ref": "long_tuple.jsonl"},
        "long_dict_list": {"__muutils_format__": "list:external", "$ref": "long_dict_list.jsonl",
                           "len(data)": 260,
                           "columns": {"i": {"types": ["int"], "len": 260}},
                           "data[0]": dict_rows[0]},
        "tensor_list": {"__muutils_format__": "list:external", "$ref": "tensor_list.jsonl"},
        "inner": {"__muutils_format__": "InnerCfg(SerializableDataclass)", "x": 7,
                  "label": "nested", "weights": [0.1, 0.2, 0.3]},
        "unicode": "h\u00e9llo \u2603",
        "set_value": {"__muutils_format__": "set", "data": [1, 2]},
        "d": {"k_int": 1, "k_list": [1.5, "x", None], "k_dict": {"z": False}},
    }
    return tree, externals


def legacy():
    # ZANJ <= 0.3.1 used "__format__" instead of "__muutils_format__".
    arr = np.array([1.0, 2.0, 3.0], dtype="float32")
    tree = {"__format__": "Old(SerializableDataclass)",
            "weights": {"__format__": "torch.Tensor:array_list_meta", "data": arr.tolist(),
                        "shape": [3], "dtype": "float32", "n_elements": 3}}
    return tree, []


def main():
    os.makedirs(OUT, exist_ok=True)
    write("mynn_readme.zanj", *mynn(20, None))
    write("mynn_hidden64_fortran.zanj", *mynn(64, "fortran"))
    write("tree_modes_stored.zanj", *tree_modes(), compress=zipfile.ZIP_STORED)
    write("legacy_format.zanj", *legacy())


if __name__ == "__main__":
    main()
