#!/usr/bin/env python3
"""Lists the longest Rust functions of the tree (lines from `fn` to its closing brace).

    scripts/fn-lengths.py [--top N] [--max LINES] [PATH ...]

Default paths: runner/ and coordinator/. With --max, exits 1 when a function is longer (a check
a reviewer or CI can run). Functions are found textually: a line whose code starts an item with
`fn NAME` (after optional `pub`, `async`, `const`, `unsafe` and the like), up to the brace that
closes its body; strings, char literals and comments are skipped while counting braces, so a `{`
inside a string does not confuse it. Declarations without a body (trait methods ending in `;`)
are ignored.
"""

import argparse
import pathlib
import re
import sys

FN_START = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:(?:const|async|unsafe|extern(?:\s+\"[^\"]*\")?)\s+)*fn\s+(\w+)"
)


def strip_code(text):
    """The text with comments, strings and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j == -1 else j
            out.append(" " * (j - i))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end == -1 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(?:\\.[^']*|[^\\'])'", text[i:i + 12])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    code = strip_code(path.read_text(encoding="utf-8", errors="replace"))
    lines = code.split("\n")
    for start, line in enumerate(lines):
        m = FN_START.match(line)
        if not m:
            continue
        depth, opened = 0, False
        for end in range(start, len(lines)):
            for ch in lines[end] if end > start else line[m.end():]:
                if ch == "{":
                    depth, opened = depth + 1, True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not opened and depth == 0:
                    break
            else:
                if opened and depth == 0:
                    yield m.group(1), start + 1, end - start + 1
                    break
                continue
            break


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=["runner", "coordinator"])
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--max", type=int)
    ap.add_argument("--exclude", action="append", default=[], help="skip paths containing this")
    args = ap.parse_args()
    found = []
    for root in args.paths:
        root = pathlib.Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("*.rs"))
        for f in files:
            if "target" in f.parts or any(x in str(f) for x in args.exclude):
                continue
            for name, line, length in functions(f):
                found.append((length, f"{f}:{line}", name))
    found.sort(reverse=True)
    for length, where, name in found[: args.top]:
        print(f"{length:5}  {where}  {name}")
    if args.max is not None:
        over = [f for f in found if f[0] > args.max]
        if over:
            print(f"{len(over)} function(s) longer than {args.max} lines", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
