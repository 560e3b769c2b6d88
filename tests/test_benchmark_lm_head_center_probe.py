"""benchmarks/lm_head_center_probe.py: the three heads of each draw against the library's heads
fitted by hand, and the probe's rows on a tiny model."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dev_tasks
import lm_head_center_probe as probe
from faast import FaastClassifier
from faast.lm.label_head import LabelHead
from tests.lm_wordlevel import tiny_causal_lm
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled


def test_each_head_is_the_library_head_fitted_by_hand():
    """States that share one large component, 6:2 support labels (label 1 has no example): the
    three heads of a draw are the library's, and centring changes the result."""
    rng = np.random.default_rng(1)
    common = 20.0 * rng.normal(size=6)
    y = np.array([0] * 6 + [2] * 2)
    x = torch.as_tensor(common + rng.normal(size=(8, 6)) + 1.5 * np.outer(y == 2, np.eye(6)[0]))
    dev_y = np.array([0, 2] * 15)
    dev_x = torch.as_tensor(common + rng.normal(size=(30, 6)) + 1.5 * np.outer(dev_y == 2, np.eye(6)[0]))
    got = probe.draw_accuracies(x, y, dev_x, dev_y)
    outputs = [str(v) for v in y]
    for name, center in (("origin", False), ("centred", True)):
        head = LabelHead.fit(x, outputs, ["0", "2"], center=center)
        predicted = np.array([0, 2])[head.scores(dev_x).argmax(1).numpy()]
        assert got[name] == round(100 * float((predicted == dev_y).mean()), 1)
    plain = FaastClassifier(tau="auto").fit(x.numpy(), y).predict(dev_x.numpy())
    assert got["intercept"] == round(100 * float((plain == dev_y).mean()), 1)
    assert set(got) == set(probe.HEADS) and got["centred"] != got["origin"]


def test_rows_count_the_draws_labels_and_score_every_head(monkeypatch, capsys):
    monkeypatch.setattr(probe, "load_causal_lm", tiny_causal_lm)
    labels = ["w40", "w41"]
    data = SimpleNamespace(
        template=TEMPLATE, labels=labels, support=_labelled(40), dev=_labelled(12, offset=5)
    )
    monkeypatch.setattr(dev_tasks, "dev_task", lambda *a: data)
    rows = probe.main(["--models", "tiny", "--sizes", "8,12", "--draws", "2", "--dev", "12"])
    assert [(r["k"], r["draw"]) for r in rows] == [(8, 0), (8, 1), (12, 0), (12, 1)]
    for r in rows:
        assert sum(r["counts"]) == r["k"] and len(r["counts"]) == 2
        assert all(0 <= r[h] <= 100 for h in probe.HEADS)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "| model | k | draw | examples per label | origin | intercept | centred |"
    assert len([line for line in printed if line.startswith("| tiny |")]) == 4
