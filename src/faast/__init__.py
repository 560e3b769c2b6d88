"""faast: forward-only test-time learning with closed-form fast weights.

Labelled examples become key→value pairs through a frozen model; the pairs are compiled in
closed form (a spectrally truncated least-squares solve on float64 sufficient statistics) into
a small fast-weight matrix the model then uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faast.classifier import FaastClassifier
    from faast.memory import InverseMemory, KNNMemory, Memory, SoftmaxMemory
    from faast.solver import GramStats, SolveInfo, power_law_tau, svd_reference

__version__ = "0.1.0"

#: Where each public name lives: imported on first use (PEP 562), so that ``import faast`` — and
#: the command line's ``faast --help`` — does not pay for torch and scikit-learn until asked.
_LAZY = {
    "FaastClassifier": "faast.classifier",
    "GramStats": "faast.solver",
    "InverseMemory": "faast.memory",
    "KNNMemory": "faast.memory",
    "Memory": "faast.memory",
    "SoftmaxMemory": "faast.memory",
    "SolveInfo": "faast.solver",
    "power_law_tau": "faast.solver",
    "svd_reference": "faast.solver",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
