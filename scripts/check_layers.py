#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Fails when a file of src/ includes something of a higher layer (docs/architecture.md).

Layers, bottom up: ground (src/*.cpp, src/*.hpp), storage, format, model-free tree, model,
training, distributed. A public header include/configured_model/X.hpp belongs to the layer of
the src/ file that implements it (src/**/X.cpp, or the layer named in HEADER_LAYERS for headers
without one of that name). Only direct includes of files under src/ are checked.

    scripts/check_layers.py            # exit 0: every include points down or sideways
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = ["ground", "storage", "format", "tree", "model", "training", "distributed"]
# Public headers whose code is not in a src/**/<same name>.cpp.
HEADER_LAYERS = {
    "export": "ground", "errors": "ground", "logging": "ground", "version": "ground",
    "dtype": "ground", "options": "ground", "checksum": "format", "archive": "format",
    "json_text": "format", "npy": "format", "safetensors": "format", "torch_file": "format",
    "node": "ground", "tree": "tree", "file": "tree", "lazy_file": "tree", "verify": "tree",
    "metadata": "tree", "config": "model", "configured_model": "model", "modules": "model",
    "state_dict": "model", "weights": "model", "optimizer_codec": "training",
    "data_position": "training", "training_state": "training", "async_saver": "training",
    "checkpoint_manager": "training", "distributed": "distributed",
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of_src(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT / "src")
    return "ground" if len(rel.parts) == 1 else rel.parts[0]


def layer_of_include(target: str, including: pathlib.Path):
    if target.startswith("configured_model/"):
        name = pathlib.Path(target).stem
        return HEADER_LAYERS.get(name)
    resolved = (including.parent / target).resolve()
    try:
        return layer_of_src(resolved)
    except ValueError:
        return None


def main() -> int:
    bad = []
    unknown = []
    for path in sorted((ROOT / "src").rglob("*")):
        if path.suffix not in (".cpp", ".hpp"):
            continue
        mine = layer_of_src(path)
        if mine not in LAYERS:
            unknown.append(f"{path.relative_to(ROOT)}: folder {mine!r} is no layer")
            continue
        for target in INCLUDE.findall(path.read_text()):
            theirs = layer_of_include(target, path)
            if theirs is None:
                if target.startswith("configured_model/"):
                    unknown.append(f"{path.relative_to(ROOT)}: {target}: no layer known")
                continue
            if LAYERS.index(theirs) > LAYERS.index(mine):
                bad.append(f"{path.relative_to(ROOT)} ({mine}) includes {target} ({theirs})")
    for line in unknown + bad:
        print(line)
    if bad or unknown:
        print(f"check_layers: {len(bad)} upward include(s), {len(unknown)} unknown", file=sys.stderr)
        return 1
    print("check_layers: every include of src/ points down or sideways")
    return 0


if __name__ == "__main__":
    sys.exit(main())
