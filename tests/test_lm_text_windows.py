"""Windows of a text's token stream: every token in a window, batches of one length, in order."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm.text import text_windows, token_windows, window_batches


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 300), length=st.integers(2, 70), start=st.lists(st.integers(1, 9), max_size=2))
def test_text_windows_hold_every_token_in_order(n, length, start):
    ids = torch.arange(100, 100 + n)
    windows = text_windows(ids, length, start)
    bodies = [w[len(start) :] for w in windows]
    assert all(w[: len(start)].tolist() == start for w in windows)
    joined = torch.cat(bodies)
    whole = token_windows(ids, length)
    # every token, unless a last token stands alone after whole windows (it has no pair)
    assert joined.tolist() == ids[: n - 1 if n % length == 1 and n > length else n].tolist()
    assert all(len(b) == len(bodies[0]) for b in bodies[: len(whole)])


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(2, 6), min_size=1, max_size=12), batch_size=st.integers(1, 5))
def test_window_batches_keep_order_and_one_length_per_batch(lengths, batch_size):
    windows = [torch.full((k,), i) for i, k in enumerate(lengths)]
    batches = window_batches(windows, batch_size)
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert [row.tolist() for b in batches for row in b] == [w.tolist() for w in windows]
    stacked = torch.stack([torch.arange(4) + i for i in range(7)])
    assert [b.tolist() for b in window_batches(stacked, batch_size)] == [
        stacked[i : i + batch_size].tolist() for i in range(0, 7, batch_size)
    ]
