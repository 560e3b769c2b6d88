"""benchmarks/lm_sentiment.py: the in-context rows, with and without ``--calibrated-icl``, on a tiny
random model with a word-level tokenizer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_sentiment
from faast.lm.calibration import contextually_calibrated
from faast.lm.icl import InContextModel
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled, _task


def test_in_context_rows_and_their_calibrated_twins(monkeypatch):
    monkeypatch.setattr(lm_sentiment, "TEMPLATE", TEMPLATE)
    monkeypatch.setattr(lm_sentiment, "LABELS", ["w40", "w41"])
    task = _task()
    pool, test = _labelled(24), _labelled(10, offset=5)
    plain: list = []
    args = argparse.Namespace(icl=[2, 0], batch_size=8, calibrated_icl=False)
    lm_sentiment._icl_rows("tiny", task, pool, test, args, plain)
    assert [(r.method, r.k) for r in plain] == [("in-context", 2), ("in-context", plain[1].k)]
    rows: list = []
    lm_sentiment._icl_rows(
        "tiny", task, pool, test, argparse.Namespace(**{**vars(args), "calibrated_icl": True}), rows
    )
    assert [r.method for r in rows] == ["zero-shot (calibrated)"] + [
        "in-context",
        "in-context (calibrated)",
    ] * 2
    assert [r.score for r in rows if r.method == "in-context"] == [r.score for r in plain]
    inputs = [e.input for e in test]
    for n_demos, row in ((0, rows[0]), (2, rows[2])):  # each equals the recipe applied by hand
        demos = [(e.input, e.output) for e in pool[:n_demos]]
        reserve = max(len(task.codec.prompt_ids(x, start=False)) for x in inputs) + 8
        icl = InContextModel(task.model.base_model, task.codec, demos, reserve=reserve)
        with task.model.disabled():
            raw = icl.label_scores(inputs, ["w40", "w41"])
            free = icl.content_free_scores(["w40", "w41"])
        assert row.score == lm_sentiment.accuracy(contextually_calibrated(raw, free), test)[0]
        assert row.k == n_demos and row.infer_ms > 0
