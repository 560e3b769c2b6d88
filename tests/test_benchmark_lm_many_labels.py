"""benchmarks/lm_many_labels.py: every method's commands are ``faast`` command lines the CLI
accepts, shown as a user types them, and the table and plot are rendered from results.json alone
(what ``--render`` reads)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_many_labels
from faast.cli import build_parser


def _args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(model="smollm2", threads=2, work=str(tmp_path))


@pytest.mark.parametrize("method", lm_many_labels.METHODS)
def test_every_step_is_a_faast_command_line_the_cli_accepts(method, tmp_path):
    rows = [
        {"input": "In the beginning", "book": "Genesis"},
        {"input": "a", "book": "Song of Solomon"},
    ]
    (tmp_path / "verses.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    steps = lm_many_labels.steps(method, _args(tmp_path), tmp_path)
    assert steps
    for _, cmd in steps:
        assert cmd[:3] == [sys.executable, "-m", "faast.cli"]
        build_parser().parse_args(cmd[3:])  # exits (SystemExit) on an option the CLI lacks
        shown = lm_many_labels.shown(cmd, tmp_path)
        assert shown.startswith("faast ") and str(tmp_path) not in shown
    if method == "zero-shot":  # the training verses' books, in order, are the labels
        cmd = steps[0][1]
        assert cmd[cmd.index("--labels") + 1] == "Genesis,Song of Solomon"


def test_a_book_name_with_a_comma_cannot_be_a_zero_shot_label(tmp_path):
    """(The zero-shot labels are passed comma-separated: a book holding a comma would split.)"""
    rows = [{"input": "a", "book": "Song, of"}]
    (tmp_path / "verses.jsonl").write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="comma"):
        lm_many_labels.steps("zero-shot", _args(tmp_path), tmp_path)


def test_the_table_and_plot_come_from_the_results_alone(tmp_path):
    scores = {"accuracy": 0.182, "ci95_wilson": [0.15, 0.22], "balanced_accuracy": 0.12, "macro_f1": 0.09}
    cv = {"folds": 5, "accuracy": 0.315, "std": 0.01, "baselines": {"RidgeClassifier": {"accuracy": 0.318}}}
    results = {
        "meta": {
            "command": "python benchmarks/lm_many_labels.py",
            "machine": "a VM",
            "model": "smollm2",
            "limit": 2000,
            "test": 500,
            "seed": 0,
            "train_books": 64,
            "test_books": 57,
        },
        "methods": {
            "faast": {"scores": scores, "seconds": {"learn": 400.4, "evaluate": 99.6}},
            "classifier": {"scores": {**scores, "cross_validation": cv}, "seconds": {"fit": 10.0}},
        },
    }
    lm_many_labels.render(results, tmp_path)
    text = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert text.startswith("Command: `python benchmarks/lm_many_labels.py`")
    row = (
        "| FAAST (`--labels all`) | 18.20 % | 15.00–22.00 % | 12.00 % | 9.00 % | learn 400 s, evaluate 100 s"
    )
    assert row + " |" in text
    assert "31.50 % ± 1.00 (RidgeClassifier 31.80 % on the same folds)" in text
    assert "zero-shot" not in text.split("\n", 4)[4]  # a method not run has no row
    assert (tmp_path / "results.png").stat().st_size > 0
