"""Float64 accumulation kernels for the sufficient statistics G = Σ wᵢkᵢkᵢᵀ and B = Σ wᵢkᵢvᵢᵀ.

Two implementations with one contract (``accumulate``):

* **CPU**: row chunks are converted to float64 in a reused buffer (so the float64 copy of a
  large batch never exists at once), then G is updated with a BLAS symmetric rank-k update
  (``dsyrk``, half the flops of a GEMM) and B with ``dgemm``, both in place through SciPy's
  BLAS. Only the **lower triangle** of G is written; callers symmetrise lazily
  (:func:`symmetrize_lower`). With many value columns (``SPARSE_ROWS_MIN_COLUMNS`` or more) a
  chunk whose value rows each hold at most one non-zero (one-hot labels, weighted or not) adds
  to B by per-column sums of its key rows, O(n·d) instead of dgemm's O(n·d·m): with 1,000
  classes and 1280-d keys that product cost more than G's ``dsyrk``.
* **Other devices (CUDA, ...)**: ``torch.addmm`` in float64 on the full G.

``naive_accumulate`` is the plain reference that the tests compare both against.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import blas

#: Rows converted to float64 at a time on the CPU path (measured best of 256…4096 on 2 cores).
CPU_CHUNK_ROWS = 1024

#: Value columns from which the CPU path adds rows with at most one non-zero value (one-hot labels)
#: to B by per-column sums instead of dgemm. Below, dgemm's share of a chunk's work is small
#: (2m/d of the dsyrk's at m columns and d-dimensional keys) and B keeps dgemm's rounding.
SPARSE_ROWS_MIN_COLUMNS = 64


def naive_accumulate(
    gram: torch.Tensor,
    cross: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    weights: torch.Tensor | None,
    sign: float,
) -> float:
    """Reference update ``G += sign·Kᵀ diag(w) K``, ``B += sign·Kᵀ diag(w) V`` on full matrices.

    gram: (d, d) float64; cross: (d, m) float64; keys: (n, d); values: (n, m); weights: (n,) or None.
    Returns Σ wᵢ‖vᵢ‖² of the batch (unsigned).
    """
    k = keys.to(gram.device, torch.float64)
    v = values.to(gram.device, torch.float64)
    w = torch.ones(k.shape[0], dtype=torch.float64, device=gram.device) if weights is None else weights
    w = w.to(gram.device, torch.float64)
    kw = k * w[:, None]
    gram.add_(kw.T @ k, alpha=sign)
    cross.add_(kw.T @ v, alpha=sign)
    return float((w * (v * v).sum(dim=1)).sum())


def symmetrize_lower(lower: torch.Tensor) -> torch.Tensor:
    """Full symmetric matrix from a (d, d) tensor whose lower triangle is valid."""
    low = torch.tril(lower)
    return low + torch.tril(lower, diagonal=-1).T


def accumulate(
    gram: torch.Tensor,
    cross: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    weights: torch.Tensor | None,
    sign: float,
) -> tuple[bool, float]:
    """Add (sign=+1) or remove (sign=-1) a batch of weighted pairs in place.

    gram: (d, d) float64 accumulator; cross: (d, m) float64 accumulator, both on one device.
    keys: (n, d), values: (n, m), any floating dtype, on the accumulators' device.
    weights: (n,) float64 non-negative, or None.

    Returns (lower_only, value_sq): lower_only is True if only the lower triangle of ``gram``
    was updated (CPU path); value_sq is the batch's Σ wᵢ‖vᵢ‖² (unsigned), computed on the way.
    """
    if gram.device.type == "cpu" and _cpu_blas_usable(gram, cross):
        return True, _accumulate_cpu_blas(gram, cross, keys, values, weights, sign)
    return False, accumulate_torch(gram, cross, keys, values, weights, sign)


def accumulate_torch(
    gram: torch.Tensor,
    cross: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    weights: torch.Tensor | None,
    sign: float,
) -> float:
    """Full-matrix update with ``torch.addmm`` in float64 (any device). Shapes as ``accumulate``;
    returns the batch's Σ wᵢ‖vᵢ‖²."""
    k = keys.to(torch.float64)
    v = values.to(torch.float64)
    if weights is not None:
        root = weights.to(k.device).sqrt()[:, None]
        k = k * root
        v = v * root
    gram.addmm_(k.T, k, alpha=sign)
    cross.addmm_(k.T, v, alpha=sign)
    return float((v * v).sum())


def _cpu_blas_usable(gram: torch.Tensor, cross: torch.Tensor) -> bool:
    return gram.is_contiguous() and cross.is_contiguous() and gram.dtype == cross.dtype == torch.float64


def _accumulate_cpu_blas(
    gram: torch.Tensor,
    cross: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    weights: torch.Tensor | None,
    sign: float,
) -> float:
    # Row-major (C-order) G viewed as column-major is Gᵀ; dsyrk on its *upper* triangle therefore
    # writes the *lower* triangle of the row-major G. Likewise B (d, m) row-major is Bᵀ (m, d)
    # column-major, which dgemm updates as Bᵀ += Vᵀ K.
    g_f = gram.numpy().T
    b_f = cross.numpy().T
    k_np = _numpy_view(keys)
    v_np = _numpy_view(values)
    w_np = None if weights is None else np.sqrt(weights.numpy())
    n, d = k_np.shape
    m = v_np.shape[1]
    if n == 0:
        return 0.0
    value_sq = 0.0
    rows = min(CPU_CHUNK_ROWS, n)
    k_buf = np.empty((rows, d), dtype=np.float64)
    v_buf = np.empty((rows, m), dtype=np.float64)
    column_sums = None  # (m, d) float64: the per-column sums of the chunks with one-hot-like rows
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        kc = k_buf[: stop - start]
        vc = v_buf[: stop - start]
        np.copyto(kc, k_np[start:stop])
        np.copyto(vc, v_np[start:stop])
        if w_np is not None:
            root = w_np[start:stop, None]
            kc *= root
            vc *= root
        out_g = blas.dsyrk(sign, kc.T, beta=1.0, c=g_f, trans=0, lower=0, overwrite_c=1)
        if out_g is not g_f:  # SciPy copied instead of updating in place: write back
            g_f[...] = out_g
        single = _single_entries(vc) if m >= SPARSE_ROWS_MIN_COLUMNS else None
        if single is not None:
            if column_sums is None:
                column_sums = torch.zeros(m, d, dtype=torch.float64)
            column, entry = single
            column_sums.index_add_(0, torch.from_numpy(column), torch.from_numpy(kc * entry[:, None]))
            value_sq += float(blas.ddot(entry, entry))
            continue
        out_b = blas.dgemm(sign, vc.T, kc.T, beta=1.0, c=b_f, trans_b=1, overwrite_c=1)
        if out_b is not b_f:
            b_f[...] = out_b
        flat = vc.reshape(-1)
        value_sq += float(blas.ddot(flat, flat))  # scipy's BLAS: numpy's own pool would contend
    if column_sums is not None:
        cross.add_(column_sums.T, alpha=sign)
    return value_sq


def _single_entries(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For a (rows, m) float64 chunk whose rows each hold at most one non-zero value: the column
    of each row's entry (rows,) int64 (0 for a zero row) and the entry (rows,) float64 (0.0 for a
    zero row), so that ``values[i] == entry[i] · e_column[i]``. None for any other chunk."""
    if np.count_nonzero(values) > values.shape[0]:  # cheap refusal of dense chunks
        return None
    if np.any(np.count_nonzero(values, axis=1) > 1):
        return None
    column = np.abs(values).argmax(axis=1)
    entry = values[np.arange(values.shape[0]), column]
    return column, np.ascontiguousarray(entry)


def _numpy_view(x: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor; half-precision types (which numpy lacks) go through float32."""
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.to(torch.float32)
    return x.numpy()
