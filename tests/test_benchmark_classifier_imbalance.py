"""benchmarks/classifier_imbalance.py: the imbalanced draw, and a run on two bundled tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import classifier_imbalance as bench


def test_imbalanced_keeps_a_geometric_share_of_each_class_at_least_two():
    y = np.repeat(np.arange(3), 100)
    rows = np.arange(300)
    kept = bench.imbalanced(y, rows, 0.1, np.random.default_rng(0))
    assert np.bincount(y[kept]).tolist() == [100, round(100 * 0.1**0.5), 10]
    assert len(set(kept)) == len(kept) and set(kept) <= set(rows)
    tiny = bench.imbalanced(np.repeat(np.arange(2), 5), np.arange(10), 0.01, np.random.default_rng(0))
    assert np.bincount(np.repeat(np.arange(2), 5)[tiny]).tolist() == [5, 2]


def test_run_on_two_tables_scores_every_method_with_and_without_balanced_weights(tmp_path):
    args = argparse.Namespace(datasets="iris,wine", ratio=0.2, per_class=10, seed=0, out=str(tmp_path / "r"))
    result = bench.run(args)
    assert set(result["scores"]) == {"iris", "wine"}
    for row in result["scores"].values():
        assert set(row) == {f"{m}{s}" for m in bench.METHODS for s in ("", " balanced")}
        assert all(0.0 <= v[s] <= 100.0 for v in row.values() for s in bench.SCORES)
    # the weights move the fit: balanced accuracy differs with them on an imbalanced iris
    iris = result["scores"]["iris"]
    assert iris["FAAST balanced"]["balanced accuracy"] != iris["FAAST"]["balanced accuracy"]
    table = bench.markdown(result)
    assert table.count("| iris |") == 2 and table.count("| mean |") == 2
