"""Random-feature keys: more room in the output memory than its d × d matrix.

A least-squares memory keyed on the d-dimensional final state holds at most d independent pairs: a
passage longer than d tokens (SmolLM2: 576, Gemma-3-270M: 640) can no longer be recalled verbatim
(``docs/lm.md``, capacity curve). :class:`RandomFeatureKeys` appends D fixed random ReLU features to
the (unit-normalised) key,

    φ(z) = [ẑ ; relu(R·ẑ)],   ẑ = z / ‖z‖,   R (D, d) with entries N(0, 1/d),

so the memory solves for a (m, d + D) map and holds up to d + D pairs, at (d + D)² float64
statistics and D·d more multiply-adds per token read (small next to the LM head's V·d). The random
map is the classifier's random-feature expansion (RanPAC) applied to the LM's key.

R is drawn from NumPy's legacy ``RandomState(seed)``, whose stream NumPy keeps fixed across
versions and platforms, so the same (d, D, seed) gives the same map on every machine and fast
weights learned on one load on another (the memory's signature records D and the seed).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from faast.solver.normal_tensors import normal_tensor, outside_inference_mode


class RandomFeatureKeys:
    """φ: (..., d) → (..., d + D), ``[ẑ ; relu(R·ẑ)]`` (see the module docstring).

    Parameters
    ----------
    dim : int
        d, the width of the keys it maps.
    features : int
        D ≥ 1, the random features appended.
    seed : int
        Seed of R (NumPy ``RandomState``).
    """

    def __init__(self, dim: int, features: int, seed: int = 0) -> None:
        if dim < 1 or features < 1:
            raise ValueError(f"RandomFeatureKeys needs dim >= 1 and features >= 1, got {dim}, {features}")
        self.dim, self.features, self.seed = int(dim), int(features), int(seed)
        rows = np.random.RandomState(self.seed).standard_normal((self.features, self.dim))
        #: R (D, d) float64, entries N(0, 1/d).
        self.matrix = torch.from_numpy(rows / math.sqrt(self.dim))
        self._cast: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    @property
    def out_dim(self) -> int:
        """d + D, the width of the mapped keys."""
        return self.dim + self.features

    def nbytes(self, dtype: torch.dtype) -> int:
        """Bytes of R held in ``dtype`` at inference."""
        return self.features * self.dim * dtype.itemsize

    @outside_inference_mode  # the cached copy stays a normal tensor (a training forward saves it)
    def _matrix(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        if key not in self._cast:
            self._cast[key] = normal_tensor(self.matrix.to(device=device, dtype=dtype))
        return self._cast[key]

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., d) → φ(z) (..., d + D), computed in float32 or wider (z's dtype if wider)."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"keys of width {self.dim} expected, got shape {tuple(z.shape)}")
        work = torch.promote_types(z.dtype, torch.float32)
        x = z.to(work)
        x = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)
        features = torch.relu(x @ self._matrix(work, z.device).T)
        return torch.cat([x, features], dim=-1)

    def signature(self) -> dict[str, int]:
        """What fast weights learned through this map must match."""
        return {"key_features": self.features, "key_seed": self.seed}

    def __repr__(self) -> str:
        return f"RandomFeatureKeys(dim={self.dim}, features={self.features}, seed={self.seed})"
