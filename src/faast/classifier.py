"""``FaastClassifier``: a scikit-learn classifier whose fit is one closed-form solve.

Keys are feature vectors (from any frozen encoder), values are label embeddings: one-hot by
default, or rows of a given class-embedding matrix E (C × m), e.g. CLIP text embeddings of the
class names. Because the values of class c are always E_c, the statistics are kept with one-hot
values (B = per-class key sums, d × C) and E is applied after the solve, which is exact:
W_E = Eᵀ W_onehot.

Prediction for keys k (q × d):

    ŷ = r·W k + (1 − r)·P(k),   r = n / (n0 + n)          (value space, m)
    scores_c = sim(ŷ, E_c)                                  (dot or cosine)

with P an optional zero-shot prior ("identity" when keys and class embeddings share a space,
as with CLIP, or any matrix / callable) and n0 its effective sample size (paper Eq. 14).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d, validate_data

from faast._checks import check_finite
from faast.solver import GramStats

Prior = Literal["identity"] | np.ndarray | torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None


class FaastClassifier(ClassifierMixin, BaseEstimator):
    """Forward-only classifier: least-squares fast weights from features to label embeddings.

    Parameters
    ----------
    alpha, c:
        The spectral cut τ = c·n^(−α) (drop singular values of the key matrix below τ·σ_max).
        α = 0.8 is the authors' vision setting.
    tau:
        Fixed relative cut instead of the power law, or ``"gcv"`` to choose the truncation rank
        by generalised cross-validation on the training statistics.
    ridge:
        Ridge regression with this penalty instead of truncation, or ``"gcv"``.
    class_embeddings:
        (C, m) label embeddings in the order of ``classes_``; ``None`` means one-hot (m = C).
    prior:
        Zero-shot prior mapping keys to value space: ``"identity"`` (needs m = d), a (m, d)
        matrix, or a callable on a (q, d) tensor. ``None`` disables it.
    n0:
        Effective sample size of the prior; the learned map gets weight r = n / (n0 + n).
    similarity:
        ``"dot"`` or ``"cosine"`` between predicted values and class embeddings.
    normalize_keys:
        L2-normalise features before use (as done for CLIP embeddings).
    logit_scale:
        ``predict_proba`` = softmax(logit_scale · scores).
    device:
        Where statistics live and predictions run; ``None`` follows the first batch.

    Inputs may be numpy arrays or torch tensors (CPU or GPU). ``decision_function`` and
    ``predict_proba`` return the input's type (tensors stay on their device); ``predict``
    returns a numpy array of labels from ``classes_``.
    """

    def __init__(
        self,
        alpha: float = 0.8,
        c: float = 1.0,
        tau: float | str | None = None,
        ridge: float | str | None = None,
        class_embeddings: Any = None,
        prior: Prior = None,
        n0: float = 0.0,
        similarity: str = "dot",
        normalize_keys: bool = False,
        logit_scale: float = 10.0,
        device: str | None = None,
    ) -> None:
        self.alpha = alpha
        self.c = c
        self.tau = tau
        self.ridge = ridge
        self.class_embeddings = class_embeddings
        self.prior = prior
        self.n0 = n0
        self.similarity = similarity
        self.normalize_keys = normalize_keys
        self.logit_scale = logit_scale
        self.device = device

    # ----------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FaastClassifier:
        """Compile the fast weights from (X, y). X: (n, d) features; y: (n,) labels."""
        for attr in ("stats_", "classes_", "embeddings_"):
            self.__dict__.pop(attr, None)
        y_np = _labels_to_numpy(y)
        check_classification_targets(y_np)
        return self.partial_fit(X, y_np, classes=np.unique(y_np), sample_weight=sample_weight)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> FaastClassifier:
        """Add examples to the statistics; ``classes`` is required on the first call."""
        first = not hasattr(self, "classes_")
        self._check_params()
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.classes_ = np.unique(np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(
                f"classes {np.asarray(classes)} differ from those of earlier calls {self.classes_}"
            )
        y_np = _labels_to_numpy(y)
        keys = self._keys(X, reset=first, y=y_np)
        if keys.shape[0] != y_np.shape[0]:
            raise ValueError(f"X has {keys.shape[0]} rows but y has {y_np.shape[0]} labels")
        if y_np.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y_np.shape}")
        index = np.searchsorted(self.classes_, y_np)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unknown = self.classes_[index] != y_np
        if unknown.any():
            raise ValueError(f"y holds labels not in classes_: {np.unique(y_np[unknown])[:5]}")
        onehot = torch.zeros(keys.shape[0], len(self.classes_), dtype=keys.dtype, device=keys.device)
        onehot[
            torch.arange(keys.shape[0], device=keys.device), torch.as_tensor(index, device=keys.device)
        ] = 1
        weights = None
        if sample_weight is not None:
            weights = torch.as_tensor(
                _check_sample_weight(_to_numpy(sample_weight), np.empty((keys.shape[0], 0))),
                dtype=torch.float64,
                device=keys.device,
            )
        if first:
            self.stats_ = GramStats(keys.shape[1], len(self.classes_), device=keys.device)
            self.embeddings_ = self._class_embeddings(keys)
        self.stats_.add(keys, onehot, weights)
        return self

    def _check_params(self) -> None:
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {self.similarity!r}")
        if self.n0 < 0:
            raise ValueError(f"n0 must be >= 0, got {self.n0}")
        if self.tau is not None and self.ridge is not None:
            raise ValueError("set either tau or ridge, not both")

    def _keys(self, X: Any, *, reset: bool, y: Any = None) -> torch.Tensor:
        """Validate features and return them as a (n, d) floating tensor on the working device."""
        if isinstance(X, torch.Tensor):
            if X.ndim != 2:
                raise ValueError(
                    f"X: expected a 2-D tensor (n_samples, n_features), got shape {tuple(X.shape)}"
                )
            keys = X.detach()
            if not keys.is_floating_point():
                keys = keys.to(torch.float32)
            check_finite(keys, "X")
            if reset:
                self.n_features_in_ = keys.shape[1]
            elif keys.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {keys.shape[1]} features, but FaastClassifier is expecting "
                    f"{self.n_features_in_} features as input"
                )
        else:
            arr = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
            arr = np.ascontiguousarray(arr)
            keys = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if keys.shape[0] == 0:
            raise ValueError("X: empty support set (0 samples)")
        if self.device is not None:
            keys = keys.to(self.device)
        elif hasattr(self, "stats_"):
            keys = keys.to(self.stats_.device)
        if self.normalize_keys:
            keys = F.normalize(keys, dim=1)
        return keys

    def _class_embeddings(self, keys: torch.Tensor) -> torch.Tensor | None:
        if self.class_embeddings is None:
            return None
        emb = torch.as_tensor(_to_numpy(self.class_embeddings)).to(device=keys.device, dtype=keys.dtype)
        if emb.ndim != 2 or emb.shape[0] != len(self.classes_):
            raise ValueError(
                f"class_embeddings: expected shape ({len(self.classes_)}, m) for {len(self.classes_)} "
                f"classes, got {tuple(emb.shape)}"
            )
        check_finite(emb, "class_embeddings")
        return emb

    # ----------------------------------------------------------------- prediction
    def _scores(self, X: Any) -> torch.Tensor:
        check_is_fitted(self, "stats_")
        keys = self._keys(X, reset=False)
        w = self.stats_.solve(self.tau, alpha=self.alpha, c=self.c, ridge=self.ridge, dtype=keys.dtype)
        emb = self.embeddings_
        pred = keys @ w.T  # (q, C): learned one-hot scores
        if emb is not None:
            pred = pred @ emb  # (q, m): value-space prediction
        if self.prior is not None:
            n = self.stats_.weight_sum
            r = n / (self.n0 + n)
            pred = r * pred + (1.0 - r) * self._prior(keys, pred.shape[1])
        target = emb if emb is not None else None
        if self.similarity == "cosine":
            pred = F.normalize(pred, dim=1)
            target = None if target is None else F.normalize(target, dim=1)
        return pred if target is None else pred @ target.T

    def _prior(self, keys: torch.Tensor, value_dim: int) -> torch.Tensor:
        prior = self.prior
        if isinstance(prior, str):
            if prior != "identity":
                raise ValueError(f"prior must be 'identity', a matrix or a callable, got {prior!r}")
            if keys.shape[1] != value_dim:
                raise ValueError(
                    "prior='identity' needs keys and values of one dimension, "
                    f"got {keys.shape[1]} and {value_dim}"
                )
            return keys
        if callable(prior):
            out = torch.as_tensor(prior(keys), device=keys.device, dtype=keys.dtype)
        else:
            mat = torch.as_tensor(_to_numpy(prior)).to(device=keys.device, dtype=keys.dtype)
            if mat.shape != (value_dim, keys.shape[1]):
                raise ValueError(
                    f"prior matrix: expected shape {(value_dim, keys.shape[1])}, got {tuple(mat.shape)}"
                )
            out = keys @ mat.T
        if out.shape != (keys.shape[0], value_dim):
            raise ValueError(
                f"prior returned shape {tuple(out.shape)}, expected {(keys.shape[0], value_dim)}"
            )
        return out

    def decision_function(self, X: Any) -> Any:
        """Class scores (n, C); for two classes, score(class 1) − score(class 0) of shape (n,)."""
        scores = self._scores(X)
        if len(self.classes_) == 2:
            scores = scores[:, 1] - scores[:, 0]
        return _like_input(scores, X)

    def predict_proba(self, X: Any) -> Any:
        """softmax(logit_scale · scores), shape (n, C)."""
        proba = torch.softmax(self.logit_scale * self._scores(X), dim=1)
        return _like_input(proba, X)

    def predict(self, X: Any) -> np.ndarray:
        """Labels from ``classes_``, shape (n,)."""
        best = torch.argmax(self._scores(X), dim=1).cpu().numpy()
        return self.classes_[best]

    @property
    def coef_(self) -> np.ndarray:
        """The fast-weight matrix mapping features to one-hot class scores, (C, d)."""
        check_is_fitted(self, "stats_")
        w = self.stats_.solve(self.tau, alpha=self.alpha, c=self.c, ridge=self.ridge, dtype=torch.float64)
        return w.cpu().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _labels_to_numpy(y: Any) -> np.ndarray:
    if y is None:
        raise ValueError("FaastClassifier requires y to be passed, but the target y is None")
    y_np = _to_numpy(y)
    if y_np.ndim == 2 and y_np.shape[1] == 1:
        y_np = column_or_1d(y_np, warn=True)
    return y_np


def _like_input(t: torch.Tensor, X: Any) -> Any:
    return t if isinstance(X, torch.Tensor) else t.cpu().numpy()
