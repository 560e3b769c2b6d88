"""Feature preprocessing fitted on the support set only (a hyper-parameter chosen on validation).

Kinds: ``none``; ``l2`` (unit rows); ``center`` (subtract the support mean); ``center-l2``
(centre, then unit rows, as in SimpleShot's CL2N).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("none", "l2", "center", "center-l2")
#: F.normalize's default floor on a row norm.
_EPS = 1e-12


class Preprocess:
    """``fit(X)`` on support features (n, d); ``transform(X)`` → (q, d) in the same dtype."""

    def __init__(self, kind: str = "none") -> None:
        if kind not in KINDS:
            raise ValueError(f"preprocessing must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.mean_: torch.Tensor | None = None

    def fit(self, X: torch.Tensor) -> Preprocess:
        self.mean_ = X.mean(dim=0) if self.kind.startswith("center") else None
        return self

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        """Centre and/or L2-normalise rows; one new (q, d) tensor, normalised in place."""
        if self.mean_ is not None:
            X = X - self.mean_
            if self.kind.endswith("l2"):
                return X.div_(torch.linalg.vector_norm(X, dim=1, keepdim=True).clamp_min_(_EPS))
            return X
        if self.kind.endswith("l2"):
            X = F.normalize(X, dim=1, eps=_EPS)
        return X

    def fit_transform(self, X: torch.Tensor) -> torch.Tensor:
        return self.fit(X).transform(X)

    @property
    def nbytes(self) -> int:
        """Bytes kept at inference (the mean vector when centring)."""
        return 0 if self.mean_ is None else self.mean_.numel() * self.mean_.element_size()
