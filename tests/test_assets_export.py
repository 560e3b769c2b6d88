"""``faast assets export``: text assets as example files for ``faast task`` and ``faast classify``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from faast.assets import export
from faast.cli import main
from faast.lm.examples import read_examples

ROWS = [{"input": f"text {i % 9}", "output": "ab"[i % 2], "n": i} for i in range(20)]


@pytest.fixture
def toy(monkeypatch):
    """A stand-in asset of 20 rows (9 distinct texts: held-out texts also occur in the pool)."""
    monkeypatch.setitem(export.EXPORTS, "toy", ("text → a / b", lambda cache: [dict(r) for r in ROWS]))


def test_split_order_limit_and_formats(toy, tmp_path):
    n, held = export.export_examples("toy", tmp_path / "a.tsv", test=3, test_out=tmp_path / "t.jsonl", seed=2)
    train, test = read_examples(tmp_path / "a.tsv"), read_examples(tmp_path / "t.jsonl")
    assert held == len(test) == 3 and n == len(train)
    assert not {e.input for e in test} & {e.input for e in train}  # no held-out text is learned
    assert (tmp_path / "a.tsv").read_text().startswith("input\toutput\n")
    assert [e.extra["n"] for e in test] and all(
        e.output == "ab"[e.extra["n"] % 2] for e in test
    )  # every field
    assert export.export_examples("toy", tmp_path / "b.tsv", test=3, test_out=tmp_path / "u.tsv", seed=2) == (
        n,
        3,
    )
    assert (tmp_path / "b.tsv").read_text() == (tmp_path / "a.tsv").read_text()  # seeded
    assert export.export_examples("toy", tmp_path / "c.tsv", limit=5, seed=2) == (5, 0)
    whole = [e.input for e in read_examples(tmp_path / "c.tsv")]
    export.export_examples("toy", tmp_path / "d.tsv", seed=2)
    assert [e.input for e in read_examples(tmp_path / "d.tsv")][:5] == whole  # the first of one order
    assert len(read_examples(tmp_path / "d.tsv")) == 20
    export.export_examples("toy", tmp_path / "e.csv", test=3, test_out=tmp_path / "e-test.csv", seed=2)
    export.export_examples("toy", tmp_path / "e.jsonl", test=3, test_out=tmp_path / "e-test.jsonl", seed=2)
    for name in ("e", "e-test"):  # a CSV holds every field, as JSONL does (its cells are text)
        table, jsonl = read_examples(tmp_path / f"{name}.csv"), read_examples(tmp_path / f"{name}.jsonl")
        assert [(e.input, e.output, e.extra) for e in table] == [
            (e.input, e.output, {"n": str(e.extra["n"])}) for e in jsonl
        ]


def test_bad_requests_are_named_before_anything_is_written(toy, tmp_path):
    cases = [
        (dict(name="shakespeare"), "has no examples to export; exportable: movie-review-sentences"),
        (dict(test=2), "--test and --test-out go together"),
        (dict(test_out=tmp_path / "t.tsv"), "--test and --test-out go together"),
        (dict(test=2, test_out=tmp_path / "x.tsv"), "are the same file"),
        (dict(test=20, test_out=tmp_path / "t.tsv"), "--test 20: toy has only 20 examples"),
        (dict(limit=0), "--limit >= 1"),
        (dict(out=tmp_path / "x.xlsx"), "unknown file type '.xlsx'"),
    ]
    for kwargs, message in cases:
        call = {"name": "toy", "out": tmp_path / "x.tsv", **kwargs}
        with pytest.raises(ValueError, match=message):
            export.export_examples(call.pop("name"), call.pop("out"), **call)
    assert not list(tmp_path.iterdir())


def test_cli_export_prints_what_it_wrote(toy, tmp_path, capsys):
    argv = ["assets", "export", "toy", "--out", str(tmp_path / "a.tsv"), "--test", "4", "--test-out"]
    assert main([*argv, str(tmp_path / "t.tsv"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"[faast] toy: wrote {len(read_examples(tmp_path / 'a.tsv'))} examples to" in out
    assert "and 4 held out to" in out and "(seed 1)" in out
    assert main(["assets", "export", "toy", "--out", str(tmp_path / "b.tsv"), "--test", "4"]) == 1
    assert "--test and --test-out go together" in capsys.readouterr().err


@pytest.mark.assets("movie-review-sentences")
def test_movie_reviews_export_is_the_published_sentiment_split(tmp_path):
    """``--test 2000`` (seed 0) writes the test set and the pool, in order, of
    benchmarks/lm_sentiment.py: the README's commands learn and score what docs/tasks.md did."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import lm_sentiment

    pool, test = lm_sentiment.load_data(2000, None, 0)
    export.export_examples(
        "movie-review-sentences", tmp_path / "train.tsv", test=2000, test_out=tmp_path / "test.jsonl"
    )
    assert [(e.input, e.output) for e in read_examples(tmp_path / "train.tsv")] == [
        (e.input, e.output) for e in pool
    ]
    assert [(e.input, e.output) for e in read_examples(tmp_path / "test.jsonl")] == [
        (e.input, e.output) for e in test
    ]


@pytest.mark.assets("tweet-sentiment", "bible-en-es")
def test_tweets_and_verses_export_as_examples(tmp_path):
    export.export_examples("tweet-sentiment", tmp_path / "t.tsv", limit=50)
    tweets = read_examples(tmp_path / "t.tsv")
    assert len(tweets) == 50 and {e.output for e in tweets} <= {"negative", "neutral", "positive"}
    export.export_examples("bible-en-es", tmp_path / "b.jsonl", limit=3)
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and set(rows[0]) == {"input", "output", "book", "chapter", "verse"}
