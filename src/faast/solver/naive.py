"""Plain reference solver: the spectrally truncated SVD pseudoinverse, in float64.

This is the authors' formulation, W = (K⁺_τ V)ᵀ with singular values σ < τ·σ_max dropped,
kept deliberately simple so that the fast streaming path can be tested against it.
"""

from __future__ import annotations

import torch


def svd_reference(
    keys: torch.Tensor,
    values: torch.Tensor,
    tau: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fast weights by full SVD of the (weighted) key matrix.

    keys: (n, d); values: (n, m); weights: (n,) non-negative or None; tau: relative cut.
    Returns W of shape (m, d) in float64, so that predictions are ``queries @ W.T``.
    """
    k = keys.to(torch.float64)
    v = values.to(torch.float64)
    if weights is not None:
        root = weights.to(torch.float64).sqrt()[:, None]
        k, v = k * root, v * root
    u, s, vh = torch.linalg.svd(k, full_matrices=False)
    keep = s >= tau * s.max()
    inv = torch.zeros_like(s)
    inv[keep] = 1.0 / s[keep]
    pinv = vh.T @ (inv[:, None] * u.T)  # (d, n)
    return (pinv @ v).T


def ridge_reference(keys: torch.Tensor, values: torch.Tensor, ridge: float) -> torch.Tensor:
    """Ridge fast weights ((KᵀK + ρI)⁻¹ KᵀV)ᵀ by a direct float64 solve. Returns (m, d)."""
    k = keys.to(torch.float64)
    v = values.to(torch.float64)
    g = k.T @ k + ridge * torch.eye(k.shape[1], dtype=torch.float64)
    return torch.linalg.solve(g, k.T @ v).T
