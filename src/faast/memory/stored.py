"""Memories that keep every pair they are given (the softmax-attention and k-NN baselines): the
rows live in a :class:`~faast.solver.PairBuffer`, so ``forget`` removes them exactly."""

from __future__ import annotations

from typing import Any

import torch

from faast.memory.base import Memory
from faast.solver import PairBuffer
from faast.unit_rows import unit_rows

#: A pair to forget whose stored form has no bit-identical match may match a stored row within
#: this relative difference when the memory normalises keys on the way in: the L2 norm of a row
#: can round differently in a batch of another shape.
NORMALIZED_MATCH_RTOL = 1e-6


class StoredPairsMemory(Memory):
    """Shared plumbing of memories whose state is the list of stored pairs, oldest first:
    ``reset``, ``num_pairs``, ``nbytes`` and exact ``forget``. Subclasses call :meth:`_store` to
    add rows and override :meth:`_normalizes_keys` when they store L2-normalised keys."""

    def __init__(self) -> None:
        self.store = PairBuffer()
        self.key_dim = self.value_dim = None

    def _normalizes_keys(self) -> bool:
        """Whether keys are stored L2-normalised (default: as given)."""
        return False

    def _stored_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Keys (n, d) as the memory stores them."""
        return unit_rows(keys) if self._normalizes_keys() else keys

    def _scoring(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (q, d) and the stored keys (n, d) in the dtype reads score in, on the keys'
        device: the wider of the queries' and the keys' dtypes, at least float32 (float16 and
        bfloat16 scores lose the digits that rank the keys). Reads return in the queries' dtype."""
        keys, _ = self.store.tensors()
        dtype = torch.promote_types(torch.promote_types(queries.dtype, keys.dtype), torch.float32)
        return queries.to(device=keys.device, dtype=dtype), keys.to(dtype)

    def _changed(self) -> None:
        """Called after the stored pairs change (subclasses drop caches derived from them)."""

    def _store(self, keys: Any, values: Any) -> None:
        """Check and append pairs: keys (n, d), values (n, m)."""
        k, v = self._check_pairs(keys, values)
        stored = self._stored_keys(k)
        # copies: the memory must not alias the caller's tensors (changing them would change it)
        self.store.append(k.clone() if stored is k else stored, v.clone())
        self._adopt_dims(k, v)  # only once the rows are accepted: a refused batch changes nothing
        self._changed()

    def forget(self, keys: Any, values: Any) -> StoredPairsMemory:
        """Remove pairs added earlier, exactly: afterwards the memory holds the remaining pairs in
        the order they were added, as one that was only ever given those would. keys (n, d),
        values (n, m). Each pair must match a stored one (a pair added twice can be forgotten
        twice, the oldest copy first: identical pairs are interchangeable); one that does not —
        never added, or already forgotten — is a ``ValueError`` and nothing is removed."""
        if self.store.count == 0:
            raise ValueError(f"{type(self).__name__} is empty: there is nothing to forget")
        k, v = self._check_pairs(keys, values)
        k, v = k.detach(), v.detach()  # matched by value: keys that require grad are fine
        stored = self._stored_keys(k).to(device=self.store.tensors()[0].device)
        rtol = NORMALIZED_MATCH_RTOL if self._normalizes_keys() else 0.0
        index = self.store.find(stored, v.to(stored.device), rtol=rtol)
        self.store.remove(index)
        self._changed()
        return self

    remove = forget

    def reset(self) -> StoredPairsMemory:
        self.store = PairBuffer()
        self.key_dim = self.value_dim = None
        self._changed()
        return self

    @property
    def num_pairs(self) -> int:
        return self.store.count

    @property
    def nbytes(self) -> int:
        return self.store.nbytes
