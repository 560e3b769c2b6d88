"""benchmarks/classifier_calibration.py: its metrics, and a run on two bundled tables."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import classifier_calibration as bench


def test_log_loss_and_ece_by_hand():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
    y = np.array([0, 1, 1, 0])
    assert bench.log_loss(proba, y) == pytest.approx(
        -(math.log(0.9) + math.log(0.4) + math.log(0.8) + math.log(0.7)) / 4
    )
    # top confidences 0.9 (right), 0.6 (wrong), 0.8 (right), 0.7 (right); 10 bins of width 0.1:
    # bins 0.6, 0.7, 0.8, 0.9 hold one example each: |1-0.9| + |0-0.6| + |1-0.8| + |1-0.7|, / 4
    assert bench.ece(proba, y, bins=10) == pytest.approx(100 * (0.1 + 0.6 + 0.2 + 0.3) / 4)
    assert bench.ece(np.array([[1.0, 0.0]]), np.array([0])) == 0.0  # confidence 1 in the last bin


def test_run_on_two_tables_scores_every_column_in_every_regime(tmp_path):
    args = argparse.Namespace(datasets="iris,wine", per_class=10, episodes=1, seed=0, out=str(tmp_path / "r"))
    result = bench.run(args)
    assert set(result["results"]) == {"iris", "wine"}
    for regimes in result["results"].values():
        assert set(regimes) == {"all", "16/class", "4/class", "2/class"}
        for row in regimes.values():
            assert set(row["log_loss"]) == set(bench.COLUMNS) == set(row["ece"])
            # the reference is the best T of a grid that holds 10 (up to its spacing, 0.0625 decades)
            assert row["log_loss"]["best T on test (reference)"] <= row["log_loss"]["FAAST T=10"] + 1e-3
            assert all(0 <= v <= 100 for v in row["ece"].values())
    # iris: scores of a squared loss on 4 features are small, T = 10 is too sure of them
    assert (
        result["results"]["iris"]["all"]["log_loss"]["FAAST auto"]
        < result["results"]["iris"]["all"]["log_loss"]["FAAST T=10"]
    )
    table = bench.markdown(result)
    assert table.count("| iris | all |") == 2 and "rows." in table
    bench.plot(result, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0


def test_unknown_data_sets_are_named():
    args = argparse.Namespace(datasets="iris,mnist", per_class=10, episodes=1, seed=0, out="x")
    with pytest.raises(SystemExit, match="mnist"):
        bench.run(args)
