"""Confidence intervals for accuracies."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def mean_ci95(values: np.ndarray | list[float]) -> tuple[float, float]:
    """Mean of per-episode values and the half-width of its normal 95 % interval,
    1.96 · s / √E with s the sample standard deviation (0 for a single episode)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_ci95: no values")
    half = Z95 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0
    return float(v.mean()), float(half)


def binomial_ci95(accuracy: float, n: int) -> float:
    """Half-width of the normal-approximation 95 % interval of an accuracy measured on n items."""
    if n <= 0:
        raise ValueError("binomial_ci95: n must be positive")
    return float(Z95 * math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / n))


def wilson_ci95(right: int, n: int) -> tuple[float, float]:
    """Lower and upper end of the Wilson score 95 % interval of an accuracy of ``right`` out of n
    items (scipy's ``binomtest(...).proportion_ci(method="wilson")``): unlike the normal
    approximation it does not shrink to nothing at 0 % or 100 % on a few items."""
    from scipy.stats import binomtest

    if n <= 0:
        raise ValueError("wilson_ci95: n must be positive")
    if not 0 <= right <= n:
        raise ValueError(f"wilson_ci95: right must lie in [0, n], got {right} of {n}")
    ci = binomtest(int(right), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)
