"""Feature files for the classifier command line: safetensors, NumPy (.npy/.npz) or CSV.

* ``.safetensors``: a ``features`` tensor (n, d) and optionally ``labels`` (n,) (integers), as
  the feature cache writes them;
* ``.npy``: the (n, d) feature array (labels from a separate file; integers of any width and
  booleans are read as float32); ``.npz``: arrays
  ``features`` and optionally ``labels``; both read without pickle;
* ``.csv``: a header row, one row per example; the label column (default ``label``) and an
  optional id column are taken out, every other column is a numeric feature. Fields are
  separated by commas, or by semicolons or tabs where the header holds more of those; a
  byte-order mark is ignored. Every column needs a name: an unnamed first column, the index
  pandas' ``DataFrame.to_csv`` writes unless ``index=False``, is refused, not learned as a feature;
  so is a first line of numbers only (a file without a header line, as ``np.savetxt`` writes it,
  whose first example would be taken for the names), save whole numbers counting up by one
  (``0,1,2``: the names pandas gives a DataFrame's unnamed columns).

Features must be finite numbers: a NaN or an infinity is refused, naming the file and its row, and
so is a NaN or infinite label of a float labels array. A CSV cell that is no number is refused with
a hint fitted to it: a missing value (``NA``), a decimal comma, thousands separators, a percent or
currency sign, a column of words that looks like the labels (``--label-column``), or one naming
the rows (``--id-column``).

A separate labels file (``.npy``, or text with one label per line) may give labels, or replace
those of the features file (with a warning). An id column is a CSV's only: other files' rows are
named by their number.
"""

from __future__ import annotations

import csv
import itertools
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from faast.io import existing_file
from faast.text_files import csv_delimiter, open_user_text, read_user_text

FEATURE_SUFFIXES = (".safetensors", ".npy", ".npz", ".csv")


@dataclass
class FeatureTable:
    """features: (n, d) float tensor; labels: (n,) or None; ids: n row names for predictions;
    columns: the d feature columns' names (a CSV's header), None for arrays."""

    features: torch.Tensor
    labels: np.ndarray | None
    ids: list[str]
    columns: list[str] | None = None


#: Whole-number and boolean feature dtypes, read as float32 (uint8 pixel arrays, 16-bit sensor
#: counts, 0/1 indicators); the wider unsigned ones where this torch has them.
_WHOLE_NUMBERS = (
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    *(getattr(torch, name) for name in ("uint16", "uint32", "uint64") if hasattr(torch, name)),
)


def read_features(
    path: str | os.PathLike[str],
    *,
    labels_path: str | os.PathLike[str] | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
) -> FeatureTable:
    """Read a feature file (see the module docstring); errors name the file and the problem.

    ``label_column`` (a CSV's, default ``label``) and ``id_column`` name CSV columns: given for
    another kind of file, which has no columns, they are refused rather than ignored."""
    p = existing_file(path, "features file")
    suffix = p.suffix.lower()
    if id_column is not None and suffix != ".csv":
        raise ValueError(
            f"{p}: --id-column names a CSV column, and a {suffix} file has none (its rows are named 0, 1, "
            "...); leave out --id-column, or write the features as a .csv with that column"
        )
    if label_column is not None and suffix != ".csv":
        own = "given by --labels" if suffix == ".npy" else "its 'labels' array, or those of --labels"
        raise ValueError(
            f"{p}: --label-column names a CSV column, and a {suffix} file has none (its labels are {own}); "
            "leave out --label-column, or write the features as a .csv with that column"
        )
    ids: list[str] | None = None
    labels: np.ndarray | None = None
    columns: list[str] | None = None
    if suffix == ".safetensors":
        from faast.io import load_tensors

        tensors, _ = load_tensors(p)
        if "features" not in tensors:
            raise ValueError(f"{p}: no 'features' tensor (found {sorted(tensors)})")
        feats = tensors["features"]
        labels = _labels_array(tensors["labels"], p) if "labels" in tensors else None
        _check_labels_1d(labels, p, "its 'labels' tensor")
        _check_finite_labels(labels, p)
    elif suffix in (".npy", ".npz"):
        data = _plain_array(lambda: np.load(p, allow_pickle=False), p, "the array")
        if suffix == ".npz":
            if "features" not in data:
                raise ValueError(f"{p}: no 'features' array (found {sorted(data.files)})")
            npz = data
            if "labels" in npz:
                labels = _decoded(_plain_array(lambda: npz["labels"], p, "'labels'"), p)
                _check_labels_1d(labels, p, "its 'labels' array")
                _check_finite_labels(labels, p)
            data = _plain_array(lambda: npz["features"], p, "'features'")
        if data.dtype.kind == "u" and data.dtype.itemsize > 1:  # uint16/32/64: as the other integers
            data = data.astype(np.float32)
        feats = _tensor(data, p)
    elif suffix == ".csv":
        feats, labels, ids, columns = _read_csv(p, label_column or "label", id_column)
    else:
        raise ValueError(f"{p}: unknown features format {suffix!r}; use one of {', '.join(FEATURE_SUFFIXES)}")
    if feats.ndim != 2 or not (feats.is_floating_point() or feats.dtype in _WHOLE_NUMBERS):
        why = "" if feats.ndim != 2 else f" (the dtype {feats.dtype} is not read as real numbers)"
        raise ValueError(
            f"{p}: features must be a 2-D array of real numbers, got {feats.dtype} {tuple(feats.shape)}{why}"
        )
    if feats.shape[1] == 0:
        raise ValueError(f"{p}: the features have no column ({feats.shape[0]} rows of 0 features)")
    feats = feats if feats.is_floating_point() else feats.to(torch.float32)  # e.g. uint8 pixels
    _check_finite(feats, p)
    if labels_path is not None:
        _warn_replaced(p, labels, labels_path)
        labels = read_labels(labels_path)
    if labels is not None and len(labels) != feats.shape[0]:
        header = ""
        text_file = labels_path is not None and Path(labels_path).suffix.lower() != ".npy"
        if text_file and len(labels) == feats.shape[0] + 1:
            header = (
                f" (one more: does {labels_path} start with a header line, {str(labels[0])!r}? a labels "
                "text file holds one label per line and nothing else: remove that line)"
            )
        raise ValueError(f"{p}: {feats.shape[0]} feature rows but {len(labels)} labels{header}")
    rows = ids if ids is not None else [str(i) for i in range(feats.shape[0])]
    return FeatureTable(feats, labels, rows, columns)


def _tensor(data: np.ndarray, p: Path) -> torch.Tensor:
    """``data`` as a tensor (sharing its memory); an array of a dtype torch has no tensor of
    (complex256, strings) is a ``ValueError`` naming that dtype."""
    try:
        return torch.from_numpy(np.ascontiguousarray(data))
    except TypeError:
        raise ValueError(
            f"{p}: features must be a 2-D array of real numbers, got dtype {data.dtype} {data.shape}, which "
            "is not read as numbers: save them as float32 (array.astype(np.float32))"
        ) from None


#: Values of features checked for NaN and infinity at a time (a mask of 1 MB).
_FINITE_BLOCK_FLOATS = 1 << 20


def _check_finite(feats: torch.Tensor, p: Path) -> None:
    """Refuse features (n, d) holding a NaN or an infinity, naming the file ``p``, the first such
    row and column (counting from 0, as the rows are named in predictions) and how many there are
    (a CSV's are refused as they are read, naming its line). Checked a block of rows at a time,
    so that the check holds a few megabytes beside the features, not masks of their size."""
    step = max(1, _FINITE_BLOCK_FLOATS // max(1, feats.shape[1]))
    first, total = None, 0
    for start in range(0, feats.shape[0], step):
        bad = ~torch.isfinite(feats[start : start + step])
        found = int(bad.sum())
        if found and first is None:
            row = int(bad.any(dim=1).to(torch.uint8).argmax())
            first = (start + row, int(bad[row].to(torch.uint8).argmax()))
        total += found
    if first is None:
        return
    row, col = first
    raise ValueError(
        f"{p}: feature row {row}, column {col} (counting from 0): {feats[row, col].item()} is not a finite "
        f"number ({total} NaN or infinite value(s) in all; missing values are not supported: fill "
        "or drop them)"
    )


def _labels_array(labels: torch.Tensor, p: Path) -> np.ndarray:
    """A safetensors file's ``labels`` tensor as a NumPy array; bfloat16, which NumPy has no dtype
    for, as float32 (every bfloat16 value is one), another dtype NumPy lacks a ``ValueError``
    naming the file ``p``."""
    if labels.dtype == torch.bfloat16:
        return labels.to(torch.float32).numpy()
    try:
        return labels.numpy()
    except TypeError:
        raise ValueError(
            f"{p}: its 'labels' tensor is of dtype {labels.dtype}, which is not read as labels: save them "
            "as integers (torch.int64) or float32"
        ) from None


def _check_labels_1d(labels: np.ndarray | None, p: Path, what: str) -> None:
    """Refuse labels that are not 1-D (n,), ``what`` of the file ``p``, as a ``--labels`` array is
    refused: a column (n, 1), such as ``y[:, None]`` or a one-column DataFrame's values, would be
    learned as classes ``[0]``, ``[1]`` that no later file's labels name."""
    if labels is None or labels.ndim == 1:
        return
    flat = " (a column: save labels.ravel())" if labels.ndim == 2 and labels.shape[1] == 1 else ""
    raise ValueError(f"{p}: labels must be 1-D, got shape {labels.shape} for {what}{flat}")


def _check_finite_labels(labels: np.ndarray | None, p: Path) -> None:
    """Refuse float labels (n,) holding a NaN or an infinity (a missing label, as pandas writes
    it), naming the file ``p`` and the first such row, counting from 0."""
    if labels is None or labels.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(labels)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{p}: label {row} (counting from 0) is {labels[row]}, not a class ({int(bad.sum())} NaN or "
            "infinite label(s) in all; missing labels are not supported: give those rows a label or drop "
            "them)"
        )


def _warn_replaced(p: Path, own: np.ndarray | None, labels_path: str | os.PathLike[str]) -> None:
    """Warn that the labels file ``labels_path`` replaces the labels ``own`` that the features
    file ``p`` holds (a ``labels`` array, or a label column), so that it is not done unseen."""
    if own is not None:
        warnings.warn(
            f"{p} holds labels of its own; those of {labels_path} (--labels) replace them: leave out "
            "--labels to learn the file's",
            UserWarning,
            stacklevel=3,
        )


def _decoded(labels: np.ndarray, p: Path) -> np.ndarray:
    """Byte-string labels (NumPy ``S`` arrays, as HDF5 tools write them; scikit-learn refuses them)
    as text, decoded from UTF-8; other labels as they are."""
    if labels.dtype.kind != "S":
        return labels
    try:
        return np.char.decode(labels, "utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: byte-string labels that are not UTF-8 text ({exc})") from None


def _plain_array(load: Callable[[], Any], p: Path, what: str) -> Any:
    """``load()`` (an array, or a .npz archive); a clear error naming ``p`` for an object array,
    which NumPy stores pickled and faast does not load, for a file that is no NumPy file (a text
    table, a pickle: NumPy reads what is neither a .npy nor a .npz as a pickle), or for a damaged
    one (a truncated .npz, which NumPy calls no zip file)."""
    try:
        return load()
    except ValueError as exc:
        if str(exc).startswith("Object arrays"):
            raise ValueError(
                f"{p}: {what} holds Python objects (stored pickled), which faast does not load: save "
                "labels as strings or integers (np.asarray(labels, dtype=str)) and features as numbers"
            ) from None
        if "pickled" in str(exc):  # neither a .npy nor a .npz file: NumPy would unpickle it
            raise ValueError(_not_numpy(p)) from None
        raise ValueError(f"{p}: not a plain NumPy array file ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ValueError(
            f"{p}: a damaged or truncated NumPy file ({type(exc).__name__}: {exc}): save or copy it again "
            "(np.save for a .npy, np.savez for a .npz)"
        ) from None


def _not_numpy(p: Path) -> str:
    """The error on a file ``p`` named .npy or .npz that does not begin as either does: what it
    looks like (text, a pickle) and what to write instead."""
    with open(p, "rb") as fh:
        head = fh.read(256)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # text whose last character the 256 bytes cut is text too
        text = head[: exc.start].decode("utf-8") if exc.start >= len(head) - 3 else ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if head.startswith(b"\x80"):
        looks = "it looks like a Python pickle, which faast does not load: save the array with np.save"
    elif first:
        looks = (
            f"it looks like text ({first[:40]!r}): write a table of numbers as a .csv with a header line "
            "(f0,f1,...,label), or save the array with np.save"
        )
    else:
        looks = "save the array with np.save (np.savez for features and labels in one file)"
    begins = "it does not begin as a .npy or .npz written by np.save or np.savez does"
    return f"{p}: not a plain NumPy array file ({begins}); {looks}"


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Labels (n,) from a ``.npy`` array or a text file with one label per line."""
    p = existing_file(path, "labels file")
    if p.suffix.lower() == ".npy":
        labels = _decoded(_plain_array(lambda: np.load(p, allow_pickle=False), p, "the labels array"), p)
        _check_labels_1d(labels, p, "the labels array")
        _check_finite_labels(labels, p)
        return labels
    lines = [ln.strip() for ln in read_user_text(p).splitlines() if ln.strip()]
    return _parse_labels(lines)


def _parse_labels(texts: list[str]) -> np.ndarray:
    """Integers when every label is written as one in its plain form (``7``, ``-1``), else
    strings: ``01``, ``1`` and ``001`` are three labels (``int`` would make them one class), and
    so are ``1`` and ``1_0``."""
    try:
        numbers = [int(t) for t in texts]
    except ValueError:
        return np.asarray(texts)
    if any(str(n) != t.strip() for n, t in zip(numbers, texts, strict=True)):
        return np.asarray(texts)
    return np.asarray(numbers, dtype=np.int64)


#: Floats of a CSV parsed into one float64 block before the next is started (64 MB); the first
#: block holds 64 rows and each next one twice as many, up to this.
_CSV_BLOCK_FLOATS = 1 << 23


def _read_csv(
    path: Path, label_column: str, id_column: str | None
) -> tuple[torch.Tensor, np.ndarray | None, list[str] | None, list[str]]:
    """(features (n, d) float64, labels (n,) or None, ids or None, the d feature columns' names)
    of a features CSV, read row by row: what is held is the float64 array in blocks of rows (about
    twice the array while they are joined at the end) and the label and id cells, not the file's
    text (a 225 MB CSV of 100,000 × 256 took 3.2 GB read whole). A line that is not UTF-8 text is
    named as :func:`read_user_text` names it."""
    try:
        with open_user_text(path) as fh:
            return _parse_csv(path, fh, label_column, id_column)
    except UnicodeDecodeError:
        read_user_text(path)  # raises the error naming the line
        raise
    except csv.Error as exc:  # e.g. a field over the csv module's limit: a quote left open
        raise ValueError(f"{path}: not a CSV the csv module reads ({exc}): a quote left open?") from None


def _parse_csv(
    path: Path, fh: TextIO, label_column: str, id_column: str | None
) -> tuple[torch.Tensor, np.ndarray | None, list[str] | None, list[str]]:
    """:func:`_read_csv` of the open text stream ``fh`` of ``path``."""
    first = fh.readline()
    delimiter = csv_delimiter(first.rstrip("\r\n"))
    rows = csv.reader(itertools.chain([first], fh), delimiter=delimiter)
    header = [name.strip() for name in next(rows, [])]  # "f0, f1, label": ", " between names
    blocks: list[np.ndarray] = []
    block = np.empty((0, 0))
    filled = count = 0  # rows in the block, rows in all
    label_cells: list[str] = []
    ids: list[str] | None = [] if id_column is not None else None
    columns: list[int] = []
    label_at = id_at = -1
    blank: list[list[str]] = []  # blank rows: an error unless only blank rows follow them
    for row in rows:
        if not "".join(row).strip():
            blank.append(row)
            continue
        for held in [*blank, row]:
            if count == 0:  # the header is checked once a data row is there
                columns, label_at, id_at = _csv_columns(path, header, label_column, id_column)
                layout = _CsvLayout(path, header, delimiter, columns, label_column, id_column)
                block = np.empty((64, len(columns)), dtype=np.float64)
            if filled == len(block):
                blocks.append(block)
                cap = max(64, _CSV_BLOCK_FLOATS // len(columns))
                block = np.empty((min(cap, 2 * len(block)), len(columns)), dtype=np.float64)
                filled = 0
            block[filled] = _csv_row_values(layout, held, count)
            if label_at >= 0:
                # without the spaces around them, as a labels text file is read: "cat" and "cat "
                # (a spreadsheet's stray space, or ", " between fields) are one class, not two
                label_cells.append(_one_line(path, held[label_at].strip(), count, "label"))
            if ids is not None:
                ids.append(_one_line(path, held[id_at], count, "id"))
            filled, count = filled + 1, count + 1
        blank = []
    if count == 0:
        raise ValueError(f"{path}: a CSV needs a header row and at least one data row")
    feats = np.concatenate([*blocks, block[:filled]]) if blocks else block[:filled]
    labels = _parse_labels(label_cells) if label_at >= 0 else None
    return torch.from_numpy(feats), labels, ids, [header[i] for i in columns]


def _one_line(path: Path, cell: str, r: int, what: str) -> str:
    """A CSV's label or id ``cell`` of data row ``r`` (from 0), refused when it holds a line break:
    the mark of a quote left open, which reads the rows after it into the cell (a label
    ``'a\\n2,b\\n3,c'``: five rows learned as three), and no class or row name is written so."""
    if "\n" in cell or "\r" in cell:
        shown = cell if len(cell) <= 40 else cell[:40] + "..."
        raise ValueError(
            f'{path}: row {r + 2}: the {what} {shown!r} holds a line break: a quote (") left open in it or '
            "before it reads the following rows into one cell; close or remove the quote"
        )
    return cell


def _csv_columns(
    path: Path, header: list[str], label_column: str, id_column: str | None
) -> tuple[list[int], int, int]:
    """(the feature columns' positions, the label column's or -1, the id column's or -1) of a
    CSV's ``header``, refusing a blank first line, Excel's ``sep=`` line, a header of numbers,
    unnamed or repeated columns, a missing id column and no feature columns."""
    if not any(name for name in header):
        raise ValueError(
            f"{path}: the first line is blank; a features CSV's first line names its columns (remove the "
            "blank line)"
        )
    if header[0].startswith("sep=") and len(header[0]) <= 5:
        raise ValueError(
            f"{path}: the first line, {header[0]!r}, is Excel's separator hint, not the columns' names; "
            "remove that line (the separator is read from the header line)"
        )
    _check_not_numbers(path, header, label_column, id_column)
    _check_named(path, header, id_column)
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:  # the first would be read, the others dropped or read as features
        raise ValueError(f"{path}: the header names {twice[:5]} more than once; name each column once")
    if id_column is not None and id_column not in header:
        raise ValueError(f"{path}: no id column {id_column!r} in the header {header[:8]}")
    skip = {label_column, id_column}
    columns = [i for i, name in enumerate(header) if name not in skip]
    if not columns:
        raise ValueError(f"{path}: no feature columns")
    label_at = header.index(label_column) if label_column in header else -1
    return columns, label_at, header.index(id_column) if id_column is not None else -1


@dataclass(frozen=True)
class _CsvLayout:
    """What reading a features CSV's data rows needs to know of it: its ``path`` (named in errors),
    ``header`` (the columns' names), field ``delimiter``, the positions of its feature
    ``columns``, and the label and id columns asked for (``label_column`` may be absent)."""

    path: Path
    header: list[str]
    delimiter: str
    columns: list[int]
    label_column: str
    id_column: str | None


def _csv_row_values(layout: _CsvLayout, row: list[str], r: int) -> np.ndarray:
    """The feature values (d,) float64 of data row ``r`` (from 0) of the CSV of ``layout``; a row
    whose fields do not match the header, or a feature cell that is not a finite number, is a
    ``ValueError`` naming its row (the header is row 1) and column with a hint
    (:func:`_not_a_number`, for which the file is read again for the column's other cells)."""
    path, header, columns = layout.path, layout.header, layout.columns
    if len(row) != len(header):
        raise ValueError(f"{path}: row {r + 2} has {len(row)} fields, the header {len(header)}")
    try:
        values = np.array([float(row[i]) for i in columns], dtype=np.float64)
    except ValueError:
        bad = next(i for i in columns if not is_number(row[i]))
        cells = _column_cells(path, layout.delimiter, len(header), bad)
        has_labels = layout.label_column in header
        why = _not_a_number(row[bad], header[bad], cells, r, has_labels, layout.id_column)
        raise ValueError(f"{path}: row {r + 2}, column {header[bad]!r}{why}") from None
    if not np.isfinite(values).all():  # "nan", "inf" or a number beyond float64 ("1e400")
        at = columns[int(np.flatnonzero(~np.isfinite(values))[0])]
        raise ValueError(
            f"{path}: row {r + 2}, column {header[at]!r}: {row[at].strip()!r} is not a finite number "
            "(missing values are not supported: fill or drop them)"
        )
    return values


def _column_cells(path: Path, delimiter: str, width: int, column: int) -> list[str]:
    """The cells of ``column`` in the data rows of ``width`` fields of a CSV (read again: only for
    an error's hint)."""
    with open_user_text(path) as fh:
        rows = csv.reader(fh, delimiter=delimiter)
        next(rows, None)
        return [row[column] for row in rows if len(row) == width]


#: Cells that stand for a missing value (R, pandas, spreadsheets and databases write them).
_MISSING = frozenset({"na", "n/a", "#n/a", "nan", "null", "none", "nil", "missing", "?", "-", "--", "."})

#: Column names that say the column holds the labels (compared without case).
LABEL_COLUMN_NAMES = frozenset(
    {"class", "classes", "label", "labels", "target", "targets", "y", "category", "tag", "outcome", "species"}
)


def _not_a_number(
    cell: str, name: str, cells: list[str], row: int, has_labels: bool, id_column: str | None
) -> str:
    """Why a CSV's ``cell`` of column ``name`` (holding ``cells``; in data row ``row``, from 0) is
    refused as a feature, and what to do, fitted to the likely cause: a missing value, a decimal
    comma or thousands separators, a percent or currency sign, a column of labels (named so, or few
    words repeated), or one that names the rows or holds texts."""
    text = cell.strip()
    plain = f": {cell!r} is not a number"
    if not text:
        return " is empty (missing values are not supported: fill or drop them)"
    if text.casefold() in _MISSING:
        return f"{plain}: it marks a missing value, and missing values are not supported: fill or drop them"
    if "," in text and is_number(text.replace(",", "")) and "." in text:
        return f"{plain}: write numbers without thousands separators (1234.5, not 1,234.5)"
    if text.count(",") == 1 and is_number(text.replace(",", ".")):
        thousands = " or a thousands separator" if len(text.partition(",")[2]) == 3 else ""
        return (
            f"{plain}: it has a decimal comma{thousands}, and numbers need a decimal point and no separator "
            "(0.5, not 0,5; 1234, not 1,234): save the "
            "file with '.' as the decimal separator (pandas: read_csv(..., sep=';', decimal=',') then "
            "to_csv)"
        )
    if is_number(text.strip("%$€£¥ ")) and text != text.strip("%$€£¥ "):
        return f"{plain}: write plain numbers, without percent or currency signs (1.3, not 1.3%)"
    words = [c.strip() for c in cells if not is_number(c) and c.strip()]
    if len(words) <= len(cells) // 2:  # a column of numbers with a stray word
        return plain
    if name.casefold() in LABEL_COLUMN_NAMES or len(set(words)) <= len(words) // 2:  # named so, or repeating
        category = (
            "; if it is a category, encode it as numbers (one 0/1 column per category)" if has_labels else ""
        )
        return f"{plain}: if the column holds the labels, name it: --label-column {name}{category}"
    if id_column is None and row == 0:
        return (
            f"{plain} (if the column names the rows, make it the id column: --id-column; if it holds "
            "texts to classify, name its column: --text-column, or write them as a .tsv of "
            "text<TAB>label lines or a .jsonl of input/output objects)"
        )
    return plain


def _check_not_numbers(path: Path, header: list[str], label_column: str, id_column: str | None) -> None:
    """Refuse a header line of numbers only: the file most likely has no header line (``np.savetxt``
    writes none), and its first example would be read as the columns' names, and lost. A line naming
    the label or id column is a header, and so are whole numbers counting up by one from any start
    (``0,1,2``: the names pandas gives a DataFrame's unnamed columns; ``400,401``: wavelengths)."""
    if not all(is_number(name) for name in header) or label_column in header or id_column in header:
        return
    if len(header) > 1 and all(name.isascii() and name.isdigit() for name in header):
        first = int(header[0])
        if [int(name) for name in header] == list(range(first, first + len(header))):
            return
    shown = ", ".join(header[:3]) + (", ..." if len(header) > 3 else "")
    raise ValueError(
        f"{path}: the first line holds only numbers ({shown}), not the columns' names: the file seems to "
        "have no header line, and its first row would be lost as one; add a first line naming the "
        f"columns, e.g. f0,f1,... and {label_column} for the labels' column (np.savetxt(..., header="
        "'f0,f1,...', comments=''))"
    )


def _check_named(path: Path, header: list[str], id_column: str | None) -> None:
    """Refuse a column without a name (it would be learned as a feature): first, the index that
    pandas' ``DataFrame.to_csv`` writes by default (its row numbers, or the order of a sorted
    table); elsewhere, e.g. after a separator at the end of the header line. An unnamed column
    taken out as the id column (``--id-column ''``) is no feature, and passes."""
    if "" not in header or id_column == "":
        return
    where = header.index("")
    if where == 0:
        raise ValueError(
            f"{path}: the first column has no name in the header, as pandas writes a DataFrame's index "
            "(to_csv without index=False); it would be learned as a feature: write the file with "
            "index=False, or name the index (to_csv(index_label='id')) and pass --id-column id"
        )
    raise ValueError(
        f"{path}: column {where + 1} has no name in the header {header[:8]}; name every column (or "
        "remove the separator at the end of the header line)"
    )


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a number (spaces around it aside)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
