"""Rewrite published files so they carry repository-relative paths, not the machine's.

    python benchmarks/publish_paths.py --root /path/of/the/checkout/that/wrote/them benchmarks/results/*.json

``--root``: the repository folder the files were written from (default: this repository); paths
inside it become relative to it, paths under the home folder ``~/...``, any other absolute path
``.../name``. JSON files keep their indentation; other files are treated as text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from faast.publish import machine_paths, public_paths, write_public_json, write_public_text  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--root", default=str(REPO), help="the checkout the files were written from")
    args = ap.parse_args(argv)
    for name in args.files:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            second = text.splitlines()[1] if text.count("\n") > 1 else ""
            indent = len(second) - len(second.lstrip(" ")) or 1
            obj = json.loads(text)
            if public_paths(obj, args.root) != obj:
                write_public_json(path, obj, indent=indent, root=args.root)
        elif public_paths(text, args.root) != text:
            write_public_text(path, text, root=args.root)
        left = machine_paths(path.read_text(encoding="utf-8"))
        print(f"{name}: {'clean' if not left else f'still holds {left}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
