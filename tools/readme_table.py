"""Paste a committed study report's headline table into the README.

The README's results part holds a block between two markers::

    <!-- headline-table: reports/demo/study.md -->
    | ... the first markdown table of that report ... |
    <!-- /headline-table -->

``python tools/readme_table.py`` copies the FIRST markdown table found in the named report into the
block; ``--check`` changes nothing and exits 1 when the block differs from the report (0 when equal).
A missing report or marker is an error naming the file (exit status 2).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- headline-table: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- /headline-table -->)", re.S)
# a markdown table's delimiter row: |---|:--:|---:| (at least one cell of dashes, colons allowed)
DELIMITER = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


def first_table(markdown: str) -> str:
    """The first markdown table of ``markdown``: its header row, its delimiter row and every row after
    them that starts with ``|``, joined by newlines (no trailing newline).

    Raises
    ------
    ValueError
        When ``markdown`` holds no header row followed by a delimiter row.
    """
    lines = markdown.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].lstrip().startswith("|") and DELIMITER.match(lines[i + 1].strip()):
            end = i + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            return "\n".join(line.strip() for line in lines[i:end])
    raise ValueError("no markdown table (a header row followed by a |---| row)")


def headline_block(readme: str) -> tuple[str, str]:
    """``(report path, block body)`` of the README's headline-table block.

    Raises
    ------
    ValueError
        When the README has no such block.
    """
    match = BLOCK.search(readme)
    if match is None:
        raise ValueError("no <!-- headline-table: PATH --> ... <!-- /headline-table --> block")
    return match["path"], match["body"]


def paste(readme: str, table: str) -> str:
    """``readme`` with its headline-table block's body replaced by ``table``."""
    if BLOCK.search(readme) is None:
        raise ValueError("no <!-- headline-table: PATH --> ... <!-- /headline-table --> block")
    return BLOCK.sub(lambda m: m[1] + table.rstrip("\n") + "\n" + m[4], readme, count=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/readme_table.py", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when the README differs")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    readme_path: Path = args.readme
    if not readme_path.is_file():
        print(f"readme_table: {readme_path}: no such file", file=sys.stderr)
        return 2
    readme = readme_path.read_text()
    try:
        rel, _ = headline_block(readme)
    except ValueError as err:
        print(f"readme_table: {readme_path}: {err}", file=sys.stderr)
        return 2
    report = readme_path.parent / rel
    if not report.is_file():
        print(f"readme_table: {report}: no such file (generate it: cometa study reports/studies/<name>.yaml)",
              file=sys.stderr)
        return 2
    try:
        table = first_table(report.read_text())
    except ValueError as err:
        print(f"readme_table: {report}: {err}", file=sys.stderr)
        return 2
    updated = paste(readme, table)
    if args.check:
        if updated != readme:
            print(f"readme_table: {readme_path}: the headline table differs from {rel}; "
                  "run python tools/readme_table.py", file=sys.stderr)
            return 1
        return 0
    if updated != readme:
        readme_path.write_text(updated)
        print(f"readme_table: pasted the first table of {rel} into {readme_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
