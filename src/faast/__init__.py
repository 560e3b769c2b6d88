"""faast: forward-only test-time learning with closed-form fast weights.

Labelled examples become key→value pairs through a frozen model; the pairs are compiled in
closed form (a spectrally truncated least-squares solve on float64 sufficient statistics) into
a small fast-weight matrix the model then uses.
"""

from faast.classifier import FaastClassifier
from faast.memory import InverseMemory, KNNMemory, Memory, SoftmaxMemory
from faast.solver import GramStats, SolveInfo, power_law_tau, svd_reference

__version__ = "0.1.0"

__all__ = [
    "FaastClassifier",
    "GramStats",
    "InverseMemory",
    "KNNMemory",
    "Memory",
    "SoftmaxMemory",
    "SolveInfo",
    "__version__",
    "power_law_tau",
    "svd_reference",
]
