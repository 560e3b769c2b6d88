"""Closed-form fast weights: streaming float64 statistics, the cut, the spectral solve, references."""

from faast.solver.cut import Cut, SolveInfo, make_cut, power_law_tau
from faast.solver.naive import ridge_reference, svd_reference
from faast.solver.rows import PairBuffer
from faast.solver.spectral import SpectralFactor
from faast.solver.stats import GramStats

__all__ = [
    "Cut",
    "GramStats",
    "PairBuffer",
    "SolveInfo",
    "SpectralFactor",
    "make_cut",
    "power_law_tau",
    "ridge_reference",
    "svd_reference",
]
