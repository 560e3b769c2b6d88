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
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

#: The key of the record in a saved task's info.
INFO_KEY = "learned_examples"
_DIGEST = re.compile(r"[0-9a-f]{16}")


def example_digest(ids: Sequence[int]) -> str:
    """The digest (16 hex digits) of one encoded example's token ids (prompt + answer)."""
    data = b"".join(int(i).to_bytes(8, "little", signed=True) for i in ids)
    return hashlib.sha256(data).hexdigest()[:16]


class LearnedRecord:
    """A multiset of example digests (:func:`example_digest`)."""

    def __init__(self, digests: Iterable[str] = ()) -> None:
        self._count: Counter[str] = Counter(digests)

    def __len__(self) -> int:
        """How many examples (with repeats) the record holds."""
        return sum(self._count.values())

    def add(self, digests: Iterable[str]) -> None:
        """Note examples learned."""
        self._count.update(digests)

    def missing(self, digests: Sequence[str]) -> list[int]:
        """Positions in ``digests`` of the examples the record does not hold (an example to forget
        twice must have been learned twice)."""
        left = Counter(self._count)
        out = []
        for i, digest in enumerate(digests):
            if left[digest] > 0:
                left[digest] -= 1
            else:
                out.append(i)
        return out

    def remove(self, digests: Iterable[str]) -> None:
        """Drop examples forgotten (each must be held: :meth:`missing` first)."""
        self._count.subtract(digests)
        self._count = +self._count  # drop the zero counts

    def to_json(self) -> list[str]:
        """The digests, sorted, each as often as held."""
        return sorted(self._count.elements())

    @classmethod
    def from_json(cls, data: Any, where: str) -> LearnedRecord:
        """A record from :meth:`to_json`'s list; a ``ValueError`` naming ``where`` for anything
        else."""
        if not isinstance(data, list) or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in data):
            raise ValueError(
                f"{where}: malformed {INFO_KEY!r} (expected a list of 16-hex-digit example digests)"
            )
        return cls(data)
