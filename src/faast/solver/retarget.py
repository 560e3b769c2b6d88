"""Margin retargeting: closed-form steps from one-hot least squares towards a hinge-like loss.

Least squares to one-hot targets also pulls on examples that are already classified with a wide
margin, which spends capacity where the logistic loss would not. With the spectral filter φ held
fixed (one eigendecomposition), a retargeting round replaces the target of every example whose
margin exceeds θ by its own prediction, so that it exerts no residual:

    ŝᵢ = W kᵢ,   marginᵢ = ŝᵢ[yᵢ] − max_{c ≠ yᵢ} ŝᵢ[c]
    tᵢ = ŝᵢ if marginᵢ > θ else vᵢ
    B′ = Σ wᵢ kᵢ tᵢᵀ,   W′ = (U diag(φ) Uᵀ B′)ᵀ

and repeats from W′ (the statistics G and B are untouched: each round is one pass of
O(n·d·m) over the rows). It is the retargeted least-squares idea of learning the regression
targets under a margin constraint, in its simplest form: examples beyond the margin stop
pulling; the others keep their one-hot targets.
"""

from __future__ import annotations

import torch

#: Rows converted to float64 at a time, into one reused buffer small enough to stay in cache for
#: both products of a chunk.
CHUNK_ROWS = 512


def margins(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """marginᵢ = scores[i, yᵢ] − max over the other classes (n,); +∞ with a single class."""
    true = scores.gather(1, labels[:, None])[:, 0]
    if scores.shape[1] < 2:
        return torch.full_like(true, float("inf"))
    other = scores.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return true - other


def retargeted_cross(
    keys: torch.Tensor,
    onehot: torch.Tensor,
    weights: torch.Tensor | None,
    weight: torch.Tensor,
    margin: float,
) -> tuple[torch.Tensor, int]:
    """B′ = Σ wᵢ kᵢ tᵢᵀ (d, m) float64 with tᵢ the prediction W kᵢ where the margin exceeds
    ``margin``, the one-hot value vᵢ elsewhere, and the number of examples retargeted.

    keys: (n, d); onehot: (n, m) one-hot rows; weights: (n,) ≥ 0 or None; weight: W (m, d)
    float64 (the current fast weights), all on one device.
    """
    w64 = weight.to(torch.float64)
    n, d = keys.shape
    cross = torch.zeros(d, onehot.shape[1], dtype=torch.float64, device=keys.device)
    buf = torch.empty(min(CHUNK_ROWS, n), d, dtype=torch.float64, device=keys.device)
    moved = 0
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        k = buf[: stop - start]
        k.copy_(keys[start:stop])
        v = onehot[start:stop].to(torch.float64)
        scores = k @ w64.T
        easy = margins(scores, v.argmax(dim=1)) > margin
        target = torch.where(easy[:, None], scores, v)
        if weights is not None:
            target = target * weights[start:stop, None].to(torch.float64)
        cross.addmm_(k.T, target)
        moved += int(easy.sum())
    return cross, moved
