"""Labelled examples and predictions on disk: TSV (``input<TAB>output``) and JSONL (``input``/``output``).

* TSV: one example per line, ``input<TAB>output``; a file of inputs only has one column (a tab-free
  line). A first line ``input<TAB>output`` (or ``input``) is read as a header and skipped; one of
  other column names (``text<TAB>label``, :data:`HEADER_NAMES`) is refused, not learned. Inputs
  and outputs may not contain tabs or newlines; write ``\\t`` / ``\\n`` / ``\\r`` to mean them and
  ``\\\\`` for a backslash before one of those letters (other backslashes read as written); the
  predictions written here spell every backslash ``\\\\``, so they read back exactly.
* JSONL: one JSON object per line with a string field ``input`` and, for examples, ``output``;
  other fields are kept in :attr:`Example.extra`.

The format is chosen by the file extension (``.tsv``/``.txt`` or ``.jsonl``/``.json``). Every
problem names the file and line: empty files, blank or malformed lines, missing fields, non-UTF-8
bytes. Predictions are written atomically in the same two formats.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faast.io import atomic_write
from faast.text_files import read_user_text

TSV_SUFFIXES = (".tsv", ".txt")
#: Column names a TSV's first line may carry from another tool: refused as an example (only
#: ``input<TAB>output`` is read as a header).
HEADER_NAMES = frozenset(
    {"text", "label", "labels", "sentence", "prompt", "completion", "source", "target", "question",
     "answer", "response", "instruction", "input", "output", "src", "tgt", "category", "class"}
)  # fmt: skip
JSONL_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class Example:
    """One labelled example (``output`` is None for an input to predict)."""

    input: str
    output: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def file_format(path: str | os.PathLike[str]) -> str:
    """ "tsv" or "jsonl" from the extension of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix in TSV_SUFFIXES:
        return "tsv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise ValueError(
        f"{path}: unknown file type {suffix!r}; use .tsv (input<TAB>output) or .jsonl (input/output fields)"
    )


def read_examples(path: str | os.PathLike[str], *, outputs: bool = True) -> list[Example]:
    """Read examples (``outputs=True``: every example must have an output) or inputs to predict
    (``outputs=False``: an output column/field is read when present, else left None)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such examples file: {p}")
    text = read_user_text(p)  # line ends already LF
    # split at LF only: str.splitlines also breaks at U+2028, form feeds and other separators that
    # a JSON string or a generated output may hold, which broke a line (and its JSON) in two
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines):
        raise ValueError(f"{p} is empty: no examples")
    reader = _read_tsv if file_format(p) == "tsv" else _read_jsonl
    examples = reader(p, lines, outputs)
    if not examples:
        raise ValueError(f"{p} holds a header but no examples")
    return examples


def _read_tsv(p: Path, lines: list[str], outputs: bool) -> list[Example]:
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{p}:{number}: blank line (every line must be an example)")
        cells = line.split("\t")
        names = [c.strip().lower() for c in cells]
        if number == 1 and names in (["input", "output"], ["input"]):
            continue
        if number == 1 and len(names) == 2 and set(names) <= HEADER_NAMES:
            # e.g. "text<TAB>label": it would be learned as an example, "label" as one more class
            raise ValueError(
                f"{p}:1: {cells[0].strip()!r}<TAB>{cells[1].strip()!r} looks like a header of other "
                "column names; name the columns input<TAB>output (read as a header) or remove the line"
            )
        if len(cells) > 2:
            raise ValueError(f"{p}:{number}: {len(cells)} tab-separated fields; expected input<TAB>output")
        if outputs and len(cells) != 2:
            raise ValueError(f"{p}:{number}: no output; expected input<TAB>output")
        inp = _unescape(cells[0])
        if not inp.strip():
            raise ValueError(f"{p}:{number}: empty input")
        out.append(Example(inp, _unescape(cells[1]) if len(cells) == 2 else None))
    return out


def _read_jsonl(p: Path, lines: list[str], outputs: bool) -> list[Example]:
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{p}:{number}: blank line (every line must be a JSON object)")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{p}:{number}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in ("input", "output")[: 2 if outputs else 1] if k not in row]
        if missing:  # e.g. {"text": ..., "label": ...}: name what the object holds
            fields = ", ".join(map(repr, row)) or "none"
            raise ValueError(
                f"{p}:{number}: no field {' or '.join(map(repr, missing))} (the object's fields: {fields}); "
                "every line needs 'input'" + (" and 'output'" if outputs else "")
            )
        inp = row.get("input")
        if not isinstance(inp, str) or not inp.strip():
            raise ValueError(f"{p}:{number}: field 'input' must be a non-empty string")
        res = row.get("output")
        if res is not None and not isinstance(res, str):
            raise ValueError(f"{p}:{number}: field 'output' must be a string, got {type(res).__name__}")
        if outputs and res is None:
            raise ValueError(f"{p}:{number}: field 'output' is null")
        extra = {k: v for k, v in row.items() if k not in ("input", "output")}
        out.append(Example(inp, res, extra))
    return out


def write_rows(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) atomically as TSV (the ``columns`` in order, with a header) or JSONL."""
    fmt = file_format(path)
    if fmt == "jsonl":
        text = "".join(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in rows)
    else:
        body = ["\t".join(columns)]
        body += ["\t".join(_escape("" if r.get(c) is None else str(r.get(c))) for c in columns) for r in rows]
        text = "\n".join(body) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def distinct_outputs(examples: Iterable[Example]) -> list[str]:
    """The distinct outputs of ``examples`` in order of first appearance."""
    return list(dict.fromkeys(e.output for e in examples if e.output is not None))


#: TSV escapes: a backslash, tab, newline or carriage return inside a cell (other backslashes are
#: read as they are, so C:\data stays as written; the writer doubles every backslash).
_ESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPED = re.compile(r"\\([\\tnr])")


def _unescape(cell: str) -> str:
    return _ESCAPED.sub(lambda m: _ESCAPES[m.group(1)], cell)


def _escape(cell: str) -> str:
    """The TSV spelling of ``cell``, which :func:`_unescape` reads back exactly."""
    return cell.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
