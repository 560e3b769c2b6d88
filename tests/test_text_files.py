"""Users' text files: UTF-8 with or without a byte-order mark, UTF-16 with one, else a clear error."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.data.features_file import read_features
from faast.lm.examples import read_examples
from faast.lm.text import read_text
from faast.text_files import read_user_text

SPELLINGS = {
    "utf-8": lambda t: t.encode("utf-8"),
    "utf-8 with mark": lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
    "utf-16 little-endian with mark": lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
    "utf-16 big-endian with mark": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
}


@settings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_every_spelling_reads_back_the_same_text(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("spellings")
    for name, encode in SPELLINGS.items():
        if name == "utf-8" and text.startswith("\ufeff"):
            continue  # a leading U+FEFF in plain UTF-8 is a byte-order mark by definition
        path = folder / f"{name}.txt"
        path.write_bytes(encode(text))
        assert read_user_text(path) == universal_newlines(text), name


def universal_newlines(text: str) -> str:
    """What Python's text mode reads: CR LF and a lone CR as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def test_windows_and_old_mac_line_ends_read_as_lf(tmp_path):
    # a text saved on Windows taught "\r" tokens the same text saved elsewhere does not
    (tmp_path / "crlf.txt").write_bytes(b"first line\r\nsecond line\r\n")
    (tmp_path / "cr.txt").write_bytes(b"first line\rsecond line\r")
    (tmp_path / "lf.txt").write_bytes(b"first line\nsecond line\n")
    texts = {read_text(tmp_path / f"{name}.txt") for name in ("crlf", "cr", "lf")}
    assert texts == {"first line\nsecond line\n"}
    (tmp_path / "ex.tsv").write_bytes(b"input\toutput\r\nhola\thello\r\n")
    assert [(e.input, e.output) for e in read_examples(tmp_path / "ex.tsv")] == [("hola", "hello")]


def test_a_carriage_return_inside_a_tsv_line_is_refused_not_split(tmp_path):
    """A bare CR in a TSV cell of a file with LF line ends split the line: two inputs to predict
    were read where the user wrote one. Refused now, naming the line; a CR-only file still reads."""
    (tmp_path / "in.tsv").write_bytes(b"first input\nsecond\rhalf\nthird\n")
    with pytest.raises(ValueError, match=r"in\.tsv:2: a carriage return \(CR\) inside the line.*\\r or \\n"):
        read_examples(tmp_path / "in.tsv", outputs=False)
    (tmp_path / "crlf.tsv").write_bytes(b"input\toutput\r\nsecond\rhalf\tx\r\n")
    with pytest.raises(ValueError, match=r"crlf\.tsv:2: a carriage return"):
        read_examples(tmp_path / "crlf.tsv")
    (tmp_path / "mac.tsv").write_bytes(b"one\rtwo\r")
    assert [e.input for e in read_examples(tmp_path / "mac.tsv", outputs=False)] == ["one", "two"]
    (tmp_path / "t.txt").write_bytes(b"a text\nwith a\rbare CR\n")  # a text to learn: still a line end
    assert read_text(tmp_path / "t.txt") == "a text\nwith a\nbare CR\n"


@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_examples_texts_and_feature_tables_read_alike_in_every_spelling(tmp_path, name):
    encode = SPELLINGS[name]
    (tmp_path / "ex.tsv").write_bytes(encode("input\toutput\nqué\tsí\n"))
    assert [(e.input, e.output) for e in read_examples(tmp_path / "ex.tsv")] == [("qué", "sí")]
    (tmp_path / "t.txt").write_bytes(encode("Érase una vez"))
    assert read_text(tmp_path / "t.txt") == "Érase una vez"
    (tmp_path / "f.csv").write_bytes(encode("id,f0,label\nà,1.5,x\n"))
    table = read_features(tmp_path / "f.csv", id_column="id")
    assert table.ids == ["à"] and table.features.tolist() == [[1.5]] and table.labels.tolist() == ["x"]


def test_bytes_that_are_not_text_name_the_line(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("first\nsecond caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt:2: not UTF-8 text"):
        read_user_text(tmp_path / "latin1.txt")
    (tmp_path / "f.csv").write_bytes("f0,label\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"f.csv:2: not UTF-8 text"):
        read_features(tmp_path / "f.csv")


@settings(max_examples=80, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(str.strip),
            st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(str.strip),
        ),
        min_size=1,
        max_size=5,
    ),
    suffix=st.sampled_from([".tsv", ".jsonl"]),
)
def test_written_examples_read_back_exactly(tmp_path_factory, pairs, suffix):
    """Backslashes (C:\\new), carriage returns and U+2028 in a cell came back changed or broke a
    line in two: what write_rows writes, read_examples reads back as it was."""
    from faast.lm.examples import write_rows

    path = tmp_path_factory.mktemp("rows") / f"examples{suffix}"
    write_rows(path, [{"input": i, "output": o} for i, o in pairs], ["input", "output"])
    assert [(e.input, e.output) for e in read_examples(path)] == pairs


def test_escapes_of_example_files():
    from faast.lm.examples import _escape, _unescape

    assert _unescape(r"C:\data a\tb c\nd \\n") == "C:\\data a\tb c\nd \\n"
    for cell in ("C:\\new", "a\\", "\\\\t", "line\rend", "x\u2028y"):
        assert _unescape(_escape(cell)) == cell
