"""The kernels of the closed-form logistic steps (:mod:`faast.solver.logistic`): the gradient and
loss of the softmax cross-entropy (:func:`logistic_gradient`, behind ``logistic_objective``), the two
products of a quasi-Newton step (:class:`RowProducts`: the scores K Dᵀ of a direction and the
gradient Rᵀ K of residuals), and the preconditioner g ↦ U diag(φ) Uᵀ g, the inverse of the
curvature bound.

On the CPU the products run through NumPy's BLAS (OpenBLAS; chunking and threads in
:mod:`faast.solver.row_passes`): for these thin products it was about twice as fast as torch's
MKL on an AMD EPYC. The torch versions serve other devices and are the references the tests
compare the NumPy ones with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from faast.solver.row_passes import (
    chunk_rows,
    over_threads,
    summed_over_threads,
    uses_numpy_passes,
)
from faast.solver.spectral import SpectralFactor

#: Rows per chunk of the torch gradient pass: small enough for a chunk to stay in cache for both of
#: its products (256 was the fastest of 64–2048 for 50,000 × 1280 rows on the 2-core Xeon).
CHUNK_ROWS = 256


def logistic_gradient(
    keys: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, weight: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Gradient Σᵢ wᵢ (softmax(W kᵢ) − onehot(yᵢ)) kᵢᵀ (m, d) float64 of the data term and its
    value Σᵢ wᵢ CE(softmax(W kᵢ), yᵢ) (no penalty).

    keys: (n, d) float32 or float64; labels: (n,) int64 in [0, m); weights: (n,) ≥ 0 or None;
    weight: W (m, d). The products of a chunk run in the keys' precision (float64 keys: float64
    throughout; float32 keys, as encoders give them: half the memory traffic, each chunk's
    gradient added to a float64 sum); the softmax and the loss are float64.

    On the CPU with float32/float64 keys through the two products of :class:`RowProducts` (NumPy's
    BLAS, rows split over threads): the scores K Wᵀ, then the gradient of the residuals; elsewhere
    through torch (:func:`logistic_gradient_torch`, the reference the tests compare it with).
    """
    if not uses_numpy_passes(keys):
        return logistic_gradient_torch(keys, labels, weights, weight)
    products = RowProducts(keys)
    log_p = torch.log_softmax(products.scores(weight.detach().to(torch.float64)), dim=1)  # (n, m)
    residual = log_p.exp()
    residual[torch.arange(keys.shape[0]), labels] -= 1.0
    nll = -log_p.gather(1, labels[:, None])[:, 0]
    if weights is not None:
        wt = weights.to(torch.float64)
        residual *= wt[:, None]
        nll = nll * wt
    return products.gradient(residual), float(nll.sum())


def logistic_gradient_torch(
    keys: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, weight: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """:func:`logistic_gradient` in torch operations (any device, any floating dtype)."""
    dtype = keys.dtype if keys.dtype in (torch.float32, torch.float64) else torch.float32
    w = weight.to(dtype)
    n, _ = keys.shape
    grad = torch.zeros(weight.shape, dtype=torch.float64, device=keys.device)
    loss = 0.0
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        k = keys[start:stop].to(dtype)
        y = labels[start:stop]
        log_p = torch.log_softmax((k @ w.T).to(torch.float64), dim=1)  # (b, m)
        residual = log_p.exp()
        residual[torch.arange(stop - start, device=keys.device), y] -= 1.0
        nll = -log_p.gather(1, y[:, None])[:, 0]
        if weights is not None:
            wt = weights[start:stop].to(torch.float64)
            residual *= wt[:, None]
            nll = nll * wt
        grad += (residual.to(dtype).T @ k).to(torch.float64)
        loss += float(nll.sum())
    return grad, loss


def preconditioner(factor: SpectralFactor, phi: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """g (m, d) ↦ (U diag(φ) Uᵀ gᵀ)ᵀ (m, d) float64: ``factor.weights_for(phi, g.T)``, through
    NumPy's BLAS on the CPU (:meth:`~faast.solver.spectral.SpectralFactor.weights_for_numpy`)."""
    if factor.eigenvalues.device.type != "cpu":
        return lambda grad: factor.weights_for(phi, grad.T)
    apply = factor.weights_for_numpy(phi)
    return lambda grad: torch.from_numpy(apply(grad.detach().to(torch.float64).numpy().T))


class RowProducts:
    """The two products over the rows K (n, d) that a quasi-Newton step makes
    (:mod:`faast.solver.logistic_steps`): the scores K Dᵀ (n, m) of a direction D (m, d), and the
    gradient Rᵀ K (m, d) of residuals R (n, m). Directions, residuals and results are float64;
    the products run in the keys' precision (float32 keys, as encoders give them: half the memory
    traffic), chunk by chunk, each chunk's result written or added in float64.

    On the CPU with float32/float64 keys the chunks go through NumPy's BLAS, the rows split over
    Python threads (:mod:`faast.solver.row_passes`; call within
    :func:`~faast.solver.blas_threads.single_threaded_blas`); elsewhere through torch."""

    def __init__(self, keys: torch.Tensor, use_numpy: bool | None = None) -> None:
        """keys: K (n, d); use_numpy: False forces the torch products (the reference the tests
        compare the NumPy ones with); None: NumPy wherever it can run."""
        self.keys = keys
        self.numpy = uses_numpy_passes(keys) if use_numpy is None else use_numpy and uses_numpy_passes(keys)
        self.dtype = keys.dtype if keys.dtype in (torch.float32, torch.float64) else torch.float32

    def scores(self, direction: torch.Tensor) -> torch.Tensor:
        """K Dᵀ (n, m) float64 for D (m, d)."""
        if self.numpy:
            return torch.from_numpy(self._scores_numpy(direction.detach().cpu().numpy()))
        keys, d = self.keys, direction.to(self.dtype)
        out = torch.empty(keys.shape[0], direction.shape[0], dtype=torch.float64, device=keys.device)
        for start in range(0, keys.shape[0], CHUNK_ROWS):
            out[start : start + CHUNK_ROWS] = keys[start : start + CHUNK_ROWS].to(self.dtype) @ d.T
        return out

    def gradient(self, residual: torch.Tensor) -> torch.Tensor:
        """Rᵀ K (m, d) float64 for R (n, m)."""
        if self.numpy:
            return torch.from_numpy(self._gradient_numpy(residual.detach().cpu().numpy()))
        keys, r = self.keys, residual.to(self.dtype)
        grad = torch.zeros(residual.shape[1], keys.shape[1], dtype=torch.float64, device=keys.device)
        for start in range(0, keys.shape[0], CHUNK_ROWS):
            stop = start + CHUNK_ROWS
            grad += (r[start:stop].T @ keys[start:stop].to(self.dtype)).to(torch.float64)
        return grad

    def _scores_numpy(self, direction: np.ndarray) -> np.ndarray:
        k_all = self.keys.detach().numpy()
        n, d = k_all.shape
        m = direction.shape[0]
        d_t = np.ascontiguousarray(direction.astype(k_all.dtype).T)  # (d, m)
        out = np.empty((n, m), dtype=np.float64)
        chunk = chunk_rows(d * m)

        def part(start: int, stop: int) -> None:
            buf = np.empty((min(chunk, stop - start), m), dtype=k_all.dtype)
            for s in range(start, stop, chunk):
                e = min(s + chunk, stop)
                np.matmul(k_all[s:e], d_t, out=buf[: e - s])
                out[s:e] = buf[: e - s]

        over_threads(part, n)
        return out

    def _gradient_numpy(self, residual: np.ndarray) -> np.ndarray:
        k_all = self.keys.detach().numpy()
        n, d = k_all.shape
        m = residual.shape[1]
        r_all = residual.astype(k_all.dtype)
        chunk = chunk_rows(d * m)

        def part(start: int, stop: int) -> tuple[np.ndarray, int]:
            grad = np.zeros((m, d), dtype=np.float64)
            buf = np.empty((m, d), dtype=k_all.dtype)
            for s in range(start, stop, chunk):
                e = min(s + chunk, stop)
                np.matmul(r_all[s:e].T, k_all[s:e], out=buf)
                grad += buf
            return grad, 0

        return summed_over_threads(part, n)[0]
