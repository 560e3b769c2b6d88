"""The few-shot fit's cheaper paths against plain references: the remembered parameter validation
(:mod:`faast.remembered_params`) against scikit-learn's own, the NumPy leave-one-out scores against
the torch ones, and the NumPy feature scale of the intercept check against the scaled torch
formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.base
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

import faast.remembered_params as remembered
from faast.classifier import FaastClassifier
from faast.classifier_design import entry_scale
from faast.solver import loo

# values of a few parameters, valid and not, with the types the constraints tell apart (True and 1)
_CHOICES = {
    "ridge": [None, 1.0, 0.5, 2, -1.0, 0, "auto", "gcv", "bogus", True],
    "fit_intercept": [True, False, 1, 0, None],
    "refine": [0, 3, -1, 2.5, True],
    "logit_scale": ["auto", 1.0, 0.0, -2.0, "x"],
    "similarity": ["dot", "cosine", "euclid"],
    "random_state": [0, 7, 2**32 - 1, 2**32, -1],
}


def _plain_verdict(clf: FaastClassifier) -> bool:
    """Whether scikit-learn's own validation accepts the estimator's parameters."""
    try:
        validate_parameter_constraints(
            FaastClassifier._parameter_constraints, clf.get_params(deep=False), caller_name="FaastClassifier"
        )
    except InvalidParameterError:
        return False
    return True


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({k: st.sampled_from(v) for k, v in _CHOICES.items()}), min_size=1, max_size=6
    )
)
def test_remembered_validation_accepts_and_refuses_as_scikit_learn(settings_seq):
    remembered.forget_remembered_settings()
    for params in settings_seq * 2:  # each setting twice: the second time from the memory
        clf = FaastClassifier(**params)
        want = _plain_verdict(clf)
        try:
            clf._validate_params()
            got = True
        except InvalidParameterError:
            got = False
        assert got == want, params


def test_true_and_1_are_remembered_apart():
    remembered.forget_remembered_settings()
    FaastClassifier(fit_intercept=True)._validate_params()
    with pytest.raises(InvalidParameterError, match="fit_intercept"):
        FaastClassifier(fit_intercept=1)._validate_params()


def test_a_remembered_setting_skips_the_check_and_others_do_not(monkeypatch):
    remembered.forget_remembered_settings()
    calls = []
    real = sklearn.base.validate_parameter_constraints

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sklearn.base, "validate_parameter_constraints", counting)
    FaastClassifier(ridge=1.0)._validate_params()
    FaastClassifier(ridge=1.0)._validate_params()
    assert len(calls) == 1
    FaastClassifier(ridge=2.0)._validate_params()  # another setting: checked
    assert len(calls) == 2
    weights = {0: 1.0}
    FaastClassifier(class_weight=weights)._validate_params()  # a dict: checked every time
    FaastClassifier(class_weight=weights)._validate_params()
    assert len(calls) == 4
    FaastClassifier(ridge=np.float64(1.0))._validate_params()  # a NumPy scalar: checked
    assert len(calls) == 5


def test_the_memory_is_bounded(monkeypatch):
    remembered.forget_remembered_settings()
    monkeypatch.setattr(remembered, "MAX_REMEMBERED", 3)
    for value in (1.0, 2.0, 3.0, 4.0):
        FaastClassifier(ridge=value)._validate_params()
    assert len(remembered._accepted[FaastClassifier]) <= 3


def test_param_names_are_scikit_learns():
    assert FaastClassifier._get_param_names() == BaseEstimator._get_param_names.__func__(FaastClassifier)
    names = FaastClassifier._get_param_names()
    names.append("x")  # a copy: the remembered list is not changed
    assert "x" not in FaastClassifier._get_param_names()


def test_fit_still_refuses_a_setting_changed_after_it_was_accepted():
    x = np.random.default_rng(0).normal(size=(20, 4))
    y = np.arange(20) % 2
    clf = FaastClassifier(ridge=1.0).fit(x, y)
    clf.set_params(ridge=-1.0)
    with pytest.raises(InvalidParameterError, match="ridge"):
        clf.fit(x, y)


def _torch_and_numpy_scores(values, fitted, lev):
    return loo._scores_torch(values, fitted, lev), loo._scores(values, fitted, lev)


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 30),
    g=st.integers(1, 8),
    m=st.integers(1, 6),
    one_hot=st.booleans(),
    zero_rows=st.integers(0, 3),
    interpolating=st.integers(0, 2),
    seed=st.integers(0, 2**31 - 1),
)
def test_numpy_loo_scores_equal_the_torch_ones(n, g, m, one_hot, zero_rows, interpolating, seed):
    rng = np.random.default_rng(seed)
    if one_hot:
        values = np.eye(m)[rng.integers(0, m, n)]
    else:
        values = rng.normal(size=(n, m))
    values[: min(zero_rows, n)] = 0.0  # rows of zero weight
    fitted = rng.normal(size=(n, g, m))
    lev = rng.uniform(0.0, 0.95, size=(n, g))
    for k in range(min(interpolating, g)):  # leverage at the limit: that candidate scores +inf
        lev[rng.integers(0, n), k] = 1.0 - loo.LEVERAGE_LIMIT / 2
    tensors = [torch.from_numpy(a) for a in (values, fitted, lev)]
    (want_press, want_errors), (press, errors) = _torch_and_numpy_scores(*tensors)
    assert press.dtype == want_press.dtype and errors.dtype == want_errors.dtype == torch.float64
    assert torch.equal(torch.isinf(press), torch.isinf(want_press))
    finite = torch.isfinite(want_press)
    torch.testing.assert_close(press[finite], want_press[finite], rtol=1e-12, atol=0.0)
    assert torch.equal(errors, want_errors)


def test_loo_scores_of_float32_and_negated_tensors_take_the_torch_path():
    rng = np.random.default_rng(1)
    values = torch.from_numpy(np.eye(3)[rng.integers(0, 3, 7)])
    fitted, lev = torch.from_numpy(rng.normal(size=(7, 4, 3))), torch.from_numpy(rng.uniform(0, 0.9, (7, 4)))
    negated = torch.complex(torch.zeros_like(fitted), -fitted).conj().imag  # fitted, as a negated view
    assert negated.is_neg()
    got = loo._scores(values, negated, lev)
    want = loo._scores_torch(values, fitted, lev)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=0.0)
    assert torch.equal(got[1], want[1])
    got = loo._scores(values.float(), fitted.float(), lev.float())
    want = loo._scores_torch(values.float(), fitted.float(), lev.float())
    assert got[0].dtype == torch.float32
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=0.0)
    assert torch.equal(got[1], want[1])


def _scaled_reference(sample: torch.Tensor) -> float | None:
    top = float(sample.abs().max())
    if top == 0 or not math.isfinite(top * top):
        return None
    return (
        top * float(torch.linalg.vector_norm(sample / top, dtype=torch.float64)) / math.sqrt(sample.numel())
    )


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 30),
    log_scale=st.floats(-30, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_float32_entry_scale_equals_the_scaled_reference(n, d, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    sample = (torch.randn(n, d, generator=g, dtype=torch.float64) * 10.0**log_scale).to(torch.float32)
    want = _scaled_reference(sample)  # (the float32 division by the top entry rounds: 1e-6)
    got = entry_scale(sample)
    if want is None:
        assert got is None
    else:
        assert got == pytest.approx(want, rel=1e-6)
        assert got == pytest.approx(_scaled_reference(sample.double()), rel=1e-12)


def test_entry_scale_of_zeros_huge_float64_and_negated_rows():
    assert entry_scale(torch.zeros(3, 4)) is None
    for size in (1e150, 1e-160):  # float64 rows scaled by their top entry: no overflow, no underflow
        assert entry_scale(torch.full((2, 3), size, dtype=torch.float64)) == pytest.approx(size, rel=1e-12)
    assert entry_scale(torch.full((2, 2), 1e200, dtype=torch.float64)) is None  # a square overflows
    z = torch.complex(torch.zeros(2, 3), torch.full((2, 3), 2.0)).conj().imag  # a negated view
    assert z.is_neg()
    assert entry_scale(z) == pytest.approx(2.0)


def test_classes_made_at_run_time_are_freed():
    import gc
    import weakref

    refs = []
    x, y = np.random.default_rng(0).normal(size=(12, 3)), np.arange(12) % 2
    for i in range(5):
        sub = type(f"Sub{i}", (FaastClassifier,), {})
        sub(ridge=1.0).fit(x, y)
        refs.append(weakref.ref(sub))
        del sub
    gc.collect()
    assert all(ref() is None for ref in refs)
