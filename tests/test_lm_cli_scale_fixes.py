"""`faast lm learn` / `lm stream` on long runs: a text appended again is named, progress bars stay
out of logs, and an interrupted stream keeps the rows of the chunks it read."""

from __future__ import annotations

import sys

import pytest

import faast.lm.stream
from faast.cli import main
from tests.lm_wordlevel import WORDS, save_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def _text(path, seed: int, words: int = 300):
    path.write_text(" ".join(WORDS[(i * 7 + seed) % len(WORDS)] for i in range(words)) + "\n")
    return path


def _learn(model, text, out, *extra: str) -> int:
    argv = ["lm", "learn", "--model", str(model), "--text", str(text), "--out", str(out), "--window", "32"]
    return main([*argv, "--threads", "1", *extra])


def test_learn_append_of_a_text_learned_before_warns_in_one_line(model, tmp_path, capsys):
    a, b, out = _text(tmp_path / "a.txt", 0), _text(tmp_path / "b.txt", 1), tmp_path / "fw.safetensors"
    assert _learn(model, a, out) == 0
    assert _learn(model, b, out, "--append") == 0
    assert "learned" not in capsys.readouterr().err  # another text: no warning
    same = tmp_path / "a_again.txt"
    same.write_bytes(a.read_bytes())  # the same content under another name
    assert _learn(model, same, out, "--append") == 0  # a warning, not a refusal
    warnings = [line for line in capsys.readouterr().err.splitlines() if "already learned" in line]
    assert len(warnings) == 1
    assert "counts 2 times" in warnings[0] and "faast lm forget" in warnings[0], warnings[0]
    assert _learn(model, a, out, "--append") == 0
    assert "counts 3 times" in capsys.readouterr().err


def test_learn_and_stream_show_progress_bars_only_on_a_terminal(model, tmp_path, capsys, monkeypatch):
    """No bars when stderr is not a terminal (a log got thousands of carriage-return updates), as
    `faast classify` decides; bars on a terminal."""
    text, out = _text(tmp_path / "a.txt", 0), tmp_path / "fw.safetensors"
    stream = ["lm", "stream", "--model", str(model), "--text", str(text), "--chunk", "32", "--threads", "1"]
    assert _learn(model, text, out) == 0 and main(stream) == 0
    err = capsys.readouterr().err
    assert "learn:" not in err and "stream:" not in err and "\r" not in err, err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _learn(model, text, out) == 0
    assert "learn:" in capsys.readouterr().err
    assert main(stream) == 0
    assert "stream: score, then learn" in capsys.readouterr().err


def test_an_interrupted_stream_keeps_its_finished_rows_and_the_previous_csv(
    model, tmp_path, monkeypatch, capsys
):
    text, table = _text(tmp_path / "a.txt", 0, words=400), tmp_path / "rows.csv"
    argv = ["lm", "stream", "--model", str(model), "--text", str(text), "--chunk", "40", "--threads", "1"]
    assert main([*argv, "--csv", str(table)]) == 0
    full = table.read_text()
    partial = tmp_path / "rows.csv.partial"
    assert not partial.exists()  # removed once the CSV is written
    table.write_text("the previous results\n")
    learn = faast.lm.stream._learn_chunk
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return learn(*args, **kwargs)

    monkeypatch.setattr(faast.lm.stream, "_learn_chunk", interrupted)
    assert main([*argv, "--csv", str(table)]) == 130
    assert table.read_text() == "the previous results\n"  # left as it was
    assert partial.read_text().splitlines() == full.splitlines()[:4]  # the header and 3 chunks' rows
    monkeypatch.setattr(faast.lm.stream, "_learn_chunk", learn)
    capsys.readouterr()
    assert main([*argv, "--csv", str(table)]) == 0  # a later run replaces those rows, saying so
    assert "holds the rows of an interrupted stream; this run replaces them" in capsys.readouterr().err
    assert table.read_text() == full and not partial.exists()


def test_perplexity_shows_progress_bars_only_on_a_terminal(model, tmp_path, capsys, monkeypatch):
    text = _text(tmp_path / "a.txt", 0)
    argv = ["lm", "perplexity", "--model", str(model), "--text", str(text), "--window", "32"]
    argv += ["--threads", "1"]
    assert main(argv) == 0
    assert "\r" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    assert "score" in capsys.readouterr().err
