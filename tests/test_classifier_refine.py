"""Margin retargeting (``FaastClassifier(refine=R, margin=θ)``) against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils.estimator_checks import parametrize_with_checks

from faast import FaastClassifier
from faast.solver.naive import ridge_reference, svd_reference
from faast.solver.retarget import margins, retarget, retargeted_cross, retargeted_cross_torch
from faast.solver.spectral import SpectralFactor
from tests.row_pass_settings import row_pass_settings


def _reference(
    X: np.ndarray, y: np.ndarray, w: np.ndarray | None, rounds: int, theta: float, cut: dict
) -> np.ndarray:
    """R rounds of retargeting by plain refits: targets of examples beyond the margin replaced
    by their predictions, solved by the dense float64 references. Returns W (C, d)."""
    classes, index = np.unique(y, return_inverse=True)
    Y = np.eye(len(classes))[index]
    keys = torch.from_numpy(X)
    weights = None if w is None else torch.from_numpy(w)

    def solve(T: np.ndarray) -> np.ndarray:
        if "ridge" in cut:
            k, t = keys, torch.from_numpy(T)
            if weights is not None:
                root = weights.sqrt()[:, None]
                k, t = k * root, t * root
            return ridge_reference(k, t, cut["ridge"]).numpy()
        return svd_reference(keys, torch.from_numpy(T), cut["tau"], weights).numpy()

    W = solve(Y)
    for _ in range(rounds):
        S = X @ W.T
        rows = np.arange(len(y))
        other = S.copy()
        other[rows, index] = -np.inf
        easy = S[rows, index] - other.max(axis=1) > theta
        W = solve(np.where(easy[:, None], S, Y))
    return W


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 70),
    d=st.integers(2, 24),
    n_classes=st.integers(2, 4),
    rounds=st.integers(1, 3),
    theta=st.sampled_from([0.2, 0.5, 1.0]),
    cut=st.sampled_from([{"ridge": 0.3}, {"ridge": 2.0}, {"tau": 0.05}]),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_refine_matches_brute_force_refits(n, d, n_classes, rounds, theta, cut, weighted, seed):
    """Every shape: the dual route (n ≤ 2d, rows kept) and the primal one (n > 2d)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)  # every class present
    X = rng.normal(size=(n, d)) + 1.5 * np.eye(n_classes, d)[y]
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    clf = FaastClassifier(refine=rounds, margin=theta, fit_intercept=False, **cut).fit(X, y, sample_weight=w)
    ref = _reference(X, y, w, rounds, theta, cut)
    np.testing.assert_allclose(clf.coef_, ref, rtol=1e-7, atol=1e-8 * np.abs(ref).max())
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[np.argmax(X @ ref.T, axis=1)])


def test_refine_zero_is_the_plain_solve_and_changes_something():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    X = rng.normal(size=(400, 12)) + np.eye(3, 12)[y]
    plain = FaastClassifier(ridge=1.0, fit_intercept=False).fit(X, y)
    np.testing.assert_array_equal(
        FaastClassifier(ridge=1.0, refine=0, fit_intercept=False).fit(X, y).coef_, plain.coef_
    )
    refined = FaastClassifier(ridge=1.0, refine=3, fit_intercept=False).fit(X, y)
    assert refined.retargeted_ > 0
    assert not np.allclose(refined.coef_, plain.coef_)
    np.testing.assert_allclose(refined.decision_function(X), X @ refined.coef_.T, atol=1e-12)


def test_refine_refuses_incremental_changes_and_leaves_the_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    X = rng.normal(size=(50, 6)) + y[:, None]
    clf = FaastClassifier(refine=2).fit(X, y)
    coef = clf.coef_.copy()
    for call in (lambda: clf.partial_fit(X, y), lambda: clf.forget(X[:3], y[:3]), clf.solve):
        with pytest.raises(ValueError, match="refine=2"):
            call()
    np.testing.assert_array_equal(clf.coef_, coef)
    with pytest.raises(ValueError, match="distributed"):
        FaastClassifier(refine=1, distributed=True).fit(X, y)


def test_refine_off_again_is_the_plain_model_and_saves_as_such(tmp_path):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 80)
    X = rng.normal(size=(80, 6)) + np.eye(3, 6)[y]
    clf = FaastClassifier(refine=3).fit(X, y)
    clf.set_params(refine=0).partial_fit(X[:5], y[:5])
    want = FaastClassifier().fit(np.vstack([X, X[:5]]), np.concatenate([y, y[:5]]))
    np.testing.assert_allclose(clf.coef_, want.coef_, rtol=1e-9, atol=1e-12)
    assert not hasattr(clf, "retarget_cross_") and clf.retargeted_ == 0
    loaded = FaastClassifier.load(clf.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.coef_, want.coef_, rtol=1e-9, atol=1e-12)


def test_refine_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 120)
    X = rng.normal(size=(120, 8)) + np.eye(3, 8)[y]
    clf = FaastClassifier(refine=3, margin=0.4).fit(X, y)
    loaded = FaastClassifier.load(clf.save(tmp_path / "m"))
    assert (loaded.refine, loaded.margin) == (3, 0.4)
    np.testing.assert_allclose(loaded.coef_, clf.coef_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 900),
    d=st.integers(1, 30),
    m=st.integers(1, 8),
    weighted=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    chunk_budget=st.sampled_from([1, 40, 997, None]),
    threads=st.sampled_from([1, 2, 3]),
    theta=st.sampled_from([-0.5, 0.2, 0.5, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_numpy_retargeting_pass_matches_torch_reference(
    n, d, m, weighted, dtype, chunk_budget, threads, theta, seed
):
    """The CPU pass (NumPy's BLAS, split over chunks and threads) against the torch one: the same
    cross matrix to rounding and the same number of retargeted examples."""
    rng = np.random.default_rng(seed)
    keys = torch.as_tensor(rng.normal(size=(n, d)), dtype=dtype)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(rng.integers(0, m, n)), m).to(dtype)
    w = torch.as_tensor(rng.uniform(0.0, 2.0, n)) if weighted else None
    weight = torch.as_tensor(rng.normal(size=(m, d)))
    with row_pass_settings(chunk_budget, threads):
        cross, moved = retargeted_cross(keys, onehot, w, weight, theta)
    ref_cross, ref_moved = retargeted_cross_torch(keys, onehot, w, weight, theta)
    assert cross.dtype == torch.float64 and cross.shape == (d, m)
    assert moved == ref_moved
    scale = float(ref_cross.abs().max()) if ref_cross.numel() else 0.0
    torch.testing.assert_close(cross, ref_cross, rtol=1e-10, atol=1e-10 * (scale + 1.0))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 150),
    d=st.integers(1, 24),
    m=st.integers(1, 5),
    weighted=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    rounds=st.integers(1, 3),
    threads=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_numpy_retarget_rounds_match_torch_rounds(n, d, m, weighted, dtype, rounds, threads, seed):
    """``retarget`` on CPU keys stays in NumPy (BLAS on one thread, passes split over threads);
    the torch pass and ``factor.weights_for`` give the same rounds to rounding, primal and dual."""
    rng = np.random.default_rng(seed)
    keys = torch.as_tensor(rng.normal(size=(n, d)), dtype=dtype)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(rng.integers(0, m, n)), m).to(dtype)
    w = torch.as_tensor(rng.uniform(0.0, 2.0, n)) if weighted else None
    k64, v64 = keys.double(), onehot.double()
    primal = SpectralFactor.from_stats(k64.T @ k64, k64.T @ v64, float(n), float(n))
    dual = SpectralFactor.from_pairs(k64, v64, float(n), float(n))
    for factor in (primal, dual) if n < d else (primal,):
        phi = factor.ridge_filter(0.5)
        start = factor.weights(phi)
        with row_pass_settings(40, threads):
            cross, weight, moved = retarget(keys, onehot, w, factor, phi, start, 0.5, rounds)
        ref_weight = start
        for _ in range(rounds):
            ref_cross, ref_moved = retargeted_cross_torch(keys, onehot, w, ref_weight, 0.5)
            ref_weight = factor.weights_for(phi, ref_cross)
        assert moved == ref_moved and weight.dtype == torch.float64 and weight.shape == (m, d)
        for got, want in ((cross, ref_cross), (weight, ref_weight)):
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8 * (float(want.abs().max()) + 1.0))


def test_margins_and_retargeted_cross_by_hand():
    scores = torch.tensor([[2.0, 0.5, 1.0], [0.0, 1.0, 0.9]], dtype=torch.float64)
    np.testing.assert_allclose(margins(scores, torch.tensor([0, 2])).numpy(), [1.0, -0.1])
    assert torch.isinf(margins(scores[:, :1], torch.tensor([0, 0]))).all()
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    onehot = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    weight = torch.tensor([[3.0, 0.0], [0.0, 0.2]], dtype=torch.float64)  # row 0: margin 3; row 1: 0.2
    cross, moved = retargeted_cross(keys, onehot, None, weight, 0.5)
    assert moved == 1
    np.testing.assert_allclose(cross.numpy(), [[3.0, 0.0], [0.0, 1.0]])  # row 0 targets its prediction


_REFUSES_PARTIAL_FIT = "refine > 0 refuses partial_fit (the rounds need every example at once)"
#: scikit-learn checks that call partial_fit, which refine (and loss="logistic") refuse.
PARTIAL_FIT_CHECKS = (
    "check_estimators_partial_fit_n_features",
    "check_fit_score_takes_y",
    "check_n_features_in_after_fitting",
)


#: scikit-learn's class_weight check weights one class 10⁷ times the others on 2-D blobs around
#: points far from the origin and expects it predicted almost everywhere: scores through the
#: origin (``fit_intercept=False``) cannot put one class above the others on every side of it.
#: With an intercept (the default) the check passes.
NO_INTERCEPT_FAILS = {
    "check_class_weight_classifiers": "no intercept: scores through the origin cannot favour one "
    "class on every side of it (passes with fit_intercept=True)"
}


def no_intercept_fails(est: FaastClassifier) -> dict[str, str]:
    """The checks ``est`` is expected to fail for want of an intercept (none when it fits one)."""
    return {} if est.fit_intercept else dict(NO_INTERCEPT_FAILS)


@parametrize_with_checks(
    [FaastClassifier(refine=2), FaastClassifier(refine=2, fit_intercept=False)],
    expected_failed_checks=lambda est: {
        **dict.fromkeys(PARTIAL_FIT_CHECKS, _REFUSES_PARTIAL_FIT),
        **no_intercept_fails(est),
    },
)
def test_scikit_learn_estimator_checks_with_refine(estimator, check):
    """Every other check passes with retargeting on."""
    check(estimator)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 12), extra=st.integers(1, 12), m=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_weights_for_on_the_dual_route_is_the_ridge_solve(n, extra, m, seed):
    """Dual factor (n < d, U never formed): weights_for(φ_ridge, Kᵀ T) = ((KᵀK + ρI)⁻¹ Kᵀ T)ᵀ."""
    from faast.solver import SpectralFactor

    rng = np.random.default_rng(seed)
    keys = torch.from_numpy(rng.normal(size=(n, n + extra)))
    values = torch.from_numpy(rng.normal(size=(n, m)))
    targets = torch.from_numpy(rng.normal(size=(n, m)))
    factor = SpectralFactor.from_pairs(keys, values, float(n), float((values**2).sum()))
    got = factor.weights_for(factor.ridge_filter(0.3), keys.T @ targets)
    want = ridge_reference(keys, targets, 0.3).numpy()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-8, atol=1e-10)


def test_refine_with_random_features_and_class_embeddings():
    """Retargeting acts on the expanded keys, and class embeddings apply after it."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    X = rng.normal(size=(90, 5)) + np.eye(3, 5)[y]
    clf = FaastClassifier(random_features=12, refine=2, ridge=0.5, fit_intercept=False).fit(X, y)
    expanded = clf._expand(torch.from_numpy(X)).numpy()
    ref = _reference(expanded, y, None, 2, 0.5, {"ridge": 0.5})
    np.testing.assert_allclose(clf.coef_, ref, rtol=1e-7, atol=1e-9)
    emb = rng.normal(size=(3, 4))
    with_emb = FaastClassifier(refine=2, ridge=0.5, class_embeddings=emb, fit_intercept=False).fit(X, y)
    plain_ref = _reference(X, y, None, 2, 0.5, {"ridge": 0.5})
    want = X @ plain_ref.T @ emb @ emb.T
    np.testing.assert_allclose(with_emb.decision_function(X), want, rtol=1e-7, atol=1e-9)
