"""Input validation shared by the solver, the memories, the classifier and the LM task code.

Every public entry point turns its inputs into tensors through these helpers, so that bad input
fails early with a message naming the argument and the problem (rank, shape, dtype, NaN/Inf,
device) instead of producing a silently wrong answer.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np
import torch

from faast.warning_location import caller_stacklevel as caller_stacklevel  # re-exported


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a torch tensor without copying when it already is one.

    Accepts torch tensors, numpy arrays and nested sequences. Sparse inputs are rejected.
    """
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise TypeError(f"{name}: sparse tensors are not supported; pass a dense tensor")
        return x
    if hasattr(x, "toarray") or type(x).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name}: sparse matrices are not supported; pass a dense array")
    if isinstance(x, str | bytes):
        raise TypeError(
            f"{name}: expected a numeric array, got a {type(x).__name__} (strings are not numbers)"
        )
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists, objects numpy cannot read
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array: {exc}") from exc
    if arr.dtype.kind in "USa":
        raise TypeError(f"{name}: expected a numeric array, got strings (dtype {arr.dtype})")
    if arr.dtype == object:
        raise TypeError(f"{name}: expected a numeric array, got an array of Python objects")
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def check_device(device: torch.device | str, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device``, or a ``ValueError`` naming ``name`` when the string is not
    a device or names an accelerator this torch cannot use (a CPU-only build, no GPU present, an
    index beyond the GPUs present) — instead of torch's assertion deep inside the first copy."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{name}: {device!r} is not a device (expected e.g. 'cpu', 'cuda', 'cuda:1', 'mps')"
        ) from exc
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"{name}={str(device)!r}: no CUDA device is available to this torch "
                f"({torch.__version__}{'' if torch.version.cuda else ', a CPU-only build'}); use 'cpu'"
            )
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{name}={str(device)!r}: only {count} CUDA device(s) are present")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={str(device)!r}: MPS is not available here; use 'cpu'")
    return parsed


def check_float_matrix(x: Any, name: str, *, cols: int | None = None, finite: bool = True) -> torch.Tensor:
    """Validate a 2-D floating-point matrix of shape (rows, cols) with finite entries."""
    t = as_tensor(x, name)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n, dim), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point dtype, got {t.dtype}")
    if t.dtype.itemsize < 2:  # float8: no arithmetic beyond casts in torch
        raise TypeError(f"{name}: {t.dtype} holds too few digits to compute with; cast it to float32 first")
    if cols is not None and t.shape[1] != cols:
        raise ValueError(f"{name}: expected {cols} columns, got shape {tuple(t.shape)}")
    if finite:
        check_finite(t, name)
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise ``ValueError`` if ``t`` holds NaN or Inf (and say how many).

    A plain sum is NaN/Inf whenever an entry is, and costs a fraction of an element-wise test,
    so that runs first; only a non-finite sum (an offending entry, or an overflow of large
    finite ones) pays for the exact check.
    """
    if not t.numel() or bool(torch.isfinite(t.sum())):
        return
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name}: contains {bad} NaN or Inf value(s)")


def check_weights(weights: Any, rows: int, device: torch.device) -> torch.Tensor | None:
    """Validate per-example weights: shape (rows,), finite, non-negative, same device."""
    if weights is None:
        return None
    w = as_tensor(weights, "weights")
    if w.ndim != 1 or w.shape[0] != rows:
        raise ValueError(f"weights: expected shape ({rows},), got {tuple(w.shape)}")
    if not (w.is_floating_point() or w.dtype in (torch.int32, torch.int64, torch.bool)):
        raise TypeError(f"weights: expected a numeric dtype, got {w.dtype}")
    if w.device != device:
        raise ValueError(f"weights: on device {w.device} but keys are on {device}; move them first")
    w = w.to(torch.float64)
    check_finite(w, "weights")
    if bool((w < 0).any()):
        raise ValueError("weights: must be non-negative")
    return w


def check_pairs(keys: Any, values: Any, *, finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a batch of key/value pairs: (n, d) and (n, m), same dtype and device."""
    k = check_float_matrix(keys, "keys", finite=False)
    v = check_float_matrix(values, "values", finite=False)
    if k.shape[0] != v.shape[0]:
        raise ValueError(f"keys and values disagree on the number of pairs: {k.shape[0]} vs {v.shape[0]}")
    if k.device != v.device:
        raise ValueError(f"keys are on {k.device} but values are on {v.device}; put them on one device")
    if k.dtype != v.dtype:
        raise TypeError(f"keys are {k.dtype} but values are {v.dtype}; use one floating dtype for both")
    if finite:
        check_finite(k, "keys")
        check_finite(v, "values")
    return k, v


def finite_number(x: Any, name: str) -> float:
    """``x`` as a finite float; a clear error naming ``name`` otherwise (TypeError for a bool,
    ValueError for what is not a number, NaN or ±inf)."""
    if isinstance(x, bool):
        raise TypeError(f"{name} must be a number, got {x!r}")
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return value


def integer_at_least(value: Any, name: str, least: int, *, kinds: type | tuple[type, ...] = Integral) -> int:
    """``value`` if it is an integer (an instance of ``kinds``, never a bool) ≥ ``least``; else a
    ValueError "``name`` must be an integer >= ``least``" naming what it got."""
    if isinstance(value, bool) or not isinstance(value, kinds) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value
