"""Labelled examples and predictions on disk: TSV, CSV and JSONL.

* TSV: one example per line, ``input<TAB>output``; a file of inputs only has one column (a
  tab-free line), or an output on some lines (refused with ``partial_outputs=False``, where the
  outputs are ignored: the text after a tab would be cut off). A first line that names the input
  column (``input<TAB>output``, ``input``, or any header holding the input column's name) is read
  as a header: the two columns are then found by name, and other columns are kept in
  :attr:`Example.extra`. A first line of other column names only (``text<TAB>label``, or ``text``
  alone, :data:`HEADER_NAMES`) is refused, not learned or classified, and one of unknown names
  (``headline<TAB>topic``: one word each, an output no other line has) is warned about and read as
  an example: name the columns (``input_column``/``output_column``,
  ``--input-column``/``--output-column`` on the command line). Cells may not contain tabs or
  newlines; write ``\\t`` / ``\\n`` / ``\\r`` to mean them and ``\\\\`` for a backslash before one
  of those letters (other backslashes read as written); the predictions written here spell every
  backslash ``\\\\``, so they read back exactly.
* CSV: a header row, then one example per row (RFC 4180 quoting: a quoted cell may hold commas and
  newlines); fields separated by commas, or by semicolons or tabs where the header holds more of
  those. The input and output columns are found by name, other columns kept in
  :attr:`Example.extra`.
* JSONL (or ``.json`` with one object per line): a string field for the input and, for examples,
  one for the output (an integer output, e.g. a class id, is read as its decimal text); other
  fields are kept in :attr:`Example.extra`. A JSON array (``[{...}, ...]``) or an object written
  over several lines is refused with a message saying so.

The column (field) names default to ``input`` and ``output``. An empty output (a cell under a
header, nothing after the tab of a headerless TSV line, or a JSONL field holding ``""``) means the
example has no output: an error for examples to learn, an unlabelled line for inputs to predict.
The format is chosen by the file extension (``.tsv``/``.txt``, ``.csv``, ``.jsonl``/``.json``).
Every problem names the file and line: empty files, blank or malformed lines, missing fields or
columns, non-UTF-8 bytes. Predictions are written atomically in the same three formats.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faast._checks import caller_stacklevel
from faast.io import atomic_write, existing_file
from faast.text_files import csv_delimiter, read_user_text

TSV_SUFFIXES = (".tsv", ".txt")
CSV_SUFFIXES = (".csv",)
#: Column names a TSV's first line may carry from another tool: refused as an example unless it
#: names the input column (then it is read as a header).
HEADER_NAMES = frozenset(
    {"text", "label", "labels", "sentence", "prompt", "completion", "source", "target", "question",
     "answer", "response", "instruction", "input", "output", "src", "tgt", "category", "class"}
)  # fmt: skip
JSONL_SUFFIXES = (".jsonl", ".json")
#: How errors name the options that set the column names (``faast task``'s flags by default).
COLUMN_OPTIONS = "--input-column/--output-column"


@dataclass(frozen=True)
class Example:
    """One labelled example (``output`` is None for an input to predict)."""

    input: str
    output: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def as_example(item: Any, index: int = 0) -> Example:
    """``item`` as an :class:`Example`: an Example, an ``(input, output)`` or ``(input,)`` tuple,
    a mapping with ``"input"`` (and ``"output"``; other keys go to :attr:`Example.extra`) or an
    input string. An integer output, e.g. a class id, becomes its decimal text, as in a JSONL
    file. A clear error names the item (``index``) otherwise."""
    if isinstance(item, Example):
        inp, out, extra = item.input, item.output, item.extra
    elif isinstance(item, str):
        inp, out, extra = item, None, {}
    elif isinstance(item, tuple) and len(item) in (1, 2):
        inp, out, extra = item[0], (item[1] if len(item) == 2 else None), {}
    elif isinstance(item, Mapping) and "input" in item:
        inp, out = item["input"], item.get("output")
        extra = {k: v for k, v in item.items() if k not in ("input", "output")}
    else:
        raise TypeError(
            f"example {index} is of type {type(item).__name__}; pass Example(input, output), an "
            "(input, output) tuple, a dict with 'input' and 'output', or an input string"
        )
    if isinstance(out, int) and not isinstance(out, bool):
        out = str(out)
    if not isinstance(inp, str):
        raise TypeError(f"example {index}: the input must be a string, got {type(inp).__name__}")
    if out is not None and not isinstance(out, str):
        raise TypeError(
            f"example {index}: the output must be a string or an integer, got {type(out).__name__}"
        )
    if isinstance(item, Example) and out is item.output:
        return item
    return Example(inp, out, dict(extra))


def file_format(path: str | os.PathLike[str]) -> str:
    """ "tsv", "csv" or "jsonl" from the extension of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix in TSV_SUFFIXES:
        return "tsv"
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise ValueError(
        f"{path}: unknown file type {suffix!r}; use .tsv (input<TAB>output), .csv (a header naming "
        "the columns) or .jsonl (input/output fields)"
    )


def read_examples(
    path: str | os.PathLike[str],
    *,
    outputs: bool = True,
    input_column: str = "input",
    output_column: str = "output",
    options: str = COLUMN_OPTIONS,
    partial_outputs: bool = True,
) -> list[Example]:
    """Read examples (``outputs=True``: every example must have an output) or inputs to predict
    (``outputs=False``: an output column/field is read when present, else left None).
    ``input_column`` / ``output_column``: the names of the two columns (a TSV or CSV header) or
    fields (JSONL); ``options``: how an error names the options that set them.
    ``partial_outputs=False`` (inputs whose outputs the caller ignores): a headerless TSV whose lines
    hold a tab and lines that do not is refused, naming the first line with a tab; its text after the
    tab would be read as an output and dropped, where a tab inside a text was most likely meant."""
    for what, name in (("input_column", input_column), ("output_column", output_column)):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{what} must be a non-empty name, got {name!r}")
    if input_column.strip() == output_column.strip():
        raise ValueError(f"the input and output columns must differ, both are {input_column!r}")
    p = existing_file(path, "examples file")
    fmt = file_format(p)
    inner_cr = (
        "write a line break inside a cell as \\r or \\n (the escapes faast reads)" if fmt == "tsv" else None
    )
    text = read_user_text(p, inner_cr=inner_cr)  # line ends already LF
    names = _Names(input_column.strip(), output_column.strip(), options)
    if fmt == "csv":
        examples = _read_csv(p, text, outputs, names)
    else:
        # split at LF only: str.splitlines also breaks at U+2028, form feeds and other separators
        # that a JSON string or a generated output may hold, which broke a line (and its JSON) in two
        lines = text.split("\n")
        while lines and not lines[-1].strip():  # the final newline, and blank lines after the last example
            lines.pop()
        if not any(line.strip() for line in lines):
            raise ValueError(f"{p} is empty: no examples")
        if fmt == "tsv":
            examples = _read_tsv(p, lines, outputs, names, partial_outputs)
        else:
            examples = _read_jsonl(p, lines, outputs, _Names(input_column, output_column, options))
    if not examples:
        raise ValueError(f"{p} holds a header but no examples")
    return examples


@dataclass(frozen=True)
class _Names:
    """The input and output columns' names, and how errors name the options that set them."""

    input: str
    output: str
    options: str


def _read_tsv(
    p: Path, lines: list[str], outputs: bool, names: _Names, partial_outputs: bool = True
) -> list[Example]:
    input_column, output_column = names.input, names.output
    first = [c.strip() for c in lines[0].split("\t")]
    if input_column.casefold() in [c.casefold() for c in first]:
        header = _header(p, first, outputs, names)
        rows = [(number, line.split("\t")) for number, line in enumerate(lines[1:], 2)]
        for number, cells in rows:
            if not "".join(cells).strip():
                raise ValueError(f"{p}:{number}: blank line (every line must be an example)")
        return [_named_row(p, n, [_unescape(c) for c in cells], header, outputs) for n, cells in rows]
    if (input_column, output_column) != ("input", "output"):
        raise ValueError(
            f"{p}:1: no header naming the column {input_column!r} (the first line holds {first[:8]}); a "
            f"TSV read by column names needs a first line of names, {input_column}<TAB>{output_column}"
        )
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{p}:{number}: blank line (every line must be an example)")
        cells = line.split("\t")
        lowered = [c.strip().lower() for c in cells]
        if number == 1 and len(lowered) == 1 and lowered[0] in HEADER_NAMES:
            # e.g. a one-column file of inputs headed "text": it would be classified as an input
            raise ValueError(
                f"{p}:1: {cells[0].strip()!r} looks like a header of another column name; name the "
                f"column ({names.options.split('/')[0]} {cells[0].strip()}), rename it input or remove "
                "the line"
            )
        if number == 1 and len(lowered) == 2 and set(lowered) <= HEADER_NAMES:
            # e.g. "text<TAB>label": it would be learned as an example, "label" as one more class
            raise ValueError(
                f"{p}:1: {cells[0].strip()!r}<TAB>{cells[1].strip()!r} looks like a header of other "
                f"column names; name the columns ({names.options} {cells[0].strip()} "
                f"{cells[1].strip()}), rename them input<TAB>output or remove the line"
            )
        if len(cells) > 2:
            raise ValueError(
                f"{p}:{number}: {len(cells)} tab-separated fields; expected input<TAB>output (a file of "
                "more columns needs a first line naming them)"
            )
        if outputs and len(cells) != 2:
            raise ValueError(f"{p}:{number}: no output; expected input<TAB>output")
        inp = _unescape(cells[0])
        if not inp.strip():
            raise ValueError(f"{p}:{number}: empty input")
        res = _unescape(cells[1]) if len(cells) == 2 else None
        if res == "":  # nothing after the tab (one of spaces is left to the caller's label checks)
            if outputs:  # as under a header: learned, "" would be one more label
                raise ValueError(f"{p}:{number}: empty output (nothing after the tab)")
            res = None
        out.append(Example(inp, res))
    if not outputs and not partial_outputs:
        _check_tabs_alike(p, lines)
    _warn_header_like_first_line(p, out, names)
    return out


def _check_tabs_alike(p: Path, lines: list[str]) -> None:
    """Refuse a headerless TSV of inputs whose lines hold a tab and lines that do not (read with
    ``partial_outputs=False``): a tab starts the output column, which the caller ignores, so where
    other lines are bare inputs, a tab was most likely inside a text, which would be cut there."""
    tabbed = [n for n, line in enumerate(lines, 1) if "\t" in line]
    plain = [n for n, line in enumerate(lines, 1) if "\t" not in line]
    if tabbed and plain:
        raise ValueError(
            f"{p}:{tabbed[0]}: the line holds a tab, line {plain[0]} does not: in a TSV without a header "
            "a tab starts the output column (ignored for inputs), so the text after it would be cut off. "
            "Write a tab inside a text as \\t (or use a .csv or .jsonl file); for unlabelled lines among "
            "labelled ones, name the columns in a first line input<TAB>output"
        )


#: A headerless TSV of at least this many labelled lines is checked for a first line that looks
#: like column names (:func:`_warn_header_like_first_line`).
HEADER_CHECK_MIN_LINES = 10
#: ... when its other lines carry at most this many distinct outputs (a classification file).
HEADER_CHECK_MAX_LABELS = 50


def _warn_header_like_first_line(p: Path, examples: list[Example], names: _Names) -> None:
    """Warn when the first line of a headerless labelled TSV looks like column names that
    :data:`HEADER_NAMES` does not know (``headline<TAB>topic``): one word in and one word out, an
    output no other line has, among the few labels of the others. It is learned as an example (a
    class of its own), so the warning says how to name the columns or drop the line."""
    if len(examples) < HEADER_CHECK_MIN_LINES or any(e.output is None for e in examples):
        return
    first, rest = examples[0], examples[1:]
    word_in, word_out = first.input.strip(), (first.output or "").strip()
    if not (word_in and word_out) or any(ch.isspace() for ch in word_in + word_out):
        return
    labels = {e.output for e in rest}
    if first.output in labels or len(labels) > HEADER_CHECK_MAX_LABELS:
        return
    warnings.warn(
        f"{p}:1: {word_in!r}<TAB>{word_out!r} may be a header: one word each, and no other line has "
        f"the output {word_out!r}; it is learned as an example of a class of its own. If it names the "
        f"columns, pass {names.options} {word_in} {word_out}, or remove the line",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )


def _read_csv(p: Path, text: str, outputs: bool, names: _Names) -> list[Example]:
    if not text.strip():
        raise ValueError(f"{p} is empty: no examples")
    reader = csv.reader(io.StringIO(text), delimiter=csv_delimiter(text.partition("\n")[0]))
    rows = []  # (the line a row starts on, its cells): a quoted cell may span lines
    try:
        for cells in reader:
            rows.append((rows[-1][2] + 1 if rows else 1, cells, reader.line_num))
    except csv.Error as exc:
        raise ValueError(f"{p}:{reader.line_num}: not valid CSV ({exc})") from None
    while rows and not "".join(rows[-1][1]).strip():  # blank lines after the last row
        rows.pop()
    if not rows:  # e.g. ",\n,\n": rows of empty cells, no header
        raise ValueError(
            f"{p} holds no header and no examples: every line is empty cells (only separators); a CSV "
            "needs a header row naming the columns (input,output), then one example per row"
        )
    header = _header(p, [c.strip() for c in rows[0][1]], outputs, names)
    out = []
    for number, cells, end in rows[1:]:
        if not "".join(cells).strip():
            raise ValueError(f"{p}:{number}: blank line (every line must be an example)")
        if len(cells) < len(header.names) and end > number:
            raise ValueError(
                f"{p}:{number}: {len(cells)} fields, the header {len(header.names)}, and a quoted cell that "
                f"runs on to line {end}: is a quote opened on line {number} never closed?"
            )
        out.append(_named_row(p, number, cells, header, outputs))
    return out


@dataclass(frozen=True)
class _Header:
    """Where the named columns stand in a TSV's or CSV's header (``output`` None: no such column)."""

    names: list[str]
    input: int
    output: int | None


def _header(p: Path, cells: list[str], outputs: bool, names: _Names) -> _Header:
    """Find the input and output columns in a header row's ``cells`` (names compared without
    case); a clear error for a missing or repeated name."""
    input_column, output_column = names.input, names.output
    folded = [n.casefold() for n in cells]
    for name in (input_column, output_column):
        times = folded.count(name.casefold())
        if times > 1:
            raise ValueError(f"{p}:1: the header names the column {name!r} {times} times")
    missing = [n for n in (input_column, output_column)[: 2 if outputs else 1] if n.casefold() not in folded]
    if missing:
        raise ValueError(
            f"{p}:1: no column {' or '.join(map(repr, missing))} in the header {cells[:8]}; name the "
            f"columns to read with {names.options}"
        )
    where = folded.index(input_column.casefold())
    there = folded.index(output_column.casefold()) if output_column.casefold() in folded else None
    return _Header(cells, where, there)


def _named_row(p: Path, number: int, cells: list[str], header: _Header, outputs: bool) -> Example:
    """One example from a row of named columns. For inputs to predict, a row may stop before an
    output column that ends the header (the TSV form of an unlabelled line)."""
    width = len(header.names)
    no_output_cell = header.output == width - 1 and len(cells) == width - 1  # stops before the output
    short = no_output_cell and not outputs
    if len(cells) != width and not short:
        raise ValueError(
            f"{p}:{number}: {'no output: ' if no_output_cell else ''}{len(cells)} fields, the header {width}"
        )
    inp = cells[header.input]
    if not inp.strip():
        raise ValueError(f"{p}:{number}: empty input")
    res = None if header.output is None or short else cells[header.output]
    if res is not None and not res.strip():
        if outputs:
            raise ValueError(f"{p}:{number}: empty output")
        res = None  # an unlabelled line among labelled ones
    skip = {header.input, header.output}
    extra = {
        name: cell for i, (name, cell) in enumerate(zip(header.names, cells, strict=False)) if i not in skip
    }
    return Example(inp, res, extra)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's fields, refusing a name given twice (``json`` would keep the last silently:
    ``{"output": "pos", "output": "neg"}`` is not an example of either)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the field {key!r} appears twice in one object")
        out[key] = value
    return out


#: How a JSONL reading error says what the file must hold.
_JSON_LINES = (
    'the file must hold one JSON object per line (JSON Lines: {"input": ..., "output": ...} on each '
    "line, no enclosing [ ] and no object over several lines)"
)


def _read_jsonl(p: Path, lines: list[str], outputs: bool, names: _Names) -> list[Example]:
    out = []
    input_column, output_column = names.input, names.output
    both = (input_column, output_column)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise ValueError(f"{p}:{number}: blank line (every line must be a JSON object)")
        try:
            row = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            start = line.strip()
            if number == 1 and (start.startswith("[") or start == "{"):  # JSON over several lines
                what = "JSON array" if start.startswith("[") else "JSON object over several lines"
                raise ValueError(f"{p}:1: a {what}; {_JSON_LINES}") from None
            raise ValueError(f"{p}:{number}: not valid JSON ({exc.msg}); {_JSON_LINES}") from None
        except ValueError as exc:  # a field named twice (_unique_keys)
            raise ValueError(f"{p}:{number}: {exc}") from None
        if isinstance(row, list):
            raise ValueError(f"{p}:{number}: expected a JSON object, got a JSON array; {_JSON_LINES}")
        if not isinstance(row, dict):
            raise ValueError(f"{p}:{number}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in both[: 2 if outputs else 1] if k not in row]
        if missing:  # e.g. {"text": ..., "label": ...}: name what the object holds
            fields = ", ".join(map(repr, row)) or "none"
            raise ValueError(
                f"{p}:{number}: no field {' or '.join(map(repr, missing))} (the object's fields: {fields}); "
                f"every line needs {input_column!r}"
                + (f" and {output_column!r}" if outputs else "")
                + f" ({names.options} name other fields)"
            )
        inp = row.get(input_column)
        if not isinstance(inp, str) or not inp.strip():
            raise ValueError(f"{p}:{number}: field {input_column!r} must be a non-empty string")
        res = row.get(output_column)
        if isinstance(res, int) and not isinstance(res, bool):
            res = str(res)  # a class id, as exported data sets write labels
        if res is not None and not isinstance(res, str):
            raise ValueError(
                f"{p}:{number}: field {output_column!r} must be a string or an integer, "
                f"got {type(res).__name__}"
            )
        if outputs and res is None:
            raise ValueError(f"{p}:{number}: field {output_column!r} is null")
        if res is not None and not res.strip():
            if outputs:
                raise ValueError(f"{p}:{number}: empty output (field {output_column!r} is {res!r})")
            res = None  # an unlabelled line, as an empty cell under a header
        extra = {k: v for k, v in row.items() if k not in both}
        out.append(Example(inp, res, extra))
    return out


def write_rows(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) atomically as TSV or CSV (the ``columns`` in order, with a header) or
    JSONL. TSV escapes and JSONL keep every character; a CSV writes a carriage return inside a cell
    as a line break (the cell then quoted): a bare one was left unquoted and split the row in two
    when read back (tweets exported to .csv could not be learned)."""
    fmt = file_format(path)
    if fmt == "jsonl":  # valid JSON: a NaN or infinity (a log-probability of 0) is written null
        objects = (finite_json({c: r.get(c) for c in columns}) for r in rows)
        text = "".join(json.dumps(o, ensure_ascii=False, allow_nan=False) + "\n" for o in objects)
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_csv_cell(r.get(c)) for c in columns] for r in rows)
        text = buffer.getvalue()
    else:
        body = ["\t".join(columns)]
        body += ["\t".join(_escape("" if r.get(c) is None else str(r.get(c))) for c in columns) for r in rows]
        text = "\n".join(body) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def finite_json(value: Any) -> Any:
    """``value`` with every float that is NaN or infinite (nested in dicts, lists and tuples) replaced
    by None: JSON has no such numbers (``json.dumps`` writes ``NaN``/``Infinity``, which JSON parsers
    other than Python's refuse), so a score that is not finite is written ``null``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def _csv_cell(value: Any) -> str:
    """A CSV cell's text: "" for None, line breaks as ``\n`` (which the writer quotes; the reader
    reads a carriage return as a line end, inside quotes too)."""
    text = "" if value is None else str(value)
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


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
