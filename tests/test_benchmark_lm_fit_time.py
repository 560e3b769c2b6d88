"""benchmarks/lm_fit_time.py on the tiny model: both paths fit the same task and choose the same
read-out with equal held-out scores; the table and plot are written with repository-relative
paths; the shortcuts' switches are put back after each fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_fit_time
from faast.lm.examples import Example
from faast.lm.model import FaastModel
from faast.lm.task import TaskModel
from faast.publish import machine_paths
from tests.lm_wordlevel import tiny_causal_lm
from tests.test_benchmark_lm_lead import TEMPLATE


def fake_examples(task: str, n: int, seed: int) -> list[Example]:
    if task == "sentiment":
        return [Example(f"w{3 + i % 12}", "w40" if i % 2 else "w41") for i in range(n)]
    return [Example(f"w{3 + i % 12} w{5 + i % 7}", f"w{40 + i % 3} w{44 + i % 2}") for i in range(n)]


def test_both_paths_agree_and_the_results_are_published(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(lm_fit_time, "load_causal_lm", tiny_causal_lm)
    monkeypatch.setattr(lm_fit_time, "task_examples", fake_examples)
    monkeypatch.setattr(
        lm_fit_time, "TASKS", {"sentiment": (TEMPLATE, "auto"), "translation": (TEMPLATE, None)}
    )
    switches = FaastModel.output_token_log_probs, TaskModel._share_head_inputs
    lm_fit_time.main(["--examples", "16", "--repeats", "1", "--threads", "1", "--out", str(tmp_path / "t")])
    assert (FaastModel.output_token_log_probs, TaskModel._share_head_inputs) == switches
    res = json.loads((tmp_path / "t.json").read_text())
    assert [r["task"] for r in res["rows"]] == ["sentiment", "translation"]
    for row in res["rows"]:
        assert row["same_choice"] and row["max_rel_diff"] < 1e-9  # float64: to rounding
        assert len(row["seconds"]["current"]) == len(row["seconds"]["reference"]) == 1
    assert "| sentiment | 16 |" in (tmp_path / "t.md").read_text()
    assert "movie-review" in res["data"] and "Bible" in res["data"]
    lm_fit_time.main(
        ["--tasks", "sentiment", "--examples", "8", "--repeats", "1", "--out", str(tmp_path / "s")]
    )
    assert "Bible" not in json.loads((tmp_path / "s.json").read_text())["data"]  # only the tasks run
    assert (tmp_path / "t.png").stat().st_size > 0
    assert machine_paths((tmp_path / "t.md").read_text()) == []  # no absolute path of this machine
