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

import numpy as np
import torch

from faast.solver.blas_threads import single_threaded_blas
from faast.solver.row_passes import chunk_rows, numpy_rows, summed_over_threads, uses_numpy_passes
from faast.solver.spectral import SpectralFactor

#: Rows of the torch pass converted to float64 at a time, into one reused buffer small enough to
#: stay in cache for both products of a chunk (the NumPy pass sizes its chunks by
#: :func:`~faast.solver.row_passes.chunk_rows`).
CHUNK_ROWS = 512


def margins(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """marginᵢ = scores[i, yᵢ] − max over the other classes (n,); +∞ with a single class."""
    true = scores.gather(1, labels[:, None])[:, 0]
    if scores.shape[1] < 2:
        return torch.full_like(true, float("inf"))
    other = scores.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return true - other


def retarget(
    keys: torch.Tensor,
    onehot: torch.Tensor,
    weights: torch.Tensor | None,
    factor: SpectralFactor,
    phi: torch.Tensor,
    weight: torch.Tensor,
    margin: float,
    rounds: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``rounds`` ≥ 1 retargeting rounds from the fast weights W (m, d) solved with the filter φ
    (r,) of ``factor``: (B′ (d, m) of the last round, W′ (m, d) float64, examples it retargeted).

    keys, onehot, weights as in :func:`retargeted_cross`. On the CPU with float32/float64 keys
    the rounds stay in NumPy, its BLAS on one thread while the passes split over Python threads
    (:func:`~faast.solver.blas_threads.single_threaded_blas`); elsewhere in torch."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not (uses_numpy_passes(keys) and factor.eigenvalues.device.type == "cpu"):
        for _ in range(rounds):
            cross, moved = retargeted_cross(keys, onehot, weights, weight, margin)
            weight = factor.weights_for(phi, cross)
        return cross, weight, moved
    k_all, v_all, w_all = numpy_rows(keys, onehot, weights)
    to_weights = factor.weights_for_numpy(phi)
    w_np = weight.detach().cpu().to(torch.float64).numpy()
    with single_threaded_blas():
        for _ in range(rounds):
            cross_np, moved = _cross_numpy(k_all, v_all, w_all, w_np, margin)
            w_np = to_weights(cross_np)
    return torch.from_numpy(cross_np), torch.from_numpy(w_np), moved


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
    float64 (the current fast weights), all on one device. On the CPU with float32/float64 keys
    the pass runs through NumPy's BLAS (:func:`_retargeted_cross_numpy`, the same float64
    arithmetic; 115 against 311 ms for 60,000 × 1280 rows and 10 classes on one thread of an AMD
    EPYC, where torch uses MKL), elsewhere through torch
    (:func:`retargeted_cross_torch`, the reference the tests compare it with).
    """
    if uses_numpy_passes(keys):
        return _retargeted_cross_numpy(keys, onehot, weights, weight, margin)
    return retargeted_cross_torch(keys, onehot, weights, weight, margin)


def retargeted_cross_torch(
    keys: torch.Tensor,
    onehot: torch.Tensor,
    weights: torch.Tensor | None,
    weight: torch.Tensor,
    margin: float,
) -> tuple[torch.Tensor, int]:
    """:func:`retargeted_cross` in torch operations (any device, any floating dtype)."""
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


def _retargeted_cross_numpy(
    keys: torch.Tensor,
    onehot: torch.Tensor,
    weights: torch.Tensor | None,
    weight: torch.Tensor,
    margin: float,
) -> tuple[torch.Tensor, int]:
    """:func:`retargeted_cross` for CPU float32/float64 keys through NumPy's BLAS, the rows split
    over threads (:mod:`faast.solver.row_passes`), each part by :func:`_cross_rows`."""
    w_np = weight.detach().cpu().to(torch.float64).numpy()
    cross, moved = _cross_numpy(*numpy_rows(keys, onehot, weights), w_np, margin)
    return torch.from_numpy(cross), moved


def _cross_numpy(
    k_all: np.ndarray, v_all: np.ndarray, w_all: np.ndarray | None, weight: np.ndarray, margin: float
) -> tuple[np.ndarray, int]:
    """B′ (d, m) float64 and the number retargeted, on NumPy arrays: keys (n, d), one-hot values
    (n, m), weights (n,) float64 or None, W (m, d) float64; the rows split over threads, each
    part by :func:`_cross_rows`."""
    w_t = weight.T  # (d, m)
    cross, moved = summed_over_threads(
        lambda a, b: _cross_rows(k_all[a:b], v_all[a:b], None if w_all is None else w_all[a:b], w_t, margin),
        k_all.shape[0],
    )
    return cross, int(moved)


def _cross_rows(
    k_all: np.ndarray, v_all: np.ndarray, w_all: np.ndarray | None, w_t: np.ndarray, margin: float
) -> tuple[np.ndarray, int]:
    """B′ (d, m) float64 and the number retargeted over these rows, on one thread: each chunk
    converted to float64 in a reused buffer, scored, retargeted and added.

    k_all: (n, d); v_all: (n, m) one-hot; w_all: (n,) float64 or None; w_t: Wᵀ (d, m) float64."""
    n, d = k_all.shape
    m = w_t.shape[1]
    cross = np.zeros((d, m))
    if n == 0:
        return cross, 0
    chunk = chunk_rows(d * m)
    buf = np.empty((min(chunk, n), d))
    part = np.empty((d, m))
    moved = 0
    for start in range(0, n, chunk):
        k = buf[: min(chunk, n - start)]
        np.copyto(k, k_all[start : start + chunk])
        v = v_all[start : start + chunk].astype(np.float64)
        scores = k @ w_t  # (b, m)
        rows, labels = np.arange(k.shape[0]), v.argmax(axis=1)
        if m < 2:
            easy = np.ones(k.shape[0], dtype=bool)
        else:
            others = scores.copy()
            others[rows, labels] = -np.inf
            easy = scores[rows, labels] - others.max(axis=1) > margin
        target = np.where(easy[:, None], scores, v)
        if w_all is not None:
            target *= w_all[start : start + chunk, None]
        np.matmul(k.T, target, out=part)
        cross += part
        moved += int(easy.sum())
    return cross, moved
