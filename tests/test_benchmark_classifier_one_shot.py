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
from classifier_one_shot import DIVISORS, accuracies, divisor, losses


def test_the_divisor_switch_is_undone_after_the_block_even_on_an_error():
    before = spectral.ONE_PER_CLASS_DIVISOR
    with pytest.raises(RuntimeError), divisor(7.0):
        assert spectral.ONE_PER_CLASS_DIVISOR == 7.0
        raise RuntimeError
    assert spectral.ONE_PER_CLASS_DIVISOR == before


def test_losses_are_points_below_each_rows_best_divisor():
    columns = [f"s/{d:g}" for d in DIVISORS]
    rows = {
        "a": {c: 50.0 for c in columns} | {"s/1": 60.0},
        "b": {c: 80.0 for c in columns} | {"s/1": 70.0, "s/100": 90.0},
    }
    got = losses(rows)
    assert got["s/1"] == {"worst": 20.0, "mean": 10.0}
    assert got["s/100"] == {"worst": 10.0, "mean": 5.0}
    assert got["s/10"] == {"worst": 10.0, "mean": 10.0}


def test_each_column_is_the_classifier_at_that_penalty():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 20)), np.arange(6)
    q, qy = x + 0.5 * rng.normal(size=(6, 20)), np.arange(6)
    got = accuracies(x, y, q, qy)
    assert set(got) == {f"s/{d:g}" for d in DIVISORS} | {"RidgeClassifierCV"}
    for d in (100.0, 0.01):
        with divisor(d):
            clf = FaastClassifier().fit(x, y)
        assert got[f"s/{d:g}"] == pytest.approx(100.0 * float(np.mean(clf.predict(q) == qy)))
