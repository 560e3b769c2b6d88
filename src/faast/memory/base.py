"""The interface every key→value memory shares: ``add`` pairs, ``read`` values, ``forget`` pairs,
``reset``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from faast._checks import check_float_matrix, check_pairs


class Memory(ABC):
    """A store of key→value associations read by queries.

    Shapes: keys (n, d), values (n, m), queries (q, d) → read returns (q, m).
    """

    key_dim: int | None = None
    value_dim: int | None = None

    @abstractmethod
    def add(self, keys: Any, values: Any) -> Memory:
        """Store pairs. keys: (n, d); values: (n, m)."""

    @abstractmethod
    def read(self, queries: Any) -> torch.Tensor:
        """Predicted values (q, m) for queries (q, d), in the queries' dtype and device."""

    @abstractmethod
    def forget(self, keys: Any, values: Any) -> Memory:
        """Remove pairs added earlier, exactly: afterwards the memory answers as one that never
        saw them. keys: (n, d); values: (n, m). Pairs that were never added are a ``ValueError``
        and leave the memory unchanged."""

    @abstractmethod
    def reset(self) -> Memory:
        """Forget every stored pair."""

    @property
    @abstractmethod
    def num_pairs(self) -> int:
        """How many pairs the memory holds (or summarises)."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes that must be kept to answer reads (what inference needs, not training)."""

    # ----------------------------------------------------------------- shared checks
    def _check_pairs(self, keys: Any, values: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated keys (n, d) and values (n, m) of the dimensions the memory holds (any, while it
        has none yet). Changes nothing: a batch refused later must leave the memory as it was, so
        callers record the dimensions with :meth:`_adopt_dims` only once the batch is accepted."""
        k, v = check_pairs(keys, values)
        if self.key_dim is not None and k.shape[1] != self.key_dim:
            raise ValueError(f"keys: memory holds {self.key_dim}-d keys, got shape {tuple(k.shape)}")
        if self.value_dim is not None and v.shape[1] != self.value_dim:
            raise ValueError(f"values: memory holds {self.value_dim}-d values, got shape {tuple(v.shape)}")
        return k, v

    def _adopt_dims(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Record d and m from an accepted batch: keys (n, d), values (n, m)."""
        self.key_dim, self.value_dim = keys.shape[1], values.shape[1]

    def _check_read(self, queries: Any) -> torch.Tensor:
        if self.num_pairs == 0:
            raise ValueError(f"{type(self).__name__} is empty: add() pairs before read()")
        return check_float_matrix(queries, "queries", cols=self.key_dim)
