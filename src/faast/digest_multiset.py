"""A multiset of 64-bit digests: the record of examples learned that ``forget`` checks.

Both the classifier (:mod:`faast.classifier_record`: one digest per example's features, class and
weight) and the language-model tasks (:mod:`faast.lm.task_record`: one per example's tokens) keep
one, so that ``forget`` can refuse an example never learned once the statistics no longer keep
the rows. Digests are held sorted (uint64, 8 bytes each); an example learned twice is held twice
and must be forgotten twice. Each user writes the record in its own file format.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TypeVar

import numpy as np
import torch

_M = TypeVar("_M", bound="DigestMultiset")
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@functools.lru_cache(maxsize=64)
def multipliers(count: int, seed: int) -> np.ndarray:
    """``count`` odd uint64 multipliers of a linear hash, the same for every call with ``seed`` (a
    prefix of one sequence; fixed seeds keep saved digests valid). Read-only (cached)."""
    words = np.random.default_rng(seed).integers(0, 2**64, size=count, dtype=np.uint64, endpoint=False)
    words |= np.uint64(1)
    words.flags.writeable = False
    return words


def mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 values (n,): every input bit reaches every output bit."""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def as_digests(digests: np.ndarray | Iterable[int]) -> np.ndarray:
    """Digests (n,) as uint64, from an array or an iterable of Python ints in [0, 2⁶⁴)."""
    if isinstance(digests, np.ndarray):
        return digests.astype(np.uint64, copy=False).reshape(-1)
    return np.fromiter((int(d) for d in digests), dtype=np.uint64)


class DigestMultiset:
    """A multiset of uint64 digests, kept sorted."""

    #: What the multiset records, for error messages.
    what = "record of digests"

    def __init__(self, digests: np.ndarray | Iterable[int] = ()) -> None:
        self._sorted = np.sort(as_digests(digests))
        self._added: list[np.ndarray] = []  # not merged yet: adding costs O(new), not O(held)
        self._added_count = 0

    @property
    def _digests(self) -> np.ndarray:
        """The digests held, sorted (merged with those added since the last use)."""
        if self._added:
            self._sorted = np.sort(np.concatenate([self._sorted, *self._added]))
            self._added, self._added_count = [], 0
        return self._sorted

    def __len__(self) -> int:
        """How many digests (with repeats) are held."""
        return int(self._sorted.size) + self._added_count

    @property
    def digests(self) -> np.ndarray:
        """The digests held (n,) uint64, sorted, each as often as held (a copy)."""
        return self._digests.copy()

    def copy(self: _M) -> _M:
        """An independent copy (of the same class)."""
        out = type(self).__new__(type(self))
        out._sorted, out._added, out._added_count = self._digests.copy(), [], 0
        return out

    def add(self, digests: np.ndarray | Iterable[int]) -> None:
        """Note examples learned (merged with the others on the next query: many small additions
        cost one sort, not one each)."""
        new = as_digests(digests).copy()
        if new.size:
            self._added.append(new)
            self._added_count += int(new.size)

    def missing(self, digests: np.ndarray | Iterable[int]) -> np.ndarray:
        """Positions (int64) in ``digests`` (n,) of those the multiset does not hold: each held
        digest covers as many of equal value as it was added (one to forget twice must have been
        learned twice)."""
        wanted = as_digests(digests)
        values, inverse = np.unique(wanted, return_inverse=True)
        inverse = inverse.reshape(-1)
        held = np.searchsorted(self._digests, values, side="right") - np.searchsorted(
            self._digests, values, side="left"
        )
        rank = np.empty(wanted.size, dtype=np.int64)  # how many equal digests come before each
        order = np.argsort(inverse, kind="stable")
        starts = np.searchsorted(inverse[order], np.arange(values.size))
        rank[order] = np.arange(wanted.size) - np.repeat(starts, np.bincount(inverse, minlength=values.size))
        return np.flatnonzero(rank >= held[inverse])

    def remove_found(self, digests: np.ndarray | Iterable[int]) -> bool:
        """Drop the digests held among ``digests``; whether every one was held (False: the
        multiset no longer says exactly what is learned)."""
        wanted = as_digests(digests)
        absent = self.missing(wanted)
        found = np.delete(wanted, absent)
        if found.size:
            values, counts = np.unique(found, return_counts=True)
            left = np.searchsorted(self._digests, values, side="left")
            drop = np.concatenate([np.arange(s, s + c) for s, c in zip(left, counts, strict=True)])
            self._sorted = np.delete(self._digests, drop)
        return absent.size == 0

    def minus(self, other: DigestMultiset) -> np.ndarray:
        """The digests (sorted uint64) held here beyond those ``other`` holds (multiset difference)."""
        rest = self.copy()
        rest.remove_found(other._digests)
        return rest._digests

    def to_tensor(self) -> torch.Tensor:
        """The digests (n,) as int64 (their bits), for a safetensors file."""
        return torch.from_numpy(self._digests.view(np.int64).copy())

    @classmethod
    def from_tensor(cls: type[_M], tensor: torch.Tensor, where: str) -> _M:
        """A multiset from :meth:`to_tensor`; a ``ValueError`` naming ``where`` otherwise."""
        if tensor.ndim != 1 or tensor.dtype != torch.int64:
            raise ValueError(
                f"{where}: malformed {cls.what} (expected int64 digests of shape (n,), got "
                f"{tensor.dtype} {tuple(tensor.shape)})"
            )
        return cls(tensor.numpy().view(np.uint64))
