"""benchmarks/classifier_classes.py: its data, one measurement in this process and one in a fresh
one, and the table (the full run takes minutes: not run here)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import classifier_classes as bench


def test_data_is_seeded_unit_rows_with_every_class_shots_times():
    X, y, Q, qy = bench.make_data(7, 3, 16, seed=1)
    assert X.shape == (21, 16) and Q.shape == (bench.QUERIES, 16) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    assert np.bincount(y).tolist() == [3] * 7 and set(qy) <= set(range(7))
    again = bench.make_data(7, 3, 16, seed=1)
    np.testing.assert_array_equal(again[0], X)
    assert not np.array_equal(bench.make_data(7, 3, 16, seed=2)[0], X)


@pytest.mark.parametrize("method", ["FAAST", "RidgeClassifierCV", "RidgeClassifier"])
def test_one_measurement_times_the_fit_and_first_prediction_and_scores_the_queries(method):
    out = bench.measure_one(method, 5, 4, 24, seed=0)
    assert out["fit_s"] > 0 and out["predict_s"] > 0 and out["peak_mib"] > 0
    assert 0.2 < out["accuracy"] <= 1.0  # five well-separated classes: far above chance


def test_a_case_runs_in_a_fresh_process_and_unknown_methods_are_refused():
    out = bench.run_case("data only", 3, 2, 8, seed=0)
    assert set(out) == {"peak_mib"}
    with pytest.raises(ValueError, match="unknown method"):
        bench.estimator("SVC")


def test_markdown_has_a_row_per_case_with_every_method():
    row = {m: {"fit_s": 0.5, "predict_s": 0.01, "peak_mib": 400.0, "accuracy": 0.5} for m in bench.METHODS}
    row["data only"] = {"peak_mib": 300.0}
    result = {"table": {"100 classes × 2 shots": row}, "settings": {"dim": 64}}
    md = bench.markdown(result).splitlines()
    assert len(md) == 3
    assert md[2].startswith("| 200 × 64, 100 | 500 ms | 500 ms | 500 ms | 10 ms | 300 | 400 |")
    assert md[2].endswith("| 50.0 | 50.0 | 50.0 |")
