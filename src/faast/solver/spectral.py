"""Spectral filters on the eigendecomposition of the Gram matrix.

With G = U Λ Uᵀ (eigh, float64) and C = Uᵀ B, every linear spectral filter φ(λ) gives

    W = (U diag(φ) C)ᵀ                                   (m × d)

* truncation (FAAST):  φ_j = 1/λ_j if λ_j ≥ τ²·λ_max else 0   — equals the SVD pseudoinverse
  of the key matrix with singular values σ < τ·σ_max dropped (λ = σ²);
* ridge:               φ_j = 1/(λ_j + ρ).

One eigh serves every filter, so choosing τ or ρ from data costs O(d·m) per candidate: the
residual of the fitted map on the stored pairs has a closed form (:mod:`faast.solver.gcv`, which
gives generalised cross-validation GCV(φ) = RSS / (1 − dof/n)² for every candidate), and with the
rows kept exact leave-one-out scores (:mod:`faast.solver.loo`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import torch

from faast._checks import caller_stacklevel
from faast.solver.blas_threads import single_threaded_blas
from faast.solver.cpu_products import matmul

#: Eigenvalues of a float64 Gram below this fraction of λ_max (times d) are rounding noise.
_EIGEN_NOISE = torch.finfo(torch.float64).eps
#: The dual route's weights are formed on eigenvalues rescaled by a power of two (exactly undone)
#: once λ_max leaves 2^±this (keys of scale beyond about 1e±19): :meth:`SpectralFactor._dual_exponent`.
_DUAL_RESCALE_BITS = 128
#: Matrices up to this size are decomposed (and, on the dual route, formed) on one BLAS thread.
_SMALL_EIGH = 256


#: The penalty ρ = s / FALLBACK_DIVISOR (s = :func:`penalty_scale`) used when held-out examples
#: cannot rank penalties: none can be held out (one example per class), or, for the logistic
#: loss, no penalty beats the null loss (:mod:`faast.solver.logistic`).
FALLBACK_DIVISOR = 100.0


def penalty_scale(factor: SpectralFactor) -> float:
    """s = trace(G) / rank(G), the mean non-zero eigenvalue of G: the curvature per direction that
    the data term brings, whether n ≫ d (s ≈ n/d for unit-norm features) or n < d (s ≈ 1, where
    trace(G)/d would shrink the penalty with the number of examples)."""
    lam = factor.eigenvalues
    rank = int((lam > factor.noise_floor).sum())
    return float(lam.sum()) / rank if rank else 0.0


def one_per_class_penalty(factor: SpectralFactor) -> float:
    """The ``auto`` cuts' penalty when every class has one example (leave-one-out cannot rank
    penalties): s₋₁, the mean of G's non-zero eigenvalues after the largest (s/100 when G has
    one: :func:`fallback_penalty`).

    Until 2026-12-06 it was s/100 (s = :func:`penalty_scale`, the mean with the largest), as the
    logistic loss: with about as many classes as feature directions (n close to d) that ridge sat
    at the peak of double descent, 25–50 points below scikit-learn's RidgeClassifierCV. ρ = s
    cured that but failed features far from the origin, whose common offset is G's largest
    eigenvalue and made s shrink away the directions that tell the classes apart. Leaving the
    largest eigenvalue out had the smallest worst loss on the development data of
    ``benchmarks/classifier_one_shot.py``."""
    lam = factor.eigenvalues
    kept = lam[lam > factor.noise_floor]
    if kept.numel() < 2:
        return fallback_penalty(factor)
    return float(kept[1:].mean())


def fallback_penalty(factor: SpectralFactor) -> float:
    """ρ = s / ``FALLBACK_DIVISOR`` (s = :func:`penalty_scale`): the penalty used when held-out
    examples cannot rank penalties."""
    return penalty_scale(factor) / FALLBACK_DIVISOR


def symmetric_eigh(
    gram: torch.Tensor | np.ndarray, *, lower: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric float64 matrix, reading only its
    ``lower`` (or upper) triangle.

    On CPU through LAPACK's divide-and-conquer ``syevd`` (SciPy; 1.6× faster than torch for
    d = 1024 on the 2-core AMD development machine, 66 against 76 ms at n = 640 on a Xeon), on
    one BLAS thread up to ``_SMALL_EIGH`` rows (:func:`~faast.solver.blas_threads.single_threaded_blas`:
    at two threads a 160 × 160 one waited on idle threads, up to 64 ms against 2.5 ms);
    elsewhere ``torch.linalg.eigh``.
    """
    if isinstance(gram, torch.Tensor):
        if gram.device.type != "cpu":
            return torch.linalg.eigh(gram, UPLO="L" if lower else "U")
        gram = gram.numpy()
    with single_threaded_blas() if gram.shape[0] <= _SMALL_EIGH else contextlib.nullcontext():
        lam, vec = scipy.linalg.eigh(gram, lower=lower, driver="evd", check_finite=False)
    return torch.from_numpy(lam), torch.from_numpy(vec)


def _outer_gram(keys: torch.Tensor) -> torch.Tensor | np.ndarray:
    """K Kᵀ (n, n) of float64 keys (n, d). On CPU: the BLAS symmetric rank-k update (half the
    flops of a product) as a Fortran-ordered array whose *upper* triangle only is valid — what
    :func:`symmetric_eigh` (``lower=False``) reads, so it is never mirrored; elsewhere a full
    tensor."""
    if keys.device.type != "cpu":
        return keys @ keys.T
    return scipy.linalg.blas.dsyrk(1.0, np.ascontiguousarray(keys.numpy()).T, trans=1)


def center_on_last(last_column: torch.Tensor) -> torch.Tensor | None:
    """The shift (d − 1,) float64 that centres the other keys on the last one, from the last
    column (d,) of the Gram G = Σ wᵢ zᵢ zᵢᵀ: shift = G[:-1, -1] / G[-1, -1], so that in the keys
    z′ = z M of :class:`SpectralFactor` the last key is orthogonal to the others (Mᵀ G M is
    block-diagonal). With a constant last key of value c (an intercept) this is centring:
    z′[:-1] = x − μ, μ the keys' weighted mean, and a ridge then no longer pulls the fit through
    the origin (the intercept's own direction, of eigenvalue c²·Σwᵢ, is still shrunk by
    c²Σwᵢ / (c²Σwᵢ + ρ)). None when G[-1, -1] = 0 (nothing to centre on)."""
    last = float(last_column[-1])
    if not last > 0.0:
        return None
    return last_column[:-1] / last


def _shifted_gram(gram: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Mᵀ G M (d, d) for the coordinates of :class:`SpectralFactor` with ``shift`` (d − 1,):
    G[:-1, :-1] − g sᵀ − s gᵀ + γ s sᵀ, G[:-1, -1] − γ s, with g = G[:-1, -1], γ = G[-1, -1]."""
    g, last = gram[:-1, -1], gram[-1, -1]
    out = gram.clone()
    out[:-1, :-1] -= torch.outer(g, shift) + torch.outer(shift, g) - last * torch.outer(shift, shift)
    out[:-1, -1] = g - last * shift
    out[-1, :-1] = out[:-1, -1]
    return out


def shifted_stats(
    gram: torch.Tensor, cross: torch.Tensor, shift: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """G (d, d) and B (d, m) in the coordinates z′ = z M of :class:`SpectralFactor` with ``shift``
    (d − 1,): Mᵀ G M and Mᵀ B (new tensors); the two themselves when ``shift`` is None."""
    if shift is None:
        return gram, cross
    return _shifted_gram(gram, shift), _shift_keys(cross.T, shift).T


def _shift_keys(rows: Any, shift: Any, *, copy: bool = True) -> Any:
    """Rows of keys (k, d) in the coordinates z′ = z M of :class:`SpectralFactor`: the other keys
    less the last one times ``shift`` (d − 1,) — also Mᵀ B for a cross matrix B (d, m) passed as
    Bᵀ. Torch or NumPy alike (``shift`` of the same kind and dtype); in place when not ``copy``."""
    out = (rows.copy() if isinstance(rows, np.ndarray) else rows.clone()) if copy else rows
    out[:, :-1] -= out[:, -1:] * shift
    return out


def _move_intercept(weight: Any, shift: Any, sign: float) -> Any:
    """Rows of weights (k, d) between the keys' coordinates and z′ = z M, a copy: w = M w′
    (``sign`` −1) or w′ = M⁻¹ w (+1), the last weight moved by sign · (w[:-1] · shift)."""
    out = weight.copy() if isinstance(weight, np.ndarray) else weight.clone()
    out[:, -1] += sign * (out[:, :-1] @ shift)
    return out


@dataclass(frozen=True)
class SpectralFactor:
    """Eigendecomposition of G in float64 plus what every filter needs.

    eigenvalues: (r,) descending, clamped at 0 (r = d, or the rank found by the dual route).
    basis: (d, r) eigenvectors as columns. projected: (r, m) = basisᵀ B.
    count: effective number of pairs n = Σ wᵢ. value_sq_sum: Σ wᵢ‖vᵢ‖².
    shift: (d − 1,) or None. When given, the factor is that of the keys in the coordinates
    z′ = z M, z′[:-1] = z[:-1] − z[-1]·shift, z′[-1] = z[-1] (:func:`center_on_last`: the other
    keys centred on a constant last key, an intercept), and every result (``basis``, weights) is
    mapped back to the keys' own coordinates (w = M w′): a key z scores z·w = z′·w′. The
    eigenvalues, ``left`` and ``projected`` are those of z′.
    values_unshared: the caller's word that no two pairs share the column of their largest
    value (one example per class; :attr:`GramStats.values_unshared`), which :meth:`loo_choice`
    reads from the rows themselves when it has them and from this flag when it has not.
    """

    eigenvalues: torch.Tensor
    _basis: torch.Tensor | None
    projected: torch.Tensor
    count: float
    value_sq_sum: float
    left: torch.Tensor | None = None
    row_values: torch.Tensor | None = None
    row_keys: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    pairs: float | None = None
    values_unshared: bool = False

    @property
    def gcv_count(self) -> float:
        """n in GCV's (1 − dof/n)²: Σ wᵢ (weights count examples), but never fewer than the pairs
        stored (``pairs``, when known). Weights scaled down together — summing to 1, as
        probability weights do — left n = 1, below the degrees of freedom of every level: GCV
        ridge then took the strongest ridge and GCV truncation rank 1."""
        return max(self.count, self.pairs or 0.0)

    @property
    def dim(self) -> int:
        """d, the keys' dimension (on the dual route too, where r ≤ n < d eigenvalues are kept)."""
        if self.row_keys is not None:
            return int(self.row_keys.shape[1])
        return int(self._basis.shape[0])  # type: ignore[union-attr]

    @property
    def basis(self) -> torch.Tensor:
        """(d, r) eigenvectors of G as columns; on the dual route U = Kᵀ A Λ^(−1/2), computed on
        first use (solving does not need it: W = (Kᵀ A diag(φ) Aᵀ V)ᵀ)."""
        if self._basis is None:
            shifted = matmul(self.row_keys.T, self.left) / self.eigenvalues.sqrt()  # type: ignore[union-attr]
            object.__setattr__(self, "_basis", self.original_weights(shifted.T).T)
        return self._basis  # type: ignore[return-value]

    def in_shifted_coordinates(self) -> SpectralFactor:
        """This factor for keys given in its own coordinates z′ = z M (e.g. a centred design):
        the same eigenvalues, ``left`` and ``projected``, with ``basis`` and weights left in z′
        (no mapping back). Itself when it has no ``shift``."""
        if self.shift is None:
            return self
        basis = None if self._basis is None else self.shifted_weights(self._basis.T).T  # M⁻¹ (M U) = U
        return dataclasses.replace(self, _basis=basis, shift=None)

    def shifted_keys(self, rows: torch.Tensor, *, copy: bool = True) -> torch.Tensor:
        """Rows of keys (k, d) in the factor's coordinates: z′ = z M (in place when not ``copy``;
        the rows themselves without ``shift``)."""
        if self.shift is None:
            return rows
        return _shift_keys(rows, self.shift.to(device=rows.device, dtype=rows.dtype), copy=copy)

    def shifted_weights(self, weight: torch.Tensor) -> torch.Tensor:
        """Rows of weights (k, d) over the keys' own coordinates → over z′ = z M: w′ = M⁻¹ w
        (the same scores: z·w = z′·w′); the identity without ``shift``."""
        if self.shift is None:
            return weight
        return _move_intercept(weight, self.shift.to(weight.dtype), 1.0)

    def original_weights(self, weight: torch.Tensor) -> torch.Tensor:
        """Rows of weights (k, d) in the factor's coordinates → the keys' own: w = M w′ (the
        identity without ``shift``)."""
        if self.shift is None:
            return weight
        return _move_intercept(weight, self.shift.to(weight.dtype), -1.0)

    @classmethod
    def from_stats(
        cls,
        gram: torch.Tensor,
        cross: torch.Tensor,
        count: float,
        value_sq_sum: float,
        shift: torch.Tensor | None = None,
    ):
        """gram: (d, d) symmetric float64; cross: (d, m) float64; shift: (d − 1,) float64 or None
        (factor Mᵀ G M instead of G: see the class docstring)."""
        gram, cross = shifted_stats(gram, cross, shift)
        lam, basis = symmetric_eigh(gram)
        lam = lam.flip(0).clamp_min(0.0)
        basis = basis.flip(1)
        projected = matmul(basis.T, cross)
        if shift is not None:
            basis = _move_intercept(basis.T, shift, -1.0).T  # M U: in the keys' own coordinates
        return cls(lam, basis, projected, count, value_sq_sum, shift=shift)

    @classmethod
    def from_pairs(
        cls,
        keys: torch.Tensor,
        values: torch.Tensor,
        count: float,
        value_sq_sum: float,
        shift: torch.Tensor | None = None,
    ):
        """Dual route for n < d: eigh of the n × n matrix K Kᵀ instead of the d × d G.

        keys: (n, d) and values: (n, m), float64, rows already scaled by √wᵢ. The non-zero
        eigenvalues of K Kᵀ = A Λ Aᵀ are those of G = KᵀK, with eigenvectors U = Kᵀ A Λ^(−1/2),
        and Uᵀ B = Λ^(1/2) Aᵀ V. Eigenvalues at or below the rounding noise of K Kᵀ
        (λ ≤ λ_max·n·ε) are left out with their directions: the null directions of G, and
        directions that are real but below what float64 resolves in K Kᵀ. Truncation zeroes
        them anyway; a ridge with ρ far below them would have used them, and here they cannot be
        recovered. That is the case of key columns whose scales differ by about 10⁷ or more
        (eigenvalues 10¹⁴ apart) solved with a near-zero ridge: the primal route
        (``GramStats(..., dual_max_pairs=0)``, eigh of G itself) is the remedy.
        Costs O(n²·d + n³) instead of O(d³). shift: (d − 1,) float64 or None (factor the rows
        K M instead: see the class docstring; ``row_keys`` then holds K M).
        """
        if shift is not None:
            keys = _shift_keys(keys, shift)
        small = keys.device.type == "cpu" and keys.shape[0] <= _SMALL_EIGH
        with single_threaded_blas() if small else contextlib.nullcontext():
            lam, vec = symmetric_eigh(_outer_gram(keys), lower=False)
        lam, vec = lam.flip(0), vec.flip(1)
        top = max(float(lam[0]), 0.0) if lam.numel() else 0.0
        # rounding noise of K Kᵀ: dropped for good (a tiny ridge would have used them; see above)
        keep = lam > top * lam.numel() * _EIGEN_NOISE
        lam, vec = lam[keep], vec[:, keep]
        projected = lam.sqrt()[:, None] * matmul(vec.T, values)
        return cls(lam, None, projected, count, value_sq_sum, vec, values, keys, shift)

    def with_rows(self, keys: torch.Tensor, values: torch.Tensor) -> SpectralFactor:
        """This (primal) factor with the rows attached for exact leave-one-out: keys (n, d) and
        values (n, m), float64, scaled by √wᵢ; A = K U Λ^(−1/2) over the directions above the
        noise floor (an O(n·d·r) product)."""
        r = int((self.eigenvalues > self.noise_floor).sum())
        left = matmul(keys, self.basis[:, :r]) / self.eigenvalues[:r].sqrt()
        return dataclasses.replace(self, left=left, row_values=values)

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0]) if self.eigenvalues.numel() else 0.0

    @property
    def noise_floor(self) -> float:
        """Eigenvalues at or below this are indistinguishable from float64 rounding of G."""
        d = self.eigenvalues.numel()
        return self.lambda_max * d * _EIGEN_NOISE

    # ----------------------------------------------------------------- filters
    def truncation_filter(self, tau: float) -> torch.Tensor:
        """φ for hard truncation of σ < τ·σ_max (λ < τ²·λ_max). Returns (d,) float64."""
        if not (tau >= 0.0 and math.isfinite(tau)):
            raise ValueError(f"tau must be a finite number >= 0, got {tau}")
        lam = self.eigenvalues
        if tau > 0 and tau * tau * self.lambda_max < self.noise_floor:
            warnings.warn(
                f"tau={tau:.3g} is below what a float64 Gram matrix resolves "
                f"(about {math.sqrt(self.noise_floor / max(self.lambda_max, 1e-300)):.1e}); "
                "clamped to that level",
                RuntimeWarning,
                stacklevel=caller_stacklevel(),
            )
        keep = (lam >= tau * tau * self.lambda_max) & (lam > self.noise_floor)
        phi = torch.zeros_like(lam)
        phi[keep] = 1.0 / lam[keep]
        return phi

    def rank_filter(self, rank: int) -> torch.Tensor:
        """φ keeping exactly the ``rank`` largest eigenvalues (what a chosen rank means; a τ
        recomputed from λ_rank could drop λ_rank itself by rounding). Returns (r,) float64."""
        phi = torch.zeros_like(self.eigenvalues)
        phi[:rank] = 1.0 / self.eigenvalues[:rank]
        return phi

    def ridge_choice(self, ridge: float) -> tuple[torch.Tensor, None, float]:
        """(φ, τ = None, ρ) of ridge ρ, as a cut resolves to it; the zero filter when ρ ≤ 0, which
        a penalty scaled by G's eigenvalues gives only for nothing but zero keys (any filter then
        gives W = 0)."""
        if not ridge > 0.0:
            return torch.zeros_like(self.eigenvalues), None, 0.0
        return self.ridge_filter(ridge), None, ridge

    def ridge_filter(self, ridge: float) -> torch.Tensor:
        """φ for ridge regression (G + ρI)⁻¹. Returns (d,) float64. Every direction is kept, those
        at G's noise floor too: a floor relative to λ_max would also drop real directions of
        columns far smaller than the largest (a unit column beside one of scale 10⁹), which a tiny
        ρ exists to resolve; a rank-deficient G solved with ρ far below the floor (1e-30) then
        multiplies G's rounding by 1/ρ (bug hunt s83: F8 left open)."""
        if not (ridge > 0.0 and math.isfinite(ridge)):
            raise ValueError(f"ridge must be a finite number > 0, got {ridge}")
        return 1.0 / (self.eigenvalues + ridge)

    # ----------------------------------------------------------------- results
    def _dual_exponent(self) -> int:
        """k such that the dual route's products run on λ 4⁻ᵏ, φ 4ᵏ, C 2⁻ᵏ (exact: powers of two)
        with λ_max 4⁻ᵏ near 1, and their result is scaled back by 4⁻ᵏ: 0 (nothing rescaled, the
        same bits) for λ_max within 2^±``_DUAL_RESCALE_BITS``. Beyond, φ/√λ ~ scale⁻³ and φ/λ ~
        scale⁻⁴ of keys of scale ≳ 1e77 (or ≲ 1e-77) underflow (all-zero weights) or overflow."""
        top = self.lambda_max
        if not (top > 0.0 and math.isfinite(top)):
            return 0
        exponent = math.frexp(top)[1]
        if abs(exponent) <= _DUAL_RESCALE_BITS:
            return 0
        return max(-500, min(500, exponent // 2))  # 2^±2k stays a float64 (a subnormal λ_max: 2^-1074)

    def weights(self, phi: torch.Tensor) -> torch.Tensor:
        """Fast-weight matrix W = (U diag(φ) C)ᵀ of shape (m, d), float64."""
        if self._basis is None and self.row_keys is not None and self.left is not None:
            # dual route: U diag(φ) C = Kᵀ A diag(φ/√λ) C, O((n + d)·r·m) instead of O(n·d·r)
            # on λ 4⁻ᵏ, φ 4ᵏ, C 2⁻ᵏ (near 1), the result scaled back by 4⁻ᵏ; k = 0 multiplies by 1,
            # which changes no bit (_dual_exponent)
            k = self._dual_exponent()
            scale = math.ldexp(1.0, 2 * k) * phi / (math.ldexp(1.0, -2 * k) * self.eigenvalues).sqrt()
            inner = scale[:, None] * (math.ldexp(1.0, -k) * self.projected)
            weight = matmul(self.row_keys.T, matmul(self.left, inner)).T
            return self.original_weights(weight * math.ldexp(1.0, -2 * k))
        return matmul(self.basis, phi[:, None] * self.projected).T

    def weights_for(self, phi: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        """Fast weights (U diag(φ) Uᵀ B′)ᵀ (m, d), float64, for another cross matrix B′ (d, m)
        than the one factored (e.g. retargeted values, :mod:`faast.solver.retarget`)."""
        cross = cross.to(self.projected.dtype)
        if self._basis is None and self.row_keys is not None and self.left is not None:
            # dual route, U = Kᵀ A Λ^(−1/2) never formed: Uᵀ B′ = Λ^(−1/2) Aᵀ (K B′)
            k = self._dual_exponent()  # 0 but for keys of extreme scale: see _dual_exponent
            lam, phi = math.ldexp(1.0, -2 * k) * self.eigenvalues, math.ldexp(1.0, 2 * k) * phi
            inv_root = 1.0 / lam.sqrt()
            cross = (
                cross if self.shift is None else _shift_keys(cross.T, self.shift.to(cross.dtype)).T
            )  # Mᵀ B′
            keyed = matmul(self.row_keys, cross)
            if k:  # K B′ 4⁻ᵏ: with λ 4⁻ᵏ, φ 4ᵏ, every factor of the products stays near its scale
                keyed = keyed * math.ldexp(1.0, -2 * k)
            projected = inv_root[:, None] * matmul(self.left.T, keyed)
            weight = matmul(self.row_keys.T, matmul(self.left, (phi * inv_root)[:, None] * projected)).T
            return self.original_weights(weight * math.ldexp(1.0, -2 * k) if k else weight)
        basis = self.basis
        return matmul(basis, phi[:, None] * matmul(basis.T, cross)).T

    def weights_for_numpy(self, phi: torch.Tensor) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`weights_for` on NumPy arrays for a factor on the CPU: B′ (d, m) ↦ (m, d)
        float64 through NumPy's BLAS (faster than torch's MKL for these thin products on an AMD
        EPYC: 5.5 against 8.7 ms at d = 1280, m = 10), for loops that stay in NumPy. Primal
        route: two products with the d × r basis. Dual route: Kᵀ M K B′ with
        M = A diag(φ/λ) Aᵀ (n × n), made once here, so a call is three thin products."""
        phi_np = phi.to(torch.float64).numpy()
        if self._basis is None and self.row_keys is not None and self.left is not None:
            keys = self.row_keys.to(torch.float64).numpy()  # (n, d)
            left = self.left.numpy()  # (n, r)
            k = self._dual_exponent()  # 0 but for keys of extreme scale: see _dual_exponent
            lam = self.eigenvalues.numpy()
            if k:  # φ/λ ~ scale⁻⁴: formed as (φ 4ᵏ)/(λ 4⁻ᵏ), and K B′ scaled by 4⁻ᵏ twice instead
                phi_np, lam = phi_np * math.ldexp(1.0, 2 * k), lam * math.ldexp(1.0, -2 * k)
            middle = (left * (phi_np / lam)) @ left.T  # (n, n)
            back = math.ldexp(1.0, -2 * k)

            def solve(cross: np.ndarray) -> np.ndarray:  # back = 1 (k = 0) changes no bit
                return (keys.T @ (middle @ ((keys @ cross) * back))) * back

            if self.shift is None:
                return lambda cross: solve(cross).T.copy()
            shift = self.shift.to(torch.float64).numpy()

            def shifted(cross: np.ndarray) -> np.ndarray:
                cross = _shift_keys(cross.T, shift).T  # Mᵀ B′
                return _move_intercept(solve(cross).T, shift, -1.0)  # M W′

            return shifted
        basis = self.basis.numpy()  # (d, r)
        scale = phi_np[:, None]  # (r, 1)
        return lambda cross: (basis @ (scale * (basis.T @ cross))).T.copy()

    def inverse(self, phi: torch.Tensor) -> torch.Tensor:
        """The filtered inverse U diag(φ) Uᵀ of G (d, d), float64: W = (inverse · B)ᵀ for any B."""
        return (self.basis * phi) @ self.basis.T

    # ----------------------------------------------------------------- GCV (faast.solver.gcv)
    def residual(self, phi: torch.Tensor) -> tuple[float, float]:
        """(RSS, dof) of the filtered fit φ (R,) on the stored pairs (:func:`faast.solver.gcv.residuals`)."""
        from faast.solver import gcv

        rss, dof = gcv.residuals(self, phi[None])
        return float(rss[0]), float(dof[0])

    def gcv_truncation(self) -> tuple[float, int]:
        """(tau, rank) of the truncation GCV chooses (:func:`faast.solver.gcv.gcv_truncation`)."""
        from faast.solver import gcv

        return gcv.gcv_truncation(self)

    @property
    def has_rows(self) -> bool:
        """Whether exact leave-one-out scores are available (the rows are known)."""
        return self.left is not None and self.row_values is not None

    def loo_choice(
        self, criterion: str = "error", families: tuple[str, ...] = ("ridge",), beyond: str = "truncation"
    ) -> tuple[torch.Tensor, float | None, float | None]:
        """The filter with the best exact leave-one-out score (:mod:`faast.solver.loo`) among
        ``families``: ``"ridge"`` (a grid of ρ; the default, chosen on the demo's validation
        episodes) and/or ``"truncation"`` (every rank up to 32, then ~8 % apart). When the rows
        are not known, GCV instead: truncation (``beyond="truncation"``, the default) or ridge
        (``beyond="ridge"``). Returns (φ (r,), τ or None, ρ or None)."""
        from faast.solver import loo

        unknown = set(families) - {"ridge", "truncation"}
        if unknown or not families:
            raise ValueError(f"families must be among 'ridge', 'truncation', got {families!r}")
        if beyond not in ("truncation", "ridge"):
            raise ValueError(f"beyond must be 'truncation' or 'ridge', got {beyond!r}")
        lam = self.eigenvalues
        shared = loo.shared_pairs(self.row_values) if self.has_rows else None  # type: ignore[arg-type]
        unranked = shared == 0 if shared is not None else self.values_unshared
        if unranked:
            # one example per class: holding one out leaves its class unseen at every level, so
            # leave-one-out cannot rank the levels (the lowest PRESS would be the strongest ridge
            # or the first rank, predicting one class): a penalty from the spectrum alone. Without
            # the rows (more classes than the rows kept), GCV took a huge ridge on features far
            # from the origin (one class predicted), so the caller's word is taken instead.
            rho = one_per_class_penalty(self)
            if "ridge" in families or not rho > 0.0:
                return self.ridge_choice(rho)
            # truncation only: the directions that the ridge s/100 keeps more than half of (λ ≥ s/100,
            # as before 2026-12-06; the ridge's own ρ would keep too few for a truncation)
            rho = fallback_penalty(self)
            r = self.left.shape[1] if self.left is not None else int((lam > self.noise_floor).sum())
            rank = max(1, int((lam[:r] >= rho).sum()))
            return self.rank_filter(rank), math.sqrt(float(lam[rank - 1]) / self.lambda_max), None
        if not self.has_rows:
            if beyond == "ridge":
                rho = self.gcv_ridge()
                return self.ridge_filter(rho), None, rho
            tau, rank = self.gcv_truncation()
            return self.rank_filter(rank), tau, None
        paths = []
        if "truncation" in families:
            paths.append(loo.truncation_path(self.left, self.row_values, shared=shared))  # type: ignore[arg-type]
        if "ridge" in families:
            second = float(lam[1]) if lam.numel() > 1 else None
            grid = loo.default_ridge_grid(self.lambda_max, second)
            r = self.left.shape[1]  # type: ignore[union-attr]
            paths.append(loo.ridge_path(self.left, lam[:r], self.row_values, grid, shared))  # type: ignore[arg-type]
        picks = [(path, *path.best(criterion)) for path in paths]
        finite = [p for p in picks if p[1] >= 0]
        if not finite:  # every candidate interpolates (cannot happen with a ridge grid)
            tau, rank = self.gcv_truncation()
            return self.rank_filter(rank), tau, None
        key = (lambda p: (p[2], p[3])) if criterion == "error" else (lambda p: p[3])  # error-se: PRESS
        path, i, _, _ = min(finite, key=key)
        if path.kind == "ridge":
            rho = float(path.levels[i])
            return self.ridge_filter(rho), None, rho
        rank = int(path.levels[i])
        return self.rank_filter(rank), math.sqrt(float(lam[rank - 1]) / self.lambda_max), None

    def gcv_ridge(self, grid: torch.Tensor | None = None) -> float:
        """The ρ GCV chooses on a log grid (:func:`faast.solver.gcv.gcv_ridge`)."""
        from faast.solver import gcv

        return gcv.gcv_ridge(self, grid)
