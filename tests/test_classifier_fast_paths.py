"""The fit's cheaper checks against plain references: the features' offset ratio (NumPy, float64
sums) against torch in float64, and integer labels (which skip scikit-learn's target-type check)
against the same labels checked by it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.utils.multiclass import check_classification_targets

from faast.classifier import FaastClassifier, _offset_ratio


def _reference_ratio(keys: torch.Tensor) -> float:
    x = keys.to(torch.float64)
    mean = x.mean(dim=0)
    spread = float((x - mean).square().sum()) / (x.shape[0] - 1)
    return float(mean.square().sum()) / spread if spread > 0 else math.inf


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 60),
    d=st.integers(1, 40),
    offset=st.floats(-1e3, 1e3),
    scale=st.floats(1e-3, 1e3),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
    seed=st.integers(0, 2**31 - 1),
)
def test_offset_ratio_equals_float64_reference(n, d, offset, scale, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    keys = (torch.randn(n, d, generator=g, dtype=torch.float64) * scale + offset).to(dtype)
    got, want = _offset_ratio(keys), _reference_ratio(keys)
    if math.isinf(want):
        assert got == math.inf
    else:
        assert got == pytest.approx(want, rel=1e-9)


def test_offset_ratio_of_fewer_than_two_rows_and_identical_rows():
    assert _offset_ratio(torch.ones(1, 3)) is None
    assert _offset_ratio(torch.ones(4, 3)) == math.inf


def test_far_features_still_warn_and_near_ones_do_not():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 5)), np.arange(40) % 4
    with pytest.warns(UserWarning, match="far from the origin"):
        FaastClassifier().fit(torch.from_numpy(x + 1e3).to(torch.bfloat16), y)
    with np.testing.assert_no_warnings():
        FaastClassifier().fit(x, y)


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from([np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, np.bool_]),
    n=st.integers(4, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_integer_labels_fit_as_checked_labels(dtype, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    y = (rng.integers(0, 2 if dtype is np.bool_ else 5, n)).astype(dtype)
    if np.unique(y).size < 2:
        y[0], y[1] = 0, 1
    check_classification_targets(y)  # what the skipped check says: integer labels are classes
    got = FaastClassifier().fit(x, y)
    want = FaastClassifier().fit(x, y.astype(np.int64))
    assert got.classes_.dtype == y.dtype
    np.testing.assert_array_equal(got.classes_.astype(np.int64), want.classes_)
    np.testing.assert_allclose(got.decision_function(x), want.decision_function(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("y", [np.linspace(0, 1, 10), np.linspace(0, 1, 10).astype(np.float32)])
def test_continuous_labels_still_refused(y):
    with pytest.raises(ValueError, match="Unknown label type"):
        FaastClassifier().fit(np.random.default_rng(0).standard_normal((10, 3)), y)


def test_features_with_the_negative_bit_fit_and_predict_as_plain_ones():
    """``z.conj().imag`` is a view with the negative bit: fit raised torch's "Can't call numpy() on
    Tensor that has negative bit set" (and predict did after the products went through NumPy)."""
    rng = np.random.default_rng(0)
    plain = torch.from_numpy(rng.standard_normal((30, 6)).astype(np.float32))
    y = np.arange(30) % 3
    negated = torch.complex(torch.zeros_like(plain), -plain).conj().imag
    assert negated.is_neg() and torch.equal(negated.resolve_neg(), plain)
    want = FaastClassifier().fit(plain, y)
    got = FaastClassifier().fit(negated, y)
    np.testing.assert_array_equal(got.decision_function(plain), want.decision_function(plain))
    for method in ("predict", "decision_function", "predict_proba"):
        np.testing.assert_array_equal(getattr(want, method)(negated), getattr(want, method)(plain))


@pytest.mark.parametrize("seed", [2**32, 2**63, 2**64])
def test_a_random_state_beyond_32_bits_is_refused_when_fitting(seed):
    """torch's generator kept the low 32 bits (2**32 drew the projection of 0) and NumPy's refused
    them late, inside the logistic steps; now the parameter's range says so up front."""
    x, y = np.random.default_rng(0).standard_normal((20, 4)), np.arange(20) % 2
    with pytest.raises(ValueError, match="random_state"):
        FaastClassifier(random_features=8, random_state=seed).fit(x, y)


def test_the_largest_32_bit_random_state_fits():
    x, y = np.random.default_rng(0).standard_normal((20, 4)), np.arange(20) % 2
    FaastClassifier(random_features=8, random_state=2**32 - 1).fit(x, y)
    FaastClassifier(loss="logistic", random_state=2**32 - 1).fit(x, y)
