"""Example files whose columns carry other names (``input_column`` / ``output_column``): a TSV or
CSV header, JSONL fields, integer class ids; CSV quoting; predictions written as CSV read back."""

from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm.examples import Example, read_examples, write_rows


def _pairs(examples: list[Example]) -> list[tuple[str, str | None]]:
    return [(e.input, e.output) for e in examples]


def test_a_tsv_header_names_the_columns_and_keeps_the_others(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("id\tText\tlabel\n7\ta good film\tpos\n8\tso dull\\tslow\tneg\n")
    got = read_examples(path, input_column="text", output_column="label")
    assert _pairs(got) == [("a good film", "pos"), ("so dull\tslow", "neg")]
    assert [e.extra for e in got] == [{"id": "7"}, {"id": "8"}]


def test_the_classic_tsv_reads_as_before(tmp_path):
    """input<TAB>output with a header, and inputs to predict that stop before the output column."""
    path = tmp_path / "d.tsv"
    path.write_text("input\toutput\na\tb\nc\n")
    assert _pairs(read_examples(path, outputs=False)) == [("a", "b"), ("c", None)]
    with pytest.raises(ValueError, match=r"d.tsv:3: no output: 1 fields, the header 2"):
        read_examples(path)
    (tmp_path / "plain.tsv").write_text("a\tb\nc\td\n")
    assert _pairs(read_examples(tmp_path / "plain.tsv")) == [("a", "b"), ("c", "d")]


def test_a_csv_is_read_by_its_header_with_quoted_commas_and_newlines(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label,source\n"good, really",pos,web\n"two\nlines",neg,"x"\nplain,pos,y\n')
    got = read_examples(path, input_column="text", output_column="label")
    assert _pairs(got) == [("good, really", "pos"), ("two\nlines", "neg"), ("plain", "pos")]
    assert got[1].extra == {"source": "x"}
    semi = tmp_path / "semi.csv"
    semi.write_text("input;output\n1,5 stars;pos\n")  # a spreadsheet with the decimal comma
    assert _pairs(read_examples(semi)) == [("1,5 stars", "pos")]


def test_a_csv_row_is_named_by_the_line_it_starts_on(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('input,output\nok,a\n"two\nlines"\nb,c\n')
    with pytest.raises(
        ValueError,
        match=r"d.csv:3: 1 fields, the header 2, and a quoted cell that runs on to "
        r"line 4: is a quote opened on line 3 never closed\?",
    ):
        read_examples(path)


def test_an_empty_output_cell_is_an_unlabelled_line_only_for_inputs_to_predict(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("input,output\na,pos\nb,\n")
    assert _pairs(read_examples(path, outputs=False)) == [("a", "pos"), ("b", None)]
    with pytest.raises(ValueError, match=r"d.csv:3: empty output"):
        read_examples(path)


def test_jsonl_fields_by_name_and_integer_class_ids(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "a", "label": 0, "id": 3}, {"text": "b", "label": 12}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_examples(path, input_column="text", output_column="label")
    assert _pairs(got) == [("a", "0"), ("b", "12")]
    assert got[0].extra == {"id": 3}
    for bad, kind in ((True, "bool"), (1.0, "float"), ([1], "list")):
        path.write_text(json.dumps({"text": "a", "label": bad}) + "\n")
        with pytest.raises(ValueError, match=rf"field 'label' must be a string or an integer, got {kind}"):
            read_examples(path, input_column="text", output_column="label")


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "match"),
    [
        ("d.csv", "text,label\na,b\n", {},
         r"no column 'input' or 'output' in the header \['text', 'label'\]; name the columns to read with "
         "--input-column/--output-column"),
        ("d.csv", "text,comment\na,b\n", {"input_column": "text", "output_column": "label"},
         r"d.csv:1: no column 'label'"),
        ("d.csv", "text,text,label\na,b,c\n", {"input_column": "text", "output_column": "label"},
         r"names the column 'text' 2 times"),
        ("d.tsv", "a\tb\n", {"input_column": "text", "output_column": "label"},
         r"d.tsv:1: no header naming the column 'text'"),
        ("d.tsv", "text\tlabel\na\tb\n", {}, r"looks like a header of other column names; name the columns "
         r"\(--input-column/--output-column text label\)"),
        ("d.jsonl", '{"text": "a"}\n', {"input_column": "text", "output_column": "label"},
         r"d.jsonl:1: no field 'label' .* every line needs 'text' and 'label'"),
        ("d.csv", "input,output\n", {}, "holds a header but no examples"),
        ("d.csv", "", {}, "is empty"),
        ("d.csv", "input,output\n,b\n", {}, r"d.csv:2: empty input"),
        ("d.csv", "input,output\na,b\n\nc,d\n", {}, r"d.csv:3: blank line"),
        ("d.csv", "input,output\na,b\n", {"input_column": "x", "output_column": "x"}, "must differ"),
        ("d.csv", "input,output\na,b\n", {"input_column": " "}, "input_column must be a non-empty name"),
    ],
)  # fmt: skip
def test_bad_column_names_are_named(tmp_path, name, content, kwargs, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        read_examples(tmp_path / name, **kwargs)


_cells = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda t: t.strip() != ""
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(_cells, _cells), min_size=1, max_size=6), suffix=st.sampled_from([".csv", ".tsv"])
)
def test_written_rows_read_back_exactly(tmp_path_factory, rows, suffix):
    """Predictions written as CSV or TSV (commas, quotes, tabs, newlines, backslashes in the cells)
    read back as the same inputs and outputs."""
    path = tmp_path_factory.mktemp("rows") / f"p{suffix}"
    write_rows(path, [{"input": a, "output": b} for a, b in rows], ["input", "output"])
    got = _pairs(read_examples(path))
    want = [
        (a.replace("\r\n", "\n").replace("\r", "\n"), b.replace("\r\n", "\n").replace("\r", "\n"))
        for a, b in rows
    ]
    if suffix == ".tsv":
        want = list(rows)  # TSV escapes line ends, so they survive as written
    assert got == want


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.tsv", "great movie\tpos\nawful film\tneg\n\n  \n"),
        (
            "a.jsonl",
            '{"input": "great movie", "output": "pos"}\r\n{"input": "awful film", "output": "neg"}\r\n\r\n',
        ),
        ("a.csv", "input,output\ngreat movie,pos\nawful film,neg\n\n\n"),
    ],
)
def test_blank_lines_after_the_last_example_are_not_examples(tmp_path, name, text):
    """An editor's extra newline at the end of a file is not a blank example (a blank line between
    two examples still is an error)."""
    (tmp_path / name).write_bytes(text.encode("utf-8"))
    examples = read_examples(tmp_path / name)
    assert [(e.input, e.output) for e in examples] == [("great movie", "pos"), ("awful film", "neg")]


def test_a_json_field_named_twice_is_refused_with_its_line(tmp_path):
    twice = '{"input": "b", "output": "x", "output": "y"}'
    (tmp_path / "d.jsonl").write_text('{"input": "a", "output": "x"}\n' + twice + "\n")
    with pytest.raises(ValueError, match=r"d.jsonl:2: the field 'output' appears twice in one object"):
        read_examples(tmp_path / "d.jsonl")


def test_a_one_column_file_of_inputs_headed_by_another_name_is_refused(tmp_path):
    """A file of inputs to classify whose first line is "text" once had that line classified as an
    input; it is refused, and read by name when the column is named."""
    path = tmp_path / "inputs.tsv"
    path.write_text("text\na fine film\na dull film\n")
    with pytest.raises(ValueError, match=r"inputs.tsv:1: 'text' looks like a header .*--input-column text"):
        read_examples(path, outputs=False)
    assert [e.input for e in read_examples(path, outputs=False, input_column="text")] == [
        "a fine film",
        "a dull film",
    ]
    path.write_text("textual\na fine film\n")  # not a column name: an input
    assert [e.input for e in read_examples(path, outputs=False)] == ["textual", "a fine film"]


@pytest.mark.parametrize("cell", ["a\rb", "tweet\r", "\rx", "a\r\nb"])
def test_a_bare_carriage_return_in_a_csv_cell_reads_back_as_one_row(tmp_path, cell):
    """A cell holding a carriage return but no comma, quote or newline was written unquoted and
    read back as two rows ("no output"): tweets exported with `faast assets export --out x.csv`
    could not be learned. It is written as a line break, quoted."""
    path = tmp_path / "p.csv"
    write_rows(
        path, [{"input": cell, "output": "pos"}, {"input": "next", "output": "neg"}], ["input", "output"]
    )
    assert _pairs(read_examples(path)) == [
        (cell.replace("\r\n", "\n").replace("\r", "\n"), "pos"),
        ("next", "neg"),
    ]


def test_a_header_like_first_line_of_unknown_names_is_warned_about(tmp_path):
    """``headline<TAB>topic`` (names HEADER_NAMES does not know) was learned as an example, a class
    of its own, without a word: warned about now; a first line that is an example of a known label,
    or of an input of several words, is not."""
    body = "".join(f"news item {i}\t{'sport' if i % 2 else 'world'}\n" for i in range(12))
    path = tmp_path / "e.tsv"
    path.write_text("headline\ttopic\n" + body)
    with pytest.warns(UserWarning, match=r"e.tsv:1: 'headline'<TAB>'topic' may be a header"):
        examples = read_examples(path)
    assert examples[0] == Example("headline", "topic") and len(examples) == 13  # still read as written
    for first in ("goal\tsport\n", "a long first line\tquiz\n"):
        path.write_text(first + body)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(read_examples(path)) == 13
