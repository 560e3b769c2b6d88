"""Softmax-attention memory: the values of stored pairs weighted by softmax(q·k / temperature)."""

from __future__ import annotations

from typing import Any

import torch

from faast._checks import finite_number
from faast.memory.stored import StoredPairsMemory
from faast.unit_rows import unit_rows

#: Upper bound on query×key scores materialised at once by ``read``.
_SCORE_BLOCK = 1 << 24


class SoftmaxMemory(StoredPairsMemory):
    """Attention over every stored pair: read(q) = softmax(q Kᵀ / temperature) V.

    temperature: the softmax temperature (0.01 is CLIP's logit scale of 100, as in the paper's
    baseline). normalize: L2-normalise keys and queries first (cosine scores).
    """

    def __init__(self, *, temperature: float = 0.01, normalize: bool = False) -> None:
        if not finite_number(temperature, "temperature") > 0:  # "1" failed comparing str and int
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__()
        self.temperature = float(temperature)
        self.normalize = normalize

    def _normalizes_keys(self) -> bool:
        return self.normalize

    def add(self, keys: Any, values: Any) -> SoftmaxMemory:
        self._store(keys, values)
        return self

    def read(self, queries: Any) -> torch.Tensor:
        """softmax(q Kᵀ / temperature) V for queries (q, d) → values (q, m), scored in the wider of
        the queries' and keys' dtypes (at least float32), returned in the queries' dtype and device."""
        queries = self._check_read(queries)
        if queries.shape[0] == 0:  # no queries: an empty (0, m) read, as InverseMemory gives
            return queries.new_zeros(0, int(self.value_dim))
        q, keys = self._scoring(queries)
        values = self.store.tensors()[1].to(q.dtype)
        if self.normalize:
            q = unit_rows(q)
        block = max(1, _SCORE_BLOCK // max(keys.shape[0], 1))
        out = [self._attend(q[i : i + block], keys, values) for i in range(0, q.shape[0], block)]
        return torch.cat(out).to(device=queries.device, dtype=queries.dtype)

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """softmax(q Kᵀ / temperature) V for a block of queries q (b, d), keys (n, d), values
        (n, c) of one dtype → (b, c) in that dtype; scores that overflow it (float32 near 10¹⁹) are
        recomputed in float64, and refused by name if they overflow that too."""
        scores = q @ keys.T / self.temperature
        if not bool(torch.isfinite(scores).all()):
            scores = self._float64_scores(q, keys)
        return (torch.softmax(scores, dim=1) @ values.to(scores.dtype)).to(q.dtype)

    def _float64_scores(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """q Kᵀ / temperature (b, n) in float64 for queries q (b, d) and keys (n, d); a
        ``ValueError`` when even float64 overflows."""
        scores = q.double() @ keys.double().T / self.temperature
        if not bool(torch.isfinite(scores).all()):
            raise ValueError(
                "SoftmaxMemory: query·key scores / temperature overflow float64; scale the keys and "
                "queries down, raise the temperature or use normalize=True"
            )
        return scores
