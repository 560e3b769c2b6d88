"""Random key matrices with a controlled singular spectrum, for solver tests."""

from __future__ import annotations

import math

import torch


def orthonormal(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """(rows, cols) with orthonormal columns (cols <= rows)."""
    q, _ = torch.linalg.qr(torch.randn(rows, cols, generator=gen, dtype=torch.float64))
    return q


def keys_with_gap(
    n: int, d: int, *, tau: float, rank: int, kept: int, gen: torch.Generator, low_floor: float = 1e-3
) -> tuple[torch.Tensor, float]:
    """Keys (n, d) whose singular values avoid the band [τ/3, 3τ]·σ_max.

    rank: number of non-zero singular values (<= min(n, d)); kept: how many of them lie above
    3τ (at least 1, the largest being 1). The rest lie in [low_floor·τ, τ/3].
    Returns (keys, smallest kept singular value).
    """
    rank = max(1, min(rank, n, d))
    kept = max(1, min(kept, rank))
    u = torch.rand(kept - 1, generator=gen, dtype=torch.float64)
    high = torch.cat([torch.ones(1, dtype=torch.float64), torch.exp(u * math.log(3 * tau))])
    v = torch.rand(rank - kept, generator=gen, dtype=torch.float64)
    low = torch.exp(math.log(low_floor * tau) + v * (math.log(tau / 3) - math.log(low_floor * tau)))
    s = torch.cat([high, low])
    keys = orthonormal(n, rank, gen) @ torch.diag(s) @ orthonormal(d, rank, gen).T
    return keys, float(high.min())


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = float(torch.linalg.norm(b))
    return float(torch.linalg.norm(a - b)) / max(denom, 1e-300)
