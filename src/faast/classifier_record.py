"""Which examples a :class:`~faast.classifier.FaastClassifier` has learned, for ``forget``.

While at most 2·D examples are held the statistics keep every example's row, and ``forget``
matches each example to forget with a kept one. Beyond, the rows are gone; only the class counts
could be checked, so an example never learned (or learned under another label, or with another
weight) was subtracted without a word, and the classifier equalled no refit. The record keeps a
64-bit digest of every example learned — its features as the statistics took them (the bytes of
the row, in the dtype the classifier was fitted on), its class and its weight — as a multiset,
8 bytes per example, so that ``forget`` refuses such an example at any size. The digest is a
linear hash of the row's 64-bit words with fixed odd multipliers, then mixed (splitmix64's
finaliser): one vectorised pass, a few percent of a fit's time. It is exact, bit for bit: features
recomputed to other roundings are not the examples learned (while the rows are kept, ``forget``
accepts those within rounding; the record then drops such an example's digest it cannot find —
:meth:`~faast.digest_multiset.DigestMultiset.remove_found` — and the classifier keeps no record
from there on). The multiset itself is :class:`faast.digest_multiset.DigestMultiset`, shared with
the language-model tasks' record.
"""

from __future__ import annotations

import numpy as np
import torch

from faast.digest_multiset import DigestMultiset, mix64, multipliers

#: The seed of the digests' multipliers (fixed: saved records stay valid).
_SEED = 0x5EED_FAA5


def example_digests(keys: torch.Tensor, classes: torch.Tensor, weights: torch.Tensor | None) -> np.ndarray:
    """The digest (n,) uint64 of each example: keys (n, d) of any dtype (their bytes), classes (n,)
    integer class indices, weights (n,) or None (1)."""
    n = keys.shape[0]
    if n == 0:  # an empty shard
        return np.zeros(0, dtype=np.uint64)
    rows = keys.detach().to("cpu")
    if rows.stride() != (rows.shape[1], 1):  # e.g. an expanded column (stride 0): a byte view
        dense = torch.empty(rows.shape, dtype=rows.dtype)  # needs row-major strides
        rows = dense.copy_(rows)
    raw = rows.view(torch.uint8).reshape(n, -1).numpy()
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    words = np.ascontiguousarray(raw).view(np.uint64)  # (n, w)
    w = words.shape[1]
    mult = multipliers(w + 3, _SEED)
    with np.errstate(over="ignore"):
        h = words.dot(mult[:w]) if w else np.zeros(n, dtype=np.uint64)  # wraps mod 2⁶⁴, no temporary
        label = classes.detach().to("cpu", torch.int64).numpy().astype(np.uint64) + np.uint64(1)
        weight = np.ones(n) if weights is None else weights.detach().to("cpu", torch.float64).numpy()
        h = h + mult[w] * label + mult[w + 1] * np.ascontiguousarray(weight).view(np.uint64)
        h = h + mult[w + 2] * np.uint64(w)
        return mix64(h)


def class_index(onehot: torch.Tensor) -> torch.Tensor:
    """Each one-hot row's class index (n,) int64; (0,) for no rows (an empty shard)."""
    if onehot.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    return onehot.argmax(dim=1)


class ExampleRecord(DigestMultiset):
    """A multiset of example digests (:func:`example_digests`), saved as an int64 tensor."""

    what = "example record"

    def learned_again(self, earlier: ExampleRecord) -> int:
        """How many of the examples added since ``earlier`` (a copy of this record taken before
        they were added) ``earlier`` already held: examples learned once more. Each held digest
        covers one added digest of its value, as in :meth:`missing`."""
        values, counts = np.unique(self._digests, return_counts=True)
        held = earlier._digests
        before = np.searchsorted(held, values, side="right") - np.searchsorted(held, values, side="left")
        return int(np.minimum(counts - before, before).clip(min=0).sum())
