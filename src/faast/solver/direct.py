"""Ridge fast weights by one Cholesky factorisation, without the eigendecomposition.

A ridge with a given ρ (``Cut.ridge_penalty(ρ)``, ``Cut.pseudo_pairs(N)``) needs no spectrum:

    primal (from the statistics):  W = ((G + ρI)⁻¹ B)ᵀ                 (G d × d, B d × m)
    dual (n < d, from the rows):   W = ((K Kᵀ + ρI)⁻¹ V)ᵀ K             (K n × d, V n × m)

both equal to the spectral filter φ = 1/(λ + ρ) of :mod:`faast.solver.spectral`, at a fraction of
its cost: a Cholesky factorisation is n³/3 flops of level-3 BLAS, the symmetric
eigendecomposition ≈ 4n³/3 of mostly memory-bound level-2 reduction plus the eigenvectors (at
n = 640 on the 2-core AMD development machine: 2.7 against 42 ms). With a ``shift`` (the keys
centred on a constant last key, :func:`~faast.solver.spectral.center_on_last`) the same solve runs
in the coordinates z′ = z M and the weights are mapped back (w = M w′), as the factor does.

The route is taken only while ρ ≥ ``MIN_RELATIVE_RIDGE`` · trace(G): the Cholesky solve's
error then stays at the eigendecomposition's (both grow like ε · λ_max / ρ), whereas below it the
eigendecomposition's noise floor (eigenvalues under ε·d·λ_max left out) is the safer way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch

from faast.solver.blas_threads import single_threaded_blas
from faast.solver.spectral import _SMALL_EIGH, _move_intercept, _outer_gram, _shift_keys, shifted_stats

#: ρ / trace(G) below which the eigendecomposition route is used (condition number ≤ 10¹⁰).
MIN_RELATIVE_RIDGE = 1e-10


#: ρ from trace(G) (of the keys in the solve's coordinates): how a fixed ridge cut sets its penalty.
Penalty = Callable[[float], float]


def ridge_from_rows(
    keys: torch.Tensor, values: torch.Tensor, penalty: Penalty, shift: torch.Tensor | None = None
) -> tuple[torch.Tensor, float] | None:
    """Dual-route ridge weights W (m, d) float64 and their ρ = ``penalty(trace(G))``, from the rows:
    keys (n, d), values (n, m), float64, already scaled by √wᵢ; ``shift`` (d − 1,) or None. None
    when the route does not apply (ρ too small against trace(G) = trace(K Kᵀ), zero keys, or the
    factorisation fails)."""
    if shift is not None:
        keys = _shift_keys(keys, shift)
    small = keys.device.type == "cpu" and keys.shape[0] <= _SMALL_EIGH
    with single_threaded_blas() if small else contextlib.nullcontext():
        outer = _outer_gram(keys)  # (n, n), its upper triangle valid
        trace = float(outer.trace())
        ridge = penalty(trace)
        if not _usable(ridge, trace):
            return None
        coef = _cholesky_solve(outer, values, ridge, lower=False, overwrite=True)  # (n, m)
        if coef is None:
            return None
        if keys.device.type == "cpu":  # NumPy's BLAS: faster than torch's for this thin product
            weight = torch.from_numpy(coef.numpy().T @ keys.numpy())  # (m, d)
        else:
            weight = coef.T @ keys
    return (weight if shift is None else _move_intercept(weight, shift, -1.0)), ridge


def ridge_from_stats(
    gram: torch.Tensor, cross: torch.Tensor, penalty: Penalty, shift: torch.Tensor | None = None
) -> tuple[torch.Tensor, float] | None:
    """Primal-route ridge weights W (m, d) float64 and their ρ = ``penalty(trace(G))``, from G (d, d)
    symmetric and B (d, m), float64; ``shift`` (d − 1,) or None. None when the route does not
    apply (as :func:`ridge_from_rows`)."""
    gram, cross = shifted_stats(gram, cross, shift)
    trace = float(torch.diagonal(gram).sum())
    ridge = penalty(trace)
    if not _usable(ridge, trace):
        return None
    matrix = gram.numpy() if gram.device.type == "cpu" else gram
    coef = _cholesky_solve(matrix, cross, ridge, lower=True)  # (d, m)
    if coef is None:
        return None
    weight = coef.T
    return (weight if shift is None else _move_intercept(weight, shift, -1.0)), ridge


def _usable(ridge: float, trace: float) -> bool:
    return trace > 0.0 and ridge >= MIN_RELATIVE_RIDGE * trace


def _cholesky_solve(
    matrix: torch.Tensor | np.ndarray,
    rhs: torch.Tensor,
    ridge: float,
    *,
    lower: bool,
    overwrite: bool = False,
) -> torch.Tensor | None:
    """(S + ρI)⁻¹ R (k, m) float64 for a symmetric S (k, k) whose ``lower`` (else upper) triangle
    is valid — a NumPy array on the CPU (LAPACK ``potrf``/``potrs`` through SciPy), a tensor
    elsewhere — and R (k, m) a tensor. ``overwrite``: a Fortran-ordered float64 S may be
    factored in place (the caller's scratch). None when S + ρI is not numerically positive
    definite."""
    if isinstance(matrix, np.ndarray):
        in_place = overwrite and matrix.dtype == np.float64 and matrix.flags.f_contiguous
        shifted = matrix if in_place else np.array(matrix, dtype=np.float64, order="F")
        shifted[np.diag_indices_from(shifted)] += ridge
        try:
            factor = scipy.linalg.cho_factor(shifted, lower=lower, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None
        solved = scipy.linalg.cho_solve(factor, rhs.numpy(), check_finite=False)
        return torch.from_numpy(np.ascontiguousarray(solved))
    full = matrix + ridge * torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    chol, info = torch.linalg.cholesky_ex(full, upper=not lower)
    if int(info) != 0:
        return None
    return torch.cholesky_solve(rhs, chol, upper=not lower)
