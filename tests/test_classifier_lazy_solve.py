"""``partial_fit`` leaves the solve to first use (:mod:`faast.classifier_solution`): a stream of
calls solves once, and what is read afterwards — coefficients, predictions, the fitted
attributes — is always that of every example passed so far."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from faast.classifier import FaastClassifier


def _data(n: int = 300, d: int = 10, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.normal(size=(n, d))
    X[np.arange(n), y] += 2.0
    return X, y


@pytest.mark.parametrize("params", [{}, {"ridge": 0.5}, {"center_features": True}])
def test_a_stream_solves_once_and_equals_one_fit(params):
    X, y = _data()
    clf = FaastClassifier(**params)
    for start in range(0, 300, 50):
        clf.partial_fit(X[start : start + 50], y[start : start + 50], classes=[0, 1, 2])
    stats = clf.memory_.stats
    assert not stats._solve_cache and stats._factor_cache is None  # nothing solved yet
    whole = FaastClassifier(**params).fit(X, y)
    np.testing.assert_allclose(clf.coef_, whole.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(clf.intercept_, whole.intercept_, rtol=1e-9, atol=1e-12)
    assert (clf.rank_, clf.tau_) == (whole.rank_, whole.tau_)
    assert clf.ridge_ == pytest.approx(whole.ridge_, rel=1e-9)
    np.testing.assert_array_equal(clf.predict(X), whole.predict(X))


def test_what_is_read_follows_every_call():
    """Reading between calls never leaves a stale solve: after each call, coefficients and scores
    are those of a fit on everything passed so far, and so are probabilities while the rows are
    kept (beyond, a stream keeps the temperature of its earlier rows by design: the
    ``logit_scale`` docs)."""
    X, y = _data(n=120, d=40)
    clf = FaastClassifier()
    for start, stop in ((0, 30), (30, 60), (60, 120)):
        clf.partial_fit(X[start:stop], y[start:stop], classes=[0, 1, 2])
        whole = FaastClassifier().fit(X[:stop], y[:stop])
        np.testing.assert_allclose(
            clf.decision_function(X), whole.decision_function(X), rtol=1e-7, atol=1e-10
        )
        if stop <= 82:  # rows kept (n ≤ 2·D): the temperature too is that of every example so far
            np.testing.assert_allclose(clf.predict_proba(X), whole.predict_proba(X), rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(clf.coef_, whole.coef_, rtol=1e-9, atol=1e-12)


def test_the_attributes_exist_only_once_fitted_and_survive_pickling_unsolved():
    X, y = _data()
    assert not hasattr(FaastClassifier(), "coef_")
    clf = FaastClassifier().partial_fit(X, y, classes=[0, 1, 2])
    restored = pickle.loads(pickle.dumps(clf))  # still unsolved: solves on its own first use
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    np.testing.assert_allclose(restored.coef_, clf.coef_)
    assert hasattr(clf, "coef_") and hasattr(clf, "rank_")


def test_a_stream_of_zero_features_fails_when_first_read():
    clf = FaastClassifier(fit_intercept=False).partial_fit(
        np.zeros((20, 4)), np.arange(20) % 2, classes=[0, 1]
    )
    with pytest.raises(ValueError, match="every key added so far is zero"):
        clf.predict(np.ones((2, 4)))
    with pytest.raises(ValueError, match="every key added so far is zero"):
        FaastClassifier(fit_intercept=False).fit(np.zeros((20, 4)), np.arange(20) % 2)
