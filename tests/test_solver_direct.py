"""The ridge route without eigendecomposition (:mod:`faast.solver.direct`): a fixed ridge or a
pseudo-pair prior solved by one Cholesky factorisation equals the spectral solve, on every route;
and it declines where it would be less accurate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.classifier import FaastClassifier
from faast.solver import Cut, GramStats, ridge_reference
from faast.solver import direct as direct_module


def _problem(n: int, d: int, m: int, seed: int, offset: float):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=g, dtype=torch.float64) + offset
    keys[:, -1] = 1.0  # a constant last key, for the centred solves
    values = torch.randn(n, m, generator=g, dtype=torch.float64)
    weights = torch.rand(n, generator=g, dtype=torch.float64) + 0.2
    return keys, values, weights


def _spectral(stats: GramStats, cut: Cut):
    """The same solve through the eigendecomposition (a cached factor makes the direct route step
    aside)."""
    stats.factor()
    return stats.solve_with_info(cut, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(2, 30),
    m=st.integers(1, 4),
    relative=st.floats(1e-8, 10.0),
    prior=st.booleans(),
    weighted=st.booleans(),
    center=st.booleans(),
    rows=st.sampled_from(["dual", "none", "kept"]),
    offset=st.sampled_from([0.0, 3.0]),
    seed=st.integers(0, 10_000),
)
def test_direct_ridge_equals_the_spectral_solve(
    n, d, m, relative, prior, weighted, center, rows, offset, seed
):
    """Dual (rows kept, n < d), primal without rows, and primal with rows kept (n ≥ d): the
    Cholesky solve gives the spectral filter 1/(λ + ρ)'s weights and the same ρ, for penalties
    from 10⁻⁸ to 10 times trace(G) / d, weighted or not, centred or not."""
    keys, values, weights = _problem(n, d, m, seed, offset)
    w = weights if weighted else None
    limit = {"dual": d, "none": 0, "kept": 4 * max(n, d)}[rows]

    def stats() -> GramStats:
        return GramStats(d, m, dual_max_pairs=limit, center_on_last_key=center).add(keys, values, w)

    scale = float((keys**2).sum()) / d
    cut = Cut.pseudo_pairs(relative * n) if prior else Cut.ridge_penalty(relative * scale)
    fast = stats()
    got, info = fast.solve_with_info(cut, dtype=torch.float64)
    assert fast._factor_cache is None  # the eigendecomposition was not made
    want, want_info = _spectral(stats(), cut)
    assert info.ridge == pytest.approx(want_info.ridge, rel=1e-12)
    assert info.mode == "ridge" and info.tau is None and info.lambda_max is None
    dual = rows != "none" and n < d  # the rows are kept and fewer than the keys
    assert info.rank == (n if dual else d)
    size = float(want.abs().max()) + float(got.abs().max())
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * size + 1e-12)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), d=st.integers(1, 25), m=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_direct_ridge_equals_the_plain_reference(n, d, m, seed):
    """Against the written-out (KᵀK + ρI)⁻¹ KᵀV of :func:`faast.solver.ridge_reference`."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=g, dtype=torch.float64)
    values = torch.randn(n, m, generator=g, dtype=torch.float64)
    got = GramStats(d, m).add(keys, values).solve(ridge=0.5, dtype=torch.float64)
    want = ridge_reference(keys, values, 0.5)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10 * (float(want.abs().max()) + 1))


@pytest.mark.parametrize("lower", [True, False])
def test_the_tensor_factorisation_equals_the_lapack_one(lower):
    """The branch used off the CPU (torch's Cholesky on tensors), run here on CPU tensors, solves
    as SciPy's does; a matrix that is not positive definite declines (None) on both."""
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(7, 12, generator=g, dtype=torch.float64)
    outer = rows @ rows.T
    rhs = torch.randn(7, 2, generator=g, dtype=torch.float64)
    want = torch.linalg.solve(outer + 0.1 * torch.eye(7, dtype=torch.float64), rhs)
    for matrix in (outer, outer.numpy()):
        got = direct_module._cholesky_solve(matrix, rhs, 0.1, lower=lower)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    negative = -outer
    assert direct_module._cholesky_solve(negative, rhs, 0.1, lower=lower) is None
    assert direct_module._cholesky_solve(negative.numpy(), rhs, 0.1, lower=lower) is None


def test_a_penalty_too_small_for_cholesky_takes_the_spectral_route():
    """Below ``MIN_RELATIVE_RIDGE`` · trace(G) the eigendecomposition solves (its noise floor
    leaves rounding directions out), and says so: ``lambda_max`` is known."""
    keys, values, _ = _problem(10, 30, 2, 1, 0.0)
    stats = GramStats(30, 2).add(keys, values)
    trace = float((keys**2).sum())
    _, info = stats.solve_with_info(Cut.ridge_penalty(trace * direct_module.MIN_RELATIVE_RIDGE / 10))
    assert info.lambda_max is not None and stats._factor_cache is not None
    assert direct_module.ridge_from_rows(keys, values, lambda t: t * 1e-12) is None
    _, info = GramStats(30, 2).add(keys, values).solve_with_info(Cut.ridge_penalty(trace * 1e-6))
    assert info.lambda_max is None


def test_other_cuts_and_zero_keys_are_not_taken_by_the_direct_route():
    keys, values, _ = _problem(10, 30, 2, 2, 0.0)
    for cut in (Cut.auto(), Cut.gcv(), Cut.fixed(0.1), Cut.power(), Cut.ridge_penalty("gcv")):
        assert cut.fixed_penalty(10.0, 30) is None
        stats = GramStats(30, 2).add(keys, values)
        stats.solve(cut)
        assert stats._factor_cache is not None
    zero = GramStats(30, 2).add(torch.zeros(4, 30), torch.ones(4, 2))
    with pytest.raises(ValueError, match="every key added so far is zero"):
        zero.solve(ridge=1.0)


def test_a_cached_factor_serves_a_fixed_ridge():
    keys, values, _ = _problem(10, 30, 2, 4, 0.0)
    stats = GramStats(30, 2).add(keys, values)
    factor = stats.factor()
    _, info = stats.solve_with_info(Cut.ridge_penalty(0.5))
    assert info.lambda_max == factor.lambda_max


def test_a_fixed_ridge_classifier_fits_without_eigendecomposition_and_finds_its_temperature_later(
    monkeypatch,
):
    """``FaastClassifier(ridge=ρ)``: ``fit`` solves by Cholesky (no factor made); the first
    ``predict_proba`` makes the factor for ``logit_scale="auto"``. Everything equals the
    classifier fitted through the eigendecomposition (the direct route turned off)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 40)).astype(np.float32)
    y = np.repeat(np.arange(3), 20)
    X[np.arange(60), y] += 2.0
    for center in (False, True):
        fast = FaastClassifier(ridge=0.5, center_features=center).fit(X, y)
        assert fast.memory_.stats._factor_cache is None
        proba = fast.predict_proba(X)
        assert fast.memory_.stats._factor_cache is not None
        with monkeypatch.context() as patch:
            patch.setattr(direct_module, "MIN_RELATIVE_RIDGE", np.inf)
            slow = FaastClassifier(ridge=0.5, center_features=center).fit(X, y)
            assert slow.memory_.stats._factor_cache is not None
        np.testing.assert_allclose(fast.coef_, slow.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fast.intercept_, slow.intercept_, rtol=1e-9, atol=1e-12)
        assert fast.logit_scale_ == pytest.approx(slow.logit_scale_, rel=1e-9)
        np.testing.assert_allclose(proba, slow.predict_proba(X), rtol=1e-7, atol=1e-12)
