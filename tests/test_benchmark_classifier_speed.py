"""benchmarks/classifier_speed.py: the stages of one fit, the dual route's floors and the table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import classifier_speed as bench


def _problem(n: int, d: int, classes: int = 3) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(n * 1000 + d)
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    return x, np.arange(n) % classes


def test_stages_time_the_dual_route_floor_only_when_rows_are_fewer_than_features():
    few = bench.stages(*_problem(12, 40))
    many = bench.stages(*_problem(60, 8))
    floor = {"float64 K Kᵀ", "float64 Cholesky", "float64 tridiagonal"}
    assert floor <= set(few) and not floor & set(many)
    for name in ("statistics", "eigendecomposition", "cut selection", "weights", "FAAST fit", "Ridge fit"):
        assert few[name] > 0 and many[name] > 0
    assert "RidgeCV fit" in few and "RidgeCV fit" not in many  # its leave-one-out only while n < d


def test_markdown_gives_every_column_and_the_ratios_with_dashes_for_missing_cells():
    table = {
        "1-shot": {"statistics": 1e-4, "float64 K Kᵀ": 2e-5, "FAAST fit": 2e-3, "FAAST ridge fit": 1e-3,
                   "Ridge fit": 4e-3, "RidgeCV fit": 8e-3},
        "full": {"statistics": 1.5, "FAAST fit": 1.6, "FAAST ridge fit": 1.4, "Ridge fit": 3.2},
    }  # fmt: skip
    lines = bench.markdown({"table": table}).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["regime", "statistics", "float64 K Kᵀ"]
    assert header[-3:] == ["FAAST / Ridge", "FAAST ridge / Ridge", "FAAST / RidgeCV"]
    one_shot = [c.strip() for c in lines[2].strip("|").split("|")]
    assert one_shot[2] == "0.0 ms" and one_shot[-3:] == ["0.50×", "0.25×", "0.25×"]
    full = [c.strip() for c in lines[3].strip("|").split("|")]
    assert full[2] == "—" and full[-3:] == ["0.50×", "0.44×", "—"]


def test_predict_times_time_both_predicts_and_the_table_gives_their_ratio():
    x, y = _problem(60, 8)
    queries = _problem(30, 8)[0].numpy()
    times = bench.predict_times(x, y, queries)
    assert set(times) == {"FAAST predict", "Ridge predict"} and min(times.values()) > 0
    table = {"full": {"FAAST fit": 1.0, "Ridge fit": 2.0, "FAAST predict": 0.03, "Ridge predict": 0.02}}
    lines = bench.markdown({"table": table}).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[-1] == "FAAST predict / Ridge predict"
    assert [c.strip() for c in lines[2].strip("|").split("|")][-1] == "1.50×"
