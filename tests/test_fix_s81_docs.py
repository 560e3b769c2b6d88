"""Fixes from the documentation hunt of 2026-12-07: what the docs promise, the code now does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from faast import FaastClassifier


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 3


@pytest.mark.parametrize("c", [0.5, 50.0])
def test_c_without_alpha_is_ignored_with_a_warning(c):
    """``c`` scales the power-law cut that ``alpha`` selects; alone it changed nothing, silently
    (the cut stayed ridge='auto'), where alpha/c beside tau or ridge warn. It warns now, and the
    fit is the default's."""
    X, y = _data()
    with pytest.warns(UserWarning, match=r"c=.* scales the power-law cut, which alpha selects"):
        clf = FaastClassifier(c=c).fit(X, y)
    np.testing.assert_array_equal(clf.coef_, FaastClassifier().fit(X, y).coef_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FaastClassifier(alpha=1.0, c=c).fit(X, y)  # with alpha it shapes the cut: no warning
        FaastClassifier().fit(X, y)


@pytest.mark.parametrize(
    ("change", "named", "not_named"),
    [
        ({"fit_intercept": False}, "fit_intercept=False (fitted with True)", "intercept_scaling"),
        ({"random_features": None}, "random_features=None (fitted with 16)", "random_state"),
        ({"random_state": 1}, "random_state=1 (fitted with 0)", "random_features="),
    ],
)
def test_a_design_change_names_what_the_user_changed(change, named, not_named):
    """The refusal of a design change named, beside fit_intercept=False, intercept_scaling=None,
    which the user never set (it acts only with the intercept); likewise random_state beside
    random_features."""
    X, y = _data()
    clf = FaastClassifier(random_features=16, random_state=0).fit(X, y)
    clf.set_params(**change)
    with pytest.raises(ValueError, match="shape the statistics") as caught:
        clf.partial_fit(X, y)
    assert named in str(caught.value) and not_named not in str(caught.value)


def test_loading_a_classifier_saved_with_c_alone_warns_once(tmp_path):
    from faast.classifier_io import load_classifier, save_classifier

    X, y = _data()
    with pytest.warns(UserWarning):
        clf = FaastClassifier(c=3.0).fit(X, y)
    save_classifier(clf, tmp_path / "m")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_classifier(tmp_path / "m")
    assert [str(w.message)[:20] for w in caught] == ["c=3.0 scales the pow"]
