"""``logit_scale="auto"``: the temperature of ``predict_proba`` from exact held-out scores,
against brute-force refits and a grid search of the cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast import FaastClassifier
from faast.classifier_temperature import FALLBACK_LOGIT_SCALE
from faast.solver.temperature import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature, kept_rows_loo


def _data(n: int, d: int, classes: int, seed: int, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features with a class signal; every class at least twice."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.standard_normal((n, d)) + signal * np.eye(classes, d)[y]
    return X, y


def _smoothed_ce(scores: np.ndarray, onehot: np.ndarray, weights: np.ndarray, t: float) -> float:
    """The criterion written out: weighted cross-entropy against Laplace-smoothed targets."""
    m = onehot.shape[1]
    eps = 1.0 / (weights.sum() + 2.0)
    target = (1 - eps) * onehot + eps * (1 - onehot) / (m - 1)
    z = t * scores
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(weights * (target * logp).sum(axis=1)).sum() / weights.sum())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    m=st.integers(2, 6),
    spread=st.floats(0.01, 3.0),
    weighted=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_fit_temperature_minimises_the_smoothed_cross_entropy(n, m, spread, weighted, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, m, n)
    onehot = np.eye(m)[labels]
    scores = onehot * rng.uniform(0, 1, (n, 1)) + spread * rng.standard_normal((n, m))
    weights = rng.uniform(0.1, 3.0, n) if weighted else np.ones(n)
    t = fit_temperature(
        torch.from_numpy(scores), torch.from_numpy(onehot), torch.from_numpy(weights), fallback=10.0
    )
    assert MIN_TEMPERATURE <= t <= MAX_TEMPERATURE
    grid = np.geomspace(MIN_TEMPERATURE, MAX_TEMPERATURE, 400)
    best = min(_smoothed_ce(scores, onehot, weights, g) for g in grid)
    assert _smoothed_ce(scores, onehot, weights, t) <= best + 1e-9


def test_fit_temperature_without_rows_falls_back():
    empty = torch.zeros(0, 3, dtype=torch.float64)
    assert fit_temperature(empty, empty, fallback=7.0) == 7.0


def test_perfectly_separated_scores_get_a_finite_temperature():
    """Held-out predictions all right by a margin: the smoothing keeps T below the bound."""
    onehot = torch.eye(3, dtype=torch.float64).repeat(20, 1)
    t = fit_temperature(0.6 * onehot + 0.1, onehot, fallback=10.0)
    assert 1.0 < t < MAX_TEMPERATURE


def _brute_force_held_out(X, y, weights, ridge: float, fit_intercept: bool) -> np.ndarray:
    """Scores (n, C) of each example by a refit without it (one unit of weight held out), written
    out as weighted ridge regression (G + ρI)⁻¹ Zᵀ diag(w) Y′ on the design Z (the features and,
    with the intercept, a column of ones), in which the other examples of its class have their
    one-hot targets scaled by W_c / (W_c − δ): the class keeps its total target weight."""
    Z = np.hstack([X, np.ones((len(y), 1))]) if fit_intercept else X
    classes = len(np.unique(y))
    base = np.ones(len(y)) if weights is None else weights
    out = np.empty((len(y), classes))
    for i in range(len(y)):
        w = base.copy()
        held = min(w[i], 1.0)
        w[i] -= held
        targets = np.eye(classes)[y]
        total = base[y == y[i]].sum()
        if total - held <= 0:  # the class's only example: no held-out score (left out)
            out[i] = np.nan
            continue
        targets[:, y[i]] *= total / (total - held)
        gram = Z.T @ (w[:, None] * Z) + ridge * np.eye(Z.shape[1])
        out[i] = Z[i] @ np.linalg.solve(gram, Z.T @ (w[:, None] * targets))
    return out


def _reference_temperature(X, y, weights, ridge: float, fit_intercept: bool) -> float:
    scores = _brute_force_held_out(X, y, weights, ridge, fit_intercept)
    onehot = np.eye(scores.shape[1])[y]
    w = np.ones(len(y)) if weights is None else weights
    return fit_temperature(
        torch.from_numpy(scores), torch.from_numpy(onehot), torch.from_numpy(w), fallback=10.0
    )


@pytest.mark.parametrize(
    ("n", "d", "intercept", "weighted"),
    [(12, 30, True, False), (12, 30, False, True), (40, 25, True, True), (40, 25, False, False)],
)
def test_kept_rows_temperature_equals_refits(n, d, intercept, weighted):
    """While the rows are kept (n ≤ 2·D) the held-out scores are exact: the temperature equals
    the one found from n refits, each without one example (weights ≤ 1: leave-one-out)."""
    X, y = _data(n, d, 3, seed=n + d)
    weights = np.random.default_rng(1).uniform(0.3, 1.0, n) if weighted else None
    params = {"ridge": 0.7, "fit_intercept": intercept}
    clf = FaastClassifier(**params).fit(X, y, sample_weight=weights)
    assert clf.memory_.stats.factor().has_rows
    expected = _reference_temperature(X, y, weights, **params)
    assert clf.logit_scale_ == pytest.approx(expected, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(3, 14),
    extra_d=st.integers(0, 12),
    classes=st.integers(2, 4),
    weighted=st.booleans(),
    intercept=st.booleans(),
    ridge=st.floats(0.05, 5.0),
    seed=st.integers(0, 10_000),
)
def test_kept_rows_held_out_scores_equal_refits(n, extra_d, classes, weighted, intercept, ridge, seed):
    """The held-out scores themselves (not only the T they give), on random small problems with
    the rows kept: equal to refits without each example in which its class keeps its share;
    the rows left out are exactly the classes' only examples."""
    rng = np.random.default_rng(seed)
    d = (n + 1) // 2 + extra_d  # n ≤ 2·d ≤ 2·D: the rows are kept
    y = rng.integers(0, classes, n)
    y[:classes] = np.arange(classes) if n >= classes else y[:classes]
    X = rng.standard_normal((n, d)) + np.eye(max(classes, d))[y][:, :d]
    weights = rng.uniform(0.2, 2.5, n) if weighted else None
    clf = FaastClassifier(ridge=ridge, fit_intercept=intercept).fit(X, y, sample_weight=weights)
    factor = clf.memory_.stats.factor()
    assert factor.has_rows
    loo, onehot, _ = kept_rows_loo(factor, clf._filter(factor))
    labels = np.searchsorted(clf.classes_, y)
    w = np.ones(n) if weights is None else weights
    total = np.array([w[labels == labels[i]].sum() for i in range(n)])
    informative = total - np.minimum(w, 1.0) > 1e-9 * w.sum()
    expected = _brute_force_held_out(X, labels, weights, ridge, intercept)[informative]
    assert onehot.shape[0] == int(informative.sum())
    np.testing.assert_array_equal(onehot.argmax(1).numpy(), labels[informative])
    np.testing.assert_allclose(loo.numpy(), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("intercept", "weighted"), [(True, False), (True, True), (False, False)])
def test_sampled_rows_temperature_equals_refits(intercept, weighted):
    """Beyond 2·D examples the rows are gone from the statistics; the temperature comes from the
    rows of the fit, with their exact leverages: equal to the one from refits (weighted too with
    the intercept, whose statistics hold the classes' total weights)."""
    X, y = _data(60, 4, 3, seed=5)
    y[:2] = 3  # a small class: its share matters
    weights = np.random.default_rng(2).uniform(0.3, 2.0, len(y)) if weighted else None
    params = {"ridge": 2.0, "fit_intercept": intercept}
    clf = FaastClassifier(**params).fit(X, y, sample_weight=weights)
    assert not clf.memory_.stats.factor().has_rows
    expected = _reference_temperature(X, y, weights, **params)
    assert clf.logit_scale_ == pytest.approx(expected, rel=1e-6)


def test_weight_two_is_the_example_twice():
    X, y = _data(10, 30, 2, seed=3)
    weights = np.where(np.arange(10) < 4, 2.0, 1.0)
    twice = np.concatenate([np.arange(10), np.arange(4)])
    weighted = FaastClassifier(ridge=0.5).fit(X, y, sample_weight=weights)
    repeated = FaastClassifier(ridge=0.5).fit(X[twice], y[twice])
    assert weighted.logit_scale_ == pytest.approx(repeated.logit_scale_, rel=1e-7)
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X), rtol=1e-6, atol=1e-9)


def test_one_example_per_class_falls_back():
    X, y = _data(4, 16, 4, seed=0)
    clf = FaastClassifier().fit(X, y)
    assert clf.logit_scale_ == FALLBACK_LOGIT_SCALE


def test_predict_proba_applies_the_temperature():
    X, y = _data(30, 8, 3, seed=2)
    clf = FaastClassifier().fit(X, y)
    t = clf.logit_scale_
    assert math.isfinite(t) and t != FALLBACK_LOGIT_SCALE
    expected = torch.softmax(t * clf._scores(X), dim=1).numpy()
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-12)
    clf.set_params(logit_scale=3.0)  # a parameter acts from the next fit or solve, as in scikit-learn
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-12)
    clf.solve()
    np.testing.assert_allclose(clf.predict_proba(X), torch.softmax(3.0 * clf._scores(X), dim=1).numpy())
    assert FaastClassifier(logit_scale=3.0).fit(X, y).logit_scale_ == 3.0
    assert FaastClassifier(loss="logistic").fit(X, y).logit_scale_ == 1.0


def test_calibrated_temperature_beats_the_fixed_one_on_held_out_data():
    """Scores of a weak signal are small: softmax(10 · scores) is badly calibrated there."""
    X, y = _data(400, 20, 4, seed=7, signal=0.4)
    Xt, yt = _data(2000, 20, 4, seed=8, signal=0.4)
    clf = FaastClassifier().fit(X, y)

    def log_loss(proba):
        return float(-np.log(proba[np.arange(len(yt)), yt]).mean())

    auto = log_loss(clf.predict_proba(Xt))
    fixed = log_loss(FaastClassifier(logit_scale=10.0).fit(X, y).predict_proba(Xt))
    assert auto < fixed


def test_partial_fit_and_forget_match_a_fit_while_rows_are_kept():
    X, y = _data(40, 30, 3, seed=11)
    whole = FaastClassifier().fit(X[:30], y[:30])
    batches = FaastClassifier().partial_fit(X[:15], y[:15], classes=[0, 1, 2]).partial_fit(X[15:30], y[15:30])
    assert batches.logit_scale_ == pytest.approx(whole.logit_scale_, rel=1e-7)
    forgot = FaastClassifier().fit(X, y).forget(X[30:], y[30:])
    assert forgot.logit_scale_ == pytest.approx(whole.logit_scale_, rel=1e-7)


def test_beyond_the_kept_rows_a_sample_of_the_fit_gives_the_temperature(tmp_path, monkeypatch):
    """Beyond 2·D examples the fit keeps a sample of its rows (all 300 here) and finds the
    temperature from it on first use, against the solve of that moment: after ``solve`` with
    another cut it equals a fresh fit's with that cut. A small partial_fit batch does not replace
    the sample, a batch as large does. A saved classifier keeps its temperature."""
    import faast.classifier_temperature as module

    X, y = _data(300, 5, 3, seed=4)
    calls = []
    real = module.fit_temperature
    monkeypatch.setattr(module, "fit_temperature", lambda *a, **k: calls.append(1) or real(*a, **k))
    clf = FaastClassifier().fit(X, y)
    assert not clf.memory_.stats.factor().has_rows and not calls  # fit does not pay for it
    t = clf.logit_scale_
    assert len(calls) == 1
    assert clf.set_params(ridge=1.0).solve().logit_scale_ == pytest.approx(
        FaastClassifier(ridge=1.0).fit(X, y).logit_scale_, rel=1e-9
    )
    clf.set_params(ridge=None).solve()
    assert clf.logit_scale_ == pytest.approx(t, rel=1e-9)
    clf.save(tmp_path / "model")
    loaded = FaastClassifier.load(tmp_path / "model")
    assert loaded.logit_scale_ == clf.logit_scale_
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-6)
    clf.partial_fit(X[:60], y[:60])  # fewer rows than the sample holds: it is kept
    assert clf._calibration_sample[0].shape[0] == 300
    clf.partial_fit(X[:250] + 0.1, y[:250])
    assert clf._calibration_sample[0].shape[0] == 300
    clf.partial_fit(X + 0.2, y)  # as many: this call's rows
    np.testing.assert_array_equal(clf._calibration_sample[0].numpy(), X + 0.2)


def test_a_small_batch_after_crossing_two_d_keeps_the_exact_temperature():
    """Crossing 2·D examples with a small partial_fit batch drops the rows: the temperature
    found from all of them is kept rather than re-estimated from the batch's few rows."""
    X, y = _data(40, 5, 3, seed=9)  # D = 6 with the intercept: rows kept up to 12
    t = FaastClassifier().partial_fit(X[:12], y[:12], classes=[0, 1, 2]).logit_scale_
    clf = FaastClassifier().partial_fit(X[:12], y[:12], classes=[0, 1, 2])  # T not asked for yet
    assert clf.memory_.stats.factor().has_rows
    clf.partial_fit(X[12:14], y[12:14])
    assert not clf.memory_.stats.factor().has_rows and clf.logit_scale_ == t


def test_the_kept_rows_temperature_is_found_on_first_use_only(monkeypatch):
    """A fit that never asks for probabilities does not pay for the temperature (few-shot fits
    cost a few milliseconds); the first predict_proba finds it, later ones reuse it."""
    import faast.classifier_temperature as module

    calls = []
    real = module.fit_temperature
    monkeypatch.setattr(module, "fit_temperature", lambda *a, **k: calls.append(1) or real(*a, **k))
    X, y = _data(30, 40, 3, seed=6)
    clf = FaastClassifier().fit(X, y)
    clf.predict(X)
    assert not calls
    first = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.predict_proba(X), first)
    assert len(calls) == 1


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 12),
    classes=st.integers(2, 4),
    duplicates=st.booleans(),
    zero_weights=st.booleans(),
    intercept=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_any_fit_gives_probabilities(n, d, classes, duplicates, zero_weights, intercept, seed):
    """Whatever the shapes (rows kept or not), repeated rows (leverage 1 where the fit
    interpolates them), zero weights or classes seen once: a temperature within its bounds and
    finite probabilities that sum to one, as with a fixed temperature."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.integers(0, classes, n)
    y[: min(n, classes)] = np.arange(min(n, classes))
    if duplicates:
        X[n // 2 :] = X[: n - n // 2]
    weights = np.where(rng.random(n) < 0.3, 0.0, 1.0) if zero_weights else None
    if weights is not None:
        weights[: min(n, classes)] = 1.0  # every class keeps weight
    clf = FaastClassifier(fit_intercept=intercept).fit(X, y, sample_weight=weights)
    assert MIN_TEMPERATURE <= clf.logit_scale_ <= MAX_TEMPERATURE
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)


def test_distributed_fits_find_the_temperature_with_the_fit_and_solve_keeps_it():
    """Under torchrun every process must join the reductions of the temperature: a distributed
    fit finds it at once (all processes are in ``fit``), and ``solve``, which need not be called
    by every process, keeps it instead of reducing again (a world of one process here)."""
    X, y = _data(300, 5, 3, seed=4)
    clf = FaastClassifier(distributed=True).fit(X, y)
    assert clf._temperature.value == pytest.approx(FaastClassifier().fit(X, y).logit_scale_, rel=1e-9)
    t = clf.logit_scale_
    assert clf.set_params(ridge=1.0).solve().logit_scale_ == t
