#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes safetensors files for the C++ tests with a writer of its own, made from the format
description (Debian has no safetensors package): 8-byte little-endian header length, a JSON
header {key: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}} padded
with spaces, then the tensors' bytes.

Usage: make_safetensors_fixtures.py OUTDIR       writes the files below
       make_safetensors_fixtures.py --check F OUT  reads F (ours) the same way, torch.save()s it

  model.safetensors                      every dtype, with __metadata__
  model.pt                               the same tensors through torch.save, for comparison
  sharded/model.safetensors.index.json   the same tensors over two shards
"""
import json
import os
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
          torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
BY_NAME = {v: k for k, v in DTYPES.items()}


def raw(t):
    t = t.contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def write(path, tensors, metadata=None):
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k, t in tensors.items():
        b = raw(t)
        header[k] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        buf = bytearray(data[8 + n + b:8 + n + e])
        dt = BY_NAME[v["dtype"]]
        t = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.zeros(0, dtype=torch.uint8)
        out[k] = t.view(dt).reshape(v["shape"]) if buf else torch.zeros(v["shape"], dtype=dt)
    return out, meta


def main(out):
    os.makedirs(os.path.join(out, "sharded"), exist_ok=True)
    torch.manual_seed(3)
    base = torch.randn(5, 7) * 40
    tensors = {}
    for dt in DTYPES:
        tensors["t." + DTYPES[dt].lower()] = base > 0 if dt == torch.bool else base.to(dt)
    tensors["embed.weight"] = torch.randn(11, 3)
    tensors["scalar"] = torch.tensor(2.5)
    tensors["empty"] = torch.zeros(0, 3)
    write(os.path.join(out, "model.safetensors"), tensors, {"format": "pt", "source": "fixture"})
    torch.save(tensors, os.path.join(out, "model.pt"))
    keys = list(tensors)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half],
              "model-00002-of-00002.safetensors": keys[half:]}
    weight_map = {}
    for name, ks in shards.items():
        write(os.path.join(out, "sharded", name), {k: tensors[k] for k in ks})
        weight_map.update({k: name for k in ks})
    with open(os.path.join(out, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(len(raw(t)) for t in tensors.values())},
                   "weight_map": weight_map}, f)


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        tensors, meta = read(sys.argv[2])
        torch.save({"tensors": tensors, "metadata": meta}, sys.argv[3])
    else:
        main(sys.argv[1])
