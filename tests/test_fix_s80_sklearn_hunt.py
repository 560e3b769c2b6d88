"""FaastClassifier as scikit-learn users use it (hunt): torch sparse tensors refused up front with
one clear message (they reached torch ops without sparse kernels), and the classifier's warnings
name the caller's line, past scikit-learn's ``_fit_context`` (they named faast's or sklearn's)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from faast import FaastClassifier

_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(60, 5))
Y = _RNG.integers(0, 3, 60)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["to_sparse", "to_sparse_csr"])
@pytest.mark.parametrize(
    "params", [{}, {"fit_intercept": False, "normalize_keys": True}, {"fit_intercept": False}]
)
def test_a_sparse_tensor_is_refused_when_fitting(layout, params):
    sparse = getattr(torch.from_numpy(X), layout)()
    with pytest.raises(TypeError, match="X: sparse tensors are not supported; pass a dense tensor"):
        FaastClassifier(**params).fit(sparse, Y)


def test_a_sparse_tensor_is_refused_when_predicting():
    clf = FaastClassifier().fit(X, Y)
    with pytest.raises(TypeError, match="X: sparse tensors are not supported"):
        clf.predict(torch.from_numpy(X).to_sparse())


@pytest.mark.parametrize(
    "call",
    [
        lambda: FaastClassifier().fit(X * 1e-8, Y),  # the intercept-scale warning, from fit
        lambda: FaastClassifier().partial_fit(X * 1e-8, Y, classes=[0, 1, 2]),  # and from partial_fit
        lambda: FaastClassifier().fit(X + 1e3, Y),  # far from the origin
        lambda: FaastClassifier(alpha=0.5, ridge=1.0).fit(X, Y),  # alpha ignored with ridge
    ],
)
def test_the_classifiers_warnings_name_the_callers_line(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    mine = [w for w in caught if issubclass(w.category, UserWarning)]
    assert mine
    assert all(w.filename == __file__ for w in mine), [(w.filename, w.lineno) for w in mine]
