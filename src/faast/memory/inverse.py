"""FAAST's inverse memory: closed-form least-squares fast weights from streaming statistics."""

from __future__ import annotations

from typing import Any

import torch

from faast.memory.base import Memory
from faast.solver import GramStats


class InverseMemory(Memory):
    """Reads ``W·q`` with W the spectrally truncated least-squares map from keys to values.

    Only the float64 statistics (G, B) are kept while learning and only W (m × d) at inference,
    whatever the number of pairs. ``tau``/``alpha``/``c``/``ridge`` are as in :meth:`GramStats.solve`.
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        c: float = 1.0,
        tau: float | str | None = None,
        ridge: float | str | None = None,
    ) -> None:
        self.alpha, self.c, self.tau, self.ridge = alpha, c, tau, ridge
        self.stats: GramStats | None = None
        self.key_dim = self.value_dim = None

    def add(self, keys: Any, values: Any) -> InverseMemory:
        k, v = self._check_add(keys, values)
        if self.stats is None:
            self.stats = GramStats(k.shape[1], v.shape[1], device=k.device)
        self.stats.add(k, v)
        return self

    def remove(self, keys: Any, values: Any) -> InverseMemory:
        """Forget pairs added earlier, exactly."""
        if self.stats is None:
            raise ValueError("InverseMemory is empty: nothing to remove")
        k, v = self._check_add(keys, values)
        self.stats.subtract(k, v)
        return self

    def weights(self) -> torch.Tensor:
        """The fast-weight matrix W (m, d), cached until pairs are added or removed."""
        if self.stats is None or self.stats.count == 0:
            raise ValueError("InverseMemory is empty: add() pairs before read()")
        return self.stats.solve(self.tau, alpha=self.alpha, c=self.c, ridge=self.ridge)

    def read(self, queries: Any) -> torch.Tensor:
        q = self._check_read(queries)
        w = self.weights().to(device=q.device, dtype=q.dtype)
        return q @ w.T

    def reset(self) -> InverseMemory:
        self.stats = None
        self.key_dim = self.value_dim = None
        return self

    @property
    def num_pairs(self) -> int:
        return 0 if self.stats is None else self.stats.count

    @property
    def nbytes(self) -> int:
        if self.stats is None:
            return 0
        itemsize = torch.tensor([], dtype=self.stats.input_dtype or torch.float32).element_size()
        return self.stats.key_dim * self.stats.value_dim * itemsize
