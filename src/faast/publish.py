"""Paths in published files (results JSON/CSV, generated docs): repository-relative, never the
machine's absolute paths.

:func:`public_path` turns one path into what a published file may carry: relative to the
repository root when it lies inside it, ``~/...`` under the home folder, and only its name (as
``.../name``) anywhere else. :func:`public_paths` applies the same rule to every string of a
JSON-able object (also to paths inside longer strings, such as a recorded command line), and
:func:`write_public_json` / :func:`write_public_csv` write such an object or table atomically.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from faast.io import atomic_write

#: Prefixes that mark a machine path in a published file (checked by the tests).
MACHINE_PREFIXES = ("/work/", "/home/", "/root/", "/tmp/", "/private/", "/Users/", "/var/folders/")
#: An absolute POSIX path inside a longer string: a '/' at the start or after a space, quote, '='
#: or "(" followed by path characters (not after ":", so URLs are left alone).
_EMBEDDED = re.compile(r"(?:(?<=^)|(?<=[\s'\"=(,]))(/[^\s'\"),;]+)")


def repo_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: this file, then the working directory)
    holding a ``pyproject.toml`` and a ``src/faast`` folder; None if there is none."""
    starts = [Path(start)] if start is not None else [Path(__file__), Path.cwd()]
    for begin in starts:
        here = begin.resolve()
        for folder in (here, *here.parents):
            if (folder / "pyproject.toml").is_file() and (folder / "src" / "faast").is_dir():
                return folder
    return None


def public_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """``path`` as a published file may show it (POSIX separators).

    Relative paths are kept; an absolute path becomes relative to ``root`` (default: the
    repository root) when inside it, ``~/rest`` when under the home folder, else ``.../name``.
    """
    p = Path(path).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    base = Path(root).resolve() if root is not None else repo_root()
    resolved = Path(os.path.abspath(p))
    candidates = [resolved]
    if resolved.exists():
        candidates.append(resolved.resolve())
    for q in candidates:
        if base is not None and q.is_relative_to(base):
            rel = q.relative_to(base).as_posix()
            return rel if rel != "." else "."
    home = Path.home()
    for q in candidates:
        if str(home) not in ("/", "") and q.is_relative_to(home):
            return "~/" + q.relative_to(home).as_posix()
    return f".../{resolved.name}" if resolved.name else "..."


def public_paths(obj: Any, root: str | os.PathLike[str] | None = None) -> Any:
    """A copy of the JSON-able ``obj`` whose strings carry no absolute paths (see
    :func:`public_path`); dict keys are rewritten too."""
    if isinstance(obj, dict):
        return {public_paths(k, root): public_paths(v, root) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [public_paths(v, root) for v in obj]
    if isinstance(obj, os.PathLike):
        return public_path(obj, root)
    if isinstance(obj, str) and "/" in obj:
        return _EMBEDDED.sub(lambda m: public_path(m.group(1), root), obj)
    return obj


def machine_paths(text: str) -> list[str]:
    """The machine paths (see ``MACHINE_PREFIXES``) that occur in ``text``."""
    return sorted({m for m in re.findall(r"/[^\s'\"`),;|<>]+", text) if m.startswith(MACHINE_PREFIXES)})


def write_public_json(
    path: str | os.PathLike[str], obj: Any, *, indent: int = 1, root: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``obj`` as JSON with :func:`public_paths` applied, atomically."""
    text = json.dumps(public_paths(obj, root), indent=indent, ensure_ascii=False) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def write_public_text(
    path: str | os.PathLike[str], text: str, *, root: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``text`` (markdown, CSV) with its absolute paths made public, atomically."""
    clean = public_paths(text, root)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(clean)

    return atomic_write(path, write)


def write_public_csv(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``rows`` as CSV, atomically: one column per key in order of first appearance (a row
    without a key leaves its cell empty), with :func:`public_paths` applied to every value."""
    if not rows:
        raise ValueError(f"no rows to write to {public_path(path, root)}")
    fields = list(dict.fromkeys(k for r in rows for k in r))
    clean = public_paths([dict(r) for r in rows], root)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(clean)

    return atomic_write(path, write)


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG to ``path`` atomically (a half-written plot never
    replaces the last one), then close it. Returns the path."""
    import matplotlib.pyplot as plt

    def write(tmp: str) -> None:
        fig.savefig(tmp, dpi=dpi, format="png")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)
