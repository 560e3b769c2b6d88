"""Saving and loading a fitted :class:`~faast.classifier.FaastClassifier` without pickle.

A saved classifier is a directory holding

* ``classifier.json``: the parameters, the cut they resolved to, the classes, the per-class
  counts, the feature dimension and the key dtype, plus free ``metadata`` (e.g. the encoder that
  made the features); a file without the cut was written when all-None cut parameters meant
  ``tau="auto"``, and loads as such;
* ``classifier.safetensors`` (kind ``classifier``): the float64 statistics G (d, d), B (d, C),
  counts, the rows kept for the dual route while n < d, the class embeddings / prior
  matrix when given, B′ of ``refine`` and the weights and penalty of ``loss="logistic"``.

Because the statistics are kept (not only W), a loaded classifier can ``partial_fit`` more
examples or ``forget`` some, with the same result as if it had never been saved. Both files are
written atomically; a callable prior cannot be saved.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faast.classifier import ROWS_KEPT, FaastClassifier
from faast.io import file_in_the_way, load_json, load_tensors, save_json, save_tensors
from faast.memory import InverseMemory

FORMAT = "faast.classifier"
VERSION = 1
JSON_NAME, TENSORS_NAME = "classifier.json", "classifier.safetensors"
_PARAMS = (
    "alpha", "c", "tau", "ridge", "n0", "similarity", "normalize_keys", "logit_scale", "random_features",
    "random_state", "refine", "margin", "loss", "C", "max_iter", "fit_intercept", "intercept_scaling",
    "tol", "class_weight", "center_features",
)  # fmt: skip
#: Parameters added after the first layout, with the value that files written before them mean.
_LATER_PARAMS = {
    "refine": 0, "margin": 0.5, "loss": "squared", "C": "auto", "max_iter": 10, "fit_intercept": False,
    "intercept_scaling": 1.0, "tol": 0.0, "class_weight": None, "center_features": False,
}  # fmt: skip


def check_classifier_folder(path: str | os.PathLike[str]) -> Path:
    """``path`` as a folder a classifier can be saved in (it may not exist yet); a clear error
    when it, or a folder above it, is a file (``mkdir`` said only "File exists")."""
    out = Path(path)
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise ValueError(
            f"{out}: {blocker} is a file; a classifier is saved as a folder ({JSON_NAME} + {TENSORS_NAME})"
        )
    return out


def save_classifier(
    clf: FaastClassifier, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``clf`` (fitted) to the directory ``path``; ``metadata``: JSON-able extras."""
    check_classifier_folder(path)
    if not hasattr(clf, "memory_"):
        raise ValueError("cannot save a FaastClassifier that is not fitted")
    if callable(clf.prior) and not isinstance(clf.prior, str):
        raise ValueError("cannot save a classifier with a callable prior; give the prior as a matrix")
    stats = clf.memory_.stats
    tensors = stats.state_dict()
    rows = stats.kept_rows()
    if rows is not None:
        tensors["rows_keys"], tensors["rows_values"] = rows
    if getattr(clf, "retarget_cross_", None) is not None:
        tensors["retarget_cross"] = clf.retarget_cross_
    if clf.loss == "logistic":  # the fitted logits' weights and the penalty they were fitted with
        tensors["logistic_weight"] = clf._weight(torch.float64, torch.device("cpu"))
        tensors["logistic_C"] = torch.tensor([float(clf.C_), float(clf.n_iter_)], dtype=torch.float64)
    if clf.embeddings_ is not None:
        tensors["class_embeddings"] = clf.embeddings_
    if clf.prior is not None and not isinstance(clf.prior, str):
        tensors["prior"] = torch.as_tensor(
            np.asarray(clf.prior) if not isinstance(clf.prior, torch.Tensor) else clf.prior
        )
    classes = clf.classes_
    info = {
        "format": FORMAT,
        "format_version": VERSION,
        "params": {name: _param_to_json(name, getattr(clf, name)) for name in _PARAMS},
        "class_weight": [float(x) for x in clf.class_weight_],
        "cut": str(clf.cut_),  # what the cut parameters resolved to (their defaults can change)
        # the temperature predict_proba uses: beyond the kept rows it came from rows not saved
        "logit_scale_fitted": float(clf.logit_scale_),
        "logit_scale_rows": int(getattr(clf, "_calibration_rows", 0)),
        "prior": clf.prior if isinstance(clf.prior, str) else None,
        "classes": [c.item() if hasattr(c, "item") else c for c in classes],
        "classes_kind": "str" if classes.dtype.kind in "US" else classes.dtype.str,
        "class_count": [int(x) for x in clf.class_count_],
        "n_features_in": int(clf.n_features_in_),
        "input_dtype": str(stats.input_dtype or torch.float32).removeprefix("torch."),
        "metadata": metadata or {},
    }
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / TENSORS_NAME, tensors, {"classes": str(len(classes))}, kind="classifier")
    save_json(out / JSON_NAME, info)
    return out


def load_classifier(path: str | os.PathLike[str]) -> tuple[FaastClassifier, dict[str, Any]]:
    """The classifier saved at ``path`` and its ``metadata``."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no saved classifier at {folder} (expected a directory with {JSON_NAME})")
    info = load_json(folder / JSON_NAME)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"{folder / JSON_NAME} is not a saved FaastClassifier")
    if info.get("format_version") != VERSION:
        raise ValueError(
            f"{folder}: classifier layout version {info.get('format_version')!r}; this faast reads {VERSION}"
        )
    tensors, _ = load_tensors(folder / TENSORS_NAME, kind="classifier")
    try:
        params = {
            name: _param_from_json(name, info["params"].get(name, _LATER_PARAMS.get(name)))
            for name in _PARAMS
        }
        missing = [name for name in _PARAMS if name not in info["params"] and name not in _LATER_PARAMS]
        if missing:
            raise KeyError(f"params {missing}")
        if "cut" not in info and all(params[name] is None for name in ("tau", "ridge", "alpha")):
            params["tau"] = "auto"  # written before the default cut became ridge="auto"
        kind = info["classes_kind"]
        classes = np.asarray(info["classes"], dtype=None if kind == "str" else np.dtype(kind))
        counts = np.asarray(info["class_count"], dtype=np.int64)
        d = int(info["n_features_in"])
        dtype = getattr(torch, info["input_dtype"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{folder / JSON_NAME}: malformed classifier description ({exc})") from None
    if not isinstance(dtype, torch.dtype) or counts.shape != classes.shape:
        raise ValueError(f"{folder / JSON_NAME}: malformed classifier description")
    prior: Any = info.get("prior") or tensors.get("prior")
    clf = FaastClassifier(**params, class_embeddings=tensors.get("class_embeddings"), prior=prior)
    clf._validate_params()
    clf.classes_ = classes
    clf.n_features_in_ = d
    clf.class_count_ = counts
    clf.class_weight_ = np.asarray(info.get("class_weight", np.ones(len(classes))), dtype=np.float64)
    if clf.class_weight_.shape != classes.shape:
        raise ValueError(f"{folder / JSON_NAME}: malformed classifier description (class_weight)")
    clf.embeddings_ = None if "class_embeddings" not in tensors else tensors["class_embeddings"].to(dtype)
    key_dim = (d if clf.random_features is None else int(clf.random_features)) + int(clf.fit_intercept)
    memory = InverseMemory(
        clf._cut(), key_dim=key_dim, value_dim=len(classes), device="cpu", dual_max_pairs=ROWS_KEPT * key_dim
    )
    rows = (tensors["rows_keys"], tensors["rows_values"]) if "rows_keys" in tensors else None
    memory.stats.load_state_dict(tensors, input_dtype=dtype, rows=rows)  # type: ignore[union-attr]
    clf.memory_ = memory
    clf._design_params_ = clf._design_params()  # the saved parameters built the statistics
    clf._compile(clf._cut())
    if "logit_scale_fitted" in info:  # absent from files written before logit_scale="auto"
        fitted = info["logit_scale_fitted"]
        if isinstance(fitted, bool) or not isinstance(fitted, (int, float)) or not (0 < fitted < math.inf):
            raise ValueError(f"{folder / JSON_NAME}: malformed classifier description (logit_scale_fitted)")
        clf.logit_scale_ = float(fitted)
        rows = info.get("logit_scale_rows", 0)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ValueError(f"{folder / JSON_NAME}: malformed classifier description (logit_scale_rows)")
        clf._calibration_rows = rows
    if "retarget_cross" in tensors:  # the retargeted solve of fit(refine > 0), same filter
        cross = tensors["retarget_cross"].to(torch.float64)
        factor = memory.stats.factor()  # type: ignore[union-attr]
        clf._set_retarget(cross, factor.weights_for(clf._filter(factor), cross), 0)
    if clf.loss == "logistic":
        weight = tensors.get("logistic_weight")
        shape = (len(classes), key_dim)
        if weight is None or "logistic_C" not in tensors or tuple(weight.shape) != shape:
            raise ValueError(
                f"{folder / TENSORS_NAME}: loss='logistic' but no logistic weights of shape {shape}"
            )
        stored = tensors["logistic_C"]  # [C, steps of the final fit]
        clf._set_logistic(weight.to(torch.float64), float(stored[0]))
        clf.n_iter_ = int(stored[1]) if stored.numel() > 1 else clf.n_iter_
    return clf, dict(info.get("metadata") or {})


def _param_to_json(name: str, value: Any) -> Any:
    """A constructor parameter as JSON: a ``class_weight`` dict becomes {"pairs": [[label,
    weight], ...]} (JSON object keys are strings, labels need not be)."""
    if name == "class_weight" and isinstance(value, dict):
        return {"pairs": [[k.item() if hasattr(k, "item") else k, float(v)] for k, v in value.items()]}
    return value


def _param_from_json(name: str, value: Any) -> Any:
    """Inverse of :func:`_param_to_json`."""
    if name == "class_weight" and isinstance(value, dict):
        return {label: weight for label, weight in value["pairs"]}
    return value
