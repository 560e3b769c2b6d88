"""The rows a shared prefix's continuations need (:func:`faast.lm.prefix_cache.distinct_continuations`):
on random label token lists, every continuation finds its tokens at the start of its row, every
row is one of the continuations, and none repeats or begins another."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm.prefix_cache import distinct_continuations

CONTINUATIONS = st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=4), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(continuations=CONTINUATIONS)
def test_every_continuation_begins_its_row_and_no_row_is_needless(continuations):
    rows, owner = distinct_continuations(continuations)
    assert len(owner) == len(continuations)
    for c, i in zip(continuations, owner, strict=True):
        assert rows[i][: len(c)] == c
    assert all(row in continuations for row in rows)
    for i, a in enumerate(rows):
        for j, b in enumerate(rows):
            assert i == j or b[: len(a)] != a  # no repeat, no row that begins another


def test_a_continuation_that_begins_a_longer_one_reads_its_row():
    rows, owner = distinct_continuations([[5], [5, 6], [7], [5, 6], [5, 8]])
    assert rows == [[5, 6], [5, 8], [7]]
    assert owner == [0, 0, 2, 0, 1]


def test_continuations_are_packed_only_where_a_custom_mask_fits():
    """In-context scoring packs continuations into one row under a custom attention mask only for
    a model that takes position ids and such a mask (not flash attention) and a cache of plain
    growing layers (not Gemma-3's sliding-window ones)."""
    import torch

    from faast.lm.icl import _packs_continuations
    from faast.lm.prefix_cache import parameter_names
    from tests.lm_tiny import tiny_model

    def cache_of(model):
        return model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True).past_key_values

    llama = tiny_model("llama")
    params = parameter_names(llama.forward)
    assert _packs_continuations(cache_of(llama), llama, params)
    assert not _packs_continuations(cache_of(llama), llama, params - {"position_ids"})
    flash = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    assert not _packs_continuations(cache_of(llama), flash, params)
    gemma = tiny_model("gemma3")
    assert not _packs_continuations(cache_of(gemma), gemma, parameter_names(gemma.forward))
