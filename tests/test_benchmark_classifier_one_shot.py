"""benchmarks/classifier_one_shot.py: the divisor switch restores the library's, the loss table
is against each row's best divisor, and each divisor's column is the classifier at that ρ."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import faast.solver.spectral as spectral
from faast.classifier import FaastClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from classifier_one_shot import RULES, accuracies, losses, rule


def test_the_rule_switch_is_undone_after_the_block_even_on_an_error():
    before = spectral.one_per_class_penalty
    with pytest.raises(RuntimeError), rule("s/3"):
        assert spectral.one_per_class_penalty is RULES["s/3"]
        raise RuntimeError
    assert spectral.one_per_class_penalty is before


def test_losses_are_points_below_each_rows_best_rule():
    rows = {
        "a": {c: 50.0 for c in RULES} | {"s": 60.0},
        "b": {c: 80.0 for c in RULES} | {"s": 70.0, "s/100": 90.0},
    }
    got = losses(rows)
    assert got["s"] == {"worst": 20.0, "mean": 10.0}
    assert got["s/100"] == {"worst": 10.0, "mean": 5.0}
    assert got["s/3"] == {"worst": 10.0, "mean": 10.0}


def test_each_column_is_the_classifier_at_that_penalty():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 20)), np.arange(6)
    q, qy = x + 0.5 * rng.normal(size=(6, 20)), np.arange(6)
    got = accuracies(x, y, q, qy)
    assert set(got) == set(RULES) | {"RidgeClassifierCV"}
    assert got["s₋₁"] == pytest.approx(100.0 * float(np.mean(FaastClassifier().fit(x, y).predict(q) == qy)))
    for name in ("s/100", "s₋₁/10"):
        with rule(name):
            clf = FaastClassifier().fit(x, y)
        assert got[name] == pytest.approx(100.0 * float(np.mean(clf.predict(q) == qy)))
