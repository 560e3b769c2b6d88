"""``class_weight``: per-class weights multiplied into the sample weights, as in scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import check_class_weight_classifiers

from faast import FaastClassifier
from faast.classifier_io import load_classifier, save_classifier
from tests.test_solver_logistic import _problem as logistic_problem


def _problem(n: int, d: int, n_classes: int, seed: int, labels: str = "int"):
    """The logistic tests' problem (every class present), with labels "c0", "c1", … for "str"."""
    X, y, rng = logistic_problem(n, d, n_classes, seed, spread=1.0)
    return X, (np.array([f"c{v}" for v in y]) if labels == "str" else y), rng


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(4, 80),
    d=st.integers(1, 30),
    n_classes=st.integers(2, 4),
    labels=st.sampled_from(["int", "str"]),
    weighted=st.booleans(),
    loss=st.sampled_from(["squared", "logistic"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_class_weight_equals_the_sample_weights_it_stands_for(n, d, n_classes, labels, weighted, loss, seed):
    """A dict, and "balanced" (scikit-learn's n / (C · n_c)), give the weights of a fit with those
    per-example weights (times any sample_weight), on both routes (n ≤ 2d keeps the rows)."""
    X, y, rng = _problem(n, d, n_classes, seed, labels)
    classes = np.unique(y)
    w = rng.uniform(0.2, 2.0, n) if weighted else None
    base = np.ones(n) if w is None else w
    table = {classes[0]: 3.0, classes[-1]: 0.5}
    manual = base * np.array([table.get(v, 1.0) for v in y])
    ours = FaastClassifier(loss=loss, class_weight=table).fit(X, y, sample_weight=w)
    ref = FaastClassifier(loss=loss).fit(X, y, sample_weight=manual)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.class_weight_, [table.get(c, 1.0) for c in classes])
    balanced = FaastClassifier(loss=loss, class_weight="balanced").fit(X, y, sample_weight=w)
    ref = FaastClassifier(loss=loss).fit(X, y, sample_weight=base * compute_sample_weight("balanced", y))
    np.testing.assert_allclose(balanced.coef_, ref.coef_, rtol=1e-9, atol=1e-12)


def test_a_dict_streams_and_forgets_exactly_and_balanced_refuses_both():
    X, y, _ = _problem(120, 8, 3, 0)
    table = {0: 4.0, 2: 0.25}
    whole = FaastClassifier(class_weight=table).fit(X, y)
    streamed = FaastClassifier(class_weight=table).partial_fit(X[:50], y[:50], classes=[0, 1, 2])
    streamed.partial_fit(X[50:], y[50:])
    np.testing.assert_allclose(streamed.coef_, whole.coef_, rtol=1e-9, atol=1e-12)
    forgot = FaastClassifier(class_weight=table).fit(X, y).forget(X[:30], y[:30])
    never = FaastClassifier(class_weight=table).partial_fit(X[30:], y[30:], classes=[0, 1, 2])
    np.testing.assert_allclose(forgot.coef_, never.coef_, rtol=1e-9, atol=1e-12)
    balanced = FaastClassifier(class_weight="balanced").fit(X, y)
    for call in (lambda: balanced.forget(X[:2], y[:2]), lambda: balanced.partial_fit(X[:2], y[:2])):
        with pytest.raises(ValueError, match='not available with class_weight="balanced"'):
            call()
    with pytest.raises(ValueError, match='not available with class_weight="balanced"'):
        FaastClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match='class_weight="balanced" is not supported with distributed'):
        FaastClassifier(class_weight="balanced", distributed=True).fit(X, y)
    # the fitted weights as a dict continue the stream
    as_dict = dict(zip(balanced.classes_, balanced.class_weight_, strict=True))
    again = FaastClassifier(class_weight=as_dict).partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_allclose(again.coef_, balanced.coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({5: 1.0}, "names the label 5, which is not a class"),
        ({0: -1.0}, "must be a finite number ≥ 0"),
        ({0: float("nan")}, "must be a finite number ≥ 0"),
        ({0: "heavy"}, "must be a finite number ≥ 0"),
    ],
)
def test_bad_class_weights_are_refused_by_name(table, message):
    X, y, _ = _problem(30, 4, 3, 1)
    with pytest.raises(ValueError, match=message):
        FaastClassifier(class_weight=table).fit(X, y)


@pytest.mark.parametrize("class_weight", ["balanced", {"c0": 2.5}, None])
def test_class_weight_is_saved_and_loaded(tmp_path, class_weight):
    X, y, _ = _problem(60, 5, 3, 2, labels="str")
    clf = FaastClassifier(class_weight=class_weight).fit(X, y)
    save_classifier(clf, tmp_path / "model")
    loaded, _ = load_classifier(tmp_path / "model")
    assert loaded.class_weight == class_weight
    np.testing.assert_array_equal(loaded.class_weight_, clf.class_weight_)
    np.testing.assert_array_equal(loaded.decision_function(X), clf.decision_function(X))


def test_with_an_intercept_the_logistic_loss_passes_scikit_learns_class_weight_check():
    """The estimator checks mark this check as failing without an intercept (scores through the
    origin); with ``fit_intercept=True`` the logistic steps pass it, as the squared loss does in
    tests/test_classifier_intercept.py."""
    check_class_weight_classifiers(
        "FaastClassifier", FaastClassifier(loss="logistic", C=1.0, fit_intercept=True)
    )
