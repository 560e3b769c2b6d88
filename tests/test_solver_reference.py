"""The streaming eigh solver against the float64 SVD-pseudoinverse reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import Ridge

from faast.solver import GramStats, gcv, power_law_tau, ridge_reference, svd_reference
from tests.spectra import keys_with_gap, relative_error

EPS64 = torch.finfo(torch.float64).eps


def tolerance(smallest_kept: float, d: int) -> float:
    """Error bound of the Gram route: float64 rounding of G amplified by κ² of the kept part.

    Calibrated on 400 random problems: the worst observed error was 41·ε/σ²_min.
    """
    return max(1e-12, 100.0 * math.sqrt(d) * EPS64 / smallest_kept**2)


problem = st.fixed_dictionaries(
    {
        "n": st.integers(1, 80),
        "d": st.integers(1, 48),
        "m": st.integers(1, 6),
        "log_tau": st.floats(-4.0, -0.7),
        "rank_frac": st.floats(0.1, 1.0),
        "kept_frac": st.floats(0.0, 1.0),
        "weighted": st.booleans(),
        "seed": st.integers(0, 2**31 - 1),
    }
)


def make_problem(p: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float, float]:
    gen = torch.Generator().manual_seed(p["seed"])
    tau = 10.0 ** p["log_tau"]
    full = min(p["n"], p["d"])
    rank = max(1, round(p["rank_frac"] * full))
    kept = max(1, round(p["kept_frac"] * rank))
    keys, smallest = keys_with_gap(p["n"], p["d"], tau=tau, rank=rank, kept=kept, gen=gen)
    values = torch.randn(p["n"], p["m"], generator=gen, dtype=torch.float64)
    weights = None
    if p["weighted"]:
        # weights in [0.5, 2] keep the weighted spectrum's gap (a factor 3 each side)
        weights = 0.5 + 1.5 * torch.rand(p["n"], generator=gen, dtype=torch.float64)
        keys = keys / weights.sqrt()[:, None]
    return keys, values, weights, tau, smallest


@pytest.mark.parametrize("dual", [True, False], ids=["dual-when-n<d", "primal-only"])
@given(p=problem)
def test_solve_matches_svd_pseudoinverse(dual, p):
    keys, values, weights, tau, smallest = make_problem(p)
    stats = GramStats(p["d"], p["m"], dual_max_pairs=None if dual else 0).add(keys, values, weights)
    got = stats.solve(tau)
    ref = svd_reference(keys, values, tau, weights)
    queries = torch.randn(16, p["d"], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert got.shape == (p["m"], p["d"])
    assert relative_error(queries @ got.T, queries @ ref.T) <= tolerance(smallest, p["d"])


@given(problem, st.integers(0, 2**31 - 1))
def test_streaming_in_any_batch_order_equals_one_batch(p, order_seed):
    keys, values, weights, tau, smallest = make_problem(p)
    whole = GramStats(p["d"], p["m"]).add(keys, values, weights)
    gen = torch.Generator().manual_seed(order_seed)
    perm = torch.randperm(p["n"], generator=gen)
    cuts = sorted(torch.randint(0, p["n"] + 1, (3,), generator=gen).tolist())
    streamed = GramStats(p["d"], p["m"])
    for lo, hi in zip([0, *cuts], [*cuts, p["n"]], strict=True):
        idx = perm[lo:hi]
        streamed.add(keys[idx], values[idx], None if weights is None else weights[idx])
    assert streamed.count == whole.count
    scale = float(torch.linalg.norm(whole.gram))
    assert float(torch.linalg.norm(streamed.gram - whole.gram)) <= 1e-13 * scale
    assert relative_error(streamed.solve(tau), whole.solve(tau)) <= tolerance(smallest, p["d"])


@given(problem, st.integers(1, 4))
def test_merge_of_shards_equals_whole(p, shards):
    keys, values, weights, tau, smallest = make_problem(p)
    whole = GramStats(p["d"], p["m"]).add(keys, values, weights)
    parts = [GramStats(p["d"], p["m"]) for _ in range(shards)]
    for i in range(p["n"]):
        parts[i % shards].add(
            keys[i : i + 1], values[i : i + 1], None if weights is None else weights[i : i + 1]
        )
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    assert merged.count == whole.count
    assert math.isclose(merged.weight_sum, whole.weight_sum, rel_tol=1e-12)
    assert relative_error(merged.solve(tau), whole.solve(tau)) <= tolerance(smallest, p["d"])


@given(problem, st.integers(1, 40))
def test_subtract_equals_never_having_added(p, extra):
    keys, values, weights, tau, smallest = make_problem(p)
    gen = torch.Generator().manual_seed(p["seed"] + 1)
    other_k = torch.randn(extra, p["d"], generator=gen, dtype=torch.float64)
    other_v = torch.randn(extra, p["m"], generator=gen, dtype=torch.float64)
    kept = GramStats(p["d"], p["m"]).add(keys, values, weights)
    if weights is None:
        forgot = GramStats(p["d"], p["m"]).add(other_k[: extra // 2], other_v[: extra // 2])
        forgot.add(keys, values).add(other_k[extra // 2 :], other_v[extra // 2 :])
        forgot.subtract(other_k, other_v)
    else:
        ow = torch.rand(extra, generator=gen, dtype=torch.float64) + 0.1
        forgot = GramStats(p["d"], p["m"]).add(other_k, other_v, ow).add(keys, values, weights)
        forgot.subtract(other_k, other_v, ow)
    assert forgot.count == kept.count
    # rounding residue of the removed terms is relative to their own size
    residue = 1e-13 * (1.0 + float(torch.linalg.norm(other_k)) ** 2)
    assert float(torch.linalg.norm(forgot.gram - kept.gram)) <= residue
    lam_kept = smallest**2
    assert relative_error(forgot.solve(tau), kept.solve(tau)) <= max(
        tolerance(smallest, p["d"]), 1e3 * residue / lam_kept
    )


@given(problem)
def test_dual_and_primal_factors_agree_on_gcv_and_residuals(p):
    keys, values, weights, _, _ = make_problem(p)
    dual = GramStats(p["d"], p["m"]).add(keys, values, weights)
    primal = GramStats(p["d"], p["m"], dual_max_pairs=0).add(keys, values, weights)
    _, rank_d = dual.factor().gcv_truncation()
    _, rank_p = primal.factor().gcv_truncation()
    assert rank_d == rank_p
    for tau in (1e-3, 1e-1):
        rss_d, dof_d = dual.factor().residual(dual.factor().truncation_filter(tau))
        rss_p, dof_p = primal.factor().residual(primal.factor().truncation_filter(tau))
        assert dof_d == pytest.approx(dof_p)
        assert rss_d == pytest.approx(rss_p, rel=1e-6, abs=1e-9 * (1 + dual.value_sq_sum))


def test_dual_route_is_used_only_while_it_applies():
    gen = torch.Generator().manual_seed(0)
    k, v = torch.randn(40, 30, generator=gen), torch.randn(40, 2, generator=gen)
    stats = GramStats(30, 2).add(k[:10], v[:10])
    assert stats.factor().basis.shape == (30, 10)  # dual: rank-10 thin basis
    stats.add(k[10:], v[10:])
    assert stats.factor().basis.shape == (30, 30)  # past d pairs: primal
    stats.reset().add(k[:10], v[:10]).subtract(k[:2], v[:2])
    assert stats.factor().basis.shape == (30, 8)  # subtract removes the matching pair copies
    refit = GramStats(30, 2).add(k[2:10], v[2:10])
    assert torch.allclose(stats.solve("auto"), refit.solve("auto"), atol=1e-6)
    with pytest.raises(ValueError, match="never added"):
        stats.subtract(k[:1], v[:1])  # already removed
    assert stats.count == 8
    merged = GramStats(30, 2).add(k[:5], v[:5]).merge(GramStats(30, 2).add(k[5:12], v[5:12]))
    assert merged.factor().basis.shape == (30, 12)
    primal = GramStats(30, 2, dual_max_pairs=0).add(k[:12], v[:12])
    assert torch.allclose(merged.solve(0.01), primal.solve(0.01))


def test_subtract_everything_gives_exact_zero():
    gen = torch.Generator().manual_seed(0)
    k, v = torch.randn(50, 7, generator=gen), torch.randn(50, 3, generator=gen)
    stats = GramStats(7, 3).add(k, v).subtract(k[:20], v[:20]).subtract(k[20:], v[20:])
    assert stats.count == 0
    assert torch.count_nonzero(stats.gram) == 0 and torch.count_nonzero(stats.cross) == 0
    assert stats.input_dtype == torch.float32


def test_float32_keys_large_n_agree_to_1e8_with_tau_one_over_n():
    """The regime where a float32 Gram matrix fails (τ = 1/n): float64 statistics hold."""
    gen = torch.Generator().manual_seed(3)
    n, d, m = 6000, 64, 8
    spectrum = torch.logspace(0, -2.5, d, dtype=torch.float64)
    base = torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.diag(spectrum)
    keys = base.to(torch.float32)
    values = torch.randn(n, m, generator=gen).to(torch.float32)
    stats = GramStats(d, m)
    for i in range(0, n, 777):
        stats.add(keys[i : i + 777], values[i : i + 777])
    tau = power_law_tau(n, alpha=1.0, c=1.0)
    got = stats.solve(dtype=torch.float64)
    ref = svd_reference(keys, values, tau)
    q = keys[:200].to(torch.float64)
    assert relative_error(q @ got.T, q @ ref.T) <= 1e-8
    assert stats.solve().dtype == torch.float32


@pytest.mark.parametrize("n, d, ridge", [(30, 10, 0.1), (8, 20, 1.0), (200, 40, 1e-3)])
def test_ridge_mode_matches_direct_solve_and_sklearn(n, d, ridge):
    gen = torch.Generator().manual_seed(n + d)
    k = torch.randn(n, d, generator=gen, dtype=torch.float64)
    v = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    got = GramStats(d, 3).add(k, v).solve(ridge=ridge)
    assert relative_error(got, ridge_reference(k, v, ridge)) <= 1e-10
    skl = Ridge(alpha=ridge, fit_intercept=False, solver="svd").fit(k.numpy(), v.numpy())
    assert relative_error(got, torch.from_numpy(skl.coef_)) <= 1e-8


@given(st.integers(5, 60), st.integers(2, 30), st.integers(0, 2**31 - 1))
def test_gcv_rank_and_residuals_match_brute_force(n, d, seed):
    gen = torch.Generator().manual_seed(seed)
    spectrum = torch.logspace(0, -3, d, dtype=torch.float64)
    k = torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.diag(spectrum)
    w_true = torch.randn(d, 2, generator=gen, dtype=torch.float64)
    v = k @ w_true + 0.05 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    stats = GramStats(d, 2).add(k, v)
    factor = stats.factor()
    s = torch.linalg.svdvals(k)
    usable = int((factor.eigenvalues > factor.noise_floor).sum())
    scores = []
    for rank in range(1, usable + 1):
        tau = math.sqrt(float(factor.eigenvalues[rank - 1] / factor.eigenvalues[0]))
        w = svd_reference(k, v, tau * (1 - 1e-9))
        rss = float(((v - k @ w.T) ** 2).sum())
        rss_closed, dof = factor.residual(factor.truncation_filter(tau * (1 - 1e-9)))
        assert dof == pytest.approx(rank, abs=1e-9)
        assert rss_closed == pytest.approx(rss, rel=1e-6, abs=1e-9 * float((v**2).sum()))
        scores.append(rss / (1 - rank / n) ** 2 if rank < n else math.inf)
    _, chosen = factor.gcv_truncation()
    best = min(range(len(scores)), key=scores.__getitem__) + 1
    assert scores[chosen - 1] == pytest.approx(scores[best - 1], rel=1e-6)
    assert len(s) >= usable


def test_gcv_recovers_signal_rank_better_than_interpolation():
    """On a low-rank signal with noise, GCV truncation predicts held-out values better than τ≈0."""
    gen = torch.Generator().manual_seed(11)
    n, d = 120, 60
    spectrum = torch.cat([torch.ones(8), 1e-3 * torch.ones(d - 8)]).double()
    k = torch.randn(2 * n, d, generator=gen, dtype=torch.float64) @ torch.diag(spectrum)
    w_true = torch.zeros(d, 1, dtype=torch.float64)
    w_true[:8] = torch.randn(8, 1, generator=gen, dtype=torch.float64)
    v = k @ w_true + 0.1 * torch.randn(2 * n, 1, generator=gen, dtype=torch.float64)
    stats = GramStats(d, 1).add(k[:n], v[:n])
    err = {}
    for name, tau in [("gcv", "gcv"), ("tiny", 1e-6)]:
        w = stats.solve(tau)
        err[name] = float(((k[n:] @ w.T - v[n:]) ** 2).mean())
    assert err["gcv"] < 0.5 * err["tiny"]
    assert 8 <= stats.solve_with_info("gcv")[1].rank <= 12  # the 8 signal directions, not the 52 noise ones


def test_solve_is_cached_until_statistics_change():
    gen = torch.Generator().manual_seed(0)
    stats = GramStats(5, 2).add(torch.randn(10, 5, generator=gen), torch.randn(10, 2, generator=gen))
    first = stats.solve(0.01)
    assert stats.solve(0.01) is first
    stats.add(torch.randn(3, 5, generator=gen), torch.randn(3, 2, generator=gen))
    again = stats.solve(0.01)
    assert again is not first and not torch.equal(again, first)


def test_power_law_tau_defaults_and_cap():
    assert power_law_tau(100, alpha=1.0, c=1.0) == pytest.approx(0.01)
    assert power_law_tau(10, alpha=0.8, c=2.0) == pytest.approx(2.0 * 10**-0.8)
    assert power_law_tau(1, alpha=1.0, c=5.0) == 1.0


def _svd_ridge_fit(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, rho: float) -> tuple[float, float]:
    """(RSS, GCV) of the ridge fit with penalty ρ, GCV(ρ) = RSS / (1 − dof/n)², n = max(Σ wᵢ, pairs), from the
    SVD of the √w-scaled rows, each part a sum of terms ≥ 0 (the reference for the GCV choice)."""
    root = w.sqrt()[:, None]
    u, s, _ = torch.linalg.svd(root * k, full_matrices=False)
    kept = s > s[0] * 1e-10
    u, lam = u[:, kept], s[kept] ** 2
    along = u.T @ (root * v)
    rest = root * v - u @ along
    shrink_left = rho / (lam + rho)
    rss = float((rest**2).sum() + (shrink_left[:, None] ** 2 * along**2).sum())
    n = max(float(w.sum()), float(len(w)))  # weights count examples, never fewer than the pairs
    left = (n - lam.numel()) + float(shrink_left.sum())
    return rss, (rss / (left / n) ** 2 if left > 0 else math.inf)


@given(
    st.integers(2, 40),
    st.integers(2, 40),
    st.integers(1, 3),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_gcv_ridge_matches_brute_force_also_near_interpolation(n, d, m, weighted, primal, seed):
    """ridge=gcv picks the level with the lowest GCV among those whose residual float64 resolves,
    on both routes, n ≤ d included: there a tiny ρ nearly interpolates, and the residual
    ‖V‖² − Σ(2s − s²)e cancelled to 0 (GCV 0), so the pseudo-inverse's neighbour won whatever
    the data."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(n, d, generator=gen, dtype=torch.float64)
    v = torch.randn(n, m, generator=gen, dtype=torch.float64)
    w = (
        torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
        if weighted
        else torch.ones(n, dtype=torch.float64)
    )
    stats = GramStats(d, m, dual_max_pairs=0 if primal else None).add(k, v, w if weighted else None)
    factor = stats.factor()
    parts = gcv.fit_parts(factor)
    scores = []
    for rho in (factor.lambda_max * torch.logspace(-12, 1, 66, dtype=torch.float64)).tolist():
        rss, score = _svd_ridge_fit(k, v, w, rho)
        share = factor.eigenvalues[: parts[0]] / (factor.eigenvalues[: parts[0]] + rho)
        rounding = float((share * (2 - share) * gcv.rounding_per_direction(factor, parts)).sum())
        if bool(gcv.resolves(factor, rss / 2, rounding)):  # resolved, with room
            scores.append(score)
    chosen = factor.gcv_ridge()
    exact = factor.row_keys is not None  # the dual route: every resolved residual is exact
    if scores:  # (weighted, n = Σw can exceed the pairs: GCV then falls to ≈ 0 near interpolation)
        slack = min(scores) * (1e-6 if exact else 3e-2) + 1e-6 * stats.value_sq_sum
        assert _svd_ridge_fit(k, v, w, chosen)[1] <= min(scores) + slack
    for rho in (factor.lambda_max * torch.logspace(-4, 1, 6, dtype=torch.float64)).tolist():
        rss, dof = factor.residual(factor.ridge_filter(rho))
        assert rss == pytest.approx(
            _svd_ridge_fit(k, v, w, rho)[0], rel=1e-6, abs=1e-12 * float((w[:, None] * v**2).sum())
        )
        assert dof == pytest.approx(float((factor.eigenvalues * factor.ridge_filter(rho)).sum()), rel=1e-12)


@pytest.mark.parametrize("primal", [False, True])
def test_gcv_takes_weights_scaled_down_together_as_the_pairs_they_weigh(primal):
    """Weights summing to 1 (probability weights) left GCV's n = Σw = 1, below the degrees of
    freedom of every level: ridge=gcv took the strongest ridge and tau=gcv rank 1. n is now
    never fewer than the pairs stored, so the choice is the unweighted one, ρ scaled by 1/n."""
    gen = torch.Generator().manual_seed(5)
    n, d = 120, 30
    k = torch.randn(n, d, generator=gen, dtype=torch.float64)
    v = k @ torch.randn(d, 3, generator=gen, dtype=torch.float64) + torch.randn(
        n, 3, generator=gen, dtype=torch.float64
    )
    make = (lambda: GramStats(d, 3, dual_max_pairs=0)) if primal else (lambda: GramStats(d, 3))
    plain, scaled = (
        make().add(k, v).factor(),
        make().add(k, v, torch.full((n,), 1.0 / n, dtype=torch.float64)).factor(),
    )
    assert scaled.gcv_ridge() == pytest.approx(plain.gcv_ridge() / n, rel=1e-9)
    assert scaled.gcv_truncation()[1] == plain.gcv_truncation()[1] > 1
    doubled = make().add(k, v, torch.full((n,), 2.0, dtype=torch.float64)).factor()
    assert doubled.gcv_count == 2 * n  # weights above 1 still count examples
