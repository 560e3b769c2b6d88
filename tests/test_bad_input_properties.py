"""Property-based bad input (hypothesis) for the solver and the classifier: NaN/Inf anywhere, any
wrong shape, any scale; a refused batch never changes what was learned."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from faast import FaastClassifier, GramStats
from tests.bad_inputs_catalogue import clf_state, same_state, stats_state

BAD = st.sampled_from([math.nan, math.inf, -math.inf])
#: scikit-learn's finiteness check sums the array first (inf + -inf warns before it refuses).
SKLEARN_SUM_WARNING = pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning")


@st.composite
def with_bad_entries(draw, rows: int, cols: int):
    """A finite (rows, cols) float64 array with 1+ entries replaced by NaN/±Inf; (array, count)."""
    arr = draw(hnp.arrays(np.float64, (rows, cols), elements=st.floats(-1e3, 1e3)))
    cells = draw(st.sets(st.tuples(st.integers(0, rows - 1), st.integers(0, cols - 1)), min_size=1))
    for cell in cells:
        arr[cell] = draw(BAD)
    return arr, len(cells)


def _filled_stats() -> GramStats:
    gen = torch.Generator().manual_seed(0)
    return GramStats(4, 2).add(torch.randn(8, 4, generator=gen, dtype=torch.float64),
                               torch.randn(8, 2, generator=gen, dtype=torch.float64))  # fmt: skip


@given(data=st.data(), rows=st.integers(1, 6), which=st.sampled_from(["keys", "values"]))
def test_non_finite_entries_are_counted_and_refused(data, rows, which):
    stats = _filled_stats()
    before = stats_state(stats)
    cols = 4 if which == "keys" else 2
    bad, count = data.draw(with_bad_entries(rows, cols))
    good = np.ones((rows, 6 - cols))
    keys, values = (bad, good) if which == "keys" else (good, bad)
    with pytest.raises(ValueError, match=rf"{which}: contains {count} NaN or Inf"):
        stats.add(keys, values)
    assert same_state(before, stats_state(stats))


@given(n1=st.integers(0, 5), d=st.integers(1, 7), n2=st.integers(0, 5), m=st.integers(1, 4))
def test_any_shape_is_accepted_or_refused_cleanly(n1, d, n2, m):
    stats = _filled_stats()
    before = stats_state(stats)
    try:
        stats.add(np.ones((n1, d)), np.ones((n2, m)))
    except ValueError as exc:
        assert (n1, d, m) != (n2, 4, 2)
        assert "keys" in str(exc) or "values" in str(exc)
        assert same_state(before, stats_state(stats))
    else:
        assert (n1 == n2, d, m) == (True, 4, 2)
        assert stats.count == 8 + n1


@given(scale=st.integers(-100, 100), seed=st.integers(0, 2**16))
def test_any_scale_gives_a_finite_solution_that_scales(scale, seed):
    """Keys scaled by 10^s (s in ±100) give W scaled by 10^-s: no overflow, no underflow."""
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    values = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    w1 = GramStats(5, 3).add(keys, values).solve(0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        ws = GramStats(5, 3).add(keys * 10.0**scale, values).solve(0.01)
    assert bool(torch.isfinite(ws).all())
    assert torch.allclose(ws * 10.0**scale, w1, rtol=1e-8, atol=1e-12)


@SKLEARN_SUM_WARNING
@given(data=st.data(), rows=st.integers(2, 8))
def test_classifier_refuses_non_finite_features(data, rows):
    x, count = data.draw(with_bad_entries(rows, 3))
    with pytest.raises(ValueError, match="NaN|infinity"):
        FaastClassifier().fit(x, np.arange(rows) % 2)
    with pytest.raises(ValueError, match=rf"X: contains {count} NaN or Inf"):
        FaastClassifier().fit(torch.from_numpy(x), np.arange(rows) % 2)


@SKLEARN_SUM_WARNING
@given(data=st.data(), rows=st.integers(1, 6))
def test_classifier_refused_batch_keeps_the_fit(data, rows):
    rng = np.random.default_rng(0)
    clf = FaastClassifier().fit(rng.standard_normal((20, 3)), np.arange(20) % 4)
    before = clf_state(clf)
    kind = data.draw(st.sampled_from(["nan", "features", "labels", "length"]))
    x = rng.standard_normal((rows, 3))
    y = np.arange(rows) % 4
    if kind == "nan":
        x = data.draw(with_bad_entries(rows, 3))[0]
    elif kind == "features":
        x = rng.standard_normal((rows, data.draw(st.sampled_from([1, 2, 4, 9]))))
    elif kind == "labels":
        y = np.full(rows, 99)
    else:
        y = np.arange(rows + 1) % 4
    with pytest.raises(ValueError):
        clf.partial_fit(x, y)
    assert same_state(before, clf_state(clf))


@given(
    n=st.integers(1, 30),
    d=st.integers(1, 6),
    classes=st.integers(1, 4),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
    seed=st.integers(0, 2**16),
)
def test_classifier_on_any_valid_data(n, d, classes, scale, seed):
    """Any finite data, any number of rows and classes (one row, one class included): fit works,
    predictions are known labels and probabilities are finite and sum to 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * scale
    y = rng.integers(0, classes, n)
    clf = FaastClassifier().fit(x, y)
    q = rng.standard_normal((5, d)) * scale
    assert set(clf.predict(q)) <= set(y)
    proba = clf.predict_proba(q)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1.0)
