#!/usr/bin/env python3
"""The layering rule of docs/design.md, checked over the includes of include/ardent.

The table under "## Layers" in docs/design.md gives each folder of include/ardent/ a layer; a
header may include headers of its own folder and of folders of a strictly lower layer, never of
its own layer or above (so there are no cycles, and a lower layer compiles without the upper
ones). The umbrella header include/ardent/ardent.hpp and version.hpp stand above every layer.
The table is the rule: this script reads it, so the page and the code cannot drift apart.

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

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]ardent/([^">]+)[">]', re.MULTILINE)
ROW = re.compile(r"^\|\s*(\d+)\s*\|([^|]*)\|")
FOLDER = re.compile(r"`([a-z_]+)/`")


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
        print(f"layers: {len(folders)} folders, every include goes to a lower layer")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
