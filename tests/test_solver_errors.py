"""Bad input to the solver fails with a clear error naming the problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast._checks import finite_number
from faast.solver import GramStats


@pytest.fixture
def stats():
    return GramStats(4, 2)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_keys_or_values(stats, bad):
    k = torch.randn(3, 4)
    k[1, 2] = bad
    with pytest.raises(ValueError, match=r"keys: contains 1 NaN or Inf"):
        stats.add(k, torch.randn(3, 2))
    v = torch.randn(3, 2)
    v[0, 0] = bad
    with pytest.raises(ValueError, match=r"values: contains 1 NaN or Inf"):
        stats.add(torch.randn(3, 4), v)
    assert stats.count == 0


def test_wrong_rank(stats):
    with pytest.raises(ValueError, match=r"keys: expected a 2-D array.*got shape \(4,\)"):
        stats.add(torch.randn(4), torch.randn(1, 2))
    with pytest.raises(ValueError, match=r"values: expected a 2-D array.*\(3, 2, 1\)"):
        stats.add(torch.randn(3, 4), torch.randn(3, 2, 1))


def test_mismatched_shapes(stats):
    with pytest.raises(ValueError, match="number of pairs: 3 vs 2"):
        stats.add(torch.randn(3, 4), torch.randn(2, 2))
    with pytest.raises(ValueError, match=r"keys: expected dimension 4, got shape \(3, 5\)"):
        stats.add(torch.randn(3, 5), torch.randn(3, 2))
    with pytest.raises(ValueError, match=r"values: expected dimension 2, got shape \(3, 3\)"):
        stats.add(torch.randn(3, 4), torch.randn(3, 3))
    with pytest.raises(ValueError, match=r"weights: expected shape \(3,\)"):
        stats.add(torch.randn(3, 4), torch.randn(3, 2), torch.ones(4))


def test_integer_and_mixed_dtypes(stats):
    with pytest.raises(TypeError, match="keys: expected a floating-point dtype, got torch.int64"):
        stats.add(torch.ones(3, 4, dtype=torch.int64), torch.randn(3, 2))
    with pytest.raises(TypeError, match="keys are torch.float32 but values are torch.float64"):
        stats.add(torch.randn(3, 4), torch.randn(3, 2, dtype=torch.float64))
    stats.add(torch.randn(3, 4), torch.randn(3, 2))
    with pytest.raises(TypeError, match="built from torch.float32 keys"):
        stats.add(torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64))


def test_device_mixing(stats):
    meta_k = torch.empty(3, 4, device="meta")
    with pytest.raises(ValueError, match="keys are on meta but values are on cpu"):
        stats.add(meta_k, torch.randn(3, 2))
    stats.add(torch.randn(3, 4), torch.randn(3, 2))
    with pytest.raises(ValueError, match="batch is on meta but the statistics live on cpu"):
        stats.add(meta_k, torch.empty(3, 2, device="meta"))


def test_negative_or_nan_weights(stats):
    with pytest.raises(ValueError, match="weights: must be non-negative"):
        stats.add(torch.randn(3, 4), torch.randn(3, 2), torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="weights: contains 1 NaN"):
        stats.add(torch.randn(3, 4), torch.randn(3, 2), torch.tensor([1.0, math.nan, 1.0]))


def test_empty_statistics_at_solve_time(stats):
    with pytest.raises(ValueError, match="statistics are empty"):
        stats.solve()
    stats.add(torch.zeros(3, 4), torch.randn(3, 2))
    with pytest.raises(ValueError, match="every key added so far is zero"):
        stats.solve()


def test_subtracting_more_than_was_added(stats):
    stats.add(torch.randn(2, 4), torch.randn(2, 2))
    with pytest.raises(ValueError, match="cannot subtract 3 examples from statistics that hold 2"):
        stats.subtract(torch.randn(3, 4), torch.randn(3, 2))


def test_bad_solve_arguments(stats):
    stats.add(torch.randn(5, 4), torch.randn(5, 2))
    with pytest.raises(ValueError, match="either tau .* or ridge"):
        stats.solve(0.1, ridge=0.1)
    with pytest.raises(ValueError, match=r"relative singular-value cut in \[0, 1\], got -0.1"):
        stats.solve(-0.1)
    with pytest.raises(ValueError, match="ridge must be > 0"):
        stats.solve(ridge=0.0)
    with pytest.raises(ValueError, match="tau must be a number, got 'best'"):
        stats.solve("best")
    with pytest.raises(ValueError, match="tau must be finite"):
        stats.solve(float("nan"))
    with pytest.raises(ValueError, match="c must be > 0"):
        stats.solve(c=0.0)


def test_merge_of_other_dimensions(stats):
    with pytest.raises(ValueError, match=r"cannot merge: statistics of keys 5 → values 2"):
        stats.merge(GramStats(5, 2))
    with pytest.raises(TypeError, match="can only merge GramStats"):
        stats.merge(np.zeros((4, 4)))


def test_sparse_and_object_input(stats):
    with pytest.raises(TypeError, match="sparse"):
        stats.add(torch.eye(4).to_sparse(), torch.randn(4, 2))
    with pytest.raises(TypeError, match="Python objects"):
        stats.add(np.array([[object()] * 4]), torch.randn(1, 2))


def test_numpy_input_is_accepted(stats):
    stats.add(np.random.default_rng(0).standard_normal((6, 4)), np.ones((6, 2)))
    assert stats.input_dtype == torch.float64
    assert stats.solve().dtype == torch.float64


def test_tiny_tau_is_clamped_with_a_warning():
    gen = torch.Generator().manual_seed(0)
    stats = GramStats(8, 1).add(
        torch.randn(20, 8, generator=gen, dtype=torch.float64), torch.ones(20, 1, dtype=torch.float64)
    )
    with pytest.warns(RuntimeWarning, match="below what a float64 Gram matrix resolves"):
        stats.solve(1e-12)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (True, TypeError, "weight must be a number, got True"),
        ("best", ValueError, "weight must be a number, got 'best'"),
        (None, ValueError, "weight must be a number, got None"),
        (float("inf"), ValueError, "weight must be finite, got inf"),
        ("nan", ValueError, "weight must be finite, got 'nan'"),
    ],
)
def test_finite_number_names_what_is_wrong(value, error, message):
    """The one number check behind cut specs and LM configs."""
    with pytest.raises(error, match=message):
        finite_number(value, "weight")
    assert finite_number("1e-2", "weight") == 0.01 and finite_number(np.float32(2.5), "weight") == 2.5


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 8),
    forget=st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=1, max_size=8),
    kept=st.booleans(),
)
def test_check_subtract_refuses_exactly_what_subtract_refuses_and_changes_nothing(n, forget, kept):
    """``check_subtract`` raises where ``subtract`` raises (a pair never added, while the rows
    are kept; more pairs than held) with the same message, and leaves the statistics as they were."""
    gen = torch.Generator().manual_seed(n)
    keys, values = (
        torch.randn(n, 4, generator=gen, dtype=torch.float64),
        torch.randn(n, 2, generator=gen, dtype=torch.float64),
    )
    stats = GramStats(4, 2, dual_max_pairs=8 if kept else 0).add(keys, values)
    rows = [min(i, n - 1) for i, _ in forget]
    k, v = keys[rows].clone(), values[rows].clone()
    for j, (_, altered) in enumerate(forget):
        if altered:
            k[j, 0] += 1.0
    before = {name: t.clone() for name, t in stats.state_dict().items()}
    try:
        stats.check_subtract(k, v)
        checked = None
    except ValueError as exc:
        checked = str(exc)
    assert all(torch.equal(before[name], t) for name, t in stats.state_dict().items())
    try:
        stats.subtract(k, v)
        done = None
    except ValueError as exc:
        done = str(exc)
    assert checked == done
