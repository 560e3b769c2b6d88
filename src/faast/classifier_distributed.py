"""The checks of a distributed :class:`~faast.classifier.FaastClassifier` fit (``distributed=True``,
:mod:`faast.distributed`) that single-process fits never run: that every process was set up alike
(one all-gather at every ``fit`` and ``partial_fit`` call), that a shard which is empty or weighs
nothing is accepted while the union weighs something, and the refusal of a union that holds
nothing to learn — each raised on every process, so that none waits in a collective the others
skip."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.utils.validation import _get_feature_names

import faast.distributed

if TYPE_CHECKING:
    from faast.classifier import FaastClassifier

#: Parameters that may differ between the processes of a distributed fit: where each process
#: works (``cuda:<local rank>``), and ``distributed`` itself (a process without it takes no part).
_PER_PROCESS_PARAMS = ("device", "distributed")


def check_same_setup(clf: FaastClassifier, X: Any, classes: np.ndarray | None, what: str) -> None:
    """Refuse a distributed ``fit``/``partial_fit`` (``what``) whose processes were not set
    up alike: their statistics would be summed silently through other designs (a raw width that
    ``random_features`` hides, another ``random_state``, ``normalize_keys``, ``intercept_scaling``
    or ``class_weight``) and solved with other parameters (the cut, ``logit_scale``, …), each
    process ending with another classifier — or waiting in a collective the others skip. One
    all-gather of X's width and feature names, every parameter (:func:`_comparable`; not
    ``device``) and, for ``partial_fit``, the ``classes`` (C,) with their dtype's kind (0 and
    0.0 compare equal, but give ``classes_`` of other dtypes; ``None`` after the first call), and
    the call itself (``fit`` on one process and ``partial_fit`` on another). A ValueError on every
    process, naming each differing item and every process's value."""
    d = faast.distributed.current()
    params = {k: v for k, v in clf.get_params(deep=False).items() if k not in _PER_PROCESS_PARAMS}
    design = clf._design_params()  # random_state, intercept_scaling: as they act
    names = _get_feature_names(X)
    setup = {
        "n_features_in_": _input_width(X),
        "feature_names_in_": None if names is None else [str(n) for n in names],
        **{k: _comparable(design.get(k, v)) for k, v in params.items()},
    }
    setup["call"] = what  # fit on one process and partial_fit on another: named, on every process
    if what == "partial_fit":
        setup["classes"] = None if classes is None else [classes.dtype.kind, classes.tolist()]
    every = d.all_gather_json(setup)
    if _differ(every, "call"):
        told = "; ".join(f"rank {r}: {p.get('call')}" for r, p in enumerate(every))
        raise ValueError(
            f"{d}: the processes were not set up alike: they made different calls ({told}); every "
            "process must call the same method (fit, or partial_fit) of a distributed classifier"
        )
    if what == "partial_fit" and _differ(every, "classes"):  # as before: the classes alone
        told = "; ".join(f"rank {r}: {p.get('classes') and p['classes'][1]}" for r, p in enumerate(every))
        kinds = sorted({str(p.get("classes") and p["classes"][0]) for p in every})
        why = f" (dtype kinds {', '.join(kinds)})" if len(kinds) > 1 else ""
        raise ValueError(
            f"{d}: partial_fit(distributed=True) got different classes{why} on the processes ({told}); "
            "every process must pass the same classes (all the labels of the whole data) on the first call"
        )
    differ = [k for k in dict.fromkeys(k for p in every for k in p) if _differ(every, k)]
    if differ:
        told = ", ".join(
            f"{k} (" + "; ".join(f"rank {r}: {p.get(k)!r}" for r, p in enumerate(every)) + ")" for k in differ
        )
        raise ValueError(
            f"{d}: {what}(distributed=True): the processes were not set up alike: {told}; every "
            "process must pass features of one width and construct the classifier with the same "
            "parameters (their statistics are summed and solved as one)"
        )


def _differ(parts: list[dict[str, Any]], key: str) -> bool:
    """Whether the processes' ``parts`` hold other values at ``key`` (feature names: among those
    that have them; a process may pass a plain array, e.g. an empty shard, beside data frames)."""
    values = [p.get(key) for p in parts]
    if key == "feature_names_in_":
        values = [v for v in values if v is not None]
    return any(v != values[0] for v in values)


def _input_width(X: Any) -> int | None:
    """The number of columns of a 2-D input (array, tensor, data frame, nested lists), or None."""
    shape = getattr(X, "shape", None)
    if shape is None:
        try:
            shape = np.shape(X)
        except (ValueError, TypeError):  # ragged rows: validation refuses them
            return None
    return int(shape[1]) if len(shape) == 2 else None


def _comparable(value: Any) -> Any:
    """A JSON-able stand-in of a parameter value that compares as the value does across processes:
    numbers, strings and None as they are, dicts as sorted [key, value] pairs, arrays (and tensors)
    as their shape and a digest of their float64 values, callables by name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return sorted(([_comparable(k), _comparable(v)] for k, v in value.items()), key=repr)
    if callable(value) and not isinstance(value, torch.Tensor):
        return f"callable {getattr(value, '__qualname__', type(value).__qualname__)}"
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    try:
        data = np.ascontiguousarray(arr, dtype=np.float64).tobytes()
    except (TypeError, ValueError):
        data = repr(arr.tolist()).encode("utf-8")
    return f"array {arr.shape} sha256:{hashlib.sha256(data).hexdigest()[:16]}"


def refuse_nothing_learned(clf: FaastClassifier, d: Any, rows: int, first: bool) -> None:
    """Refuse a distributed call whose processes learned nothing together (their summed ``rows``
    passed; none weighs more than 0): on every process (the sums are the same everywhere). A
    refused first ``partial_fit`` leaves the classifier unfitted."""
    if first:
        for attr in ("classes_", "memory_", "embeddings_", "class_count_", "_design_params_"):
            clf.__dict__.pop(attr, None)
    if rows == 0:
        raise ValueError(f"{d}: no examples on any process (every shard is empty): there is nothing to learn")
    raise ValueError(
        f"{d}: every example of every process weighs 0 (sample_weight times class_weight): "
        "there is nothing to learn"
    )


def weighs_nothing(given: Any, rows: int) -> bool:
    """Whether a distributed shard's ``sample_weight`` (a number or an array) is empty or all 0."""
    arr = np.asarray(given)
    return arr.dtype.kind in "biuf" and arr.ndim <= 1 and (rows == 0 or not arr.any())


def shard_without_weight(given: Any, rows: int) -> np.ndarray:
    """The float64 weights (rows,) of a distributed shard that is empty or weighs 0 throughout
    (:func:`weighs_nothing`), with scikit-learn's shape check."""
    arr = np.asarray(given, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(rows, float(arr))
    if arr.shape != (rows,):
        raise ValueError(f"sample_weight.shape == {arr.shape}, expected {(rows,)}!")
    return arr
