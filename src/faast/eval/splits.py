"""A stratified validation split carved from the training data (hyper-parameters are chosen on
it, never on the test split)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def validation_split(labels: np.ndarray, size: int | float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, validation indices), stratified by label. size: count or fraction."""
    idx = np.arange(len(labels))
    fit, val = train_test_split(idx, test_size=size, stratify=labels, random_state=seed)
    return np.sort(fit), np.sort(val)
