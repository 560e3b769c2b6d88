"""Which rows a :class:`~faast.lm.FaastModel` learned: the record that lets ``forget`` refuse others.

A model's fast weights are sums over the (token t → token t+1) pairs of the rows (sequences) it
learned. While a memory keeps every pair's row (at most d pairs), ``forget`` matches each pair to
forget with a kept one; beyond, only the per-token counts could be checked, so a text never learned
whose tokens were all learned was subtracted without a word. The record holds one 64-bit digest per
row learned — its real tokens (those the attention mask marks) and which of its pairs were learned
— as a multiset (:class:`~faast.digest_multiset.DigestMultiset`), so ``forget`` refuses a row not in
it at any size, before anything is subtracted. A row is matched by its tokens, not its padding: rows
learned in one batch may be forgotten one by one (the key states of a padded batch may still differ
in the last bits, see :meth:`FaastModel.forget <faast.lm.FaastModel.forget>`). It is saved with the
fast weights (``learned_rows``, 8 bytes per row); fast weights saved before it have none, and
``forget`` then checks the pairs only.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from faast.digest_multiset import DigestMultiset
from faast.lm.readouts import Captured

#: The tensor of the record in a saved task (beside ``fingerprint``).
TENSOR_KEY = "learned_rows"


class LearnedRows(DigestMultiset):
    """A multiset of row digests (:func:`row_digests`)."""

    what = "record of learned rows"


def row_digests(batch: Captured) -> tuple[np.ndarray, np.ndarray]:
    """(digests, rows): the digest (uint64) of each row of ``batch`` that learns at least one pair,
    and the row's index in the batch (int64), both (r,). A digest is the first 8 bytes of SHA-256 of
    the row's real tokens (int64, little-endian) followed by one byte per pair between them: 1 where
    the pair is learned."""
    ids = batch.input_ids.detach().to("cpu", dtype=torch.int64)
    real = batch.attention_mask.detach().to("cpu").bool()
    valid = batch.valid.detach().to("cpu").bool()
    digests, rows = [], []
    for b in range(ids.shape[0]):
        if not bool(valid[b].any()):
            continue
        between = real[b, :-1] & real[b, 1:]  # the pairs whose two tokens are real
        tokens = ids[b][real[b]].numpy().astype("<i8").tobytes()
        learned = valid[b][between].numpy().astype(np.uint8).tobytes()
        digest = hashlib.sha256(tokens + b"|" + learned).digest()
        digests.append(int.from_bytes(digest[:8], "big"))
        rows.append(b)
    return np.array(digests, dtype=np.uint64), np.array(rows, dtype=np.int64)
