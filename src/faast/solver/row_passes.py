"""Shared plumbing of the CPU passes over rows through NumPy's BLAS (the logistic steps'
gradient, :mod:`faast.solver.logistic_kernels`, and margin retargeting, :mod:`faast.solver.retarget`).

Both passes make two thin products per chunk of rows (n × d by d × m with m the number of
classes). OpenBLAS runs products of up to about a million multiply-adds with its small-matrix
kernels (no packing of the chunk), which made such a pass about twice as fast as larger chunks,
and as torch's MKL, on an AMD EPYC; those kernels use one thread, so a pass splits its rows over
``torch.get_num_threads()`` Python threads (NumPy releases the GIL in BLAS and in its loops).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

#: Multiply-adds per thin product of a chunk: rows per chunk = CHUNK_MULTIPLY_ADDS // (d·m), within
#: CHUNK_ROWS_RANGE. On an AMD EPYC a 54,000 × 1280, 10-class logistic pass took 61 ms in 78-row
#: chunks against 83 ms in 256-row ones, and the same rule was best or within 15 % of best for
#: d = 64, 384 and 4096.
CHUNK_MULTIPLY_ADDS = 1_000_000
CHUNK_ROWS_RANGE = (16, 4096)
#: A pass uses one Python thread per this many rows, up to ``torch.get_num_threads()``.
MIN_ROWS_PER_THREAD = 4096

Count = TypeVar("Count", int, float)
Part = TypeVar("Part")


def uses_numpy_passes(keys: torch.Tensor) -> bool:
    """Whether passes over these keys (n, d) run through NumPy: CPU float32/float64 keys."""
    return keys.device.type == "cpu" and keys.dtype in (torch.float32, torch.float64)


def numpy_rows(
    keys: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """NumPy views of CPU keys (n, d) and their targets (labels (n,) or one-hot rows (n, m)), no
    copy, and the weights (n,) as float64 (or None), for the NumPy passes."""
    w_all = None if weights is None else weights.detach().cpu().numpy().astype(np.float64, copy=False)
    return keys.detach().numpy(), targets.detach().cpu().numpy(), w_all


def chunk_rows(width: int) -> int:
    """Rows per chunk for products with ``width`` = d·m multiply-adds per row."""
    low, high = CHUNK_ROWS_RANGE
    return min(high, max(low, CHUNK_MULTIPLY_ADDS // max(width, 1)))


def over_threads(part: Callable[[int, int], Part], rows: int) -> list[Part]:
    """``part(start, stop)`` over contiguous parts of ``range(rows)``, one per thread (up to
    ``torch.get_num_threads()``, at least ``MIN_ROWS_PER_THREAD`` rows each); the results in row
    order."""
    threads = max(1, min(torch.get_num_threads(), rows // MIN_ROWS_PER_THREAD))
    if threads == 1:
        return [part(0, rows)]
    bounds = np.linspace(0, rows, threads + 1).astype(int)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda r: part(int(r[0]), int(r[1])), itertools.pairwise(bounds)))


def summed_over_threads(
    part: Callable[[int, int], tuple[np.ndarray, Count]], rows: int
) -> tuple[np.ndarray, Count]:
    """``part(start, stop)`` → (array, count) over the parts of :func:`over_threads`, and the
    parts' arrays and counts added in row order."""
    parts = over_threads(part, rows)
    if len(parts) == 1:
        return parts[0]
    total = parts[0][0]
    for array, _ in parts[1:]:
        total += array
    return total, sum(count for _, count in parts)  # type: ignore[return-value]
