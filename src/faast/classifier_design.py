"""How ``FaastClassifier`` turns features into the design its solve sees.

Features X (n, d) are validated into a floating tensor on the working device (optionally
L2-normalised: ``normalize_keys``), expanded by a fixed random projection and a ReLU
(``random_features``: k ↦ max(0, Rᵀk), R (d, M) seeded), and given a constant column of
``intercept_scaling`` (``fit_intercept``): the design (n, D′), D′ = M or d, plus one with the
intercept. The design is built a block of rows at a time for the statistics (a fit never holds a
second copy of a large X) and never built for prediction (:meth:`DesignMixin._design_times`).
The mixin needs the classifier's parameters and, for :meth:`DesignMixin._batch_stats`, its
``memory_``.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from faast._checks import caller_stacklevel, check_device, check_finite
from faast.solver import GramStats
from faast.solver.cpu_products import matmul
from faast.unit_rows import unit_rows

#: The design (random features, the intercept's constant column) is built this many rows at a
#: time for the statistics, so that a fit never holds a second copy of a large X.
DESIGN_BLOCK_ROWS = 8192
#: Rows per block of the gather that builds a design in another row order (see _design_numpy).
GATHER_ROWS = 512
#: ``fit`` warns when the features' mean squared entry is below this fraction of
#: ``intercept_scaling``² (or above its inverse): the least-squares fit lost features 10⁻⁸ times
#: the constant column (entries ≈ 10⁻¹⁶ of it in the Gram) and kept them at 10⁻⁶.
INTERCEPT_SCALE_GAP = 1e-14
#: Rows (at most) whose entries give the features' scale for that warning.
SCALE_SAMPLE_ROWS = 1024


def entry_scale(sample: torch.Tensor) -> float | None:
    """The root-mean-square entry of ``sample`` (n, d), its squares summed in float64; None when
    every entry is 0 (nothing to lose) or the largest one's square overflows (the statistics refuse
    such features). On the CPU, float32 rows go through one float64 copy and a BLAS dot (their
    squares neither underflow nor overflow in float64); other rows are scaled by their largest
    entry first, so that squares of tiny or huge features do neither."""
    if sample.device.type == "cpu" and sample.dtype == torch.float32:
        x = sample.resolve_neg().numpy()
        top = float(max(x.max(), -x.min()))
        if top == 0 or not math.isfinite(top * top):
            return None
        flat = x.astype(np.float64).ravel()
        return math.sqrt(float(flat @ flat) / flat.size)
    top = float(sample.abs().max())
    if top == 0 or not math.isfinite(top * top):
        return None
    return (
        top * float(torch.linalg.vector_norm(sample / top, dtype=torch.float64)) / math.sqrt(sample.numel())
    )


class DesignMixin:
    """Features → design steps of :class:`~faast.classifier.FaastClassifier`."""

    def _check_intercept_scale(self, keys: torch.Tensor) -> None:
        """Warn when the features' scale is so far from ``intercept_scaling`` that float64 cannot
        hold both in one Gram: the typical squared entry of keys (n, d) below ``INTERCEPT_SCALE_GAP``
        times intercept_scaling² (the features' eigenvalues then fall below the rounding of the
        constant column's and the cut drops them: chance-level predictions), or above its inverse
        (the intercept is dropped). The scale is that of at most ``SCALE_SAMPLE_ROWS`` evenly
        spaced rows (:func:`evenly_spaced_rows`): a float64 copy of every row would cost a large
        fit as much memory again as float32 keys hold twice over, for a warning that needs an
        order of magnitude."""
        if not self.fit_intercept or keys.numel() == 0:
            return
        sample = keys.detach()
        if sample.shape[0] > SCALE_SAMPLE_ROWS:
            sample = sample[evenly_spaced_rows(sample.shape[0], SCALE_SAMPLE_ROWS, keys.device)]
        rms = entry_scale(sample)
        if rms is None:
            return
        gap = rms / float(self.intercept_scaling)  # the square root of the squares' ratio
        if gap < math.sqrt(INTERCEPT_SCALE_GAP) or gap > 1 / math.sqrt(INTERCEPT_SCALE_GAP):
            row_norm = rms * math.sqrt(keys.shape[1])
            warnings.warn(
                f"the features' root-mean-square entry ({rms:.3g}) is "
                f"{gap:.1g} times intercept_scaling={self.intercept_scaling:g}: too far "
                f"apart for one float64 Gram, so the {'features' if gap < 1 else 'intercept'} may "
                f"be lost to rounding; rescale the features or set intercept_scaling near their row "
                f"norm ({row_norm:.3g})",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )

    def _keys(self, X: Any, *, reset: bool, fitted_dtype: bool = False) -> torch.Tensor:
        """Validate features and return them as a (n, d) floating tensor on the working device;
        with ``fitted_dtype`` (``partial_fit``, ``forget``), in the dtype the statistics were
        built from (:meth:`_in_fitted_dtype`)."""
        if isinstance(X, torch.Tensor):
            if X.layout != torch.strided:  # before any check that torch cannot run on sparse tensors
                raise TypeError("X: sparse tensors are not supported; pass a dense tensor (X.to_dense())")
            if X.ndim != 2:
                raise ValueError(
                    f"X: expected a 2-D tensor (n_samples, n_features), got shape {tuple(X.shape)}"
                )
            if X.shape[1] == 0:  # refused as scikit-learn refuses such an array (not deep in the statistics)
                raise ValueError(
                    f"Found tensor with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is "
                    f"required by {type(self).__name__}."
                )
            if X.is_complex():  # as scikit-learn refuses complex arrays (a cast drops the imaginary part)
                raise ValueError(f"Complex data not supported: X is a {X.dtype} tensor; pass real features")
            keys = X.detach().resolve_neg()  # a lazily negated view (z.conj().imag): NumPy refuses it
            if not keys.is_floating_point():  # integers and bools: float64, as validate_data casts arrays
                keys = keys.to(torch.float64)
            check_finite(keys, "X")
            # n_features_in_ and feature_names_in_ as for an array: a tensor has no feature names, so
            # a fit (reset) drops those of an earlier fit and a prediction warns when fitted with them
            validate_data(self, X, reset=reset, skip_check_array=True)
        else:
            arr = validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float64, np.float32],
                ensure_min_samples=0 if self.distributed else 1,
            )
            arr = np.ascontiguousarray(arr)
            keys = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if keys.shape[0] == 0 and not self.distributed:
            raise ValueError("X: empty support set (0 samples)")
        if fitted_dtype:  # before normalize_keys, which then runs in that dtype as it did
            keys = self._in_fitted_dtype(keys)
        if self.device is not None:
            keys = keys.to(check_device(self.device))
        elif hasattr(self, "memory_") and self.memory_.stats is not None:
            keys = keys.to(self.memory_.stats.device)
        if self.normalize_keys:
            keys = unit_rows(keys)
        return keys

    def _in_fitted_dtype(self, keys: torch.Tensor) -> torch.Tensor:
        """keys (n, d) cast to the dtype of the keys the statistics were built from (unchanged
        when they match or no statistics exist): scikit-learn's estimators take any numeric X, and
        rows learned in float32 then given in float64 are read back as the same rows."""
        stats = self.memory_.stats if hasattr(self, "memory_") else None
        dtype = None if stats is None else stats.input_dtype
        return keys if dtype is None or keys.dtype == dtype else keys.to(dtype)

    def _expand(self, keys: torch.Tensor) -> torch.Tensor:
        """keys (n, d) → max(0, keys @ R) (n, M) with the seeded projection R, or keys unchanged."""
        if self.random_features is None:
            return keys
        proj = _projection(keys.shape[1], int(self.random_features), int(self.random_state))
        return torch.relu(keys @ proj.to(device=keys.device, dtype=keys.dtype))

    def _design_dim(self, d: int) -> int:
        """D + 1 or D: the number of design features for keys of dimension d."""
        width = d if self.random_features is None else int(self.random_features)
        return width + int(bool(self.fit_intercept))

    def _design_is_keys(self) -> bool:
        """Whether the solve sees the keys themselves (no random features, no intercept)."""
        return self.random_features is None and not self.fit_intercept

    def _design_in_one_block(self, rows: int) -> bool:
        """Whether the design of ``rows`` rows is built at once (the keys themselves, or at most
        ``DESIGN_BLOCK_ROWS`` rows) rather than a block at a time."""
        return self._design_is_keys() or rows <= DESIGN_BLOCK_ROWS

    def _design_blocks(self, keys: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor | None):
        """(design (b, D′), one-hot (b, C), weights (b,) or None) for consecutive blocks of at most
        ``DESIGN_BLOCK_ROWS`` rows (one block, the keys themselves, when the design is the keys)."""
        if self._design_is_keys():
            yield keys, onehot, weights
            return
        for start in range(0, max(keys.shape[0], 1), DESIGN_BLOCK_ROWS):
            rows = slice(start, start + DESIGN_BLOCK_ROWS)
            yield self._design(keys[rows]), onehot[rows], None if weights is None else weights[rows]

    def _batch_stats(
        self, keys: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor | None
    ) -> GramStats:
        """The statistics of these pairs alone, their design built a block of rows at a time (kept
        rows while they stay few, as the memory's), to be merged into the memory's."""
        held = self.memory_.stats
        batch = GramStats(
            held.key_dim, held.value_dim, device=keys.device, dual_max_pairs=held.dual_max_pairs
        )
        for block in self._design_blocks(keys, onehot, weights):
            batch.add(*block)
        batch.input_dtype = keys.dtype  # also for an empty shard
        return batch

    def _design(self, keys: torch.Tensor, order: torch.Tensor | None = None) -> torch.Tensor:
        """The features the solve sees: keys (n, d) → their random expansion (n, M) when
        ``random_features``, then a constant column of ``intercept_scaling`` when
        ``fit_intercept`` (n, D + 1); of the rows ``order`` (k,) int64, in that order, when given.
        On the CPU the rows are copied through NumPy (:meth:`_design_numpy`)."""
        if order is not None and self.random_features is not None:
            keys, order = keys.index_select(0, order), None
        features = self._expand(keys)
        if not self.fit_intercept:
            return features if order is None else features.index_select(0, order)
        if features.device.type == "cpu" and features.dtype in (torch.float32, torch.float64):
            return torch.from_numpy(self._design_numpy(features.detach().numpy(), order))
        rows = features.shape[0] if order is None else order.shape[0]
        out = features.new_empty((rows, features.shape[1] + 1))
        out[:, :-1] = features if order is None else features.index_select(0, order)
        out[:, -1] = float(self.intercept_scaling)
        return out

    def _design_numpy(self, features: np.ndarray, order: torch.Tensor | None) -> np.ndarray:
        """:meth:`_design`'s intercept design on the CPU: features (n, D) → (k, D + 1) of the rows
        ``order`` (all by default), allocated by NumPy and filled in blocks of ``GATHER_ROWS``
        rows gathered into a small buffer: on the AMD EPYC VM this took less time than
        ``torch.cat`` and ``index_select`` (profiled, not benchmarked)."""
        d = features.shape[1]
        if order is None:
            out = np.empty((features.shape[0], d + 1), dtype=features.dtype)
            out[:, :-1] = features
        else:
            index = order.cpu().numpy()
            out = np.empty((index.shape[0], d + 1), dtype=features.dtype)
            buffer = np.empty((min(GATHER_ROWS, index.shape[0]), d), dtype=features.dtype)
            for start in range(0, index.shape[0], GATHER_ROWS):
                part = index[start : start + GATHER_ROWS]
                np.take(features, part, axis=0, out=buffer[: part.shape[0]])
                out[start : start + part.shape[0], :-1] = buffer[: part.shape[0]]
        out[:, -1] = float(self.intercept_scaling)
        return out

    def _design_times(self, features: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """The design rows of ``features`` (q, D′) (after ``random_features``) times ``matrix``
        (D′ + 1 with the intercept, k) without building them: the constant column's share added."""
        matrix = matrix.to(device=features.device, dtype=features.dtype)
        # on the CPU through NumPy's BLAS (cpu_products: faster than torch's MKL on the AMD VM)
        if self.fit_intercept:
            return matmul(features, matrix[:-1]) + float(self.intercept_scaling) * matrix[-1]
        return matmul(features, matrix)


@functools.lru_cache(maxsize=2)
def _projection(d: int, m: int, seed: int) -> torch.Tensor:
    """The random-feature projection R (d, m): float64 N(0, 1/d) from ``torch.Generator(seed)``,
    cached (read-only) so that refits and predictions do not redraw it."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(d, m, generator=gen, dtype=torch.float64) / d**0.5


def evenly_spaced_rows(n: int, most: int, device: torch.device) -> torch.Tensor:
    """Indices (≤ most,) int64 of evenly spaced rows among n, the first and last included (all n
    when n ≤ most): the samples the classifier keeps of a large batch (the intercept-scale
    warning's, the temperature's)."""
    if n <= most:
        return torch.arange(n, device=device)
    return torch.linspace(0, n - 1, most, device=device).round().to(torch.int64).unique()
