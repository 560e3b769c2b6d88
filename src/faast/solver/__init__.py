"""Closed-form fast weights: streaming float64 statistics, spectral solve, SVD reference."""

from faast.solver.naive import ridge_reference, svd_reference
from faast.solver.spectral import SpectralFactor
from faast.solver.stats import GramStats, SolveInfo, power_law_tau

__all__ = ["GramStats", "SolveInfo", "SpectralFactor", "power_law_tau", "ridge_reference", "svd_reference"]
