"""benchmarks/classifier_cuts.py: every row's cut scored on one synthetic episode."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import classifier_cuts as bench


@pytest.mark.parametrize("n_per_class", [3, 40])  # rows kept (leave-one-out rows) and n > 2d
def test_score_cuts_scores_every_row_on_the_classifiers_design(n_per_class):
    rng = np.random.default_rng(0)
    centres = 3.0 * rng.standard_normal((3, 12))
    y = np.repeat(np.arange(3), n_per_class)
    qy = np.repeat(np.arange(3), 20)
    x = torch.as_tensor(centres[y] + rng.standard_normal((len(y), 12)) + 5.0, dtype=torch.float32)
    q = torch.as_tensor(centres[qy] + rng.standard_normal((len(qy), 12)) + 5.0, dtype=torch.float32)
    scores = bench.score_cuts(x, y, q, qy, "center-l2")
    assert set(scores) == set(bench.ROWS)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["auto"] > 0.6 and scores["auto (PRESS)"] > 0.6  # chance is 1/3
