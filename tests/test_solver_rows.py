"""PairBuffer.find: exact matches, and matches within rounding for recomputed rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.solver import GramStats, PairBuffer


def _buffer(n: int, d: int, seed: int) -> tuple[PairBuffer, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=gen, dtype=torch.float64)
    values = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).to(torch.float64)
    return PairBuffer().append(keys, values), keys, values


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), d=st.integers(1, 12), take=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_rows_off_by_rounding_match_with_a_tolerance_only(n, d, take, seed):
    buf, keys, values = _buffer(n, d, seed)
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(take, n)]
    nudged = keys[index] * (1 + 4 * torch.finfo(torch.float64).eps)  # a few ulps off
    assert torch.equal(buf.find(keys[index], values[index]), index)  # bit-identical rows
    found = buf.find(nudged, values[index], rtol=1e-8)
    assert torch.equal(keys[found], keys[index])  # the closest stored row, each used once
    if not torch.equal(nudged, keys[index]):
        with pytest.raises(ValueError, match="never added"):
            buf.find(nudged, values[index])  # exact matching refuses them


def test_a_tolerance_does_not_accept_a_different_row_or_a_row_twice():
    buf, keys, values = _buffer(6, 4, 0)
    with pytest.raises(ValueError, match="never added"):
        buf.find(keys[:1] * (1 + 1e-3), values[:1], rtol=1e-8)
    with pytest.raises(ValueError, match="never added"):
        buf.find(torch.cat([keys[:1], keys[:1]]), torch.cat([values[:1], values[:1]]), rtol=1e-8)
    with pytest.raises(ValueError, match="never added"):  # right features, wrong label
        buf.find(keys[:1], values[1:2], rtol=1e-8)


def test_the_tolerance_is_relative_to_the_keys_not_to_the_values():
    """Keys at 1e-12 beside one-hot values: a different row of the same label is not within
    rounding of it, whatever the values' scale."""
    gen = torch.Generator().manual_seed(1)
    keys = 1e-12 * torch.randn(4, 3, generator=gen, dtype=torch.float64)
    values = torch.ones(4, 1, dtype=torch.float64)
    buf = PairBuffer().append(keys[:2], values[:2])
    with pytest.raises(ValueError, match="never added"):
        buf.find(keys[2:3], values[2:3], rtol=1e-8)
    assert int(buf.find(keys[1:2] * (1 + 1e-15), values[1:2], rtol=1e-8)[0]) == 1


def test_forgetting_rows_recomputed_in_another_batch_shape_is_exact():
    """Rows whose product with a matrix is computed in a batch of 40, then of 5 (BLAS rounding
    may differ in the last bits): the stored rows are removed, equal to never adding them."""
    gen = torch.Generator().manual_seed(3)
    proj = torch.randn(12, 64, generator=gen, dtype=torch.float64)
    x = torch.randn(40, 12, generator=gen, dtype=torch.float64)
    v = torch.nn.functional.one_hot(torch.arange(40) % 3, 3).to(torch.float64)
    stats = GramStats(64, 3, dual_max_pairs=128).add(x @ proj, v)
    stats.subtract(x[:5] @ proj, v[:5])
    ref = GramStats(64, 3, dual_max_pairs=128).add((x @ proj)[5:], v[5:])
    np.testing.assert_array_equal(stats.kept_rows()[0].numpy(), ref.kept_rows()[0].numpy())
