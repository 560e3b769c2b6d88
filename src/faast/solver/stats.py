"""Streaming float64 sufficient statistics of a key→value least-squares problem.

``GramStats`` keeps

    G = Σ wᵢ kᵢ kᵢᵀ  (d × d),   B = Σ wᵢ kᵢ vᵢᵀ  (d × m),   n,   Σ wᵢ,   Σ wᵢ ‖vᵢ‖²

in float64, whatever the dtype of the keys. Because they are sums, batches can be added in any
order and size, shards merged (also across processes with ``all_reduce``), and examples removed
exactly with ``subtract``. ``solve`` turns them into the fast-weight matrix W (m × d) with one
cached eigendecomposition; see :mod:`faast.solver.spectral` for the filters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import zlib
from typing import Any

import numpy as np
import torch

from faast._checks import check_device, check_finite, check_pairs, check_weights
from faast.io import load_tensors, save_tensors
from faast.solver import direct
from faast.solver.blas_threads import single_threaded_blas
from faast.solver.cut import Cut, SolveInfo, make_cut, power_law_tau
from faast.solver.kernels import accumulate, symmetrize_lower
from faast.solver.normal_tensors import outside_inference_mode
from faast.solver.rows import PairBuffer
from faast.solver.spectral import _SMALL_EIGH, SpectralFactor, center_on_last

_STATE_KEYS = ("gram", "cross", "count", "weight_sum", "value_sq_sum")
#: A state without G and B (:meth:`GramStats.saved_state`: the kept rows stand for them).
_SCALAR_KEYS = ("count", "weight_sum", "value_sq_sum")


#: The tensors of a statistics file that hold its kept rows (scaled by √wᵢ: :meth:`GramStats.kept_rows`).
_ROW_KEYS = ("rows_keys", "rows_values")
#: A Gram diagonal entry below −this × the largest is damage, not rounding (``subtract`` of large
#: pairs leaves a relative residue of order 10⁻⁵ on the diagonal).
_NEGATIVE_DIAGONAL_TOLERANCE = 1e-3
#: Beyond the kept rows, ``subtract`` refuses pairs whose squares exceed what G's diagonal (or
#: Σ wᵢ‖vᵢ‖²) holds by more than this × the larger of the two, or √ε of the keys' dtype if larger
#: (sums of the squares of many rows, some recomputed in another batch shape).
_REMOVAL_ROUNDING = 1e-6
#: While the rows are kept, a pair to subtract with no bit-identical kept row may match one that
#: differs by at most (_ROUNDING_ULPS·ε(keys' dtype) + _REORDERING_ULPS·ε(its accumulation dtype)) ×
#: the row's largest entry, per part: :func:`_match_tolerance`.
_ROUNDING_ULPS = 2
_REORDERING_ULPS = 64

__all__ = ["GramStats", "SolveInfo", "power_law_tau"]


def _float_dtype(dtype: Any, name: str) -> torch.dtype:
    """``dtype`` when it can hold fast weights or keys (a floating dtype of 16 bits or more); a
    ``TypeError`` for what is not a torch dtype, a ``ValueError`` naming ``name`` for an integer,
    bool, complex or float8 dtype (integer weights were silently rounded to zeros)."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch dtype such as torch.float32, got {dtype!r}")
    if not dtype.is_floating_point or dtype.itemsize < 2:
        raise ValueError(
            f"{name}={dtype} cannot hold fast weights: use a real floating dtype of 16 bits or more "
            "(torch.float16, torch.bfloat16, torch.float32 or torch.float64)"
        )
    return dtype


def _match_tolerance(dtype: torch.dtype) -> float:
    """How far (relative to a row's largest entry, per part: keys, values) a row given to
    ``subtract`` may be from the kept row it stands for: the same row recomputed in another batch
    shape. Such a row differs in its final rounding to ``dtype`` (an ulp of an entry, at most ε of
    the row's largest, on each side: ``_ROUNDING_ULPS``·ε) and in the order BLAS summed its products
    in the dtype it accumulates in (``dtype`` itself, float32 for the 16-bit dtypes):
    ``_REORDERING_ULPS``·ε there. Random features of 1,000 inputs recomputed in other batch shapes
    differed by up to 7ε in float32 and 9ε in float64 (0 in bfloat16 and float16, whose float32
    sums round alike); the gap grows like the square root of the inputs' width, so 64ε leaves
    room for widths some fifty times larger. That is 0.016 of the row's largest entry in bfloat16,
    0.002 in float16, 7.9e-6 in float32 and 1.5e-14 in float64 — until s84 √ε (0.088 in bfloat16,
    1.5e-8 in float64) accepted a row never learned, 5 % off a learned one in bfloat16, and
    removed the learned row in its place (bug hunt s83, F7). 0 for a dtype that is not floating
    (matched bit for bit)."""
    if not dtype.is_floating_point:
        return 0.0
    accumulation = torch.promote_types(dtype, torch.float32)
    return _ROUNDING_ULPS * torch.finfo(dtype).eps + _REORDERING_ULPS * torch.finfo(accumulation).eps


def _narrowed(weights: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The float64 weights (m, d) in ``dtype`` on ``device``; a ``ValueError`` naming the largest
    weight when it does not fit ``dtype`` (float16 keys of scale 1e-4 and values of scale 100 give
    weights near 10⁵, which float16 turned into inf, and reads into inf and NaN)."""
    out = weights.to(device=device, dtype=dtype)
    if dtype.is_floating_point and not bool(torch.isfinite(out).all()):
        if not bool(torch.isfinite(weights).all()):  # the float64 solve itself
            raise ValueError(
                "the float64 solve gave non-finite fast weights: the statistics or the weights left "
                "float64's range (products wᵢ·kᵢ² of example weights and keys below about 1e-300, or "
                "weights, of the scale of values / keys, beyond about 1e300); rescale the keys, the "
                "values or the sample weights"
            )
        largest = float(weights.abs().max())
        raise ValueError(
            f"the fast weights reach {largest:.3g}, beyond what {dtype} holds "
            f"(up to {torch.finfo(dtype).max:.3g}): solve in float32 or float64 (dtype=torch.float32), "
            "or give keys of a larger scale"
        )
    return out


class GramStats:
    """Float64 sufficient statistics for fast weights mapping keys (d) to values (m).

    Parameters
    ----------
    key_dim, value_dim:
        d and m.
    device:
        Where the statistics live. ``None`` adopts the device of the first batch added.
    dual_max_pairs:
        While at most this many pairs have been added (default: ``key_dim``; 0 disables), the
        float64 pairs are also kept so that a solve with n < d uses the dual n × n
        eigendecomposition (O(n²d + n³) instead of O(d³): the few-shot regime) and the ``auto``
        cut can score exact leave-one-out. The copy is dropped for good once the count passes
        the limit (``subtract`` back below it does not bring it back: ``auto`` then uses GCV), or
        after ``all_reduce``, or ``load_state_dict`` without ``rows`` (``save``/``load`` keep
        them); ``subtract`` removes the matching rows from it (and refuses pairs that were never
        added).
    center_on_last_key:
        Solve with the other keys centred on the last one, a constant key (an intercept: see
        :func:`~faast.solver.spectral.center_on_last`). Exact at every solve from the
        statistics as they stand (streaming, forgetting and merging keep it exact); the weights
        come back in the keys' own coordinates. A setting of the solve, not of the statistics:
        ``save``/``state_dict`` do not carry it (``FaastClassifier`` restores it from its params).

    Attribute ``values_unshared`` (default False; settable) is the caller's word that no two pairs
    share the column of their largest value — one example per class, one-hot values. The ``auto``
    cuts then take the one-example-per-class penalty
    (:func:`~faast.solver.spectral.one_per_class_penalty`) also once the rows are dropped (with the
    rows kept they read it from the rows themselves); GCV, used otherwise without the rows, took a
    huge ridge on features far from the origin. ``FaastClassifier`` sets it from its class counts;
    like ``center_on_last_key``, it is a setting of the solve, not saved.

    Every tensor kept (G, B, the kept rows, the cached factor and solves) is a normal tensor, also
    when pairs are added, removed, merged, loaded or solved inside ``torch.inference_mode()``: the
    methods that make them run outside that mode (:mod:`faast.solver.normal_tensors`), so the
    statistics stay usable, and updatable in place, once the caller leaves it.
    """

    def __init__(
        self,
        key_dim: int,
        value_dim: int,
        *,
        device: torch.device | str | None = None,
        dual_max_pairs: int | None = None,
        center_on_last_key: bool = False,
    ) -> None:
        for name, dim in (("key_dim", key_dim), ("value_dim", value_dim)):
            if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
                raise TypeError(f"{name} must be an integer, got {type(dim).__name__} {dim!r}")
        if int(key_dim) <= 0 or int(value_dim) <= 0:
            raise ValueError(f"key_dim and value_dim must be positive, got {key_dim} and {value_dim}")
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim)
        self.dual_max_pairs = self.key_dim if dual_max_pairs is None else max(0, int(dual_max_pairs))
        self._device: torch.device | None = None if device is None else check_device(device)
        self._center_on_last_key = bool(center_on_last_key)
        self._values_unshared = False
        self._init_buffers()

    @property
    def center_on_last_key(self) -> bool:
        """Whether solves centre the other keys on the last one (see the class docstring)."""
        return self._center_on_last_key

    @center_on_last_key.setter
    def center_on_last_key(self, value: bool) -> None:
        if bool(value) != self._center_on_last_key:
            self._center_on_last_key = bool(value)
            self._touch()

    @property
    def values_unshared(self) -> bool:
        """Whether no two pairs share the column of their largest value (see the class docstring)."""
        return self._values_unshared

    @values_unshared.setter
    def values_unshared(self, value: bool) -> None:
        if bool(value) != self._values_unshared:
            self._values_unshared = bool(value)
            self._touch()

    # ----------------------------------------------------------------- state
    def _init_buffers(self) -> None:
        # G (d, d) and B (d, m), allocated on first need (_materialise): few-shot solves use the rows
        self._gram: torch.Tensor | None = None
        self._cross: torch.Tensor | None = None
        self._lower_only = False
        self._deferred = False  # G and B not yet accumulated from the kept rows (see _materialise)
        self._pairs: PairBuffer | None = PairBuffer()  # float64 rows for the dual route; None: dropped
        self.count = 0
        self.weight_sum = 0.0
        self.value_sq_sum = 0.0
        self.input_dtype: torch.dtype | None = None
        self._version = 0
        self._factor_cache: tuple[int, SpectralFactor] | None = None
        self._solve_cache: dict[tuple[Cut, torch.dtype, torch.device], tuple[torch.Tensor, SolveInfo]] = {}

    def _touch(self) -> None:
        self._version += 1
        self._factor_cache = None
        self._solve_cache.clear()

    @property
    def device(self) -> torch.device:
        return self._device or torch.device("cpu")

    @property
    @outside_inference_mode
    def gram(self) -> torch.Tensor:
        """G (d, d), float64, symmetric."""
        self._materialise()
        if self._lower_only:
            self._gram.copy_(symmetrize_lower(self._gram))
            self._lower_only = False
        return self._gram

    @property
    @outside_inference_mode
    def cross(self) -> torch.Tensor:
        """B (d, m), float64."""
        self._materialise()
        return self._cross

    @outside_inference_mode
    def _materialise(self) -> None:
        """Accumulate G and B from the kept rows if that was deferred. While every row is kept
        (n ≤ ``dual_max_pairs``) the solve works on the rows (dual route), so adding a batch
        only stores its float64 rows: the O(n·d²) Gram update is done once, when G or B is
        first needed (the rows are dropped, or G, B, a copy or a saved state is asked for)."""
        if not self._deferred:
            if self._gram is None or self._cross is None:
                self._gram, self._cross = self._zero_sums()
            return
        # into new tensors, published before the flag that says they are formed: threads reading
        # one object at once each form them and publish the same sums (accumulating into the held
        # ones, a second reader zeroed them under the first: G was left wrong for good)
        gram, cross = self._zero_sums()
        lower_only = False
        if self._pairs is not None and self._pairs.count:
            keys, values = self._pairs.tensors()
            lower_only, _ = accumulate(gram, cross, keys, values, None, 1.0)
        self._gram, self._cross, self._lower_only = gram, cross, lower_only
        self._deferred = False

    def _zero_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """New zero G (d, d) and B (d, m), float64, on the statistics' device."""
        return (
            torch.zeros(self.key_dim, self.key_dim, dtype=torch.float64, device=self.device),
            torch.zeros(self.key_dim, self.value_dim, dtype=torch.float64, device=self.device),
        )

    @property
    def nbytes(self) -> int:
        """Bytes held by G and B."""
        return (self.key_dim + self.value_dim) * self.key_dim * 8

    def reset(self) -> GramStats:
        """Forget every example (keeps the dimensions and device)."""
        self._init_buffers()
        return self

    @outside_inference_mode
    def copy(self) -> GramStats:
        out = GramStats(
            self.key_dim,
            self.value_dim,
            device=self.device,
            dual_max_pairs=self.dual_max_pairs,
            center_on_last_key=self.center_on_last_key,
        )
        out.values_unshared = self.values_unshared
        if self._deferred:  # G and B not formed: the kept rows stand for them
            out._deferred = True
        elif self._gram is not None and self._cross is not None:
            out._gram, out._cross = self.gram.clone(), self.cross.clone()
            out._lower_only = False
        out._pairs = None if self._pairs is None else self._pairs.copy()
        out.count, out.weight_sum, out.value_sq_sum = self.count, self.weight_sum, self.value_sq_sum
        out.input_dtype = self.input_dtype
        return out

    @outside_inference_mode
    def to(self, device: torch.device | str) -> GramStats:
        """Move the statistics to ``device`` in place."""
        device = check_device(device)
        if self._deferred:  # not formed yet: formed on the new device from the moved rows
            self._gram = self._cross = None
        elif self._gram is not None and self._cross is not None:
            self._gram = self.gram.to(device)
            self._cross = self.cross.to(device)
        if self._pairs is not None:
            self._pairs.to(device)
        self._device = device
        self._touch()
        return self

    def __repr__(self) -> str:
        return (
            f"GramStats(key_dim={self.key_dim}, value_dim={self.value_dim}, count={self.count}, "
            f"device={self.device})"
        )

    # ----------------------------------------------------------------- updates
    @outside_inference_mode
    def add(self, keys: Any, values: Any, weights: Any = None) -> GramStats:
        """Accumulate pairs. keys: (n, d); values: (n, m); weights: (n,) ≥ 0 or None."""
        self._update(keys, values, weights, sign=1.0)
        return self

    @outside_inference_mode
    def subtract(self, keys: Any, values: Any, weights: Any = None) -> GramStats:
        """Remove pairs added earlier (exact forgetting). Same shapes as :meth:`add`.

        While the rows are kept (n ≤ ``dual_max_pairs``), every pair must match one that was added
        (same keys, values and weight), else a ``ValueError`` is raised and nothing changes.
        """
        self._update(keys, values, weights, sign=-1.0)
        return self

    @outside_inference_mode
    def check_subtract(self, keys: Any, values: Any, weights: Any = None) -> None:
        """Raise the ``ValueError`` (or ``TypeError``) that :meth:`subtract` would raise for these
        pairs — shapes, dtype, more pairs than are held, a pair that was never added while the
        rows are kept — without changing anything."""
        self._checked_batch(keys, values, weights, sign=-1.0)

    def _checked_batch(
        self, keys: Any, values: Any, weights: Any, sign: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Validated keys (n, d), values (n, m), weights (n,) or None and, when subtracting while
        every row is kept, the indices of the kept rows they match (None otherwise)."""
        k, v = check_pairs(keys, values, finite=False)
        if k.shape[1] != self.key_dim:
            raise ValueError(f"keys: expected dimension {self.key_dim}, got shape {tuple(k.shape)}")
        if v.shape[1] != self.value_dim:
            raise ValueError(f"values: expected dimension {self.value_dim}, got shape {tuple(v.shape)}")
        if self._device is not None and k.device != self.device:
            self._adopt_device(k.device)  # refuses: the statistics live elsewhere
        check_finite(k, "keys")
        check_finite(v, "values")
        if self.input_dtype is not None and k.dtype != self.input_dtype:
            raise TypeError(
                f"keys are {k.dtype} but these statistics were built from {self.input_dtype} keys; "
                "cast the batch, or reset() first"
            )
        w = check_weights(weights, k.shape[0], k.device)
        n = k.shape[0]
        if sign < 0 and n > self.count:
            raise ValueError(f"cannot subtract {n} examples from statistics that hold {self.count}")
        if n == 0:
            return k, v, w, None
        _check_magnitude(k, v, w, self.count + n)
        if sign > 0:  # what was added can be removed: a pair accepted then is accepted now
            _check_weighted_underflow(k, w)
        held = self._held_rows(k, v, w) if sign < 0 else None  # checked before anything changes
        if sign < 0 and held is None:
            self._check_removable(k, v, w)
        self._adopt_device(k.device)  # only once the batch is accepted: a refused one changes nothing
        return k, v, w, held

    def _update(self, keys: Any, values: Any, weights: Any, sign: float) -> None:
        k, v, w, held = self._checked_batch(keys, values, weights, sign)
        n = k.shape[0]
        if n == 0:
            return
        if self._pairs is not None and (held is not None or self.count + n <= self.dual_max_pairs):
            rows_k, rows_v = self._scaled_rows(k, v, w)  # every row kept: defer G and B
            if held is not None:
                self._pairs.remove(held)
            else:
                self._pairs.append(rows_k, rows_v)
            value_sq = float((rows_v * rows_v).sum())
            self._deferred = True
        else:
            self._materialise()
            lower_only, value_sq = accumulate(self._gram, self._cross, k, v, w, sign)
            self._lower_only = self._lower_only or lower_only
            self._record_pairs(k, v, w, sign)
        self.value_sq_sum += sign * value_sq
        self.weight_sum += sign * (float(n) if w is None else float(w.sum()))
        self.count += int(sign) * n
        if self.input_dtype is None:
            self.input_dtype = k.dtype
        if self.count == 0:  # everything removed: drop the rounding residue
            dtype = self.input_dtype
            self._init_buffers()
            self.input_dtype = dtype
        self._touch()

    def _scaled_rows(
        self, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # copies, also of float64 input: the kept rows must not alias the caller's tensors (G and B
        # are accumulated from them later, so an input changed after ``add`` would change them)
        k64 = k.detach().to(torch.float64, copy=w is None)
        v64 = v.detach().to(torch.float64, copy=w is None)
        if w is not None:
            root = w.sqrt()[:, None]
            k64, v64 = k64 * root, v64 * root
        return k64, v64

    def _check_removable(self, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor | None) -> None:
        """Beyond the kept rows, where pairs cannot be matched one by one: refuse pairs whose sums
        of squares exceed what the statistics hold — a diagonal entry of G, or Σ wᵢ‖vᵢ‖² — beyond
        rounding: they were never added (subtracting them would leave G with a negative diagonal,
        solved as if it were a Gram matrix and refused when loaded). O(n·d); pairs that were not
        added but stay within those sums are not detected (:meth:`subtract`)."""
        rows_k, rows_v = self._scaled_rows(k, v, w)  # float64, scaled by √wᵢ
        key_sq = (rows_k * rows_k).sum(dim=0)  # (d,)
        value_sq = float((rows_v * rows_v).sum())
        self._materialise()
        held = self._gram.diagonal()  # type: ignore[union-attr]
        dtype = self.input_dtype if self.input_dtype is not None else k.dtype
        rounding = max(_REMOVAL_ROUNDING, torch.finfo(dtype).eps ** 0.5)
        slack = rounding * torch.maximum(held, key_sq)
        over = torch.nonzero(key_sq - held > slack).flatten()
        if over.numel():
            j = int(over[0])
            raise ValueError(
                f"cannot subtract these pairs: they were never added (key column {j}: their squares "
                f"sum to {float(key_sq[j]):.6g}, the statistics hold {float(held[j]):.6g}"
                + (f"; so in {over.numel()} columns" if over.numel() > 1 else "")
                + ")"
            )
        if value_sq - self.value_sq_sum > rounding * max(value_sq, self.value_sq_sum):
            raise ValueError(
                f"cannot subtract these pairs: they were never added (their values' squares sum to "
                f"{value_sq:.6g}, the statistics hold {self.value_sq_sum:.6g})"
            )

    def _held_rows(self, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor | None:
        """Indices of the kept rows equal to the pairs being subtracted (None when rows are not
        kept); a pair that was never added is a ``ValueError``. Equal means bit-identical — the
        kept rows are the float64 images of the rows added (times √wᵢ), so the same rows in the
        same dtype give the same bits — or, for a row recomputed in another batch shape (the
        design of ``random_features``, rows normalised by ``normalize_keys``), within the rounding
        such a recomputation can leave: :func:`_match_tolerance` of the keys' dtype."""
        if self._pairs is None:
            return None
        if self._pairs.count != self.count:  # only some rows are kept: cannot verify
            return None
        dtype = self.input_dtype if self.input_dtype is not None else k.dtype
        return self._pairs.find(*self._scaled_rows(k, v, w), rtol=_match_tolerance(dtype))

    def _record_pairs(self, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor | None, sign: float) -> None:
        """Keep float64 copies of the pairs for the dual route while the count allows it."""
        if self._pairs is None:
            return
        if sign < 0 or self.count + k.shape[0] > self.dual_max_pairs:
            self._pairs = None
            return
        self._pairs.append(*self._scaled_rows(k, v, w))

    def _adopt_device(self, device: torch.device) -> None:
        if self._device is None:
            self._device = device
            if self._gram is not None and self._cross is not None and self._gram.device != device:
                self._gram = self._gram.to(device)
                self._cross = self._cross.to(device)
        elif device != self.device:
            raise ValueError(
                f"batch is on {device} but the statistics live on {self.device}; move one of them"
            )

    @outside_inference_mode
    def merge(self, other: GramStats) -> GramStats:
        """Add another shard's statistics in place (the result equals adding its examples)."""
        if not isinstance(other, GramStats):
            raise TypeError(f"can only merge GramStats, got {type(other).__name__}")
        self._check_compatible(other.key_dim, other.value_dim, "merge")
        if other.count == 0:
            return self
        if self.input_dtype is not None and other.input_dtype not in (None, self.input_dtype):
            raise TypeError(f"cannot merge statistics of {other.input_dtype} keys into {self.input_dtype}")
        self._gram = self.gram + other.gram.to(self.device)
        self._cross = self.cross + other.cross.to(self.device)
        if self._pairs is None or other._pairs is None or self.count + other.count > self.dual_max_pairs:
            self._pairs = None
        elif other._pairs.count:
            self._pairs.append(*(t.to(self.device) for t in other._pairs.tensors()))
        self.count += other.count
        self.weight_sum += other.weight_sum
        self.value_sq_sum += other.value_sq_sum
        self.input_dtype = self.input_dtype or other.input_dtype
        self._touch()
        return self

    @outside_inference_mode
    def all_reduce(self, group: Any = None) -> GramStats:
        """Sum the statistics over every process of a ``torch.distributed`` group, in place.

        Every process must call it, with or without data. The processes first agree on what
        decides the collectives (one small all-gather: :func:`_agreed_settings`), so statistics
        of other dimensions or ``dual_max_pairs``, or of keys of another dtype, are a
        :class:`StatsMismatchError` on every process at once instead of a hang or a wrong sum.
        A process with no pairs takes no part in the dtype agreement and adopts the agreed dtype.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("all_reduce needs an initialised torch.distributed process group")
        table = self._settings_of_every_process(group)
        agreed_dtype = _agreed_settings(table, dist.get_rank(group))
        scalars = torch.tensor(
            [float(self.count), self.weight_sum, self.value_sq_sum], dtype=torch.float64, device=self.device
        )
        gram = self.gram
        rows = self._gathered_rows(group, table)
        for t in (gram, self.cross, scalars):
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        self._pairs = None
        if rows is not None:
            self._pairs = PairBuffer()
            if rows[0].shape[0]:
                self._pairs.append(*rows)
        self.count = round(float(scalars[0]))
        self.weight_sum = float(scalars[1])
        self.value_sq_sum = float(scalars[2])
        if agreed_dtype is not None:
            self.input_dtype = agreed_dtype
        self._touch()
        return self

    def _settings_of_every_process(self, group: Any) -> torch.Tensor:
        """Every process's row of ``_SETTINGS`` (key_dim, value_dim, dual_max_pairs, key dtype
        code, pair count, whether every pair's row is kept), (world, 6) float64 on the CPU, in
        rank order: one all-gather of a fixed size, so it runs whatever the statistics."""
        import torch.distributed as dist

        kept = self._pairs is not None and self._pairs.count == self.count
        values = (self.key_dim, self.value_dim, self.dual_max_pairs, _dtype_code(self.input_dtype))
        mine = torch.tensor([*values, self.count, kept], dtype=torch.float64, device=self.device)
        every = [torch.zeros_like(mine) for _ in range(dist.get_world_size(group))]
        dist.all_gather(every, mine, group=group)
        return torch.stack(every).cpu()

    def _gathered_rows(self, group: Any, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every process's kept rows, in rank order (keys (n, d), values (n, m) float64), when every
        process keeps all of its rows and their total stays within ``dual_max_pairs``; else None.
        ``table``: :meth:`_settings_of_every_process` (the counts and kept flags, and the same
        ``dual_max_pairs`` everywhere, so every process takes the same branch). With rows, a
        summed statistic solves exactly as one process (the dual route and the exact
        leave-one-out of ``Cut.auto`` read them); shards in rank order are the data in order."""
        import torch.distributed as dist

        counts = [round(float(c)) for c in table[:, _SETTINGS.index("count")]]
        if not bool(table[:, _SETTINGS.index("kept")].all()) or sum(counts) > self.dual_max_pairs:
            return None
        width = max(counts)
        if width == 0:
            empty = torch.zeros(0, self.key_dim, dtype=torch.float64, device=self.device)
            return empty, torch.zeros(0, self.value_dim, dtype=torch.float64, device=self.device)
        block = torch.zeros(width, self.key_dim + self.value_dim, dtype=torch.float64, device=self.device)
        if self.count:
            keys, values = self._pairs.tensors()  # type: ignore[union-attr]
            block[: self.count] = torch.cat([keys, values], dim=1).to(block)
        blocks = [torch.zeros_like(block) for _ in counts]
        dist.all_gather(blocks, block, group=group)
        rows = torch.cat([b[:n] for b, n in zip(blocks, counts, strict=True)])
        return rows[:, : self.key_dim].contiguous(), rows[:, self.key_dim :].contiguous()

    def _check_compatible(self, key_dim: int, value_dim: int, what: str) -> None:
        if (key_dim, value_dim) != (self.key_dim, self.value_dim):
            raise ValueError(
                f"cannot {what}: statistics of keys {key_dim} → values {value_dim} do not match "
                f"keys {self.key_dim} → values {self.value_dim}"
            )

    # ----------------------------------------------------------------- solving
    def _solve_route(self) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
        """What every solve starts from: the kept rows (keys (n, d), values (n, m)) when it takes
        the dual route (every row kept and n < d), else None (G and B); and the shift of
        ``center_on_last_key`` (:func:`~faast.solver.spectral.center_on_last`, from the last column
        of G, or of KᵀK on the dual route), else None."""
        rows = None
        if self._pairs is not None and self._pairs.count and self.count < self.key_dim:
            rows = self._pairs.tensors()
        if not (self.center_on_last_key and self.key_dim > 1):
            return rows, None
        last_column = rows[0].T @ rows[0][:, -1] if rows is not None else self.gram[:, -1]
        return rows, center_on_last(last_column)

    def _factor_is_current(self) -> bool:
        return self._factor_cache is not None and self._factor_cache[0] == self._version

    @outside_inference_mode
    def factor(self) -> SpectralFactor:
        """Eigendecomposition of G (cached until the statistics change)."""
        if self.count == 0:
            raise ValueError("cannot solve: the statistics are empty (no examples were added)")
        if not self._factor_is_current():
            rows, shift = self._solve_route()
            if rows is not None:
                factor = SpectralFactor.from_pairs(*rows, self.weight_sum, self.value_sq_sum, shift)
            else:
                factor = SpectralFactor.from_stats(
                    self.gram, self.cross, self.weight_sum, self.value_sq_sum, shift
                )
                if self._pairs is not None and self._pairs.count and factor.lambda_max > 0:
                    factor = factor.with_rows(*self._pairs.tensors())  # n ≥ d, rows still kept
            if factor.lambda_max <= 0:
                raise ValueError("cannot solve: every key added so far is zero (or has zero weight)")
            # GCV's n (SpectralFactor.gcv_count), and the caller's word on the values
            factor = dataclasses.replace(
                factor, pairs=float(self.count), values_unshared=self.values_unshared
            )
            self._factor_cache = (self._version, factor)
        return self._factor_cache[1]

    def _direct_solve(self, cut: Cut) -> tuple[torch.Tensor, SolveInfo] | None:
        """Weights W (m, d) float64 and their info for a ridge fixed before the spectrum is known
        (``Cut.fixed_penalty``) by one Cholesky factorisation (:mod:`faast.solver.direct`), when
        no eigendecomposition of the current statistics is cached (that is cheaper to use); None
        otherwise, or where the direct route declines (then the factor solves)."""
        penalty = cut.fixed_penalty(self.weight_sum, self.key_dim)
        if penalty is None or self._factor_is_current() or self.count == 0:
            return None
        rows, shift = self._solve_route()
        if rows is not None:
            solved, size = direct.ridge_from_rows(*rows, penalty, shift), self.count
        else:
            solved, size = direct.ridge_from_stats(self.gram, self.cross, penalty, shift), self.key_dim
        if solved is None:
            return None
        weights, rho = solved
        return weights, SolveInfo("ridge", None, rho, size, round(self.weight_sum), None)

    @outside_inference_mode
    def solve_with_info(
        self,
        cut: Cut | float | str | None = None,
        *,
        alpha: float | None = None,
        c: float | None = None,
        ridge: float | str | None = None,
        tau: float | str | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[torch.Tensor, SolveInfo]:
        """Like :meth:`solve`, also returning a :class:`SolveInfo`."""
        cut = make_cut(cut, tau=tau, alpha=alpha, c=c, ridge=ridge)
        dtype = _float_dtype(dtype or self.input_dtype or torch.float32, "dtype")
        device = check_device(device, "device") if device is not None else self.device
        key = (cut, dtype, device)
        cached = self._solve_cache.get(key)
        if cached is None:  # the cut is chosen once (float64, here); other dtypes/devices convert it
            exact_key = (cut, torch.float64, self.device)
            exact = self._solve_cache.get(exact_key)
            if exact is None:
                # a small factor's products (eigh, leave-one-out, weights) on one BLAS thread, as
                # its eigendecomposition (faast.solver.blas_threads: waiting threads cost more)
                small = self.device.type == "cpu" and min(self.count, self.key_dim) <= _SMALL_EIGH
                with single_threaded_blas() if small else contextlib.nullcontext():
                    shortcut = self._direct_solve(cut)
                    weights, info = shortcut if shortcut is not None else cut.solve(self.factor())
                exact = self._solve_cache[exact_key] = (weights.to(self.device, torch.float64), info)
            cached = self._solve_cache[key] = (_narrowed(exact[0], dtype, device), exact[1])
        return cached

    def solve(
        self,
        cut: Cut | float | str | None = None,
        *,
        alpha: float | None = None,
        c: float | None = None,
        ridge: float | str | None = None,
        tau: float | str | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Fast-weight matrix W (m, d) such that ``values ≈ keys @ W.T``.

        cut:    a :class:`~faast.solver.Cut`, a relative τ (drop σ < τ·σ_max), ``"gcv"``, a text form
                of :meth:`Cut.parse`, or ``None`` for the power law τ = c·n^(−α) (n = Σ wᵢ).
        alpha, c, ridge, tau: the same choice as separate parameters (``Cut.from_params``):
                ``ridge`` (a number or ``"gcv"``) solves (G + ρI)⁻¹ instead of truncating.
        dtype, device: of the result (default: the dtype of the keys added and the statistics'
                device). Results are cached per (cut, dtype, device) until the statistics change:
                the tensor returned is the cached one (read it; ``.clone()`` it to change it). A
                weight beyond ``dtype``'s range (float16 tops at 65504) is a ``ValueError``.
        """
        return self.solve_with_info(cut, alpha=alpha, c=c, ridge=ridge, tau=tau, dtype=dtype, device=device)[
            0
        ]

    # ----------------------------------------------------------------- persistence
    @outside_inference_mode
    def state_dict(self) -> dict[str, torch.Tensor]:
        """G, B and the scalar sums (``count``, ``weight_sum``, ``value_sq_sum``), copies."""
        return {
            "gram": self.gram.clone(),
            "cross": self.cross.clone(),
            **self._scalar_state(),
        }

    @outside_inference_mode
    def saved_state(self) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
        """What a save writes: (the state, the kept rows or None). While every pair's row is kept
        and they are fewer than the keys' width (the dual route: the solve reads the rows, never
        G), the state holds the scalar sums only and the rows stand for G and B: n·(d + m) numbers
        instead of d·(d + m), and G (d × d) is not formed to save it — features far wider than
        the examples are many (20 × 50,000: 8 MB instead of 20 GB). Otherwise :meth:`state_dict`
        and the rows while every pair's row is kept (for exact leave-one-out and ``subtract``)."""
        rows = self.kept_rows() if self.kept_row_count == self.count else None
        if rows is not None and self.count < self.key_dim:
            return self._scalar_state(), rows
        return self.state_dict(), rows

    def _scalar_state(self) -> dict[str, torch.Tensor]:
        return {
            "count": torch.tensor(self.count, dtype=torch.int64),
            "weight_sum": torch.tensor(self.weight_sum, dtype=torch.float64),
            "value_sq_sum": torch.tensor(self.value_sq_sum, dtype=torch.float64),
        }

    @outside_inference_mode
    def cross_row(self, index: int) -> torch.Tensor:
        """Row ``index`` of B (m,) float64, from the kept rows while G and B are not formed (so
        reading it forms neither)."""
        if self._deferred and self._pairs is not None and self._pairs.count:
            keys, values = self._pairs.tensors()
            return keys[:, index] @ values
        return self.cross[index]

    @property
    def kept_row_count(self) -> int:
        """How many float64 pairs are kept for the dual route and exact leave-one-out (every pair
        added while they are kept; 0 once they are dropped): the rows a solve's factor carries
        (``SpectralFactor.has_rows``), known without factoring."""
        return 0 if self._pairs is None else self._pairs.count

    @outside_inference_mode
    def kept_rows(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The float64 pairs kept for the dual route (keys (n, d), values (n, m), rows scaled by
        √wᵢ), or None when they are not kept."""
        if self._pairs is None or self._pairs.count == 0:
            return None
        return self._pairs.tensors()

    @outside_inference_mode
    def load_state_dict(
        self,
        state: dict[str, torch.Tensor],
        input_dtype: torch.dtype | None = None,
        rows: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Replace the statistics by ``state`` (as produced by :meth:`state_dict` or
        :meth:`saved_state`); ``rows``: the pairs of :meth:`kept_rows`, to keep the dual route and
        exact leave-one-out. A state without G and B (:meth:`saved_state`) needs every pair's row,
        fewer than the keys' width: G and B are then formed from them only when needed."""
        required = _STATE_KEYS if rows is None or "gram" in state or "cross" in state else _SCALAR_KEYS
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"state is missing {missing}; is it a GramStats state?")
        if required is _SCALAR_KEYS:
            self._load_rows_only(state, input_dtype, rows)  # type: ignore[arg-type]
            return
        gram, cross = state["gram"], state["cross"]
        if (
            gram.ndim != 2
            or cross.ndim != 2
            or gram.shape[0] != gram.shape[1]
            or cross.shape[0] != gram.shape[0]
        ):
            raise ValueError(f"malformed state: gram {tuple(gram.shape)}, cross {tuple(cross.shape)}")
        self._check_compatible(gram.shape[0], cross.shape[1], "load")
        if gram.dtype != torch.float64 or cross.dtype != torch.float64:
            raise TypeError(f"state must hold float64 statistics, got {gram.dtype} and {cross.dtype}")
        count, weight_sum, value_sq_sum = _checked_scalars(state)
        for name in ("gram", "cross"):
            if not bool(torch.isfinite(state[name]).all()):
                raise ValueError(f"malformed state: {name} holds NaN or Inf")
        _check_gram(gram, weight_sum, count)
        kept = None if rows is None or not count else self._checked_rows(rows, count)
        self._gram = gram.to(self.device, torch.float64).clone()
        self._cross = cross.to(self.device, torch.float64).clone()
        self._lower_only = False
        self._deferred = False
        self._pairs = PairBuffer() if count == 0 else None
        if kept is not None:
            self._pairs = PairBuffer().append(*kept)
        self.count = count
        self.weight_sum = weight_sum
        self.value_sq_sum = value_sq_sum
        self.input_dtype = input_dtype
        self._touch()

    def _load_rows_only(
        self,
        state: dict[str, torch.Tensor],
        input_dtype: torch.dtype | None,
        rows: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        """:meth:`load_state_dict` of a :meth:`saved_state` without G and B: the scalar sums and
        every pair's row (fewer than the keys' width). ``value_sq_sum`` is taken from the rows, exact
        for what they hold: the saved sum carries the rounding of every pair added and removed
        since, which cancels without bound when most of the weight is removed (a pair of weight
        10¹⁷ forgotten beside one of weight 1 leaves 0), so it is not compared."""
        count, weight_sum, _ = _checked_scalars(state)
        if not 0 < count < self.key_dim:
            raise ValueError(
                f"malformed state: no Gram matrix, and {count} pairs of {self.key_dim}-wide keys cannot "
                "stand for it (the kept rows replace G only for 1 to key_dim − 1 pairs)"
            )
        keys, values = self._checked_rows(rows, count)
        self._gram = self._cross = None  # formed from the rows when first needed (_materialise)
        self._lower_only = False
        self._deferred = True
        self._pairs = PairBuffer().append(keys, values)
        self.count = count
        self.weight_sum = weight_sum
        self.value_sq_sum = float((values * values).sum())
        self.input_dtype = input_dtype
        self._touch()

    def _checked_rows(
        self, rows: tuple[torch.Tensor, torch.Tensor], count: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept rows (keys (count, d), values (count, m)) as float64 copies on this device (not
        the caller's tensors), refused unless real floating, finite and of those shapes."""
        keys, values = rows
        if keys.shape != (count, self.key_dim) or values.shape != (count, self.value_dim):
            raise ValueError(
                f"malformed state: kept rows {tuple(keys.shape)} and {tuple(values.shape)} for "
                f"{count} pairs of keys {self.key_dim} → values {self.value_dim}"
            )
        for name, t in (("keys", keys), ("values", values)):
            if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                raise ValueError(f"malformed state: the kept rows' {name} must be finite real numbers")
        return keys.to(self.device, torch.float64, copy=True), values.to(
            self.device, torch.float64, copy=True
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the statistics to a safetensors file (kind ``stats``), atomically, with the kept
        rows (:meth:`kept_rows`) while every pair's row is kept, so that a loaded copy solves
        ``auto`` by the same exact leave-one-out and refuses to subtract a pair never added."""
        tensors, rows = self.saved_state()
        if rows is not None:
            tensors.update(zip(_ROW_KEYS, rows, strict=True))
        meta = {
            "key_dim": str(self.key_dim),
            "value_dim": str(self.value_dim),
            "dual_max_pairs": str(self.dual_max_pairs),
            "input_dtype": "" if self.input_dtype is None else str(self.input_dtype).removeprefix("torch."),
        }
        save_tensors(path, tensors, meta, kind="stats")

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: torch.device | str | None = None) -> GramStats:
        """Read statistics written by :meth:`save`, with their ``dual_max_pairs`` (files written
        before it was saved take the default, ``key_dim``; files written before their rows were
        saved load without them: the dual route and exact leave-one-out then wait for new pairs).
        Every damaged field is a ``ValueError`` naming the file."""
        tensors, meta = load_tensors(path, kind="stats")
        try:
            key_dim, value_dim = int(meta["key_dim"]), int(meta["value_dim"])
            # files written before it was saved: the default, key_dim
            dual_max_pairs = int(meta.get("dual_max_pairs", key_dim))
            if dual_max_pairs < 0:
                raise ValueError
        except (KeyError, ValueError):
            raise ValueError(
                f"{path}: malformed statistics metadata (key_dim/value_dim/dual_max_pairs)"
            ) from None
        try:
            stats = cls(key_dim, value_dim, device=device or "cpu", dual_max_pairs=dual_max_pairs)
        except ValueError as exc:
            raise ValueError(f"{path}: malformed statistics metadata: {exc}") from None
        dtype_name = meta.get("input_dtype") or ""
        dtype = getattr(torch, dtype_name, None) if dtype_name else None
        if dtype_name and not isinstance(dtype, torch.dtype):
            raise ValueError(f"{path}: unknown input dtype {dtype_name!r}")
        present = [name for name in _ROW_KEYS if name in tensors]
        if present and len(present) != len(_ROW_KEYS):
            raise ValueError(f"{path}: kept rows need both {list(_ROW_KEYS)}, found only {present}")
        rows = (tensors["rows_keys"], tensors["rows_values"]) if present else None
        try:
            if dtype is not None:
                _float_dtype(dtype, "input_dtype")
            stats.load_state_dict(tensors, input_dtype=dtype, rows=rows)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        return stats

    @outside_inference_mode
    def restore(self, other: GramStats) -> None:
        """Replace these statistics by a copy of ``other`` (of the same dimensions), its kept rows
        included when it keeps every pair's (a rollback that loses them would let ``subtract``
        accept pairs never added)."""
        self._check_compatible(other.key_dim, other.value_dim, "restore")
        state, rows = other.saved_state()
        self.load_state_dict(state, input_dtype=other.input_dtype, rows=rows)

    @outside_inference_mode
    def load_file(self, path: str | os.PathLike[str]) -> None:
        """Load statistics from ``path`` into this object, checking the dimensions match. The kept
        rows the file holds come too (as with :meth:`load`) while their count is within this
        object's ``dual_max_pairs``, so ``subtract`` refuses pairs never added and the ``auto``
        cuts score exact leave-one-out as before the save; beyond, the sums alone, as ``add``
        would have left them here."""
        other = GramStats.load(path, device=self.device)
        self._check_compatible(other.key_dim, other.value_dim, f"load {path}")
        if other.count <= self.dual_max_pairs:
            self.restore(other)
        else:
            self.load_state_dict(other.state_dict(), input_dtype=other.input_dtype)


class StatsMismatchError(ValueError):
    """Processes hold statistics that cannot be summed by :meth:`GramStats.all_reduce`: other
    dimensions, another ``dual_max_pairs``, or keys of another dtype (raised on every process)."""


#: What :meth:`GramStats.all_reduce` gathers from every process before summing, in this order.
_SETTINGS = ("key_dim", "value_dim", "dual_max_pairs", "dtype", "count", "kept")


def _dtype_code(dtype: torch.dtype | None) -> int:
    """A number naming ``dtype`` the same way in every process (0 for None): the CRC-32 of its
    name, exact in float64."""
    return 0 if dtype is None else zlib.crc32(str(dtype).encode())


def _dtype_of_code(code: int) -> torch.dtype:
    """The torch dtype that :func:`_dtype_code` names ``code``."""
    for value in vars(torch).values():
        if isinstance(value, torch.dtype) and _dtype_code(value) == code:
            return value
    raise ValueError(f"no torch dtype has the code {code}")


def _agreed_settings(table: torch.Tensor, rank: int) -> torch.dtype | None:
    """Check that every process's row of ``table`` (world, 6) (:data:`_SETTINGS`) allows one sum:
    the same (key_dim, value_dim) and ``dual_max_pairs`` (which decides whether the kept rows are
    gathered, a collective of its own), and one key dtype among the processes that hold pairs.
    Returns that dtype (None when no process with pairs has one); a
    :class:`StatsMismatchError` naming each process's setting otherwise (``rank``: this one's)."""
    world = table.shape[0]
    column = {name: [round(float(x)) for x in table[:, i]] for i, name in enumerate(_SETTINGS)}
    where = f"rank {rank}/{world}: cannot all-reduce the statistics:"
    shapes = list(zip(column["key_dim"], column["value_dim"], strict=True))
    if len(set(shapes)) > 1:
        raise StatsMismatchError(
            f"{where} the processes hold statistics of different shapes (key_dim, value_dim) "
            f"{_per_rank(shapes)}; build them with the same dimensions on every process"
        )
    if len(set(column["dual_max_pairs"])) > 1:
        raise StatsMismatchError(
            f"{where} the processes keep rows up to different dual_max_pairs "
            f"{_per_rank(column['dual_max_pairs'])}; build them with the same dual_max_pairs"
        )
    return _agreed_dtype(column["dtype"], column["count"], where)


def _agreed_dtype(codes: list[int], counts: list[int], where: str) -> torch.dtype | None:
    """The one key dtype (``codes`` of :func:`_dtype_code`, one per process) of the processes
    that hold pairs (``counts``), None when none of them has one; a :class:`StatsMismatchError`
    (message prefixed by ``where``) when they hold several."""
    held = {c for c, n in zip(codes, counts, strict=True) if c and n}
    if len(held) > 1:
        pairs = zip(codes, counts, strict=True)
        names = [str(_dtype_of_code(c)) if c and n else "no pairs" for c, n in pairs]
        raise StatsMismatchError(
            f"{where} the processes learned keys of different dtypes {_per_rank(names)}; cast "
            "every process's keys to one dtype"
        )
    return _dtype_of_code(held.pop()) if held else None


def _per_rank(values: list[Any]) -> str:
    """``values`` (one per process) as "rank 0: a, rank 1: b"."""
    return "(" + ", ".join(f"rank {r}: {v}" for r, v in enumerate(values)) + ")"


def _largest(t: torch.Tensor) -> float:
    lo, hi = torch.aminmax(t.detach())  # keys may require grad (a model's outputs): no warning
    return max(abs(float(lo)), abs(float(hi)))


#: Keys whose largest entry is non-zero but below this are refused: their products, the Gram's
#: terms, fall within a factor 1/ε of float64's smallest normal number (√(2.2e-308 / 2.2e-16)),
#: where they lose precision and then vanish — a silent all-zero Gram otherwise.
UNDERFLOW_KEY_LIMIT = math.sqrt(torch.finfo(torch.float64).tiny / torch.finfo(torch.float64).eps)


def _check_magnitude(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor | None, total: int) -> None:
    """Refuse a batch whose products would overflow the float64 sums (|k|²·w·n past ~1.8e308),
    before anything is accumulated: the statistics would hold Inf and every solve would fail;
    and keys (n, d) so small (largest entry non-zero, below ``UNDERFLOW_KEY_LIMIT``) that their
    products underflow. All-zero keys stay allowed (they add nothing)."""
    limit = math.sqrt(torch.finfo(torch.float64).max / max(total, 1)) / 4
    scale = math.sqrt(max(_largest(w), 1.0)) if w is not None else 1.0
    for name, t in (("keys", k), ("values", v)):
        big = _largest(t)
        if big * scale > limit:
            raise ValueError(
                f"{name}: entries up to {big:.3g} would overflow the float64 statistics of {total} "
                f"pairs (the limit is about {limit / scale:.1e}); rescale the inputs"
            )
        if name == "keys" and 0 < big < UNDERFLOW_KEY_LIMIT:
            raise ValueError(
                f"keys: the largest entry is {big:.3g}, so their products underflow the float64 "
                f"statistics (keys need an entry above about {UNDERFLOW_KEY_LIMIT:.0e}); rescale "
                "the inputs"
            )


#: Float64's smallest normal number: products below it are subnormal, with fewer digits the smaller
#: they are, down to none (0).
_NORMAL_FLOOR = torch.finfo(torch.float64).tiny


def _check_weighted_underflow(k: torch.Tensor, w: torch.Tensor | None) -> None:
    """Refuse a batch whose weights alone would lose a key column to underflow: keys (n, d),
    weights (n,) float64 or None. Column j's terms in G are wᵢ·kᵢⱼ²; where they would be in
    float64's normal range with the weights divided by their largest (so with weights of at most
    1, which the ``auto`` and ``gcv`` cuts do not tell apart from these) but fall below it with the
    weights as given, the column is lost (keys of 1e-100 with weights of 1e-300 give terms of
    1e-500: an all-zero coefficient, silently, beside a constant column whose terms stay in range).
    Refused when such a column's terms vanish entirely, or when another column's stay in range;
    terms that are all subnormal but not all zero are left to the solve, which names them when it
    cannot represent the result (non-finite weights). Rows of weight 0 add nothing and are not
    looked at. Unweighted keys, and weights whose largest is 1 or more, cannot lose a column this
    way (:func:`_check_magnitude` covers keys too small on their own).

    Cost, when the largest weight is below 1: one O(n·d) pass for each column's largest signed
    entry, whose term times the smallest weight bounds the column's largest term from below (any
    entry does) and settles every column of ordinary data; the exact terms, in float64, only for
    the columns it does not settle."""
    if w is None or k.numel() == 0:
        return
    top = float(w.max())
    if not 0.0 < top < 1.0:
        return
    keys = k.detach()
    positive = w > 0
    if not bool(positive.all()):
        keys, w = keys[positive], w[positive]
    high = keys.amax(dim=0).to(torch.float64)  # (d,) an entry of each column
    settled = float(w.min()) * high * high >= _NORMAL_FLOOR  # one term in range: so is the column
    doubtful = torch.nonzero(~settled).flatten()
    if doubtful.numel() == 0:
        return
    # (c,) √ of each doubtful column's largest term with the weights divided by their largest (≤ 1)
    root = (keys[:, doubtful].to(torch.float64).abs() * (w / top).sqrt()[:, None]).amax(dim=0)
    unit_terms = root * root
    terms = unit_terms * top  # the largest term as given, underflowing as G's terms would
    lost = (unit_terms >= _NORMAL_FLOOR) & (terms < _NORMAL_FLOOR)
    if not bool(lost.any()):
        return
    other_in_range = bool(settled.any()) or bool((terms >= _NORMAL_FLOOR).any())
    refused = torch.nonzero(lost & ((terms == 0) | other_in_range)).flatten()
    if refused.numel() == 0:
        return
    i = int(refused[0])
    power = math.log10(top) + 2.0 * math.log10(float(root[i]))
    raise ValueError(
        f"weights: the largest is {top:.3g}, so the products wᵢ·kᵢⱼ² of key column {int(doubtful[i])} "
        f"with them reach only about 1e{power:.0f}, below float64's smallest normal number "
        f"({_NORMAL_FLOOR:.1e}), though the keys' own squares are in range: the statistics would lose "
        f"that column to underflow"
        + (f" (so would {refused.numel() - 1} other columns)" if refused.numel() > 1 else "")
        + ". Divide the weights by their largest (a common factor on weights of at most 1 leaves the "
        "'auto' and 'gcv' cuts unchanged), or rescale the keys"
    )


def _checked_scalars(state: dict[str, torch.Tensor]) -> tuple[int, float, float]:
    """The count, weight sum and value square sum of a state, checked: each one real number; the
    count a whole number in [0, 2⁶³); the sums finite and ≥ 0. A ``ValueError`` naming the field."""
    for name in ("count", "weight_sum", "value_sq_sum"):
        t = state[name]
        if t.numel() != 1 or t.dtype == torch.bool:
            raise ValueError(
                f"malformed state: {name} must be one number, got {t.dtype} of shape {tuple(t.shape)}"
            )
        if t.is_complex() or (name != "count" and not t.is_floating_point()):
            raise ValueError(f"malformed state: {name} must be a real floating number, got {t.dtype}")
    count_value = state["count"].item()
    if isinstance(count_value, float) and not count_value.is_integer():
        raise ValueError(f"malformed state: the pair count {count_value} is not a whole number")
    if count_value < 0:
        raise ValueError(f"malformed state: negative count {count_value}")
    if count_value >= 2**63:
        raise ValueError(f"malformed state: the pair count {count_value:.3g} is beyond int64")
    sums = {}
    for name in ("weight_sum", "value_sq_sum"):  # sums of weights and of squares
        value = float(state[name].item())
        if not math.isfinite(value):
            raise ValueError(f"malformed state: {name} holds NaN or Inf")
        if value < 0:
            raise ValueError(f"malformed state: negative {name} {value}")
        sums[name] = value
    return int(count_value), sums["weight_sum"], sums["value_sq_sum"]


def _check_gram(gram: torch.Tensor, weight_sum: float, count: int) -> None:
    """Refuse a Gram matrix G = Σ wᵢ kᵢ kᵢᵀ (d, d) float64 that no sum of pairs gives: not
    symmetric (beyond rounding), a diagonal entry clearly negative, or non-zero while the weights
    sum to 0 (``count`` pairs)."""
    if not gram.numel():
        return
    largest = float(gram.abs().max())
    asymmetry = float((gram - gram.T).abs().max())
    if asymmetry > 1e-8 * max(largest, 1e-300):  # beyond rounding: damaged
        raise ValueError("malformed state: the Gram matrix G = Σ wᵢ zᵢ zᵢᵀ is not symmetric")
    diagonal = torch.diagonal(gram)
    lowest, highest = float(diagonal.min()), float(diagonal.max())
    if lowest < 0 and -lowest > _NEGATIVE_DIAGONAL_TOLERANCE * max(highest, 0.0):
        raise ValueError(
            f"malformed state: the Gram matrix G = Σ wᵢ zᵢ zᵢᵀ has a negative diagonal entry ({lowest:.3g}; "
            "a sum of squares is ≥ 0)"
        )
    if weight_sum == 0 and count and highest > 0:
        raise ValueError(
            f"malformed state: weight_sum is 0 for {count} pairs but the Gram matrix is not zero "
            "(pairs of weight 0 add nothing to it)"
        )
