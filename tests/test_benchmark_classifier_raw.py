"""benchmarks/classifier_raw.py: the raw data sets, and a run on two of them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import classifier_raw as bench


@pytest.mark.parametrize("name", bench.SYNTHETIC)
def test_synthetic_data_sets_are_seeded_and_raw(name):
    X, y = bench.synthetic(name, 0)
    again, _ = bench.synthetic(name, 0)
    np.testing.assert_array_equal(X, again)
    assert len(X) == len(y) and len(np.unique(y)) >= 3
    if name == "shifted":
        assert X.mean() > 90  # far from the origin, as handed over
    if name == "binary":
        assert set(np.unique(X)) == {0.0, 1.0}


def test_unknown_data_sets_are_refused():
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        bench.raw_datasets(["nope"], 10, 0)


def test_run_scores_every_method_and_the_intercept_matters_on_binary_features(tmp_path):
    args = argparse.Namespace(datasets="iris,binary", per_class=10, seed=0, out=str(tmp_path / "r"))
    result = bench.run(args)
    assert set(result["accuracy"]) == {"iris", "binary"}
    for by_regime in result["accuracy"].values():
        for row in by_regime.values():
            assert set(row) == set(bench.METHODS)
    binary = result["accuracy"]["binary"]["all"]
    assert binary["FAAST"] > binary["FAAST no intercept"] + 5  # the finding that made it the default
