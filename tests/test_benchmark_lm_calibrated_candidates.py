"""benchmarks/lm_calibrated_candidates.py on a tiny model: each candidate set's choice is the one a
fit with only its candidates makes, scored on the development examples as the task reads it, and
the summary adds the draws up."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_calibrated_candidates as study
import lm_guard
from faast.lm import FaastConfig, get_faast_model
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_choice import CALIBRATED_SETS, default_candidates
from tests.lm_wordlevel import tiny_causal_lm
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled, on_tiny_model

LABELS = ["w40", "w41"]


@pytest.fixture
def tiny(monkeypatch):
    on_tiny_model(monkeypatch, (study, lm_guard), LABELS)
    return tiny_causal_lm


def test_each_sets_choice_is_the_fit_with_only_its_candidates(tiny):
    support, dev = _labelled(40), _labelled(12, offset=5)
    args = argparse.Namespace(sizes=[12], draws=2, seed=0, batch_size=8, device=None)
    rows = study.run_model("tiny", args, support, dev)
    assert [(r["k"], r["draw"]) for r in rows] == [(12, 0), (12, 1)]
    model, tok = tiny("tiny")
    task = TaskModel(
        get_faast_model(model, FaastConfig(num_memories=0)), tok, TaskSpec(TEMPLATE, "answer", LABELS)
    )
    for row in rows:
        learned = lm_guard.draw_support(support, 0, 12, row["draw"])
        for name, (set_name, anchor) in study.VARIANTS.items():
            task.reset()
            report = task.fit(
                learned,
                labels=LABELS,
                candidates=default_candidates("prob", set_name),
                anchor=anchor,
                progress=False,
            )
            assert row[f"{name}_choice"] == report.chosen.name
            assert row[f"{name}_p"] == pytest.approx(report.sign_flip_p, abs=0)
            assert task.calibrated == row[f"{name}_choice"].endswith("+calibrated")
            assert (row[f"{name}_accuracy"], row[f"{name}_loglik"]) == pytest.approx(
                lm_guard.dev_scores(task, dev, 8)
            )
    lines = study.summary(rows)
    assert [line["model"] for line in lines] == ["tiny", "all draws"] and lines[-1]["draws"] == 2
    mean_all = 100 * sum(r["all_accuracy"] for r in rows) / 2
    assert lines[-1]["all"] == pytest.approx(mean_all)
    changes = [100 * (r["all_accuracy"] - r["none_accuracy"]) for r in rows]
    assert lines[-1]["all − none"] == pytest.approx(sum(changes) / 2)
    assert lines[-1]["all losses"] == sum(c < -study.LOSS_POINTS for c in changes)
    assert study.shown_variants(lines) == list(study.VARIANTS)
    # a run made before the anchor variants were added: its table shows the three sets only
    older = [{k: v for k, v in r.items() if not k.startswith("all+")} for r in rows]
    assert study.shown_variants(study.summary(older)) == list(CALIBRATED_SETS)
