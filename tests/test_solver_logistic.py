"""Closed-form logistic steps (``FaastClassifier(loss="logistic")``, :mod:`faast.solver.logistic`)
against plain references: autograd for the gradient, scikit-learn's ``LogisticRegression`` for the
minimiser."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks

from faast import FaastClassifier
from faast.solver.logistic import (
    FLAT_TOLERANCE,
    HOLDOUT_FOLDS,
    HOLDOUT_FRACTION,
    MIN_HELD_OUT,
    PATH_TOLERANCE,
    START_DECADE,
    WEAKEST_DECADE,
    choose_ridge,
    fit_logistic,
    holdout_folds,
    holdout_split,
    logistic_gradient,
    logistic_objective,
    preconditioner,
)
from faast.solver.logistic_kernels import RowProducts, logistic_gradient_torch
from faast.solver.logistic_steps import CurvatureMemory, line_search, quasi_newton_steps, softmax_terms
from faast.solver.spectral import FALLBACK_DIVISOR, SpectralFactor, penalty_scale
from faast.solver.stats import GramStats
from tests.row_pass_settings import row_pass_settings
from tests.test_classifier_refine import PARTIAL_FIT_CHECKS, no_intercept_fails


def _problem(n: int, d: int, n_classes: int, seed: int, spread: float = 1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)  # every class present
    X = rng.normal(size=(n, d)) + spread * np.eye(n_classes, d)[y]
    return X, y, rng


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 700),
    d=st.integers(1, 20),
    n_classes=st.integers(1, 5),
    weighted=st.booleans(),
    scale=st.sampled_from([0.01, 1.0, 30.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_gradient_matches_autograd(n, d, n_classes, weighted, scale, seed):
    """Chunked gradient and loss (n crosses the chunk size) against autograd of the plain loss,
    float64 keys to rounding, float32 keys to float32 accuracy."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = torch.as_tensor(rng.integers(0, n_classes, n))
    w = torch.as_tensor(rng.uniform(0.0, 2.0, n)) if weighted else None
    W = torch.as_tensor(scale * rng.normal(size=(n_classes, d)), dtype=torch.float64).requires_grad_()
    nll = torch.nn.functional.cross_entropy(torch.as_tensor(X) @ W.T, y, reduction="none")
    ref_loss = (nll * w).sum() if w is not None else nll.sum()
    ref_loss.backward()
    for dtype, rtol in ((torch.float64, 1e-10), (torch.float32, 2e-4)):
        grad, loss = logistic_gradient(torch.as_tensor(X, dtype=dtype), y, w, W.detach())
        assert grad.dtype == torch.float64
        bound = rtol * (float(W.grad.abs().max()) + 1.0)
        torch.testing.assert_close(grad, W.grad, rtol=rtol, atol=bound)
        assert loss == pytest.approx(float(ref_loss.detach()), rel=rtol, abs=rtol)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 1100),
    d=st.integers(1, 40),
    n_classes=st.integers(1, 12),
    weighted=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    strided=st.booleans(),
    chunk_budget=st.sampled_from([1, 50, 997, None]),
    threads=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_numpy_gradient_matches_torch_reference(
    n, d, n_classes, weighted, dtype, strided, chunk_budget, threads, seed
):
    """The CPU path (NumPy's BLAS, what ``logistic_gradient`` runs on float32/float64 CPU keys)
    against the torch implementation, on keys that are views with strides too, n across several
    chunks (small multiply-add budgets: chunks of one row and up; None: the library's own) and
    split over 1–3 threads (every 7 rows may get a thread here): the same arithmetic to rounding."""
    rng = np.random.default_rng(seed)
    base = torch.as_tensor(rng.normal(size=(n, 2 * d)), dtype=dtype)
    keys = base[:, ::2] if strided else base[:, :d].contiguous()
    labels = torch.as_tensor(rng.integers(0, n_classes, n))
    w = torch.as_tensor(rng.uniform(0.0, 2.0, n)) if weighted else None
    W = torch.as_tensor(rng.normal(size=(n_classes, d)), dtype=torch.float64)
    with row_pass_settings(chunk_budget, threads):
        grad, loss = logistic_gradient(keys, labels, w, W)
    ref_grad, ref_loss = logistic_gradient_torch(keys, labels, w, W)
    rtol = 1e-10 if dtype == torch.float64 else 1e-4
    assert grad.dtype == torch.float64 and grad.shape == (n_classes, d)
    scale = float(ref_grad.abs().max()) if ref_grad.numel() else 0.0
    torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=rtol * (scale + 1.0))
    assert loss == pytest.approx(ref_loss, rel=rtol, abs=rtol)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 30),
    m=st.integers(1, 12),
    ridge=st.sampled_from([1e-6, 0.1, 10.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_preconditioner_matches_weights_for(n, d, m, ridge, seed):
    """The NumPy preconditioner (``factor.weights_for_numpy``) equals ``factor.weights_for`` to
    rounding on random factors, primal and dual."""
    rng = np.random.default_rng(seed)
    keys = torch.as_tensor(rng.normal(size=(n, d)))
    values = torch.as_tensor(rng.normal(size=(n, m)))
    primal = SpectralFactor.from_stats(keys.T @ keys, keys.T @ values, float(n), float((values**2).sum()))
    dual = SpectralFactor.from_pairs(keys, values, float(n), float((values**2).sum()))
    grad = torch.as_tensor(rng.normal(size=(m, d)))
    for factor in (primal, dual):
        phi = 1.0 / (0.5 * factor.eigenvalues + ridge)
        ours = preconditioner(factor, phi)(grad)
        ref = factor.weights_for(phi, grad.T)
        assert ours.dtype == torch.float64 and ours.shape == (m, d)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9 * (float(ref.abs().max()) + 1.0))
        direct = factor.weights_for_numpy(phi)(grad.T.numpy())
        np.testing.assert_allclose(direct, ref.numpy(), rtol=1e-9, atol=1e-9 * (float(ref.abs().max()) + 1.0))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    d=st.integers(1, 40),
    m=st.integers(1, 6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    chunk_budget=st.sampled_from([1, 50, None]),
    threads=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_row_products_match_dense_products(n, d, m, dtype, chunk_budget, threads, seed):
    """The two products of a step (``RowProducts``: K Dᵀ and Rᵀ K), through NumPy's BLAS in
    chunks split over threads and through torch, equal the dense float64 products: to rounding
    on float64 keys, to float32 accuracy on float32 keys."""
    rng = np.random.default_rng(seed)
    keys = torch.as_tensor(rng.normal(size=(n, d)), dtype=dtype)
    direction = torch.as_tensor(rng.normal(size=(m, d)))
    residual = torch.as_tensor(rng.normal(size=(n, m)))
    k64 = keys.double()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for use_numpy in (None, False):
        with row_pass_settings(chunk_budget, threads):
            products = RowProducts(keys, use_numpy=use_numpy)
            scores, grad = products.scores(direction), products.gradient(residual)
        assert scores.dtype == grad.dtype == torch.float64
        assert scores.shape == (n, m) and grad.shape == (m, d)
        ref_scores, ref_grad = k64 @ direction.T, residual.T @ k64
        torch.testing.assert_close(
            scores, ref_scores, rtol=tol, atol=tol * (float(ref_scores.abs().max()) + 1)
        )
        torch.testing.assert_close(grad, ref_grad, rtol=tol, atol=tol * (float(ref_grad.abs().max()) + 1))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    m=st.integers(2, 5),
    weighted=st.booleans(),
    ridge=st.sampled_from([0.0, 0.1, 10.0]),
    spread=st.sampled_from([0.1, 1.0, 20.0]),
    chunk=st.sampled_from([1, 7, 8192]),
    seed=st.integers(0, 2**31 - 1),
)
def test_line_search_finds_the_minimiser_along_the_direction(n, m, weighted, ridge, spread, chunk, seed):
    """``line_search`` on φ(α) = Σᵢ wᵢ CE(S + α S_D) + (ρ/2)‖W + α D‖² (scores of random W and D,
    summed in chunks of rows) returns the data term at its α, lowers φ, and its α is where φ′ is
    at most a tenth of |φ′(0)|, checked with autograd; a dense grid finds no φ much lower."""
    rng = np.random.default_rng(seed)
    labels = torch.as_tensor(rng.integers(0, m, n))
    scores = torch.as_tensor(rng.normal(size=(n, m)) * spread)
    direction_scores = torch.as_tensor(rng.normal(size=(n, m)) * spread)
    weights = torch.as_tensor(rng.uniform(0.2, 2.0, n)) if weighted else None
    w_vec, d_vec = rng.normal(size=7), rng.normal(size=7)

    def phi(alpha: torch.Tensor) -> torch.Tensor:
        s = scores + alpha * direction_scores
        nll = torch.logsumexp(s, 1) - s.gather(1, labels[:, None])[:, 0]
        data = (nll if weights is None else nll * weights).sum()
        pen = torch.as_tensor(w_vec) + alpha * torch.as_tensor(d_vec)
        return data + 0.5 * ridge * (pen * pen).sum()

    zero = torch.zeros((), dtype=torch.float64, requires_grad=True)
    start = phi(zero)
    (slope,) = torch.autograd.grad(start, zero)
    if float(slope) >= 0:  # make D a descent direction
        direction_scores, d_vec = -direction_scores, -d_vec
        slope = -slope
    _, loss0 = softmax_terms(scores, labels, weights)  # the data term at α = 0
    penalty = (ridge, float(w_vec @ d_vec), float(d_vec @ d_vec))
    with pytest.MonkeyPatch.context() as patch:  # several chunks of rows
        patch.setattr("faast.solver.logistic_steps.SCORE_CHUNK_ROWS", chunk)
        out = torch.full_like(scores, float("nan"))
        alpha, data = line_search(
            scores, direction_scores, labels, weights, loss0, float(slope), penalty, out=out
        )
    at = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
    value = phi(at)
    (derivative,) = torch.autograd.grad(value, at)
    value, start = value.detach(), start.detach()
    assert alpha > 0 and float(value.detach()) < float(start.detach())
    s_alpha = scores + alpha * direction_scores
    nll = torch.logsumexp(s_alpha, 1) - s_alpha.gather(1, labels[:, None])[:, 0]
    ref_data = float((nll if weights is None else nll * weights).sum())
    assert math.isclose(data, ref_data, rel_tol=1e-12, abs_tol=1e-12)
    torch.testing.assert_close(out, torch.softmax(s_alpha, 1), rtol=1e-12, atol=1e-15)  # left in out
    if abs(float(derivative)) > 0.1 * abs(float(slope)):  # only after every evaluation was spent
        pytest.fail(f"φ′(α) = {float(derivative)} against φ′(0) = {float(slope)}")
    grid = torch.linspace(0, 4 * alpha, 401, dtype=torch.float64)
    lowest = min(float(phi(a)) for a in grid)
    assert float(value) <= lowest + 0.1 * abs(float(slope)) * alpha + 1e-9


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(1, 12),
    pairs=st.integers(1, 6),
    ridge=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**31 - 1),
)
def test_two_loop_direction_equals_the_bfgs_inverse_update(size, pairs, ridge, seed):
    """``CurvatureMemory.direction`` (the two-loop recursion with H₀ = P) equals −H g with H built
    by the explicit BFGS inverse updates H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ from P, the
    pairs' y being the stored data-term changes plus the penalty's ridge·s."""
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(size, size))
    precond = root @ root.T + 0.1 * np.eye(size)  # P, symmetric positive definite
    memory = CurvatureMemory()
    h = precond.copy()
    for _ in range(pairs):
        s = rng.normal(size=size)
        change = rng.normal(size=size) * 0.1 + s  # curvature sᵀy > 0 mostly
        y = change + ridge * s
        memory.add(torch.as_tensor(s[None, :]), torch.as_tensor(change[None, :]))
        if s @ y > 0:
            r = 1.0 / (s @ y)
            left = np.eye(size) - r * np.outer(s, y)
            h = left @ h @ left.T + r * np.outer(s, s)
    g = rng.normal(size=size)
    apply = lambda v: v @ torch.as_tensor(precond)  # noqa: E731  (P symmetric: rows times P)
    ours = memory.direction(torch.as_tensor(g[None, :]), apply(torch.as_tensor(g[None, :])), apply, ridge)
    np.testing.assert_allclose(ours.numpy()[0], -h @ g, rtol=1e-8, atol=1e-8 * (np.abs(h @ g).max() + 1))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(4, 120),
    d=st.integers(1, 24),
    n_classes=st.integers(2, 4),
    weighted=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    chunk_budget=st.sampled_from([1, 50, None]),
    threads=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**31 - 1),
)
@example(n=4, d=1, n_classes=2, weighted=False, dtype=torch.float32, chunk_budget=50, threads=1, seed=0)
def test_numpy_steps_match_the_torch_steps(n, d, n_classes, weighted, dtype, chunk_budget, threads, seed):
    """``fit_logistic`` on CPU keys makes its products through NumPy (BLAS on one thread, rows
    split over threads); the same steps with the torch products and ``factor.weights_for`` give
    the same weights to rounding, on the primal and the dual route, from zero, from a start, and
    from a scaled start."""
    X, y, rng = _problem(n, d, n_classes, seed)
    keys, labels = torch.as_tensor(X, dtype=dtype), torch.as_tensor(y)
    weights = torch.as_tensor(rng.uniform(0.2, 2.0, n)) if weighted else None
    values = torch.nn.functional.one_hot(labels, n_classes).double()
    k64 = keys.double()
    primal = SpectralFactor.from_stats(k64.T @ k64, k64.T @ values, float(n), float(n))
    dual = SpectralFactor.from_pairs(k64, values, float(n), float(n))
    for factor in (primal, dual) if n < d else (primal,):
        ridge = 0.3 * float(factor.eigenvalues.max())
        init = torch.as_tensor(rng.normal(size=(n_classes, d))) * 0.1 if seed % 3 else None
        if init is not None and factor is dual:
            init = (torch.as_tensor(rng.normal(size=(n_classes, n))) * 0.1) @ k64  # in the row span
        scale = init is not None and seed % 3 == 2
        with row_pass_settings(chunk_budget, threads):
            ours, taken = fit_logistic(
                keys, labels, weights, factor, ridge, 6, init=init, num_classes=n_classes, scale_init=scale
            )
        phi = 1.0 / (0.5 * factor.eigenvalues + ridge)
        start = torch.zeros(n_classes, d, dtype=torch.float64) if init is None else init.double()
        ref, ref_taken = quasi_newton_steps(
            RowProducts(keys, use_numpy=False),
            labels,
            weights,
            lambda g, factor=factor, phi=phi: factor.weights_for(phi, g.T),
            start,
            ridge,
            6,
            scale_start=scale,
        )
        # the same steps; at convergence one may stop a step earlier on its rounding-level tests
        # (a vanishing slope or a negligible step: seen with float32 keys on an Intel Xeon VM)
        assert taken == ref_taken or (abs(taken - ref_taken) == 1 and min(taken, ref_taken) < 6)
        assert ours.dtype == torch.float64
        tol = 1e-4 if dtype == torch.float32 else 1e-9
        torch.testing.assert_close(ours, ref, rtol=tol, atol=tol * (float(ref.abs().max()) + 1.0))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(6, 90),
    d=st.integers(2, 16),
    n_classes=st.integers(3, 4),
    C=st.sampled_from([0.3, 1.0, 5.0]),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_converges_to_scikit_learn_logistic_regression(n, d, n_classes, C, weighted, seed):
    """Run to convergence, the steps reach the minimiser of scikit-learn's multinomial
    ``LogisticRegression`` (no intercept, same C, same sample weights): the dual route (n ≤ 2d,
    the steps live in the span of the rows) and the primal one."""
    X, y, rng = _problem(n, d, n_classes, seed)
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    ours = FaastClassifier(loss="logistic", C=C, max_iter=5000, tol=0.0, fit_intercept=False).fit(
        X, y, sample_weight=w
    )
    ref = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y, sample_weight=w)
    keys, labels = torch.as_tensor(X), torch.as_tensor(np.searchsorted(ours.classes_, y))
    wt = None if w is None else torch.as_tensor(w)
    ours_f = logistic_objective(keys, labels, wt, torch.tensor(ours.coef_), 1.0 / C)
    ref_f = logistic_objective(keys, labels, wt, torch.tensor(ref.coef_), 1.0 / C)
    assert ours_f <= ref_f + 1e-9 * abs(ref_f) + 1e-9
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-5 * (np.abs(ref.coef_).max() + 1.0))
    assert ours.C_ == C


def test_binary_matches_scikit_learn_with_twice_the_C():
    """Two classes: scikit-learn fits one logit difference δ with penalty ½‖δ‖²/C; the softmax
    pair (−δ/2, δ/2) costs ρ‖δ‖²/4, so C here is 2·C there, and decision_function is δ·x."""
    X, y, _ = _problem(80, 5, 2, 3, spread=0.8)
    ours = FaastClassifier(loss="logistic", C=2.0, max_iter=5000, tol=0.0, fit_intercept=False).fit(X, y)
    ref = LogisticRegression(C=4.0, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(ours.decision_function(X), ref.decision_function(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-6)


def test_steps_lower_the_objective_and_predict_proba_is_softmax_of_scores():
    X, y, _ = _problem(300, 10, 3, 0)
    keys, labels = torch.as_tensor(X), torch.as_tensor(y)
    values = []
    for steps in (1, 3, 10, 50):
        clf = FaastClassifier(loss="logistic", C=1.0, max_iter=steps, tol=0.0, fit_intercept=False).fit(X, y)
        values.append(logistic_objective(keys, labels, None, torch.tensor(clf.coef_), 1.0))
    assert values[0] > values[1] > values[2] > values[3]
    scores = X @ clf.coef_.T
    np.testing.assert_allclose(clf.decision_function(X), scores, atol=1e-12)
    proba = torch.softmax(torch.as_tensor(scores), 1).numpy()
    np.testing.assert_allclose(clf.predict_proba(X), proba, atol=1e-12)


def test_holdout_split_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(4), [50, 20, 2, 1])
    kept, held = holdout_split(y, seed=0)
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(y)))
    counts = np.bincount(y[held], minlength=4)
    assert counts.tolist() == [round(HOLDOUT_FRACTION * 50), round(HOLDOUT_FRACTION * 20), 1, 0]
    assert np.bincount(y[kept], minlength=4).min() >= 1  # no class loses every example
    again, other = holdout_split(y, seed=0), holdout_split(y, seed=1)
    np.testing.assert_array_equal(again[1], held)
    assert not np.array_equal(other[1], held)
    assert holdout_split(np.arange(5), seed=0) is None  # one example per class: nothing to hold out


def test_choose_ridge_keeps_the_lowest_held_out_loss_and_fits_only_the_kept_examples():
    X, y, _ = _problem(400, 30, 3, 1, spread=2.0)
    keys, labels = torch.as_tensor(X), torch.as_tensor(y)
    stats = GramStats(30, 3)
    stats.add(keys, torch.nn.functional.one_hot(labels, 3).double())
    factor = stats.factor()
    choice = choose_ridge(keys, labels, None, factor, steps=20, seed=0, num_classes=3)
    assert choice is not None
    best = choice.candidates.index(choice.ridge)
    losses = choice.holdout_loss
    assert best >= 1  # a clear signal: weaker than the start
    assert losses[best] < min(losses[:best]) * (1 - PATH_TOLERANCE)  # it beat every stronger one
    assert losses[best] == min(losses)  # nothing tried after it did better
    scale = penalty_scale(factor)
    decades = [round(-np.log10(r / scale), 6) for r in choice.candidates]
    assert decades == list(range(1, best + 3))  # weaker one decade at a time, one past the best
    assert losses[best + 1] >= losses[best] * (1 - PATH_TOLERANCE)  # stopped at the first non-gain
    # the chosen weights are the path's on the kept examples only (held-out labels never fitted)
    kept, held = holdout_split(y, seed=0)
    weight, memory = None, CurvatureMemory()  # the path carries its curvature pairs along
    for ridge in choice.candidates[: best + 1]:
        weight, _ = fit_logistic(
            keys[kept], labels[kept], None, factor, ridge, 20, init=weight, num_classes=3, memory=memory
        )
    torch.testing.assert_close(choice.weight, weight, rtol=0, atol=0)
    # and its curvature pairs, those of the whole path (one more candidate), the changes scaled
    # from the kept rows to all of them (for the final fit)
    for ridge in choice.candidates[best + 1 :]:
        weight, _ = fit_logistic(
            keys[kept], labels[kept], None, factor, ridge, 20, init=weight, num_classes=3, memory=memory
        )
    assert len(choice.memory.steps) == len(memory.steps) > 0
    for ours, ref in zip(choice.memory.steps, memory.steps, strict=True):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    for ours, ref in zip(choice.memory.changes, memory.changes, strict=True):
        torch.testing.assert_close(ours, ref * (len(y) / len(kept)), rtol=1e-15, atol=0)
    flipped = labels.clone()
    flipped[held] = (flipped[held] + 1) % 3
    again = choose_ridge(keys, flipped, None, factor, steps=20, seed=0, num_classes=3)
    assert again.holdout_loss[0] != choice.holdout_loss[0]  # the score reads the held-out labels


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=st.integers(0, 1000))
def test_holdout_folds_hold_out_every_example_once_when_a_tenth_is_too_few(counts, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    folds = holdout_folds(y, seed)
    single = holdout_split(y, seed)
    if single is None:
        assert folds == []
        return
    if len(single[1]) >= MIN_HELD_OUT:
        assert len(folds) == 1 and all(np.array_equal(a, b) for a, b in zip(folds[0], single, strict=True))
        return
    assert 1 <= len(folds) <= HOLDOUT_FOLDS
    held = np.concatenate([h for _, h in folds])
    several = np.flatnonzero(np.isin(y, np.flatnonzero(np.bincount(y) >= 2)))
    np.testing.assert_array_equal(np.sort(held), several)  # each such example held out exactly once
    for kept, out in folds:
        assert np.intersect1d(kept, out).size == 0 and kept.size + out.size == len(y)
        assert set(y[several]) <= set(y[kept])  # no fold takes every example of a class
    again = holdout_folds(y, seed)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))


def test_choose_ridge_sums_the_held_out_loss_over_the_folds_when_few_examples():
    X, y, _ = _problem(40, 12, 3, 4, spread=2.0)
    keys, labels = torch.as_tensor(X), torch.as_tensor(y)
    stats = GramStats(12, 3)
    stats.add(keys, torch.nn.functional.one_hot(labels, 3).double())
    factor = stats.factor()
    choice = choose_ridge(keys, labels, None, factor, steps=10, seed=0, num_classes=3)
    folds = holdout_folds(y, 0)
    assert choice.folds == len(folds) > 1
    # brute force: every fold walks the candidates in order from its own previous weights
    current = [None] * len(folds)
    memories = [CurvatureMemory() for _ in folds]
    for ridge, loss in zip(choice.candidates, choice.holdout_loss, strict=True):
        if ridge > choice.candidates[0]:  # the walk turned stronger: it restarts from the first candidate
            break
        total = 0.0
        for f, (kept, held) in enumerate(folds):
            current[f], _ = fit_logistic(
                keys[kept],
                labels[kept],
                None,
                factor,
                ridge,
                10,
                init=current[f],
                num_classes=3,
                memory=memories[f],
            )
            total += logistic_gradient(keys[held], labels[held], None, current[f])[1]
        assert loss == pytest.approx(total / len(y), rel=1e-12)


def test_choose_ridge_walks_stronger_when_the_first_penalty_wins():
    """A weak signal among noise: the held-out loss falls only with a stronger penalty, so the
    path goes past its start (t = 1) to t = 0, whose loss beats the null loss."""
    rng = np.random.default_rng(6)
    keys = torch.as_tensor(rng.normal(size=(300, 20)))
    labels = torch.as_tensor(rng.integers(0, 3, 300))
    keys[:, :3] += 0.6 * torch.nn.functional.one_hot(labels, 3).double()
    stats = GramStats(20, 3)
    stats.add(keys, torch.nn.functional.one_hot(labels, 3).double())
    factor = stats.factor()
    choice = choose_ridge(keys, labels, None, factor, steps=10, seed=0, num_classes=3)
    scale = penalty_scale(factor)
    decades = [round(-np.log10(r / scale), 6) for r in choice.candidates]
    assert decades[:3] == [1, 2, 0]  # one step weaker, rise, then stronger
    assert choice.ridge == pytest.approx(scale)  # t = 0
    assert choice.holdout_loss[2] < choice.null_loss * (1 - PATH_TOLERANCE)


def test_choose_ridge_falls_back_when_no_penalty_beats_predicting_without_features():
    """Labels that are noise: every penalty's held-out loss is above, or within 1 % of, the null
    loss (uniform predictions: log 3), so
    the held-out examples cannot rank the penalties and ρ = s / FALLBACK_DIVISOR is used, as when
    nothing can be held out, instead of the strongest penalty, whose near-uniform predictions
    merely approach the null loss."""
    rng = np.random.default_rng(5)
    keys = torch.as_tensor(rng.normal(size=(300, 20)))
    labels = torch.as_tensor(rng.integers(0, 3, 300))
    stats = GramStats(20, 3)
    stats.add(keys, torch.nn.functional.one_hot(labels, 3).double())
    factor = stats.factor()
    choice = choose_ridge(keys, labels, None, factor, steps=10, seed=0, num_classes=3)
    assert choice.null_loss == pytest.approx(math.log(3))
    assert min(choice.holdout_loss) >= choice.null_loss * (1 - PATH_TOLERANCE)
    assert choice.ridge == pytest.approx(penalty_scale(factor) / FALLBACK_DIVISOR)
    assert choice.ridge in choice.candidates  # with the weights fitted at it


def _scripted_walk(monkeypatch, script: list[float], tolerance: float = PATH_TOLERANCE):
    """``choose_ridge`` on a 4-class problem whose fits are real but whose candidate i has the
    held-out loss ``script[i]`` per example (``data_loss`` patched), with ``PATH_TOLERANCE`` set to
    ``tolerance``; returns the choice and the penalty scale s."""
    X, y, _ = _problem(400, 20, 4, 2, spread=1.0)
    keys, labels = torch.as_tensor(X), torch.as_tensor(y)
    stats = GramStats(20, 4)
    stats.add(keys, torch.nn.functional.one_hot(labels, 4).double())
    factor = stats.factor()
    calls = iter(script)

    def scripted(k, y_out, w_out, weight):
        return next(calls) * len(y_out)

    with monkeypatch.context() as patch:
        patch.setattr("faast.solver.logistic.data_loss", scripted)
        patch.setattr("faast.solver.logistic.PATH_TOLERANCE", tolerance)
        choice = choose_ridge(keys, labels, None, factor, steps=3, seed=0, num_classes=4)
    assert choice is not None and choice.folds == 1
    return choice, penalty_scale(factor)


def test_choose_ridge_ends_a_path_that_only_gains_a_fraction_of_a_percent(monkeypatch):
    """The walk's rule on a scripted path of held-out losses (the fits are real, the held-out loss
    of candidate i is set to the script's i-th value): a candidate that lowers the best loss by
    less than ``PATH_TOLERANCE`` of it ends the walk and the candidate before it is kept; without
    a tolerance the same path walks on to the weakest decade and keeps the lowest."""
    script = [1.0, 0.8, 0.7, 0.6995, 0.69, 0.6, 0.59, 0.58, 0.57]  # candidate 4 gains 0.07 %
    choice, _ = _scripted_walk(monkeypatch, script)
    np.testing.assert_allclose(choice.holdout_loss, script[:4], rtol=1e-12)
    assert choice.candidates.index(choice.ridge) == 2  # ended at the 0.07 % gain, kept the one before
    choice, _ = _scripted_walk(monkeypatch, script, tolerance=0.0)
    np.testing.assert_allclose(choice.holdout_loss, script, rtol=1e-12)
    assert choice.candidates.index(choice.ridge) == len(script) - 1


def test_choose_ridge_walks_on_through_flat_decades_and_they_do_not_count(monkeypatch):
    """A scripted path (the fits are real, candidate i's held-out loss is the script's i-th value)
    that sits exactly at the null loss log 4 for three decades — penalties that hide the features
    entirely — then falls: the flat decades neither end the walk nor replace the best, and the
    walk may go three decades past WEAKEST_DECADE; a decade that rises on the plateau still ends
    it, as before."""
    null = math.log(4)
    flat = [null, null * (1 + FLAT_TOLERANCE / 2), null * (1 - FLAT_TOLERANCE / 2), null]
    falling = [null * 0.9**k for k in range(1, 20)]
    choice, scale = _scripted_walk(monkeypatch, flat + falling)
    decades = [round(-math.log10(r / scale)) for r in choice.candidates]
    assert decades[0] == START_DECADE
    flats = 3  # candidates 1-3 are within FLAT_TOLERANCE of the best (candidate 0 or 2)
    assert decades[-1] == WEAKEST_DECADE + flats  # three decades further than a path without them
    assert choice.ridge == choice.candidates[-1]  # every falling decade beat the best by 10 %
    np.testing.assert_allclose(choice.holdout_loss, (flat + falling)[: len(decades)], rtol=1e-12)
    rising, _ = _scripted_walk(monkeypatch, [null, null * (1 + 10 * FLAT_TOLERANCE), *falling])
    assert len(rising.candidates) > 1  # a rise on the plateau ends the weaker walk at once
    assert [round(-math.log10(r / scale)) for r in rising.candidates[:2]] == [START_DECADE, START_DECADE + 1]
    assert START_DECADE + 2 not in [round(-math.log10(r / scale)) for r in rising.candidates]


@pytest.mark.parametrize("scale", [1e-4, 1e-6])
def test_auto_C_finds_features_far_smaller_than_the_intercept_column(scale):
    """Features 10⁴–10⁶ times smaller than the intercept's constant column (value 1): its
    curvature sets s, so the first decades of the path hide the features entirely (a flat held-out
    loss at log 2). The walk goes on through those flat decades and finds the penalty that shows
    them; before, it stopped there, walked stronger and fell back to chance (about 50 %)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 10))
    y = (X[:, 0] + 0.3 * rng.standard_normal(600) > 0).astype(int)
    reference = FaastClassifier(loss="logistic").fit(X[:500], y[:500])
    small = FaastClassifier(loss="logistic").fit(X[:500] * scale, y[:500])
    accuracy = small.score(X[500:] * scale, y[500:])
    assert accuracy >= reference.score(X[500:], y[500:]) - 0.02
    assert accuracy > 0.85


@pytest.mark.parametrize("scale", [1e-3, 1e-4])
def test_auto_C_finds_small_features_of_imbalanced_classes(scale):
    """The same with classes of shares 0.5 / 0.3 / 0.2: a penalty that hides the features learns
    the class frequencies through the intercept, whose held-out loss is more than 1 % below
    log 3, so the plateau was taken for a path that had found the features, the walk ended two
    decades in, and the fit predicted the majority class (50.5 % at scale 10⁻³)."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        3000, 10, n_informative=5, n_classes=3, weights=[0.5, 0.3, 0.2], random_state=0
    )
    train, test = slice(0, 2000), slice(2000, None)
    reference = FaastClassifier(loss="logistic").fit(X[train], y[train]).score(X[test], y[test])
    accuracy = (
        FaastClassifier(loss="logistic").fit(X[train] * scale, y[train]).score(X[test] * scale, y[test])
    )
    assert accuracy >= reference - 0.02
    assert accuracy > np.bincount(y[test]).max() / len(y[test]) + 0.2


@pytest.mark.parametrize("offset", [100.0, 1e4])
def test_choose_ridge_walks_off_the_null_plateau_of_uncentred_features(offset):
    """Features far from the origin: their mean direction dominates the Gram, so the scale s
    (the mean eigenvalue) and the first penalties silence the class directions and the held-out
    loss sits within 1 % of the null loss, falling by less than 1 % a decade. There any decrease
    continues the walk, which reaches the penalties where the classes show; with the plateau
    counted as a flat path it stopped there and fell back to chance. The chosen penalty is the one
    the centred features choose, up to the offset's share of the scale, and predicts as well."""
    X, y, _ = _problem(600, 10, 4, 7, spread=1.0)
    held_in, held_out = slice(0, 500), slice(500, None)

    def fitted(features):
        keys, labels = torch.as_tensor(features[held_in]), torch.as_tensor(y[held_in])
        stats = GramStats(features.shape[1], 4)
        stats.add(keys, torch.nn.functional.one_hot(labels, 4).double())
        factor = stats.factor()
        choice = choose_ridge(keys, labels, None, factor, steps=10, seed=0, num_classes=4)
        weight, _ = fit_logistic(keys, labels, None, factor, choice.ridge, 10, init=choice.weight)
        scores = torch.as_tensor(features[held_out]) @ weight.T
        return choice, factor, float((scores.argmax(1).numpy() == y[held_out]).mean())

    centred, _, centred_accuracy = fitted(X)
    shifted, factor, accuracy = fitted(X + offset)
    plateau = [
        i for i, loss in enumerate(shifted.holdout_loss) if loss >= shifted.null_loss * (1 - PATH_TOLERANCE)
    ]
    assert plateau[:2] == [0, 1]  # it started on the plateau, and the next decade stayed there
    assert shifted.holdout_loss[1] >= shifted.holdout_loss[0] * (1 - PATH_TOLERANCE)  # a "flat" step
    assert min(shifted.holdout_loss) < shifted.null_loss * (1 - PATH_TOLERANCE)  # it walked off it
    assert shifted.ridge < shifted.candidates[0] * 1e-3
    assert shifted.ridge < penalty_scale(factor) / FALLBACK_DIVISOR  # not the fallback
    assert accuracy >= centred_accuracy - 0.03 and accuracy > 0.5  # chance is 0.25
    assert centred.holdout_loss[0] < centred.null_loss * (1 - PATH_TOLERANCE)  # no plateau there


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(4, 120),
    d=st.integers(1, 24),
    n_classes=st.integers(2, 4),
    tolerance=st.sampled_from([1e-6, 1e-4, 1e-2]),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_steps_stop_at_the_first_step_that_guarantees_at_most_the_tolerance(
    n, d, n_classes, tolerance, weighted, seed
):
    """``fit_logistic(tolerance=t)`` takes the steps of ``tolerance=0`` up to and including the
    first whose guaranteed decrease ½ gᵀ P g is at most t · Σ wᵢ, and stops there: the weights
    equal those of the untolerant run cut to that many steps."""
    X, y, rng = _problem(n, d, n_classes, seed)
    keys, labels = torch.as_tensor(X), torch.as_tensor(y)
    weights = torch.as_tensor(rng.uniform(0.2, 2.0, n)) if weighted else None
    k64 = keys.double()
    factor = SpectralFactor.from_stats(
        k64.T @ k64, k64.T @ torch.nn.functional.one_hot(labels, n_classes).double(), float(n), float(n)
    )
    ridge = 0.01 * float(factor.eigenvalues.max()) + 1e-3
    phi = 1.0 / (0.5 * factor.eigenvalues + ridge)
    total = float(n) if weights is None else float(weights.sum())
    expected, weight = 40, torch.zeros(n_classes, d, dtype=torch.float64)
    for k in range(1, 41):  # the untolerant run cut to k - 1 steps, and ½ gᵀ P g where step k starts
        if k > 1:
            weight, _ = fit_logistic(keys, labels, weights, factor, ridge, k - 1, num_classes=n_classes)
        grad = logistic_gradient_torch(keys, labels, weights, weight)[0] + ridge * weight
        if 0.5 * float((grad * factor.weights_for(phi, grad.T)).sum()) <= tolerance * total:
            expected = k
            break
    ours, taken = fit_logistic(
        keys, labels, weights, factor, ridge, 40, num_classes=n_classes, tolerance=tolerance
    )
    assert taken == expected
    cut, _ = fit_logistic(keys, labels, weights, factor, ridge, taken, num_classes=n_classes)
    torch.testing.assert_close(ours, cut, rtol=1e-9, atol=1e-12)


def test_tol_ends_the_classifier_steps_early_on_separable_data():
    """``tol`` (default 1e-4 nats per example) ends the steps once one gains almost nothing, here
    long before ``max_iter``; the weights are those of ``tol=0`` cut to the same steps."""
    X, y, _ = _problem(300, 10, 3, 0, spread=6.0)
    quick = FaastClassifier(loss="logistic", C=1.0, max_iter=200).fit(X, y)
    full = FaastClassifier(loss="logistic", C=1.0, max_iter=200, tol=0.0).fit(X, y)
    assert quick.n_iter_ < full.n_iter_ / 4
    cut = FaastClassifier(loss="logistic", C=1.0, max_iter=quick.n_iter_, tol=0.0).fit(X, y)
    np.testing.assert_allclose(quick.coef_, cut.coef_, rtol=1e-9, atol=1e-12)
    keys, labels = torch.as_tensor(X), torch.as_tensor(y)
    with pytest.raises(ValueError, match="tolerance must be"):
        fit_logistic(keys, labels, None, quick.memory_.stats.factor(), 1.0, 5, tolerance=-1.0)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(12, 400),
    d=st.sampled_from([6, 40]),
    zeros=st.integers(1, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_auto_C_ignores_examples_of_zero_weight(n, d, zeros, seed):
    """With ``C="auto"`` a fit with some examples weighted 0 chooses the same penalty and weights
    as a fit without them (they are left out of the held-out split, not just of the loss)."""
    X, y, rng = _problem(n, d, 3, seed)
    w = rng.uniform(0.5, 2.0, n)
    w[rng.choice(np.arange(6, n), size=min(zeros, n - 6), replace=False)] = 0.0  # every class keeps rows
    with_zeros = FaastClassifier(loss="logistic").fit(X, y, sample_weight=w)
    keep = w > 0
    without = FaastClassifier(loss="logistic").fit(X[keep], y[keep], sample_weight=w[keep])
    assert with_zeros.C_ == pytest.approx(without.C_, rel=1e-12)
    np.testing.assert_allclose(with_zeros.coef_, without.coef_, rtol=1e-6, atol=1e-8)


def test_auto_C_is_chosen_and_one_example_per_class_falls_back():
    X, y, _ = _problem(200, 8, 3, 2)
    clf = FaastClassifier(loss="logistic", fit_intercept=False).fit(X, y)
    scale = float((X**2).sum()) / 8  # trace(G) / rank(G), full rank with n > d
    grid = [1.0 / (scale * 10.0**-t) for t in range(-3, 10)]
    assert min(abs(clf.C_ / g - 1) for g in grid) < 1e-9
    # rank 3: s = trace / 3
    one_shot = FaastClassifier(loss="logistic", fit_intercept=False).fit(X[:3], y[:3])
    assert one_shot.C_ == pytest.approx(100.0 * 3 / float((X[:3] ** 2).sum()))
    assert (one_shot.predict(X[:3]) == y[:3]).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"refine": 2}, "refine > 0"),
        ({"class_embeddings": np.eye(3)}, "class_embeddings"),
        ({"prior": np.zeros((3, 4))}, "a prior"),
    ],
)
def test_refuses_what_it_cannot_honour(kwargs, message):
    X, y, _ = _problem(30, 4, 3, 0)
    with pytest.raises(ValueError, match=message):
        FaastClassifier(loss="logistic", **kwargs).fit(X, y)


def test_incremental_changes_are_refused():
    X, y, _ = _problem(30, 4, 3, 0)
    clf = FaastClassifier(loss="logistic", C=1.0).fit(X, y)
    before = clf.coef_.copy()
    for call in (lambda: clf.partial_fit(X, y), lambda: clf.forget(X[:2], y[:2]), clf.solve):
        with pytest.raises(ValueError, match='loss="logistic"'):
            call()
    np.testing.assert_array_equal(clf.coef_, before)
    with pytest.raises(ValueError, match="loss"):
        FaastClassifier(loss="hinge").fit(X, y)
    with pytest.raises(ValueError, match="C"):
        FaastClassifier(loss="logistic", C=0.0).fit(X, y)


@pytest.mark.parametrize("n", [12, 200])  # dual route (rows kept) and primal
def test_save_and_load_give_the_same_logits(tmp_path, n):
    X, y, _ = _problem(n, 6, 3, 4)
    clf = FaastClassifier(loss="logistic").fit(X, y)
    loaded = FaastClassifier.load(clf.save(tmp_path / "clf"))
    assert loaded.loss == "logistic" and loaded.C_ == clf.C_ and loaded.n_iter_ == clf.n_iter_
    np.testing.assert_array_equal(loaded.coef_, clf.coef_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_load_refuses_logistic_without_its_weights(tmp_path):
    from faast.io import load_tensors, save_tensors

    X, y, _ = _problem(40, 6, 3, 4)
    folder = FaastClassifier(loss="logistic").fit(X, y).save(tmp_path / "clf")
    tensors, _ = load_tensors(folder / "classifier.safetensors", kind="classifier")
    del tensors["logistic_weight"]
    save_tensors(folder / "classifier.safetensors", tensors, {"classes": "3"}, kind="classifier")
    info = json.loads((folder / "classifier.json").read_text())
    del info["tensors_sha256"]  # as a file saved before the digest: the tensors' own check answers
    (folder / "classifier.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="no logistic weights"):
        FaastClassifier.load(folder)


_REFUSES_PARTIAL_FIT = 'partial_fit is refused with loss="logistic" (its steps need every example)'


_HOLDOUT_OVER_EXAMPLES = (
    'C="auto" holds out a tenth of the examples: a repeated example can land on both sides, a '
    "weighted one cannot, so weights and repeats choose C from different splits (fixed C: passes)"
)


def _expected_failures(est: FaastClassifier) -> dict[str, str]:
    out = {**dict.fromkeys(PARTIAL_FIT_CHECKS, _REFUSES_PARTIAL_FIT), **no_intercept_fails(est)}
    if est.C == "auto":
        out["check_sample_weight_equivalence_on_dense_data"] = _HOLDOUT_OVER_EXAMPLES
    return out


@parametrize_with_checks(
    [
        FaastClassifier(loss="logistic"),
        FaastClassifier(loss="logistic", C=1.0),
        FaastClassifier(loss="logistic", C=1.0, fit_intercept=False),
    ],
    expected_failed_checks=_expected_failures,
)
def test_scikit_learn_estimator_checks(estimator, check):
    """Every other check passes with the logistic steps on."""
    check(estimator)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(4, 150),
    d=st.integers(1, 12),
    n_classes=st.integers(2, 4),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_a_fit_from_the_last_fits_weights_reuses_its_scores(n, d, n_classes, weighted, seed):
    """Along a path the next penalty starts from the weights the last fit returned with the same
    memory: their scores K Wᵀ are taken from that fit, not recomputed (no pass), and the result
    equals a start from a copy of those weights (scores recomputed) to rounding."""
    X, y, rng = _problem(n, d, n_classes, seed)
    keys, labels = torch.as_tensor(X), torch.as_tensor(y)
    weights = torch.as_tensor(rng.uniform(0.2, 2.0, n)) if weighted else None
    k64 = keys.double()
    factor = SpectralFactor.from_stats(
        k64.T @ k64, k64.T @ torch.nn.functional.one_hot(labels, n_classes).double(), float(n), float(n)
    )
    scale = float(factor.eigenvalues.max())
    memory = CurvatureMemory()
    first, _ = fit_logistic(
        keys, labels, weights, factor, 0.3 * scale, 4, num_classes=n_classes, memory=memory
    )
    copied = CurvatureMemory(list(memory.steps), list(memory.changes))  # the pairs, not the scores
    calls: list[int] = []
    real = RowProducts.scores

    def counted(self, direction):
        calls.append(1)
        return real(self, direction)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RowProducts, "scores", counted)
        reused, steps = fit_logistic(
            keys, labels, weights, factor, 0.03 * scale, 4, init=first, num_classes=n_classes, memory=memory
        )
        assert len(calls) == steps  # one per step (its direction), none for the start
        calls.clear()
        fresh, _ = fit_logistic(
            keys,
            labels,
            weights,
            factor,
            0.03 * scale,
            4,
            init=first.clone(),
            num_classes=n_classes,
            memory=copied,
        )
        assert len(calls) == steps + 1
    torch.testing.assert_close(reused, fresh, rtol=1e-7, atol=1e-9 * (float(fresh.abs().max()) + 1.0))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60),
    m=st.integers(1, 5),
    weighted=st.booleans(),
    chunk=st.sampled_from([1, 4, 8192]),
    seed=st.integers(0, 2**31 - 1),
)
def test_softmax_terms_in_chunks_of_rows_equal_the_whole_array(n, m, weighted, chunk, seed):
    """``softmax_terms`` (``SCORE_CHUNK_ROWS`` rows at a time, written into ``out`` or a new
    array) equals torch's softmax and the weighted cross-entropy of the whole array."""
    rng = np.random.default_rng(seed)
    scores = torch.as_tensor(rng.normal(size=(n, m)) * 5)
    labels = torch.as_tensor(rng.integers(0, m, n))
    weights = torch.as_tensor(rng.uniform(0.2, 2.0, n)) if weighted else None
    nll = torch.nn.functional.cross_entropy(scores, labels, reduction="none")
    ref = float((nll if weights is None else nll * weights).sum())
    out = torch.full((n, m), float("nan"), dtype=torch.float64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("faast.solver.logistic_steps.SCORE_CHUNK_ROWS", chunk)
        probs, loss = softmax_terms(scores, labels, weights)
        written, loss_out = softmax_terms(scores, labels, weights, out=out)
    assert written is out
    for p_, l_ in ((probs, loss), (written, loss_out)):
        torch.testing.assert_close(p_, torch.softmax(scores, 1), rtol=1e-12, atol=1e-15)
        assert math.isclose(l_, ref, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_line_search_out_of_rounds_returns_the_alpha_it_evaluated_last(rounds, monkeypatch):
    """Cut short after ``LINE_SEARCH_ROUNDS`` evaluations, the line search returns the last α it
    evaluated, with that α's data term and softmax (not the next, unevaluated guess)."""
    rng = np.random.default_rng(3)
    labels = torch.as_tensor(rng.integers(0, 3, 50))
    scores = torch.as_tensor(rng.normal(size=(50, 3)))
    direction_scores = torch.as_tensor(rng.normal(size=(50, 3))) * 10
    slope = float(
        ((torch.softmax(scores, 1) * direction_scores).sum(1) - direction_scores[range(50), labels]).sum()
    )
    if slope > 0:
        direction_scores, slope = -direction_scores, -slope
    _, loss0 = softmax_terms(scores, labels, None)
    monkeypatch.setattr("faast.solver.logistic_steps.LINE_SEARCH_ROUNDS", rounds)
    out = torch.empty_like(scores)
    alpha, data = line_search(scores, direction_scores, labels, None, loss0, slope, (0.0, 0.0, 0.0), out=out)
    if rounds == 1:
        assert alpha == 1.0  # the only α evaluated
    probs, ref = softmax_terms(scores + alpha * direction_scores, labels, None)
    assert math.isclose(data, ref, rel_tol=1e-12)
    torch.testing.assert_close(out, probs, rtol=1e-12, atol=1e-15)
