"""Statistics and memories keep copies of what they are given: an input tensor changed after
``add`` (or ``load_state_dict``) does not change what was learned (the kept float64 rows of
``GramStats`` and the stored pairs of the softmax and k-NN memories used to alias it)."""

from __future__ import annotations

import pytest
import torch

from faast.memory import KNNMemory, SoftmaxMemory
from faast.solver import GramStats


def test_statistics_do_not_change_with_the_callers_tensors():
    """The kept float64 rows are copies: an input changed after ``add`` (or after
    ``load_state_dict``) leaves the statistics as they were (before, float64 rows aliased it)."""
    g = torch.Generator().manual_seed(5)
    keys = torch.randn(6, 10, generator=g, dtype=torch.float64)
    values = torch.randn(6, 2, generator=g, dtype=torch.float64)
    want = GramStats(10, 2).add(keys.clone(), values.clone()).solve(ridge=0.1)
    stats = GramStats(10, 2).add(keys, values)
    rows = tuple(t.clone() for t in stats.kept_rows())
    loaded = GramStats(10, 2)
    loaded.load_state_dict(stats.state_dict(), rows=rows)
    keys.zero_()
    values.zero_()
    for t in rows:
        t.zero_()
    torch.testing.assert_close(stats.solve(ridge=0.1), want)
    torch.testing.assert_close(loaded.solve(ridge=0.1, dtype=torch.float64), want)


@pytest.mark.parametrize("memory", [SoftmaxMemory, KNNMemory])
def test_stored_pair_memories_do_not_change_with_the_callers_tensors(memory):
    g = torch.Generator().manual_seed(0)
    keys, values = torch.randn(5, 8, generator=g), torch.randn(5, 2, generator=g)
    queries = torch.randn(3, 8, generator=g)
    want = memory().add(keys.clone(), values.clone()).read(queries)
    mem = memory().add(keys, values)
    keys.zero_()  # before the first read, and after it
    values.zero_()
    torch.testing.assert_close(mem.read(queries), want)
    keys.fill_(1.0)
    torch.testing.assert_close(mem.read(queries), want)
