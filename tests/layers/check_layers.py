#!/usr/bin/env python3
"""The layering and namespace rules of docs/design.md, checked over the headers of include/ardent.

Layers: the table under "## Layers" in docs/design.md gives each folder of include/ardent/ a layer;
a header may include headers of its own folder and of folders of a strictly lower layer, never of
its own layer or above (so there are no cycles, and a lower layer compiles without the upper
ones). The umbrella header include/ardent/ardent.hpp and version.hpp stand above every layer.
The table is the rule: this script reads it, so the page and the code cannot drift apart.

Namespaces ("## Folders and namespaces"): a header's path names its namespace. A header in
include/ardent/<a>/<b>/ declares ardent::<a>::<b>, where the folders that hold the top-level
contract (TOP_LEVEL: core/, distill/) stand for ardent itself, so distill/recipes/ declares
ardent::recipes and a header directly in include/ardent/ declares ardent. A header may also open
namespaces nested in its own (detail, eval::checks), and an enclosing one only for
using-declarations (ardent::evaluate is ardent::eval::evaluate, brought up by eval/evaluate.hpp).

Usage: check_layers.py <repository root>
Exit status 0 when every include keeps the rule, 1 with one line per violation otherwise.
"""

import pathlib
import re
import sys

# Includes that break the rule today and are being removed by a change in flight: each entry is
# (folder, included folder, why). An entry that no longer occurs fails the check, so that it is
# deleted as soon as its include is gone.
PENDING = []

# The folders whose headers declare the top-level namespace ardent (see docs/design.md).
TOP_LEVEL = {"core", "distill"}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]ardent/([^">]+)[">]', re.MULTILINE)
ROW = re.compile(r"^\|\s*(\d+)\s*\|([^|]*)\|")
FOLDER = re.compile(r"`([a-z_]+)/`")
OPEN = re.compile(r"^namespace ([A-Za-z_][\w:]*) \{")
CLOSE = re.compile(r"^\}  // namespace ([A-Za-z_][\w:]*)$")


def layers(design: pathlib.Path) -> dict:
    """Folder -> layer, from the table of the "## Layers" section."""
    text = design.read_text(encoding="utf-8")
    section = text.split("\n## Layers", 1)
    if len(section) < 2:
        sys.exit(f"{design}: no '## Layers' section")
    body = section[1].split("\n## ", 1)[0]
    result = {}
    for line in body.splitlines():
        row = ROW.match(line)
        if not row:
            continue
        for folder in FOLDER.findall(row.group(2)):
            result[folder] = int(row.group(1))
    if not result:
        sys.exit(f"{design}: the '## Layers' section has no table of | layer | `folder/` | rows")
    return result


def expected_namespace(relative: pathlib.PurePath) -> str:
    """The namespace a header's path names: ardent::<folder>::<subfolder>, TOP_LEVEL folders dropped."""
    folders = list(relative.parts[:-1])
    if folders and folders[0] in TOP_LEVEL:
        folders = folders[1:]
    return "::".join(["ardent"] + folders)


def namespace_problems(header: pathlib.Path, relative: pathlib.PurePath) -> list:
    """Namespaces the header opens that its path does not name (nested ones and using-only
    enclosing blocks excepted). Namespace blocks are found by their opening line and the closing
    comment clang-format writes (`}  // namespace x`)."""
    own = expected_namespace(relative)
    problems = []
    stack = []  # (full name, line number, whether the block holds only using-declarations)
    for number, line in enumerate(header.read_text(encoding="utf-8").splitlines(), 1):
        opened = OPEN.match(line)
        if opened:
            name = opened.group(1)
            full = name if not stack or name.startswith("ardent") else stack[-1][0] + "::" + name
            stack.append([full, number, True])
            continue
        if CLOSE.match(line):
            if not stack:
                problems.append(f"include/ardent/{relative}:{number}: closes a namespace it never opened")
                continue
            full, start, using_only = stack.pop()
            nested = full == own or full.startswith(own + "::")
            enclosing = own == full or own.startswith(full + "::")
            if not nested and not (enclosing and using_only):
                problems.append(f"include/ardent/{relative}:{start}: declares namespace {full}; its folder's is {own}")
            continue
        code = line.strip()
        if stack and code and not code.startswith("//") and not code.startswith("using "):
            stack[-1][2] = False
    for full, start, _ in stack:
        problems.append(f"include/ardent/{relative}:{start}: namespace {full} is never closed with `}}  // namespace {full}`")
    return problems


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    table = layers(root / "docs" / "design.md")
    include_root = root / "include" / "ardent"
    problems = []
    seen_pending = set()
    pending = {(a, b): why for a, b, why in PENDING}

    folders = sorted(p.name for p in include_root.iterdir() if p.is_dir())
    for folder in folders:
        if folder not in table:
            problems.append(f"include/ardent/{folder}/ has no layer in docs/design.md's table")

    for header in sorted(include_root.rglob("*.hpp")):
        relative = header.relative_to(include_root)
        problems.extend(namespace_problems(header, relative))
        if len(relative.parts) == 1:
            continue  # ardent.hpp, version.hpp: above every layer
        folder = relative.parts[0]
        if folder not in table:
            continue
        for target in INCLUDE.findall(header.read_text(encoding="utf-8")):
            parts = target.split("/")
            if len(parts) == 1:
                if parts[0] != "version.hpp":
                    problems.append(f"include/ardent/{relative}: includes the umbrella <ardent/{target}>")
                continue
            other = parts[0]
            if other == folder:
                continue
            if other not in table:
                problems.append(f"include/ardent/{relative}: includes ardent/{target}, a folder with no layer")
                continue
            if table[other] < table[folder]:
                continue
            if (folder, other) in pending:
                seen_pending.add((folder, other))
                continue
            problems.append(
                f"include/ardent/{relative}: includes ardent/{target}: {other}/ is layer {table[other]}, "
                f"not below {folder}/ (layer {table[folder]})")

    for key, why in pending.items():
        if key not in seen_pending:
            problems.append(f"the pending exception {key[0]}/ -> {key[1]}/ ({why}) no longer occurs: "
                            "remove it from PENDING in tests/layers/check_layers.py")

    for p in problems:
        print(p)
    if not problems:
        print(f"layers: {len(folders)} folders, every include goes to a lower layer, every header in its folder's namespace")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
