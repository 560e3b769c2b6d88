"""Which rows a :class:`~faast.lm.FaastModel` learned: the record that lets ``forget`` refuse others.

A model's fast weights are sums over the (token t → token t+1) pairs of the rows (sequences) it
learned. While a memory keeps every pair's row (at most d pairs), ``forget`` matches each pair to
forget with a kept one; beyond, only the per-token counts could be checked, so a text never learned
whose tokens were all learned was subtracted without a word. The record holds one 64-bit digest per
row learned — its real tokens (those the attention mask marks, after the tokens of a prefix cache
it continues) and which of its pairs were learned — as a multiset
(:class:`~faast.digest_multiset.DigestMultiset`), so ``forget`` refuses a row not in it at any
size, before anything is subtracted. A row is matched by its tokens, not its padding: rows
learned in one batch may be forgotten one by one (the key states of a padded batch may still differ
in the last bits, see :meth:`FaastModel.forget <faast.lm.FaastModel.forget>`). It is saved with the
fast weights (``learned_rows``, 8 bytes per row); fast weights saved before it have none, and
``forget`` then checks the pairs only.
"""

from __future__ import annotations

import numpy as np
import torch

from faast.digest_multiset import DigestMultiset, mix64, multipliers
from faast.lm.readouts import Captured

#: The tensor of the record in a saved task (beside ``fingerprint``).
TENSOR_KEY = "learned_rows"


class LearnedRows(DigestMultiset):
    """A multiset of row digests (:func:`row_digests`)."""

    what = "record of learned rows"


#: Seeds of the digests' multipliers: tokens, learned-pair flags, lengths (fixed: saved records
#: stay valid).
_SEEDS = (0x70_4E5, 0x9A_1125, 0x1E_6745)


def row_digests(batch: Captured) -> tuple[np.ndarray, np.ndarray]:
    """(digests, rows): the digest (uint64) of each row of ``batch`` that learns at least one pair,
    and the row's index in the batch (int64), both (r,). A row is its real tokens (those the
    attention mask marks, after the batch's ``prefix_ids``) and, for each pair between them, whether
    it is learned — so neither its padding nor whether the prefix ran from a cache (a task's
    ``lead_cache``) changes it. The digest is a linear hash of those tokens and flags with fixed
    odd multipliers, mixed (splitmix64's finaliser): one vectorised pass over the batch."""
    valid = batch.valid.detach().to("cpu").bool()
    rows = np.flatnonzero(valid.any(dim=1).numpy())
    if rows.size == 0:
        return np.zeros(0, dtype=np.uint64), rows.astype(np.int64)
    ids = batch.input_ids.detach().to("cpu", dtype=torch.int64)[rows]
    real = batch.attention_mask.detach().to("cpu").bool()[rows]
    valid = valid[rows]
    between = real[:, :-1] & real[:, 1:]  # pairs whose two tokens are real
    prefix = torch.as_tensor(batch.prefix_ids, dtype=torch.int64).expand(len(rows), -1)
    # real tokens moved to the front of each row (padding on either side), then the prefix before them
    tokens = torch.cat([prefix, _to_front(ids, real)], dim=1)
    # the prefix's pairs and the one into the row are context, never learned (flag 0)
    flags = torch.cat(
        [torch.zeros(len(rows), len(batch.prefix_ids), dtype=torch.int64), _to_front(valid, between)], 1
    )
    length = real.sum(dim=1).numpy().astype(np.uint64) + np.uint64(len(batch.prefix_ids))
    words_t = tokens.numpy().astype(np.uint64)
    words_f = flags.numpy().astype(np.uint64)
    m_t = multipliers(words_t.shape[1], _SEEDS[0])
    m_f = multipliers(words_f.shape[1], _SEEDS[1])
    m_n = multipliers(1, _SEEDS[2])[0]
    with np.errstate(over="ignore"):  # arithmetic mod 2⁶⁴
        h = words_t.dot(m_t) + words_f.dot(m_f) + length * m_n
        return mix64(h), rows.astype(np.int64)


def _to_front(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, W) int64: each row's ``values`` where ``keep`` (B, W) holds, in order, moved to the
    front, zeros after (a row's digest must not depend on where its padding is)."""
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept positions first
    moved = torch.gather(values.to(torch.int64) * keep, 1, order)
    return moved
