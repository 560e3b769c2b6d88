"""`faast lm forget` of a text learned twice with other windows: the record of the learning with
the given --window/--batch-size is the one forgotten (only the last record of the text was looked
at, so forgetting the first learning was refused as if learned with the second's windows)."""

from __future__ import annotations

from faast.cli import main
from faast.lm.fastweights import read_task
from tests.lm_wordlevel import save_tiny_model


def test_a_text_learned_with_two_windows_is_forgotten_with_either(tmp_path, capsys):
    folder = save_tiny_model(tmp_path / "model")
    text, other = tmp_path / "a.txt", tmp_path / "b.txt"
    text.write_text(" ".join(f"w{3 + (7 * i) % 50}" for i in range(60)))
    other.write_text(" ".join(f"w{3 + i % 31}" for i in range(40)))
    path = tmp_path / "fw.safetensors"
    common = ["--model", str(folder), "--threads", "1"]
    assert main(["lm", "learn", *common, "--out", str(path), "--text", str(other), "--window", "8"]) == 0
    learn = ["lm", "learn", *common, "--out", str(path), "--text", str(text)]
    assert main([*learn, "--window", "8", "--append"]) == 0
    assert main([*learn, "--window", "16", "--append"]) == 0
    forget = ["lm", "forget", *common, "--fast-weights", str(path), "--text", str(text)]
    capsys.readouterr()
    assert main([*forget, "--window", "8"]) == 0, capsys.readouterr().err
    left = read_task(path, None)[2]["info"]["learned"]
    assert [(r["text"], r["window"]) for r in left] == [("b.txt", 8), ("a.txt", 16)]
    assert main([*forget, "--window", "8"]) == 1  # learned once with 8: no longer
    assert "was learned into this task with --window 16 (not --window 8)" in capsys.readouterr().err
    assert main([*forget, "--window", "16"]) == 0
    assert [r["text"] for r in read_task(path, None)[2]["info"]["learned"]] == ["b.txt"]
