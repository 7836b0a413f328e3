#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""README code blocks are tested from the README itself.

A ```cpp block right after a line `<!-- test: NAME -->` is written, as it stands, to
OUT/NAME.inc (with a #line directive, so compiler errors point into README.md), which a test
#includes between its set-up and its assertions. Files whose text did not change are left alone
so that nothing rebuilds for nothing.

    readme_snippets.py README.md OUT
"""
import pathlib
import re
import sys


def main(readme: str, out: str) -> int:
    lines = pathlib.Path(readme).read_text(encoding="utf-8").split("\n")
    outdir = pathlib.Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    found = []
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"<!-- test: ([A-Za-z0-9_]+) -->", lines[i])
        i += 1
        if not m:
            continue
        if i >= len(lines) or lines[i] != "```cpp":
            print(f"{readme}:{i}: '<!-- test: {m.group(1)} -->' is not followed by ```cpp",
                  file=sys.stderr)
            return 1
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        text = f'#line {start + 1} "{readme}"\n' + "\n".join(lines[start:end]) + "\n"
        target = outdir / f"{m.group(1)}.inc"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        found.append(m.group(1))
        i = end + 1
    if not found:
        print(f"{readme}: no '<!-- test: NAME -->' code blocks", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
