"""Exact leave-one-out (PRESS) scores of the spectral filters against brute-force refits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.solver import Cut, GramStats, SpectralFactor
from faast.solver.loo import LooPath, brute_force_loo, default_ridge_grid, ridge_path, truncation_path


def _problem(n: int, d: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.logspace(
        0, -2, d, dtype=torch.float64
    )
    values = torch.randn(n, m, generator=gen, dtype=torch.float64)
    return keys, values


def _factor(keys: torch.Tensor, values: torch.Tensor) -> SpectralFactor:
    return SpectralFactor.from_pairs(keys, values, float(keys.shape[0]), float((values * values).sum()))


@settings(max_examples=15, deadline=None)
@given(n=st.integers(4, 12), d=st.integers(2, 16), m=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_truncation_press_matches_brute_force(n, d, m, seed):
    keys, values = _problem(n, d, m, seed)
    factor = _factor(keys, values)
    r = factor.eigenvalues.numel()
    path = truncation_path(factor.left, values, torch.arange(1, r + 1))
    for rank in range(1, r + 1):
        loo = brute_force_loo(keys, values, rank=rank)
        press = float((loo * loo).sum())
        got = float(path.press[rank - 1])
        if math.isinf(got):  # interpolation: some pair has leverage 1
            continue
        assert got == pytest.approx(press, rel=1e-6, abs=1e-9)
        wrong = int(((values - loo).argmax(dim=1) != values.argmax(dim=1)).sum())
        assert float(path.errors[rank - 1]) == wrong


@settings(max_examples=15, deadline=None)
@given(n=st.integers(3, 12), d=st.integers(2, 16), m=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_ridge_press_matches_brute_force_refits(n, d, m, seed):
    keys, values = _problem(n, d, m, seed)
    factor = _factor(keys, values)
    grid = factor.lambda_max * torch.tensor([1e-3, 1e-1, 1.0], dtype=torch.float64)
    path = ridge_path(factor.left, factor.eigenvalues, values, grid)
    for j, rho in enumerate(grid.tolist()):
        loo = brute_force_loo(keys, values, ridge=rho)
        assert float(path.press[j]) == pytest.approx(float((loo * loo).sum()), rel=1e-6)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(3, 30),
    d=st.integers(2, 40),
    m=st.integers(1, 6),
    entries=st.integers(1, 400),
    seed=st.integers(0, 10_000),
)
def test_paths_scored_in_blocks_equal_one_block(n, d, m, entries, seed):
    """Many classes: the candidates are scored a block at a time (at most ``BLOCK_ENTRIES`` fitted
    values); every block size gives the path of one block, for ridge and truncation."""
    from faast.solver import loo as loo_module

    keys, values = _problem(n, d, m, seed)
    factor = _factor(keys, values)
    grid = default_ridge_grid(factor.lambda_max)
    whole_ridge = ridge_path(factor.left, factor.eigenvalues, values, grid)
    whole_truncation = truncation_path(factor.left, values)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loo_module, "BLOCK_ENTRIES", entries)
        blocked_ridge = ridge_path(factor.left, factor.eigenvalues, values, grid)
        blocked_truncation = truncation_path(factor.left, values)
    for whole, blocked in ((whole_ridge, blocked_ridge), (whole_truncation, blocked_truncation)):
        torch.testing.assert_close(blocked.press, whole.press, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(blocked.errors, whole.errors)
        assert blocked.shared == whole.shared and blocked.null_press == whole.null_press


def test_error_se_takes_the_lowest_press_within_one_standard_error_of_the_fewest_errors():
    """fewest = 9 errors of 100 pairs: one binomial standard error √(9 · 0.91) ≈ 2.86, so 10
    errors is within it and 12 is not; "error" keeps the fewest, "press" ignores the count."""
    path = LooPath(
        "ridge",
        torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64),
        torch.tensor([1.0, 3.0, 0.5, 0.1], dtype=torch.float64),
        torch.tensor([10.0, 9.0, 12.0, 20.0], dtype=torch.float64),
        null_press=100.0,
        shared=100,
    )
    assert path.best("error")[0] == 1
    assert path.best("error-se")[0] == 0
    assert path.best("press")[0] == 3
    with pytest.raises(ValueError, match="'error-se'"):
        path.best("errors")


def test_candidate_ranks_are_dense_then_geometric():
    from faast.solver.loo import candidate_ranks

    assert candidate_ranks(5).tolist() == [1, 2, 3, 4, 5]
    ranks = candidate_ranks(640)
    assert ranks[:32].tolist() == list(range(1, 33)) and int(ranks[-1]) == 640
    assert bool((ranks[1:] > ranks[:-1]).all()) and len(ranks) < 80


def test_full_rank_truncation_with_n_below_d_interpolates_and_is_never_chosen():
    keys, values = _problem(6, 20, 2, 0)
    path = truncation_path(_factor(keys, values).left, values)
    assert math.isinf(float(path.press[-1]))
    assert path.best("press")[0] < len(path.levels) - 1


def test_errors_decide_only_among_candidates_that_beat_the_null_press():
    """Fewest leave-one-out errors wins among the candidates whose PRESS is at most that of
    predicting zero; a candidate with no errors but a PRESS above it is not a fit. With no
    candidate below the null PRESS, the lowest PRESS wins."""
    levels = torch.tensor([1e-4, 1e-2, 1.0, 1e2])
    errors = torch.tensor([0.0, 1.0, 3.0, 4.0])
    press = torch.tensor([7000.0, 90.0, 30.0, 26.0])
    path = LooPath("ridge", levels, press, errors, null_press=32.0)
    assert path.best()[0] == 2  # fewest errors among {30, 26}, not the 0-error interpolation
    assert LooPath("ridge", levels, press, errors).best()[0] == 0  # no null PRESS: errors alone
    assert LooPath("ridge", levels, press, errors, null_press=20.0).best()[0] == 3  # none below
    assert path.best("press")[0] == 3


@settings(max_examples=20, deadline=None)
@given(extra=st.integers(1, 10), d=st.integers(8, 30), seed=st.integers(0, 10_000))
def test_auto_ridge_near_n_equals_d_never_picks_a_fit_worse_than_zero(extra, d, seed):
    """n barely above d (the rows are kept while n ≤ 2d): a nearly unpenalised fit can have
    few leave-one-out errors with predictions far larger than the targets; ``ridge=auto``
    chooses a ρ whose brute-force leave-one-out squared error is at most that of predicting
    zero whenever some ρ of the grid has one."""
    n = d + extra
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=gen, dtype=torch.float64)
    labels = (keys[:, 0] + 0.5 * torch.randn(n, generator=gen, dtype=torch.float64) > 0).long()
    values = torch.nn.functional.one_hot(labels, 2).double()
    factor = GramStats(d, 2, dual_max_pairs=2 * d).add(keys, values).factor()
    assert factor.has_rows
    _, _, rho = factor.loo_choice()

    def press(ridge: float) -> float:
        return float((brute_force_loo(keys, values, ridge=ridge) ** 2).sum())

    null = float((values * values).sum())
    if any(press(float(r)) <= null for r in default_ridge_grid(factor.lambda_max)):
        assert press(rho) <= null * (1 + 1e-9)


def test_weighted_press_equals_weighted_brute_force():
    keys, values = _problem(9, 12, 2, 3)
    w = torch.linspace(0.5, 2.0, 9, dtype=torch.float64)
    root = w.sqrt()[:, None]
    factor = _factor(keys * root, values * root)
    grid = torch.tensor([0.1], dtype=torch.float64) * factor.lambda_max
    path = ridge_path(factor.left, factor.eigenvalues, values * root, grid)
    rho = float(grid[0])
    press = 0.0
    for i in range(9):  # weighted ridge refit without pair i
        keep = torch.arange(9) != i
        kw = keys[keep] * w[keep, None]
        coef = torch.linalg.solve(
            kw.T @ keys[keep] + rho * torch.eye(12, dtype=torch.float64), kw.T @ values[keep]
        )
        press += float(w[i] * ((values[i] - keys[i] @ coef) ** 2).sum())
    assert float(path.press[0]) == pytest.approx(press, rel=1e-8)


def test_auto_cut_uses_rows_when_kept_and_gcv_otherwise():
    gen = torch.Generator().manual_seed(1)
    keys = torch.randn(30, 40, generator=gen, dtype=torch.float64)
    values = torch.nn.functional.one_hot(torch.arange(30) % 3, 3).to(torch.float64)
    keys[:, :3] += 3 * values  # a signal in three directions
    stats = GramStats(40, 3).add(keys, values)
    assert stats.factor().has_rows
    _, info = stats.solve_with_info(Cut.auto())
    # the choice is the ridge level with the fewest leave-one-out errors, then the lowest PRESS
    factor = stats.factor()
    path = ridge_path(factor.left, factor.eigenvalues, values, default_ridge_grid(factor.lambda_max))
    best = min((float(path.errors[i]), float(path.press[i])) for i in range(len(path.levels)))
    assert info.mode == "ridge"
    i = int(torch.argmin((path.levels - info.ridge).abs()))
    assert (float(path.errors[i]), float(path.press[i])) == best
    # with the truncation family too, the choice is the best over both paths
    phi, _, rho = factor.loo_choice("error", ("truncation", "ridge"))
    trunc = truncation_path(factor.left, values)
    both = min(
        (float(p.errors[i]), float(p.press[i]))
        for p in (path, trunc)
        for i in range(len(p.levels))
        if math.isfinite(float(p.press[i]))
    )
    chosen = path if rho is not None else trunc
    level = rho if rho is not None else int((phi > 0).sum())
    j = int(torch.argmin((chosen.levels - level).abs()))
    assert (float(chosen.errors[j]), float(chosen.press[j])) == both
    with pytest.raises(ValueError, match="families"):
        factor.loo_choice("error", ("lasso",))
    many = GramStats(4, 3, dual_max_pairs=0).add(keys[:, :4], values)
    assert not many.factor().has_rows
    w_auto, info_auto = many.solve_with_info("auto")
    w_gcv, info_gcv = many.solve_with_info("gcv")
    torch.testing.assert_close(w_auto, w_gcv)
    assert info_auto.rank == info_gcv.rank


def test_ridge_auto_is_auto_with_the_rows_and_ridge_gcv_without():
    gen = torch.Generator().manual_seed(2)
    keys = torch.randn(30, 40, generator=gen, dtype=torch.float64)
    values = torch.nn.functional.one_hot(torch.arange(30) % 3, 3).to(torch.float64)
    keys[:, :3] += 3 * values
    kept = GramStats(40, 3).add(keys, values)
    assert kept.factor().has_rows
    w, info = kept.solve_with_info("ridge=auto")
    w_auto, info_auto = kept.solve_with_info("auto")
    torch.testing.assert_close(w, w_auto)  # leave-one-out ridge either way
    assert info.ridge == info_auto.ridge
    summed = GramStats(40, 3, dual_max_pairs=0).add(keys, values)  # no rows: GCV ridge
    assert not summed.factor().has_rows
    w, info = summed.solve_with_info("ridge=auto")
    w_gcv, info_gcv = summed.solve_with_info("ridge=gcv")
    torch.testing.assert_close(w, w_gcv)
    assert info.mode == "ridge" and info.ridge == info_gcv.ridge
    assert summed.solve_with_info("auto")[1].mode == "truncation"  # where auto differs
    with pytest.raises(ValueError, match="beyond"):
        summed.factor().loo_choice(beyond="lasso")


def test_ridge_auto_parses_and_round_trips():
    cut = Cut.parse("ridge=auto")
    assert cut == Cut.ridge_penalty("auto") == Cut.from_params(ridge="auto") == Cut("ridge-auto")
    assert str(cut) == "ridge=auto" and Cut.parse(str(cut)) == cut
    assert Cut.from_dict(cut.to_dict()) == cut
    with pytest.raises(ValueError, match="ridge must be"):
        Cut.from_params(ridge="best")


def test_auto_parses_and_round_trips():
    assert Cut.parse("auto") == Cut.auto() == Cut.from_params(tau="auto")
    assert str(Cut.auto()) == "auto"
    assert Cut.from_dict(Cut.auto().to_dict()) == Cut.auto()
    with pytest.raises(ValueError, match="tau must be"):
        Cut.from_params(tau="best")


@settings(max_examples=10, deadline=None)
@given(n=st.integers(9, 20), d=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_primal_route_with_kept_rows_scores_exact_ridge_loo(n, d, seed):
    keys, values = _problem(n, d, 2, seed)
    stats = GramStats(d, 2, dual_max_pairs=n).add(keys, values)  # n > d, rows kept: primal route
    factor = stats.factor()
    assert factor.has_rows and factor.basis.shape == (d, d)
    r = factor.left.shape[1]
    grid = factor.lambda_max * torch.tensor([1e-3, 1e-1], dtype=torch.float64)
    path = ridge_path(factor.left, factor.eigenvalues[:r], values, grid)
    for j, rho in enumerate(grid.tolist()):
        loo = brute_force_loo(keys, values, ridge=rho)
        assert float(path.press[j]) == pytest.approx(float((loo * loo).sum()), rel=1e-6)


def test_one_example_per_class_is_unranked_and_gets_the_fallback_ridge():
    """With one example per class, holding one out leaves its class unseen at every level: the
    paths say so (``unranked``) and ``auto`` takes ρ = s₋₁, the mean non-zero eigenvalue of G after
    the largest, instead of the lowest PRESS (the strongest ridge)."""
    gen = torch.Generator().manual_seed(3)
    keys = torch.randn(5, 12, generator=gen, dtype=torch.float64)
    values = torch.eye(5, dtype=torch.float64)  # one example of each of five classes
    factor = _factor(keys, values)
    grid = default_ridge_grid(factor.lambda_max)
    r = factor.left.shape[1]
    assert ridge_path(factor.left, factor.eigenvalues[:r], values, grid).unranked
    assert truncation_path(factor.left, values).unranked
    phi, tau, rho = factor.loo_choice()
    expected = float(factor.eigenvalues[1:r].sum()) / (r - 1)
    assert tau is None and rho == pytest.approx(expected, rel=1e-12)
    assert torch.allclose(phi, factor.ridge_filter(expected))


def test_one_example_per_class_truncation_keeps_what_the_fallback_ridge_keeps_half_of():
    """Truncation alone, one example per class: not the lowest PRESS (rank 1, one class predicted
    everywhere) but the ranks whose eigenvalues reach ρ = s/100 (where that ridge keeps at
    least half of a direction); the held-out example of each class is then predicted far above
    chance."""
    gen = torch.Generator().manual_seed(5)
    means = torch.randn(6, 40, generator=gen, dtype=torch.float64)
    keys = means + 0.3 * torch.randn(6, 40, generator=gen, dtype=torch.float64)
    values = torch.eye(6, dtype=torch.float64)
    factor = _factor(keys, values)
    phi, tau, rho = factor.loo_choice(families=("truncation",))
    r = factor.left.shape[1]
    fallback = float(factor.eigenvalues.sum()) / r / 100.0
    rank = int((factor.eigenvalues[:r] >= fallback).sum())
    assert rho is None and rank > 1 and int((phi > 0).sum()) == rank
    assert tau == pytest.approx(math.sqrt(float(factor.eigenvalues[rank - 1]) / factor.lambda_max))
    queries = means + 0.3 * torch.randn(6, 40, generator=gen, dtype=torch.float64)
    predicted = (queries @ factor.weights(phi).T).argmax(dim=1)
    assert int((predicted == torch.arange(6)).sum()) >= 5


def test_a_second_example_of_one_class_ranks_the_levels_again():
    """A class with two examples (even among singletons) gives leave-one-out something to rank;
    pairs of zero weight count for nothing."""
    gen = torch.Generator().manual_seed(4)
    keys = torch.randn(6, 12, generator=gen, dtype=torch.float64)
    values = torch.eye(5, dtype=torch.float64)[[0, 1, 2, 3, 4, 0]]
    factor = _factor(keys, values)
    r = factor.left.shape[1]
    grid = default_ridge_grid(factor.lambda_max)
    assert not ridge_path(factor.left, factor.eigenvalues[:r], values, grid).unranked
    _, _, rho = factor.loo_choice()
    assert any(math.isclose(rho, float(g), rel_tol=1e-12) for g in grid)  # a level of the grid
    values[5] = 0.0  # the second example weighs nothing: one per class again
    assert ridge_path(factor.left, factor.eigenvalues[:r], values, grid).unranked


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 3), min_size=2, max_size=5),
    zero_weight=st.lists(st.booleans(), min_size=15, max_size=15),
    seed=st.integers(0, 10_000),
)
def test_unranked_exactly_when_no_class_has_two_weighted_examples(counts, zero_weight, seed):
    """The fallback's condition is structural: a path is unranked exactly when no class has two
    examples that carry weight (rows of zero weight count for nothing), whatever the keys."""
    labels = torch.tensor([c for c, k in enumerate(counts) for _ in range(k)])
    n, m = labels.numel(), len(counts)
    weights = torch.tensor([0.0 if zero_weight[i] else 1.0 + i % 3 for i in range(n)], dtype=torch.float64)
    if not bool((weights > 0).any()):
        weights[0] = 1.0
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, n + 3, generator=gen, dtype=torch.float64) * weights.sqrt()[:, None]
    values = torch.eye(m, dtype=torch.float64)[labels] * weights.sqrt()[:, None]
    factor = _factor(keys, values)
    r = factor.left.shape[1]
    path = ridge_path(factor.left, factor.eigenvalues[:r], values, default_ridge_grid(factor.lambda_max))
    weighted_per_class = torch.bincount(labels[weights > 0], minlength=m)
    assert path.unranked == bool((weighted_per_class < 2).all())


def test_the_ridge_grid_reaches_below_one_dominant_direction():
    """The plain grid λ_max·10^[−7, 1] while λ₂ ≥ 10⁻²·λ_max; below one dominant direction it goes
    on, on the same lattice, to λ₂·10⁻⁵."""
    plain = default_ridge_grid(100.0)
    assert (
        len(plain) == 25 and float(plain[0]) == pytest.approx(1e-5) and float(plain[-1]) == pytest.approx(1e3)
    )
    assert torch.equal(default_ridge_grid(100.0, 1.0), plain)
    longer = default_ridge_grid(100.0, 1e-8)
    assert float(longer[0]) <= 1e-13 < float(longer[1])
    assert torch.allclose(longer[-25:], plain)
    steps = torch.diff(torch.log10(longer))
    assert torch.allclose(steps, torch.full_like(steps, 1 / 3))


@pytest.mark.parametrize("scale", [1e-4, 1e-5, 1e-6])
def test_default_fit_finds_few_shot_features_far_smaller_than_the_intercept(scale):
    """Standardised digits times 10⁻⁴–10⁻⁶, 100 examples of 64 features (rows kept): the
    intercept's column sets λ_max, and the plain grid shrank the features away (19.3 % at 10⁻⁵,
    chance); the continued grid finds them."""
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    from faast import FaastClassifier

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:100], order[100:]
    reference = FaastClassifier().fit(X[train], y[train]).score(X[test], y[test])
    accuracy = FaastClassifier().fit(X[train] * scale, y[train]).score(X[test] * scale, y[test])
    assert accuracy >= reference - 0.02


@pytest.mark.parametrize("spec", [{"tau": "auto"}, {"ridge": "auto"}])
def test_values_unshared_takes_the_one_per_class_penalty_without_the_rows(spec):
    """Statistics that keep no rows (``dual_max_pairs=0``) cannot score leave-one-out: ``auto``
    uses GCV, unless the caller says that no two pairs share a class (``values_unshared``), when
    it takes the penalty the rows would have led to (:func:`one_per_class_penalty`). The flag is a
    setting of the solve: changing it re-solves, ``copy`` keeps it."""
    from faast.solver.spectral import one_per_class_penalty

    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(12, 20, generator=gen, dtype=torch.float64) + 3.0
    values = torch.eye(12, dtype=torch.float64)
    kept = GramStats(20, 12)
    kept.add(keys, values)
    with_rows = kept.solve_with_info(**spec)[1]
    stats = GramStats(20, 12, dual_max_pairs=0)
    stats.add(keys, values)
    gcv = stats.solve_with_info(**spec)[1]
    stats.values_unshared = True
    _, info = stats.solve_with_info(**spec)
    assert info.ridge == pytest.approx(one_per_class_penalty(stats.factor()), rel=1e-12)
    assert info.ridge == pytest.approx(with_rows.ridge, rel=1e-9)  # primal and dual spectra
    assert (gcv.ridge, gcv.tau) != (info.ridge, info.tau)
    assert stats.copy().solve_with_info(**spec)[1].ridge == info.ridge
    stats.values_unshared = False
    assert stats.solve_with_info(**spec)[1] == gcv
