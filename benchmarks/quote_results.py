"""Refresh the benchmark tables quoted in a markdown page from the files their commands wrote.

A quoted table in the docs is a block of ``> `` lines whose first line is
``> Command: `python benchmarks/...```. The benchmark that made it wrote the same text to
``benchmarks/results/<name>.md`` (or a file in a folder of it, such as
``benchmarks/results/lm_authors/gemma3/authors.md``), whose first line is that command line. This
script replaces every such block by the current contents of the results file with the same first
line, so a page is refreshed by re-running its benchmarks and then this script — never by editing
the tables by hand.

    python benchmarks/quote_results.py docs/classifier.md            # rewrite the quoted blocks
    python benchmarks/quote_results.py --check docs/classifier.md    # exit 1 if any is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faast.publish import write_public_text

RESULTS = Path(__file__).parent / "results"
PREFIX = "> Command: `python benchmarks/"


def results_by_command(folder: Path = RESULTS) -> dict[str, list[Path]]:
    """The results files (*.md, in ``folder`` and its subfolders) by their first line (the command
    that wrote them)."""
    out: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.md")):
        out.setdefault(path.read_text(encoding="utf-8").split("\n", 1)[0], []).append(path)
    return out


def _quoted(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    return [f"> {line}" if line else ">" for line in lines]


def refresh(text: str, results: dict[str, list[Path]]) -> tuple[str, list[str]]:
    """``text`` with every quoted benchmark block replaced by its results file, and the names of
    the files whose block changed. A block whose command no single results file matches is an
    error naming it."""
    lines, out, changed, i = text.split("\n"), [], [], 0
    while i < len(lines):
        if not lines[i].startswith(PREFIX):
            out.append(lines[i])
            i += 1
            continue
        end = i
        while end < len(lines) and lines[end].startswith(">"):
            end += 1
        files = results.get(lines[i][2:], [])
        if len(files) != 1:
            raise ValueError(f"{len(files)} results files match the quoted command {lines[i][2:]!r}")
        new = _quoted(files[0])
        if new != lines[i:end]:
            changed.append(files[0].name)
        out += new
        i = end
    return "\n".join(out), changed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pages", nargs="+", help="markdown pages to refresh")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = p.parse_args()
    results = results_by_command()
    stale = False
    for page in map(Path, args.pages):
        text, changed = refresh(page.read_text(encoding="utf-8"), results)
        if changed and not args.check:
            write_public_text(page, text)
        stale = stale or bool(changed)
        print(f"{page}: {', '.join(changed) if changed else 'up to date'}")
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
