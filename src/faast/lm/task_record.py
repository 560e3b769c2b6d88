"""Which examples a task has learned: the record that lets ``forget`` refuse the others.

A task's fast weights are sums over the pairs of the examples it learned. While it holds at most d
pairs, :meth:`FaastModel.forget_captured <faast.lm.FaastModel.forget_captured>` matches every pair
to forget with a kept one; beyond, only the per-token counts can be checked, so an example never
learned — a sentence of the test set, a learned input under another label — was subtracted
without a word, and the task no longer equalled any set of learned examples. The record holds a
digest of every learned example's tokens (prompt and answer, as the task encodes them: 64 bits of
SHA-256, 16 hex digits), as a multiset (an example learned twice is there twice), so ``forget`` can
refuse an example not in it at any size, before anything is subtracted. It is saved with the task
(``learned_examples`` in the task's info: 17 bytes of JSON per example); tasks saved before it
have none, and ``forget`` then checks the pairs only, as before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from faast.digest_multiset import DigestMultiset

#: The key of the record in a saved task's info.
INFO_KEY = "learned_examples"
_DIGEST = re.compile(r"[0-9a-f]{16}")


def example_digest(ids: Sequence[int]) -> int:
    """The digest (64 bits: the first 8 bytes of SHA-256, big-endian) of one encoded example's
    token ids (prompt + answer); saved as 16 hex digits."""
    data = b"".join(int(i).to_bytes(8, "little", signed=True) for i in ids)
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


class LearnedRecord(DigestMultiset):
    """A multiset of example digests (:func:`example_digest`), saved as JSON hex strings."""

    def to_json(self) -> list[str]:
        """The digests as 16 hex digits, sorted, each as often as held."""
        return [f"{int(d):016x}" for d in self._digests]

    @classmethod
    def from_json(cls, data: Any, where: str) -> LearnedRecord:
        """A record from :meth:`to_json`'s list; a ``ValueError`` naming ``where`` for anything
        else."""
        if not isinstance(data, list) or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in data):
            raise ValueError(
                f"{where}: malformed {INFO_KEY!r} (expected a list of 16-hex-digit example digests)"
            )
        return cls(np.array([int(d, 16) for d in data], dtype=np.uint64))
