#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes golden .npy files with numpy into tests/data/npy/ plus manifest.json.

Each manifest row names the file, the torch dtype the C++ reader must return, the shape, and
the values flattened in C order (complex as [re, im] pairs). Run with Debian's /usr/bin/python3
(python3-numpy); the outputs are committed.
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "npy")

# numpy dtype -> torch dtype name the reader returns (u2/u4 are widened exactly).
DTYPES = {
    "b1": "torch.bool", "u1": "torch.uint8", "i1": "torch.int8", "i2": "torch.int16",
    "i4": "torch.int32", "i8": "torch.int64", "f2": "torch.float16", "f4": "torch.float32",
    "f8": "torch.float64", "c8": "torch.complex64", "c16": "torch.complex128",
    "u2": "torch.int32", "u4": "torch.int64",
}


def values(code, n):
    i = np.arange(n)
    if code == "b1":
        return i % 3 == 0
    if code[0] == "u":
        return (i * 37 + 250) % (2 ** (8 * int(code[1:])))
    if code[0] == "i":
        bits = 8 * int(code[1:])
        return ((i * 37) % (2 ** bits)) - 2 ** (bits - 1)
    if code[0] == "f":
        v = (i - n / 2) * 0.25
        if n > 3:
            v[1], v[2], v[3] = np.inf, -np.inf, -0.0
        return v
    return (i * 0.5) - 1j * i


def flat(arr):
    out = []
    for v in arr.flatten(order="C").tolist():
        if isinstance(v, complex):
            out.append([v.real, v.imag])
        else:
            out.append(v)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    rows = []

    def emit(name, arr, version=None, torch_dtype=None):
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            np.lib.format.write_array(f, arr, version=version, allow_pickle=False)
        rows.append({"file": name, "dtype": torch_dtype, "shape": list(arr.shape),
                     "fortran_order": bool(arr.flags.f_contiguous and not arr.flags.c_contiguous),
                     "values": flat(arr)})

    for code, torch_dtype in DTYPES.items():
        for shape in [(), (0,), (5,), (2, 3), (2, 3, 4), (0, 3)]:
            n = int(np.prod(shape)) if shape else 1
            arr = np.asarray(values(code, n)).astype("<" + code if code not in ("b1", "u1", "i1") else code).reshape(shape)
            tag = "x".join(map(str, shape)) or "scalar"
            emit(f"{code}_{tag}.npy", arr, torch_dtype=torch_dtype)
        # Fortran order, big endian, and the v2/v3 headers.
        base = np.asarray(values(code, 24)).astype(code if code in ("b1", "u1", "i1") else "<" + code).reshape(2, 3, 4)
        emit(f"{code}_2x3x4_fortran.npy", np.asfortranarray(base), torch_dtype=torch_dtype)
        if code not in ("b1", "u1", "i1"):
            emit(f"{code}_2x3x4_big.npy", base.astype(">" + code), torch_dtype=torch_dtype)
        emit(f"{code}_2x3x4_v2.npy", base, version=(2, 0), torch_dtype=torch_dtype)
        emit(f"{code}_2x3x4_v3.npy", base, version=(3, 0), torch_dtype=torch_dtype)
    big_fortran = np.asfortranarray(np.arange(6, dtype=">f8").reshape(2, 3))
    emit("f8_2x3_big_fortran.npy", big_fortran, torch_dtype="torch.float64")

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {len(rows)} files to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
