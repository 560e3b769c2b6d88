"""A float64 solve whose statistics left float64's range (example weights of 1e-300: their products
underflow) is named as such, not as weights too large for the result's dtype (hunt: the message
said "the fast weights reach nan, beyond what float32 holds ... give keys of a larger scale")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from faast import FaastClassifier, GramStats


def test_weights_out_of_float64_range_are_named():
    """Weights of 1e-300 fit since the dual route rescales by powers of two (bug hunt s83, F4);
    1e-320, a subnormal, is still beyond what the float64 solve holds."""
    x = np.random.default_rng(0).normal(size=(6, 20))
    y = np.arange(6) % 2
    with warnings.catch_warnings(), pytest.raises(ValueError, match="float64 solve gave non-finite"):
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own word on the underflow
        FaastClassifier().fit(x, y, sample_weight=np.full(6, 1e-320))


def test_weights_beyond_the_result_dtype_keep_their_message():
    stats = GramStats(2, 1)
    stats.add(
        torch.tensor([[1e-4, 0.0], [0.0, 1e-4]], dtype=torch.float16),
        torch.full((2, 1), 100.0, dtype=torch.float16),
    )
    with pytest.raises(ValueError, match="beyond what torch.float16 holds"):
        stats.solve(ridge=1e-30)
