"""A key set with condition number 1e8: the float64-statistics solve is finite and matches the
float64 SVD oracle (svd_reference) for every cut a float64 Gram matrix resolves."""

from __future__ import annotations

import warnings

import pytest
import torch

from faast import GramStats, svd_reference
from faast.solver import power_law_tau

COND = 1e8
EPS = torch.finfo(torch.float64).eps


def gram_tolerance(tau: float) -> float:
    """Relative error a float64 Gram-matrix solve is expected to stay under at relative cut τ:
    the Gram matrix squares the condition number, so the error grows like eps / τ²."""
    return max(1e-10, 10 * EPS / tau**2)


def ill_conditioned(n: int = 400, d: int = 24, m: int = 5, *, seed: int = 0, dtype=torch.float64):
    """Keys (n, d) with singular values spread log-evenly from 1 to 1/COND, values (n, m)."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    s = torch.logspace(0, -8, d, dtype=torch.float64)
    keys = (u * s) @ v.T
    values = torch.randn(n, m, generator=gen, dtype=torch.float64)
    return keys.to(dtype), values.to(dtype)


def test_the_keys_have_condition_number_1e8():
    keys, _ = ill_conditioned()
    s = torch.linalg.svdvals(keys)
    assert s.max() / s.min() == pytest.approx(COND, rel=1e-3)


@pytest.mark.parametrize("tau", [None, 1e-2, 1e-4, 1e-6])
def test_solve_matches_the_svd_oracle(tau):
    keys, values = ill_conditioned()
    stats = GramStats(keys.shape[1], values.shape[1])
    for i in range(0, len(keys), 100):  # streamed in batches, as in real use
        stats.add(keys[i : i + 100], values[i : i + 100])
    cut = power_law_tau(len(keys), 1.0, 1.0) if tau is None else tau
    w = stats.solve(tau)
    assert bool(torch.isfinite(w).all())
    oracle = svd_reference(keys, values, cut)
    # Relative error of the map on the kept subspace, where the oracle is well defined.
    err = (w - oracle).norm() / oracle.norm()
    assert err < gram_tolerance(cut), f"tau={cut}: relative error {err:.2e} against the SVD oracle"
    # And the predictions on the training keys agree.
    pred, want = keys @ w.T, keys @ oracle.T
    assert (pred - want).norm() / want.norm() < gram_tolerance(cut)


def test_a_cut_below_float64_resolution_stays_finite():
    """τ = 1e-9 asks for directions the Gram matrix (condition 1e16) cannot resolve: the cut is
    raised to what float64 resolves, with a warning; the answer is finite and matches the oracle
    that keeps the same number of directions, within the tolerance of that effective cut."""
    keys, values = ill_conditioned()
    stats = GramStats(keys.shape[1], values.shape[1]).add(keys, values)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w, info = stats.solve_with_info(1e-9)
    assert any("float64" in str(c.message) for c in caught)
    assert bool(torch.isfinite(w).all())
    s = torch.linalg.svdvals(keys)
    assert info.rank < len(s)  # the unresolvable directions were dropped
    effective = float(s[info.rank - 1] / s[0]) * (1 - 1e-9)
    oracle = svd_reference(keys, values, effective)
    assert (w - oracle).norm() / oracle.norm() < gram_tolerance(effective)


def test_float32_keys_of_condition_1e8_give_a_finite_answer():
    keys, values = ill_conditioned(dtype=torch.float32)
    w = GramStats(keys.shape[1], values.shape[1]).add(keys, values).solve(1e-4)
    assert bool(torch.isfinite(w).all())
    oracle = svd_reference(keys, values, 1e-4)
    assert (w - oracle).norm() / oracle.norm() < gram_tolerance(1e-4)
