"""Small labelled data sets shared by the classifier tests."""

from __future__ import annotations

import numpy as np


def offset_classes(
    n: int, d: int, classes: int, seed: int, offset: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, d) with a common offset (not centred) and a class signal; y (n,) cycles over
    the classes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.standard_normal((n, d)) + offset + 1.5 * np.eye(classes, d)[y]
    return X, y
