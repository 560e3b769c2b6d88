"""Test-time learning for any Hugging Face causal LM: ``reset_projection`` / ``learn`` / ``generate``.

FAAST memories are attached to an unmodified ``transformers`` model with hooks; ``learn`` runs the
frozen backbone forward only and accumulates float64 statistics, which are compiled in closed
form into fast weights that ``forward`` / ``generate`` read. See :class:`FaastModel`.
"""

from faast.lm.config import (
    DEFAULT_OUTPUT_GATE,
    DEFAULT_OUTPUT_TEMPERATURES,
    DEFAULT_OUTPUT_WEIGHTS,
    OUTPUT_MIXES,
    FaastConfig,
)
from faast.lm.fastweights import list_tasks
from faast.lm.inject import UnsupportedModelError, find_layout
from faast.lm.model import FaastModel, get_faast_model

__all__ = [
    "DEFAULT_OUTPUT_GATE",
    "DEFAULT_OUTPUT_TEMPERATURES",
    "DEFAULT_OUTPUT_WEIGHTS",
    "OUTPUT_MIXES",
    "FaastConfig",
    "FaastModel",
    "UnsupportedModelError",
    "find_layout",
    "get_faast_model",
    "list_tasks",
]
