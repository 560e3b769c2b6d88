"""Fixes of the s83 numerics hunt in ``FaastClassifier`` (.dev/hunts/s83_numerics/FINDINGS.md):
class counts exact in any feature dtype (F5), integer tensors read as float64 as integer arrays
are (F9), the centring-precision warning of ``center_features=True`` (F1), the documented
leave-one-out of ``ridge="auto"`` with centring (F6), zero-feature tensors refused (minor)."""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from faast import FaastClassifier
from faast.solver.loo import default_ridge_grid

DOCS = Path(__file__).resolve().parents[1] / "docs" / "classifier.md"


# ----------------------------------------------------------------- F5: class_count_
@pytest.mark.parametrize(
    ("dtype", "counts"), [(torch.bfloat16, (300, 259)), (torch.float16, (2049, 2)), (torch.float32, (5, 3))]
)
def test_class_count_is_exact_in_the_features_dtype(dtype, counts):
    """The one-hot rows are in the features' dtype: their sums rounded (bfloat16 259 → 260,
    float16 2049 → 2048), so fit and partial_fit disagreed and forget miscounted."""
    rng = np.random.default_rng(0)
    n = sum(counts)
    X = torch.tensor(rng.normal(size=(n, 4)), dtype=dtype)
    y = np.repeat([0, 1], counts)
    fitted = FaastClassifier(ridge=1.0).fit(X, y)
    np.testing.assert_array_equal(fitted.class_count_, counts)
    assert fitted.class_count_.dtype == np.int64
    streamed = FaastClassifier(ridge=1.0)
    for start in range(0, n, 97):  # batches of mixed classes, each counted exactly
        streamed.partial_fit(X[start : start + 97], y[start : start + 97], classes=[0, 1])
    np.testing.assert_array_equal(streamed.class_count_, counts)
    first = np.flatnonzero(y == 0)[: counts[0] - 1]  # all but one of class 0, in one call
    fitted.forget(X[first], y[first])
    np.testing.assert_array_equal(fitted.class_count_, [1, counts[1]])


# ----------------------------------------------------------------- F9: integer tensors
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_tensors_fit_as_integer_arrays(dtype):
    """Integer (and bool) tensors were cast to float32, integer arrays to float64: timestamps
    (1.7e9 + 0…99) kept 2 distinct values of 91 on the tensor path and coef_ differed by 1e8."""
    rng = np.random.default_rng(0)
    if dtype == torch.bool:
        X = rng.integers(0, 2, size=(60, 5)).astype(bool)
        y = (X[:, 0] ^ X[:, 1]).astype(int)
    else:
        big = 1_700_000_000 if dtype == torch.int64 else 20_000_000  # beyond float32's 2²⁴
        X = np.c_[big + rng.integers(0, 100, 200), rng.integers(0, 5, 200)]
        y = X[:, 0] % 2
    kw = {"center_features": True, "ridge": 1e-6}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scale and centring warnings of such columns
        from_array = FaastClassifier(**kw).fit(X, y)
        from_tensor = FaastClassifier(**kw).fit(torch.tensor(X, dtype=dtype), y)
    assert from_tensor.memory_.stats.input_dtype == torch.float64
    np.testing.assert_array_equal(from_tensor.coef_, from_array.coef_)
    np.testing.assert_array_equal(from_tensor.intercept_, from_array.intercept_)
    scores = from_tensor.decision_function(torch.tensor(X, dtype=dtype))
    assert scores.dtype == torch.float64
    np.testing.assert_array_equal(scores.numpy(), from_array.decision_function(X))


# ----------------------------------------------------------------- F1: centring precision
def _blobs(n: int, d: int, seed: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)


def _messages(fit) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    return [str(w.message) for w in caught]


def test_centring_far_from_the_origin_warns_and_names_the_column():
    """center_features=True on the primal route centres the float64 Gram of the uncentred
    features: coef_ 4e-4 off scikit-learn's Ridge at mean/std 1e6, 4 % at 1e7, silently.
    It warns once ε·(mean/std)² > 1e-6, naming the column and the remedy."""
    X, y = _blobs(200, 3)
    Xo = X.copy()
    Xo[:, 1] = 1e5 + 0.1 * X[:, 1]  # column 1: mean/std 1e6, ε·1e12 ≈ 2e-4
    got = _messages(lambda: FaastClassifier(center_features=True, ridge=1.0).fit(Xo, y))
    assert len(got) == 1, got
    assert "center_features=True" in got[0] and "feature column 1" in got[0]
    assert re.search(r"relative rounding error of about 2\.\de-04 ", got[0])
    assert "subtract the features' mean (standardise them)" in got[0]
    # the default cut, random features (the design's columns are judged), float32 input
    assert len(_messages(lambda: FaastClassifier(center_features=True).fit(Xo, y))) == 1
    assert any(
        "random feature" in m
        for m in _messages(lambda: FaastClassifier(center_features=True, random_features=8).fit(Xo, y))
    )
    assert len(_messages(lambda: FaastClassifier(center_features=True).fit(Xo.astype(np.float32), y))) == 1


def test_centring_near_the_origin_or_on_the_dual_route_does_not_warn():
    """mean/std 1e3 (a column of years) loses ~2e-10: no warning; nor for n < D (the dual route
    shifts the rows themselves, exactly), nor for a constant column among varying ones."""
    X, y = _blobs(200, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FaastClassifier(center_features=True).fit(X + 1e3, y)
        FaastClassifier(center_features=True).fit(np.c_[X, np.ones(200)], y)  # constant column of 1
        few = 1e6 + 0.01 * _blobs(6, 10)[0]  # n = 6 < D = 11: mean/std 1e8, exact on the dual route
        FaastClassifier(center_features=True, ridge=1.0).fit(few, np.arange(6) % 2)


def test_far_from_origin_warning_says_to_standardise_when_centring_cannot_help():
    """Without centring, features far from the origin were told to pass center_features=True even
    where that centring loses the statistics (offset/spread 1e6 and beyond): the one warning then
    says to standardise; a moderate offset keeps the advice of center_features=True."""
    X, y = _blobs(200, 3)
    far = _messages(lambda: FaastClassifier(ridge=1.0).fit(1e5 + 0.1 * X, y))
    assert len(far) == 1, far
    assert "far from the origin" in far[0]
    assert "center_features=True would not help either" in far[0]
    assert "pass center_features=True" not in far[0]
    assert "subtract the features' mean (standardise them)" in far[0]
    near = _messages(lambda: FaastClassifier(ridge=1.0).fit(X + 1e3, y))
    assert len(near) == 1 and "pass center_features=True" in near[0], near


# ----------------------------------------------------------------- F6: documented leave-one-out
def test_centred_auto_is_the_leave_one_out_of_the_full_mean_as_documented():
    """ridge="auto" with center_features=True scores leave-one-out in coordinates centred on the
    mean of all rows (the held-out row stays in the mean), not refits that centre without it:
    brute force of that rule picks ridge_ (the hunt's example, seed 1, where refit leave-one-out
    picks 8.46 against 39.26); the docstring and docs/classifier.md say so."""
    rng = np.random.default_rng(1)
    n, d, C = 12, 6, 3
    X = rng.normal(size=(n, d)) + 3
    y = np.arange(n) % C
    Y = np.eye(C)[y]
    clf = FaastClassifier(center_features=True).fit(X, y)
    Z = np.c_[X - X.mean(0), np.ones(n)]
    lam = np.sort(np.linalg.eigvalsh(Z.T @ Z))[::-1]
    grid = default_ridge_grid(float(lam[0]), float(lam[1])).numpy()
    press, errors = np.zeros(len(grid)), np.zeros(len(grid))
    for g, rho in enumerate(grid):
        for i in range(n):
            rest = np.arange(n) != i
            W = np.linalg.solve(Z[rest].T @ Z[rest] + rho * np.eye(d + 1), Z[rest].T @ Y[rest])
            p = Z[i] @ W
            press[g] += ((Y[i] - p) ** 2).sum()
            errors[g] += int(np.argmax(p) != y[i])
    eligible = press <= (Y * Y).sum()
    best = eligible & (errors == errors[eligible].min())
    assert clf.ridge_ == pytest.approx(grid[int(np.argmin(np.where(best, press, np.inf)))], rel=1e-9)
    doc = " ".join(inspect.getdoc(FaastClassifier).split())
    assert "the held-out row stays in the mean" in doc
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "held-out row stays in the mean" in text and "Precision limit" in text


# ----------------------------------------------------------------- minor: zero-feature tensors
@pytest.mark.parametrize("fit_intercept", [False, True])
def test_zero_feature_tensors_are_refused_as_arrays_are(fit_intercept):
    """torch.zeros(5, 0) failed inside GramStats ("key_dim and value_dim must be positive")
    without the intercept and fitted an intercept-only model with it; the ndarray is refused."""
    y = np.array([0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(5, 0\)\)"):
        FaastClassifier(fit_intercept=fit_intercept).fit(np.zeros((5, 0)), y)
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(5, 0\)\) while a minimum of 1"):
        FaastClassifier(fit_intercept=fit_intercept).fit(torch.zeros(5, 0), y)
    fitted = FaastClassifier(fit_intercept=fit_intercept).fit(np.ones((5, 2)) * np.arange(5)[:, None], y)
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        fitted.predict(torch.zeros(3, 0))


def test_centring_warning_judges_rows_across_data_sorted_by_a_column():
    """A year column of data sorted by it is constant in the first 2,048 rows: the precision
    warning fired there (8.6e-4 claimed) although coef_ equals a fit of pre-centred features
    (a review's case). The rows judged are now taken across the data."""
    rng = np.random.default_rng(0)
    n = 4000
    X = rng.normal(size=(n, 20)) * 1e-3
    X[:, 0] = np.where(np.arange(n) < 3000, 2020.0, 2021.0)
    y = rng.integers(0, 5, n)
    assert _messages(lambda: FaastClassifier(center_features=True, ridge=1e-3).fit(X, y)) == []
    far = X.copy()
    far[:, 1] += 1e6  # a column whose centring does lose precision is still named, sorted or not
    assert any(
        "feature column 1" in m for m in _messages(lambda: FaastClassifier(center_features=True).fit(far, y))
    )
