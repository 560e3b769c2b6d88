"""benchmarks/lm_anchor_probe.py on a tiny model: each line is what the fit's report says of the two
zero-shot read-outs, recomputed here from the report's held-out predictions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_anchor_probe as probe
from faast.lm import FaastConfig, get_faast_model
from faast.lm.task import TaskModel, TaskSpec
from tests.lm_wordlevel import tiny_causal_lm
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled

LABELS = ["w40", "w41"]


def _tiny_task() -> TaskModel:
    model, tok = tiny_causal_lm("tiny")
    return TaskModel(
        get_faast_model(model, FaastConfig(num_memories=0)), tok, TaskSpec(TEMPLATE, "answer", LABELS)
    )


def test_lines_are_the_reports_zero_shot_read_outs(monkeypatch):
    monkeypatch.setattr(probe, "LABELS", LABELS)
    model, tok = tiny_causal_lm("tiny")
    task = TaskModel(
        get_faast_model(model, FaastConfig(num_memories=0)), tok, TaskSpec(TEMPLATE, "answer", LABELS)
    )
    report = task.fit(_labelled(16), labels=LABELS, progress=False)
    lines = probe.zero_shot_lines(report, draw=2)
    assert [line["read-out"] for line in lines] == [probe.PLAIN, probe.CALIBRATED]
    targets = [LABELS.index(e.output) for e in _labelled(16)]
    assert sorted(report.validation_targets.tolist()) == sorted(targets)  # every example held out once
    for line in lines:
        predicted = report.validation_predicted[line["read-out"]].tolist()
        right = sum(p == t for p, t in zip(predicted, report.validation_targets.tolist(), strict=True))
        assert line["held-out accuracy %"] == pytest.approx(100 * right / 16)
        assert line["predicted per label"] == [predicted.count(0), predicted.count(1)]
        share = abs(predicted.count(0) - targets.count(0)) / 16  # total variation, two labels
        assert line["label-mix distance"] == pytest.approx(share)
        ll = report.validation_loglik[line["read-out"]]
        assert line["mean held-out log-likelihood"] == pytest.approx(float(ll.mean()))
        assert line["chosen"] == report.chosen.name and line["draw"] == 2
    text = probe.markdown(lines, "python benchmarks/lm_anchor_probe.py --k 16", "here")
    assert text.startswith("Command: `python benchmarks/lm_anchor_probe.py --k 16`  \n")
    assert text.count("\n| 2 | ") == 2


def test_a_fit_that_validated_nothing_is_a_clear_error(monkeypatch):
    model, tok = tiny_causal_lm("tiny")
    task = TaskModel(
        get_faast_model(model, FaastConfig(num_memories=0)), tok, TaskSpec(TEMPLATE, "answer", LABELS)
    )
    report = task.fit(_labelled(4), labels=LABELS, progress=False)  # fewer than 8: no validation
    with pytest.raises(ValueError, match="validated nothing"):
        probe.zero_shot_lines(report, draw=0)
