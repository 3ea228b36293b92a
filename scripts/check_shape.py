#!/usr/bin/env python3
"""The shape docs/architecture.md promises, checked: one-way includes between the boxes, no
function in src/ over MAX_FUNCTION lines, no file over MAX_FILE, no file of src/cli over MAX_CLI_FILE lines
(one subcommand's options and its one library call; main.cpp, the dispatcher, MAX_CLI_MAIN).
Prints each breach with its place and exits 1; run by ctest as `source_shape`.
  scripts/check_shape.py [REPO_ROOT]"""
import pathlib
import re
import sys

# A CLI total grew with every subcommand; per file, the rule says what is meant: a subcommand's
# file declares options and calls the library, and anything longer holds logic that belongs there.
MAX_FUNCTION, MAX_FILE, MAX_CLI_FILE, MAX_CLI_MAIN = 100, 600, 60, 90
# box → boxes it must not include (data flows config → data → model → train → eval/ship/serve → app → cli).
FORBIDDEN = {
    "core": {"config", "data", "model", "checkpoint", "train", "eval", "ship", "serve", "dist", "cli"},
    "config": {"data", "model", "checkpoint", "train", "eval", "ship", "serve", "cli"},
    "data": {"model", "checkpoint", "train", "eval", "ship", "serve", "cli"},
    "model": {"checkpoint", "train", "eval", "ship", "serve", "cli"},
    "checkpoint": {"train", "eval", "ship", "serve", "cli"},
    "train": {"eval", "ship", "serve", "cli"},
    "eval": {"train", "ship", "serve", "cli"},
    "ship": {"train", "serve", "cli"},
    "serve": {"train", "cli"},
}
for _box in FORBIDDEN.values():
    _box.add("app")  # app/ holds the subcommands as library calls: only the CLI calls it
INCLUDE = re.compile(r'#include "tltrain/(\w+)/')
# A definition's first line at column 0 that opens a block, other than namespaces and types.
NOT_FUNCTION = re.compile(r"^(namespace|class|struct|enum|union|extern|template\s*<[^>]*>\s*(class|struct))\b")


def box_of(path, root):
    parts = path.relative_to(root).parts
    return parts[2] if parts[0] == "include" else parts[1]


def functions(lines):
    """(first line, length) of each top-level block at column 0 that is not a namespace or a type."""
    out, depth, start, in_ns = [], 0, None, 0
    for i, line in enumerate(lines):
        code = re.sub(r'"(\\.|[^"\\])*"', '""', line.split("//")[0])
        code = re.sub(r"'(\\.|[^'\\])'", "''", code)
        if depth == in_ns and start is None and line[:1] not in ("", " ", "}", "#", "/") and "{" in code:
            if NOT_FUNCTION.match(line):
                if line.startswith("namespace"):
                    in_ns += 1
            else:
                start = i
        for ch in code:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if start is not None and depth == in_ns:
                    out.append((start + 1, i - start + 1))
                    start = None
        if depth < in_ns:
            in_ns = depth
    return out


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    problems, cli_lines = [], 0
    files = sorted([*(root / "src").rglob("*.cpp"), *(root / "src").rglob("*.h"), *(root / "include" / "tltrain").rglob("*.h")])
    for f in files:
        lines = f.read_text().splitlines()
        rel, box = f.relative_to(root), box_of(f, root)
        if box == "cli":
            cli_lines += len(lines)
            limit = MAX_CLI_MAIN if f.name == "main.cpp" else MAX_CLI_FILE
            if len(lines) > limit:
                problems.append(f"{rel}: {len(lines)} lines (at most {limit}): move library logic out of the CLI")
        if len(lines) > MAX_FILE:
            problems.append(f"{rel}: {len(lines)} lines (at most {MAX_FILE}): split it by what its parts do")
        for n, line in enumerate(lines, 1):
            m = INCLUDE.match(line)
            if m and m.group(1) in FORBIDDEN.get(box, set()):
                problems.append(f"{rel}:{n}: {box}/ includes {m.group(1)}/, against the one-way flow in docs/architecture.md")
        if f.suffix == ".cpp":
            for first, length in functions(lines):
                if length > MAX_FUNCTION:
                    problems.append(f"{rel}:{first}: a function of {length} lines (at most {MAX_FUNCTION}): "
                                    f"{lines[first - 1].strip()[:60]}")
    for p in problems:
        print(p)
    print(f"check_shape: {len(files)} files, src/cli {cli_lines} lines, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
