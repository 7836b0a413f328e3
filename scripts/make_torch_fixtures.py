#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the Python torch.save files the C++ tests read (tests/format/torch_file_test.cpp).

Usage: make_torch_fixtures.py OUTDIR

Everything is seeded, so the C++ side can compare outputs bit for bit:
  <kind>.pt      state_dict() of a module (linear, conv2d, batchnorm, embedding, lstm)
  <kind>_io.pt   {"input": x, "output": module(x)} computed here, in eval mode
  dtypes.pt      one tensor of every dtype torch.save writes
  views.pt       views sharing one storage, and their contiguous copies
  checkpoint.pt  {"model": sd, "optimizer": Adam state, "epoch": 3, ...}
  legacy.pt      the same state dict in the pre-1.6 (non-zip) format
  evil_*.pt      torch.save-shaped zips whose pickle names a forbidden global
"""
import collections
import io
import os
import pickle
import sys
import zipfile

import torch


def modules():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(input_size=4, hidden_size=5, num_layers=2, batch_first=True)
    bn = torch.nn.BatchNorm2d(3)
    # Non-trivial running statistics and counter, as after training.
    bn.train()
    for _ in range(3):
        bn(torch.randn(4, 3, 5, 5))
    return {
        "linear": (torch.nn.Linear(6, 4), torch.randn(3, 6)),
        "conv2d": (torch.nn.Conv2d(3, 4, kernel_size=3, padding=1), torch.randn(2, 3, 6, 6)),
        "batchnorm": (bn, torch.randn(2, 3, 4, 4)),
        "embedding": (torch.nn.Embedding(10, 3), torch.tensor([[1, 2, 9], [0, 0, 4]])),
        "lstm": (lstm, torch.randn(2, 3, 4)),
    }


def evil_pickle(module, name, arg):
    """protocol-2 bytes that would call module.name(arg) on an unrestricted load."""
    return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\nq\x00X" +
            len(arg).to_bytes(4, "little") + arg.encode() + b"\x85R.")


class Reduced:
    """An object whose pickle is a __reduce__ payload (posix.system)."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def write_evil(path, payload):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/version", "3\n")


def main(out):
    os.makedirs(out, exist_ok=True)
    for kind, (m, x) in modules().items():
        m.eval()
        with torch.no_grad():
            y = m(x)
        if kind == "lstm":
            y = y[0]
        torch.save(m.state_dict(), os.path.join(out, kind + ".pt"))
        torch.save({"input": x, "output": y}, os.path.join(out, kind + "_io.pt"))

    torch.manual_seed(1)
    base = torch.randn(6, 5)
    dtypes = collections.OrderedDict()
    for name, dt in [("float32", torch.float32), ("float64", torch.float64),
                     ("float16", torch.float16), ("bfloat16", torch.bfloat16),
                     ("int64", torch.int64), ("int32", torch.int32), ("int16", torch.int16),
                     ("int8", torch.int8), ("uint8", torch.uint8)]:
        dtypes[name] = (base * 50).to(dt)
    dtypes["bool"] = base > 0
    dtypes["complex64"] = torch.complex(base, -base)
    dtypes["complex128"] = torch.complex(base.double(), base.double() * 2)
    dtypes["scalar"] = torch.tensor(3.5)
    dtypes["empty"] = torch.zeros(0, 4)
    torch.save(dtypes, os.path.join(out, "dtypes.pt"))
    # The same values as raw little-endian bytes, for an independent check of each dtype.
    with open(os.path.join(out, "dtypes.raw"), "wb") as f:
        for name, t in dtypes.items():
            b = t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
            f.write(name.encode() + b"\n" + str(len(b)).encode() + b"\n" + b)

    t = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    views = {"base": t, "rows": t[1:4], "strided": t[1:, ::2], "transposed": t.t(), "row": t[2]}
    copies = {k: v.contiguous().clone() for k, v in views.items()}
    torch.save({"views": views, "copies": copies}, os.path.join(out, "views.pt"))

    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        net(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    ckpt = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
            "losses": [0.5, 0.25], "name": "run-1", "best": True, "note": None,
            "shape": torch.Size([2, 3]), "dtype": torch.float16}
    torch.save(ckpt, os.path.join(out, "checkpoint.pt"))
    torch.save(net.state_dict(), os.path.join(out, "legacy.pt"),
               _use_new_zipfile_serialization=False)

    marker = os.path.join(out, "PWNED")
    write_evil(os.path.join(out, "evil_os_system.pt"),
               pickle.dumps(Reduced("touch " + marker), protocol=2))
    write_evil(os.path.join(out, "evil_eval.pt"),
               evil_pickle("builtins", "eval", "open(%r, 'w')" % marker))
    write_evil(os.path.join(out, "evil_subprocess.pt"),
               evil_pickle("subprocess", "check_call", "touch " + marker))


if __name__ == "__main__":
    main(sys.argv[1])
