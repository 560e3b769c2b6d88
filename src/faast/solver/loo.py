"""Exact leave-one-out (PRESS) of spectral filters, from the one eigendecomposition.

When the rows are known (the dual route of :class:`~faast.solver.GramStats`, n < d), the key
matrix K (n × d, rows scaled by √wᵢ) has the thin SVD K = A Λ^(1/2) Uᵀ, with A (n × r) the
eigenvectors of K Kᵀ. A spectral filter φ acts on the fit through the shrink factors
sⱼ = φⱼ λⱼ (truncation: 1 for a kept direction, 0 otherwise; ridge: λⱼ / (λⱼ + ρ)):

    fitted values      V̂ = A diag(s) Aᵀ V                      (n × m)
    leverages          hᵢ = Σⱼ sⱼ Aᵢⱼ²                           (the hat matrix's diagonal)
    leave-one-out      vᵢ − v̂₋ᵢ = (vᵢ − v̂ᵢ) / (1 − hᵢ)
    PRESS              Σᵢ ‖vᵢ − v̂ᵢ‖² / (1 − hᵢ)²

(V holds the values scaled by √wᵢ too, so PRESS is the weighted sum Σ wᵢ ‖vᵢ − v̂₋ᵢ‖².)

* For **ridge** this is the exact residual of a refit without pair i (the Sherman–Morrison
  identity of ridge regression), for every ρ of a grid, at O(n·r·m) per ρ.
* For **truncation** it is the exact leave-one-out of the least-squares fit on the first k
  principal directions *held fixed* (the classical PRESS of principal-component regression):
  a refit without pair i would also move the directions slightly. Every rank up to 32, then
  ranks about 8 % apart, are scored with running sums: O(n·r·m) for the whole path.

A fit that interpolates a pair (hᵢ = 1, e.g. keeping every direction when n ≤ d) has no
leave-one-out estimate; such candidates are scored +∞.

For classification (one-hot values) the leave-one-out *prediction* v̂₋ᵢ = vᵢ − (vᵢ − v̂ᵢ)/(1 − hᵢ)
also gives the exact leave-one-out error count; :meth:`LooPath.best` ranks candidates by it and
breaks ties by PRESS. With one example per class nothing ranks them (removing a class's only
example leaves its class unseen at every level: :attr:`LooPath.unranked`), and
:meth:`~faast.solver.spectral.SpectralFactor.loo_choice` then takes a fixed ridge (truncation
alone: the ranks whose eigenvalues reach that ridge). The count
is trusted only where the leave-one-out predictions are a fit at all: a candidate whose PRESS
exceeds that of predicting zero for every pair (Σᵢ ‖vᵢ‖², the null PRESS) is not eligible, however
few its errors (with n barely above d, a nearly unpenalised fit can have leave-one-out
predictions of the right argmax but a hundred times the targets' size, and generalise badly);
when no candidate beats the null PRESS, the one with the lowest PRESS is chosen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faast.solver.cpu_products import matmul, numpy_ready

#: Leverages above 1 − this are interpolation: no leave-one-out estimate.
LEVERAGE_LIMIT = 1e-9
#: The paths score their candidates in blocks whose fitted values (n, block, m) hold at most this
#: many entries (16 MB of float64), or one candidate (n·m entries) where that is more: many classes
#: (m in the thousands) no longer multiply the memory by the number of candidates. Below it, one
#: block (the same products as before blocks existed).
BLOCK_ENTRIES = 1 << 21
#: Default ridge grid: ρ = λ_max · 10^t for t in this range.
RIDGE_GRID = (-7.0, 1.0, 25)


@dataclass(frozen=True)
class LooPath:
    """Leave-one-out scores of a family of filters.

    kind: ``"truncation"`` (levels = ranks k) or ``"ridge"`` (levels = ρ).
    levels, press, errors: (G,) float64; ``errors`` counts pairs whose leave-one-out prediction's
    argmax differs from the argmax of their value (meaningful for one-hot values).
    null_press: the PRESS of predicting zero for every pair, Σᵢ ‖vᵢ‖² (weighted).
    shared: the pairs that carry weight and share the column of their largest value with another
    such pair (one-hot values: examples whose class has others); 0 makes the path ``unranked``.
    """

    kind: str
    levels: torch.Tensor
    press: torch.Tensor
    errors: torch.Tensor
    null_press: float = math.inf
    shared: int = 1

    @property
    def unranked(self) -> bool:
        """Whether no pair's leave-one-out prediction can show what a level does for its class:
        every pair that carries weight is the only one with a non-zero value in the column of its
        largest value (one-hot values: one example per class), so holding it out leaves that
        column unseen whatever the level."""
        return self.shared == 0

    def best(self, criterion: str = "error") -> tuple[int, float, float]:
        """(index, errors, press) of the best candidate: fewest errors then lowest PRESS among
        the candidates whose PRESS is at most ``null_press`` (``criterion="error"``; the lowest
        PRESS when none is); lowest PRESS among those whose errors exceed the fewest by at most
        one binomial standard error, √(e(1 − e/n)) for e errors of n (``"error-se"``: the count
        is noisy, PRESS breaks near-ties); or lowest PRESS (``"press"``)."""
        press = self.press
        if not bool(torch.isfinite(press).any()):
            return -1, math.inf, math.inf
        if criterion in ("error", "error-se"):
            eligible = torch.isfinite(press) & (press <= self.null_press)
            if not bool(eligible.any()):
                eligible = press == press.min()
            fewest = self.errors[eligible].min()
            slack = 0.0
            if criterion == "error-se":
                e, n = float(fewest), max(float(self.shared), 1.0)
                slack = math.sqrt(max(e * (1.0 - e / n), 0.0))
            near = eligible & (self.errors <= fewest + slack)
            press = torch.where(near, press, torch.full_like(press, math.inf))
        elif criterion != "press":
            raise ValueError(f"criterion must be 'error', 'error-se' or 'press', got {criterion!r}")
        i = int(torch.argmin(press))
        return i, float(self.errors[i]), float(self.press[i])


def _block_size(n: int, m: int, candidates: int) -> int:
    """How many candidates one block of fitted values (n, block, m) scores (see ``BLOCK_ENTRIES``)."""
    return max(1, min(candidates, BLOCK_ENTRIES // max(1, n * m)))


def _scores(values: torch.Tensor, fitted: torch.Tensor, lev: torch.Tensor) -> tuple[Any, ...]:
    """PRESS and error count for fitted (n, G, m) and leverages (n, G): two (G,) tensors (PRESS
    in the values' dtype, the counts float64). Tensors NumPy takes as they are
    (:func:`~faast.solver.cpu_products.numpy_ready`) go through :func:`_scores_numpy` (the same
    formula with fewer dispatch costs, which matter in a few-shot fit of a few milliseconds),
    others through :func:`_scores_torch`."""
    if numpy_ready(values, fitted, lev):
        return _scores_numpy(values.numpy(), fitted.numpy(), lev.numpy())
    return _scores_torch(values, fitted, lev)


def _scores_numpy(
    values: np.ndarray, fitted: np.ndarray, lev: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_scores_torch` in NumPy: values (n, m), fitted (n, G, m), leverages (n, G)."""
    denom = 1.0 - lev
    bad = (denom <= LEVERAGE_LIMIT).any(axis=0)
    # one temporary the size of ``fitted``, worked in place (a block can be large: many classes)
    loo = values[:, None, :] - fitted
    loo /= np.maximum(denom, LEVERAGE_LIMIT)[..., None]
    press = np.einsum("ngm,ngm->g", loo, loo)
    press[bad] = math.inf
    truth = values.argmax(axis=1)
    active = np.abs(values).sum(axis=1) > 0  # zero-weight rows carry no information
    held_out = np.subtract(values[:, None, :], loo, out=loo)  # the leave-one-out predictions
    wrong = (held_out.argmax(axis=2) != truth[:, None]) & active[:, None]
    return torch.from_numpy(press), torch.from_numpy(wrong.sum(axis=0).astype(np.float64))


def _scores_torch(values: torch.Tensor, fitted: torch.Tensor, lev: torch.Tensor) -> tuple[Any, ...]:
    """PRESS and error count for fitted (n, G, m) and leverages (n, G): two (G,) tensors."""
    resid = values[:, None, :] - fitted
    denom = 1.0 - lev
    bad = (denom <= LEVERAGE_LIMIT).any(dim=0)
    loo = resid / denom.clamp_min(LEVERAGE_LIMIT)[..., None]
    press = (loo * loo).sum(dim=(0, 2))
    press = torch.where(bad, torch.full_like(press, math.inf), press)
    truth = values.argmax(dim=1)
    active = values.abs().sum(dim=1) > 0  # zero-weight rows carry no information
    wrong = ((values[:, None, :] - loo).argmax(dim=2) != truth[:, None]) & active[:, None]
    return press, wrong.sum(dim=0).to(torch.float64)


def shared_pairs(values: torch.Tensor) -> int:
    """How many pairs of values (n, m) carry weight and share the column of their largest value
    with another such pair (one-hot values: examples whose class has others); 0 means leave-one-out
    cannot rank filters (:attr:`LooPath.unranked`)."""
    truth = values.argmax(dim=1)
    active = values.abs().sum(dim=1) > 0
    per_column = ((values != 0) & active[:, None]).sum(dim=0)  # (m,) pairs with a value there
    return int((active & (per_column[truth] > 1)).sum())


def candidate_ranks(r: int, dense: int = 32, ratio: float = 1.08) -> torch.Tensor:
    """Ranks scored on the truncation path: every rank up to ``dense``, then a geometric grid
    (each about ``ratio`` times the last) up to r. Returns (G,) int64, increasing."""
    ranks = list(range(1, min(r, dense) + 1))
    while ranks and ranks[-1] < r:
        ranks.append(min(r, max(ranks[-1] + 1, round(ranks[-1] * ratio))))
    return torch.as_tensor(ranks, dtype=torch.int64)


def truncation_path(
    left: torch.Tensor, values: torch.Tensor, ranks: torch.Tensor | None = None, shared: int | None = None
) -> LooPath:
    """Leave-one-out of truncation at each rank of ``ranks`` (default :func:`candidate_ranks`;
    pass ``torch.arange(1, r + 1)`` for every rank). ``shared``: :func:`shared_pairs` of
    ``values`` when the caller has it (counted here otherwise).

    left: (n, r) orthonormal eigenvectors of K Kᵀ, by decreasing eigenvalue (only directions
    with a non-zero eigenvalue). values: (n, m) float64, rows scaled by √wᵢ.
    Costs O(n·r·m) for the fitted values of the whole path plus O(n·m) per rank scored.
    """
    n, r = left.shape
    ranks = candidate_ranks(r) if ranks is None else ranks.to(torch.int64)
    if ranks.numel() == 0 or int(ranks.min()) < 1 or int(ranks.max()) > r:
        raise ValueError(f"ranks must lie in [1, {r}]")
    proj = matmul(left.T, values)  # (r, m)
    block = _block_size(n, values.shape[1], ranks.numel())

    def blocks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        run_fit, run_lev, prev = values.new_zeros(values.shape), values.new_zeros(n), 0
        for start in range(0, ranks.numel(), block):
            part = ranks[start : start + block].tolist()
            fitted = values.new_zeros((n, len(part), values.shape[1]))
            lev = values.new_zeros((n, len(part)))
            for g, rank in enumerate(part):
                if rank > prev:
                    a = left[:, prev:rank]
                    run_fit = run_fit + matmul(a, proj[prev:rank])
                    run_lev = run_lev + (a * a).sum(dim=1)
                    prev = rank
                fitted[:, g], lev[:, g] = run_fit, run_lev
            yield fitted, lev

    return _scored_path("truncation", ranks, values, blocks(), shared)


def ridge_path(
    left: torch.Tensor,
    eigenvalues: torch.Tensor,
    values: torch.Tensor,
    grid: torch.Tensor,
    shared: int | None = None,
) -> LooPath:
    """Exact leave-one-out of ridge (G + ρI)⁻¹ for each ρ of ``grid`` (G,).

    left: (n, r); eigenvalues: (r,) > 0, matching; values: (n, m), rows scaled by √wᵢ; shared:
    :func:`shared_pairs` of ``values`` when the caller has it (counted here otherwise).
    One (n × r) · (r × G·m) product gives the fitted values of every ρ (of a block of them when
    n·G·m passes ``BLOCK_ENTRIES``).
    """
    n, r = left.shape
    m = values.shape[1]
    proj = matmul(left.T, values)  # (r, m)
    shrink = eigenvalues[None, :] / (eigenvalues[None, :] + grid[:, None])  # (G, r)
    lev = matmul(left * left, shrink.T)  # (n, G)
    block = _block_size(n, m, grid.numel())

    def blocks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, grid.numel(), block):
            part = shrink[start : start + block]  # (g, r)
            stacked = (part.T[:, :, None] * proj[:, None, :]).reshape(r, -1)  # (r, g·m)
            yield matmul(left, stacked).reshape(n, part.shape[0], m), lev[:, start : start + block]

    return _scored_path("ridge", grid, values, blocks(), shared)


def _scored_path(
    kind: str,
    levels: torch.Tensor,
    values: torch.Tensor,
    blocks: Iterator[tuple[torch.Tensor, torch.Tensor]],
    shared: int | None = None,
) -> LooPath:
    """The :class:`LooPath` of candidates ``levels`` (G,) whose fitted values (n, g, m) and
    leverages (n, g) ``blocks`` yields a block of candidates at a time, in order; ``shared``:
    :func:`shared_pairs` of ``values`` (None: counted here)."""
    scored = [_scores(values, fitted, lev) for fitted, lev in blocks]
    return LooPath(
        kind,
        levels.to(torch.float64),
        torch.cat([press for press, _ in scored]),
        torch.cat([errors for _, errors in scored]),
        float((values * values).sum()),
        shared_pairs(values) if shared is None else shared,
    )


#: The grid reaches at least this far below the second largest eigenvalue λ₂ (:func:`default_ridge_grid`).
SECOND_REACH = 1e-5


def default_ridge_grid(lambda_max: float, second: float | None = None) -> torch.Tensor:
    """ρ = λ_max · logspace(−7, 1, 25), levels a third of a decade apart, continued on the same
    lattice below λ_max·10⁻⁷ down to ``second``·``SECOND_REACH`` (``second``: λ₂, the second
    largest eigenvalue) when that is lower.

    The continuation is for one dominant direction: the intercept's constant column over
    features far smaller than it (features of size 10⁻⁵ next to an intercept of 1 have
    eigenvalues 10⁻¹⁰ of λ_max), whose every level the plain grid shrank away — the default fit
    then predicted one class. While λ₂ ≥ 10⁻²·λ_max the grid is the plain one."""
    lo, hi, num = RIDGE_GRID
    step = (hi - lo) / (num - 1)
    extra = 0
    if second is not None and second > 0 and lambda_max > 0:
        reach = math.log10(second) + math.log10(SECOND_REACH) - math.log10(lambda_max)  # no underflow
        extra = max(0, math.ceil((lo - reach) / step - 1e-9))
    return lambda_max * torch.logspace(lo - extra * step, hi, int(num) + extra, dtype=torch.float64)


def brute_force_loo(
    keys: torch.Tensor, values: torch.Tensor, *, rank: int | None = None, ridge: float | None = None
) -> torch.Tensor:
    """Reference: leave-one-out residuals (n, m) by n refits (tests only).

    Truncation refits least squares on the first ``rank`` principal directions of all n rows
    (held fixed, as in :func:`truncation_path`); ridge refits (KᵀK + ρI)⁻¹ without row i.
    """
    n = keys.shape[0]
    out = torch.empty_like(values)
    if rank is not None:
        _, _, vh = torch.linalg.svd(keys, full_matrices=False)
        keys = keys @ vh[:rank].T
    for i in range(n):
        rest = torch.cat([torch.arange(i), torch.arange(i + 1, n)])
        k, v = keys[rest], values[rest]
        if ridge is not None:
            w = torch.linalg.solve(k.T @ k + ridge * torch.eye(k.shape[1], dtype=k.dtype), k.T @ v)
        else:
            w = torch.linalg.lstsq(k, v).solution
        out[i] = values[i] - keys[i] @ w
    return out
