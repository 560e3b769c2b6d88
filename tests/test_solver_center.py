"""GramStats(center_on_last_key=True) / SpectralFactor(shift): the factor of the keys centred on
a constant last key, against the plain factor of the centred keys written out."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.solver import Cut, GramStats
from faast.solver import loo as loo_module
from faast.solver.spectral import SpectralFactor, center_on_last


def _problem(n: int, d: int, m: int, seed: int, scale: float):
    """Rows z = [x, c] (n, d + 1) with x far from the origin, values (n, m), weights (n,)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * scale + 4.0
    keys = torch.cat([x, torch.full((n, 1), 1.5, dtype=torch.float64)], dim=1)
    values = torch.randn(n, m, generator=g, dtype=torch.float64)
    weights = torch.rand(n, generator=g, dtype=torch.float64) + 0.25
    return keys, values, weights


def _centred(keys: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys with the weighted mean of the others removed (last key kept), and the shift."""
    mean = (weights[:, None] * keys[:, :-1]).sum(0) / weights.sum()
    out = keys.clone()
    out[:, :-1] -= mean
    return out, mean / keys[0, -1]


def _to_own(weight: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Weights (m, d + 1) over the centred keys → over the keys themselves (same scores)."""
    out = weight.clone()
    out[:, -1] -= weight[:, :-1] @ shift
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 30),
    m=st.integers(1, 4),
    ridge=st.floats(1e-3, 10.0),
    scale=st.sampled_from([0.1, 1.0, 5.0]),
    dual=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_centred_solve_is_ridge_on_the_centred_keys(n, d, m, ridge, scale, dual, seed):
    """Every route (rows kept or not, n below or above d) solves (K′ᵀK′ + ρI) W′ = K′ᵀV on the
    weighted centred keys K′, mapped back to the keys' own coordinates; every output of the
    factor (weights, weights for another cross matrix, in torch and NumPy, the basis, the
    filtered inverse) agrees with the written-out solve."""
    keys, values, weights = _problem(n, d, m, seed, scale)
    stats = GramStats(d + 1, m, dual_max_pairs=4 * (d + 1) if dual else 0, center_on_last_key=True)
    stats.add(keys, values, weights)
    centred, shift = _centred(keys, weights)
    gram = centred.T @ (weights[:, None] * centred)
    solve = torch.linalg.solve(
        gram + ridge * torch.eye(d + 1, dtype=torch.float64), torch.eye(d + 1, dtype=torch.float64)
    )
    expected = _to_own((solve @ (centred.T @ (weights[:, None] * values))).T, shift)
    got = stats.solve(Cut.ridge_penalty(ridge), dtype=torch.float64)
    tol = dict(rtol=1e-7, atol=1e-9 * float(expected.abs().max() + 1))
    torch.testing.assert_close(got, expected, **tol)
    factor = stats.factor()
    phi = factor.ridge_filter(ridge)
    # another cross matrix B′ = Kᵀ diag(w) V′ (retargeted values: in the rows' span, which is all
    # the dual route keeps) over the keys' own coordinates: the centred problem's solve of Mᵀ B′
    retargeted = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 1))
    other = keys.T @ (weights[:, None] * retargeted)
    moved = other.clone()
    moved[:-1] -= shift[:, None] * other[-1:]
    expected_other = _to_own((solve @ moved).T, shift)
    torch.testing.assert_close(factor.weights_for(phi, other), expected_other, **tol)
    np_result = factor.weights_for_numpy(phi)(other.numpy())
    torch.testing.assert_close(torch.from_numpy(np_result), expected_other, **tol)
    # basis: the keys' own rows times the basis are the centred rows times orthonormal vectors
    projected = keys @ factor.basis
    torch.testing.assert_close(
        projected.T @ (weights[:, None] * projected),
        torch.diag(factor.eigenvalues),
        rtol=1e-7,
        atol=1e-7 * float(factor.lambda_max),
    )


@pytest.mark.parametrize("n, d", [(12, 30), (40, 6)])
def test_centred_leave_one_out_is_that_of_refits_without_each_row(n, d):
    """The ridge path of the centred factor (rows kept) equals n refits of ridge on the centred
    rows (the mean the fit used) with one row left out."""
    keys, values, weights = _problem(n, d, 3, 7, 2.0)
    stats = GramStats(d + 1, 3, dual_max_pairs=2 * n, center_on_last_key=True)
    stats.add(keys, values, weights)
    factor = stats.factor()
    assert factor.has_rows
    centred, _ = _centred(keys, weights)
    root = weights.sqrt()[:, None]
    ridge = 0.3 * factor.lambda_max
    r = factor.left.shape[1]
    path = loo_module.ridge_path(
        factor.left, factor.eigenvalues[:r], factor.row_values, torch.tensor([ridge], dtype=torch.float64)
    )
    residuals = loo_module.brute_force_loo(root * centred, root * values, ridge=ridge)
    assert float(path.press[0]) == pytest.approx(float((residuals**2).sum()), rel=1e-8)


def test_the_shift_comes_from_the_last_column_and_none_without_weight():
    gram = torch.tensor([[5.0, 2.0, 4.0], [2.0, 3.0, 1.0], [4.0, 1.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(center_on_last(gram[:, -1]), torch.tensor([2.0, 0.5], dtype=torch.float64))
    assert center_on_last(torch.zeros(3, dtype=torch.float64)) is None


def test_turning_centring_on_or_off_drops_the_cached_solve():
    keys, values, weights = _problem(30, 5, 2, 3, 1.0)
    stats = GramStats(6, 2)
    stats.add(keys, values, weights)
    plain = stats.solve(Cut.ridge_penalty(1.0), dtype=torch.float64)
    stats.center_on_last_key = True
    centred = stats.solve(Cut.ridge_penalty(1.0), dtype=torch.float64)
    assert not torch.allclose(plain, centred)
    assert stats.copy().center_on_last_key
    stats.center_on_last_key = False
    torch.testing.assert_close(stats.solve(Cut.ridge_penalty(1.0), dtype=torch.float64), plain)


def test_a_factor_without_shift_is_unchanged():
    keys, values, _ = _problem(9, 20, 2, 5, 1.0)
    a = SpectralFactor.from_pairs(keys, values, 9.0, float((values**2).sum()))
    b = SpectralFactor.from_pairs(keys, values, 9.0, float((values**2).sum()), None)
    torch.testing.assert_close(a.weights(a.ridge_filter(0.1)), b.weights(b.ridge_filter(0.1)))
    assert a.shift is None
