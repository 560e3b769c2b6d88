"""The features CSV is read row by row (``faast.data.features_file._read_csv``): a 225 MB CSV of
100,000 × 256 took 3.2 GB read whole (its text, a copy in a ``StringIO`` and one Python string per
cell). These tests hold the row-by-row reader to the whole-text reader it replaced — the same
features, labels, ids, columns and error messages on random files of many shapes, separators, line
ends, encodings and blank lines, with blocks of a few rows so that many block boundaries are
crossed — and bound the memory it holds."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faast.data.features_file as features_file
from faast.data.features_file import read_features
from faast.text_files import csv_delimiter, read_user_text


def _whole_text_reference(
    path: Path, label_column: str, id_column: str | None
) -> tuple[torch.Tensor, np.ndarray | None, list[str] | None, list[str]]:
    """The reader before rows were streamed (its logic, for valid files and the errors below)."""
    text = read_user_text(path)
    rows = list(csv.reader(io.StringIO(text), delimiter=csv_delimiter(text.partition("\n")[0])))
    while rows and not "".join(rows[-1]).strip():
        rows.pop()
    if len(rows) < 2:
        raise ValueError(f"{path}: a CSV needs a header row and at least one data row")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    columns = [i for i, name in enumerate(header) if name not in {label_column, id_column}]
    feats = np.empty((len(body), len(columns)), dtype=np.float64)
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {r + 2} has {len(row)} fields, the header {len(header)}")
        feats[r] = [float(row[i]) for i in columns]  # the files drawn below hold numbers there
    labels = None
    if label_column in header:
        labels = features_file._parse_labels([row[header.index(label_column)].strip() for row in body])
    ids = [row[header.index(id_column)] for row in body] if id_column is not None else None
    return torch.from_numpy(feats), labels, ids, [header[i] for i in columns]


@st.composite
def _csv_files(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(text, encoding, ids?) of a random features CSV."""
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 6))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    with_labels, with_ids = draw(st.booleans()), draw(st.booleans())
    names = [f"f{j}" for j in range(d)]
    if with_labels:
        names.insert(draw(st.integers(0, d)), "label")
    if with_ids:
        names.insert(draw(st.integers(0, len(names))), "id")
    number = st.one_of(
        st.floats(-1e300, 1e300, allow_nan=False).map(repr),
        st.integers(-(10**6), 10**6).map(str),
        st.floats(-10, 10, allow_nan=False).map(lambda x: f" {x:.3g} "),
    )
    lines = [sep.join(names)]
    for i in range(n):
        cells = []
        for name in names:
            if name == "label":
                cells.append(draw(st.sampled_from(["cat", "dog", "1", "2", " cat "])))
            elif name == "id":
                cells.append(f"row{i}")
            else:
                cells.append(draw(number))
        lines.append(sep.join(f'"{c}"' if sep in c else c for c in cells))
    text = end.join(lines) + draw(st.sampled_from(["", end, end + end, end + "  " + end]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    return text, encoding, with_ids


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drawn=_csv_files(), block_floats=st.sampled_from([1, 3, 7, 64, 1 << 23]))
def test_rows_read_one_by_one_equal_the_whole_text_reader(tmp_path, monkeypatch, drawn, block_floats):
    text, encoding, with_ids = drawn
    monkeypatch.setattr(features_file, "_CSV_BLOCK_FLOATS", block_floats)
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode(encoding))
    id_column = "id" if with_ids else None
    got = features_file._read_csv(path, "label", id_column)
    want = _whole_text_reference(path, "label", id_column)
    assert got[0].dtype == torch.float64 and torch.equal(got[0], want[0])
    assert (got[1] is None) == (want[1] is None)
    if want[1] is not None:
        assert got[1].dtype == want[1].dtype and np.array_equal(got[1], want[1])
    assert got[2] == want[2] and got[3] == want[3]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "a CSV needs a header row and at least one data row"),
        ("\n\n", "a CSV needs a header row and at least one data row"),
        ("1,2\n\n3,4\n", "row 3 has 0 fields, the header 2"),
        ("1,2\n3\n", "row 3 has 1 fields, the header 2"),
        ("1,2\n3,NA\n", "row 3, column 'f1': 'NA' is not a number: it marks a missing value"),
        ("1,2\n3,nan\n", "row 3, column 'f1': 'nan' is not a finite number"),
        ("1,2\n3,1e400\n", "row 3, column 'f1': '1e400' is not a finite number"),
    ],
)
def test_a_bad_row_is_named_as_before(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text("f0,f1\n" + body, encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        features_file._read_csv(path, "label", None)


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"f0,label\n" + b"1,a\n" * 5000 + b"2,caf\xe9\n")
    with pytest.raises(ValueError, match=r"latin\.csv:5002: not UTF-8 text"):
        read_features(path)


def test_the_reader_holds_about_the_array_not_the_text(tmp_path):
    """20,000 × 64 floats written with 17 digits (about 24 MB of text, 10 MB as float64): the
    whole-text reader peaked at 226 MB of Python allocations; row by row the peak is the array,
    a block being filled and the concatenation (about 2.2× the array; 3× allowed)."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((20_000, 64))
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(f"f{j}" for j in range(64)) + ",label\n")
        for i, row in enumerate(data):
            fh.write(",".join(repr(float(x)) for x in row) + f",{i % 3}\n")
    tracemalloc.start()
    try:
        table = read_features(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert torch.equal(table.features, torch.from_numpy(data))
    assert peak < 3 * data.nbytes + 8_000_000, (
        f"peak {peak / 1e6:.0f} MB for a {data.nbytes / 1e6:.0f} MB array"
    )


def test_the_finite_check_names_the_first_bad_value_across_blocks(tmp_path, monkeypatch):
    """The NaN/infinity check of an array file runs a block of rows at a time (not masks of the
    array's size); the first bad value and the count of all are named as before."""
    feats = np.zeros((50, 3), dtype=np.float32)
    feats[17, 2], feats[40, 0], feats[41, 1] = np.inf, np.nan, -np.inf
    path = tmp_path / "f.npy"
    np.save(path, feats)
    for block in (1 << 20, 1, 4, 5):  # rows per block: (1 << 20) // d
        monkeypatch.setattr(features_file, "_FINITE_BLOCK_FLOATS", block)
        with pytest.raises(ValueError, match=r"feature row 17, column 2 \(counting from 0\): inf .* \(3 NaN"):
            read_features(path)


def test_a_quote_left_open_is_refused_not_read_as_rows_in_one_label(tmp_path):
    """A stray quote read the rows after it into one cell: five rows were learned as three, one of
    class 'a\\n2,b\\n3,c'. A label or id holding a line break (also CR LF inside quotes, which a
    Windows file would have made a class of its own) is refused, naming the row."""
    path = tmp_path / "open.csv"
    path.write_text('f0,label\n1,"a\n2,b\n3,c"\n4,d\n5,e\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 2: the label 'a\\n2,b\\n3,c' holds a line break: a quote"):
        read_features(path)
    path.write_bytes(b'f0,id,label\r\n1,"r\r\n1",cat\r\n')
    with pytest.raises(ValueError, match=r"row 2: the id 'r\\r\\n1' holds a line break"):
        read_features(path, id_column="id")


def test_a_field_beyond_the_csv_modules_limit_is_named(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text('f0,label\n1,"' + "x" * 200_000 + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"long\.csv: not a CSV the csv module reads \(field larger"):
        read_features(path)


@pytest.mark.parametrize(
    ("first", "message"),
    [("\n", "the first line is blank"), ("sep=;\n", "is Excel's separator hint")],
)
def test_a_first_line_that_names_no_columns_is_named(tmp_path, first, message):
    """A blank first line was refused as 'a header of numbers only ()', and Excel's 'sep=;' line
    as a column without a name."""
    path = tmp_path / "f.csv"
    path.write_text(first + "f0;f1;label\n1;2;a\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_features(path)
