"""Test-time learning for any Hugging Face causal LM: ``reset_projection`` / ``learn`` / ``generate``.

FAAST memories are attached to an unmodified ``transformers`` model with hooks; ``learn`` runs the
frozen backbone forward only and accumulates float64 statistics, which are compiled in closed
form into fast weights that ``forward`` / ``generate`` read. See :class:`FaastModel`; the layout is
a :class:`FaastConfig`, the read-time knobs a :class:`ReadConfig`, each memory a read-out
(:mod:`faast.lm.readouts`), and :mod:`faast.lm.naive` the plain reference of every formula.
"""

from faast.lm.config import OUTPUT_MIXES, FaastConfig, ReadConfig
from faast.lm.correction import CorrectionReadOut
from faast.lm.fastweights import list_tasks
from faast.lm.inject import UnsupportedModelError, find_layout
from faast.lm.model import FaastModel, get_faast_model
from faast.lm.output_readouts import LogitReadOut, PaperReadOut, ProbReadOut
from faast.lm.readouts import MiddleMemory, ReadOut

__all__ = [
    "OUTPUT_MIXES",
    "CorrectionReadOut",
    "FaastConfig",
    "FaastModel",
    "LogitReadOut",
    "MiddleMemory",
    "PaperReadOut",
    "ProbReadOut",
    "ReadConfig",
    "ReadOut",
    "UnsupportedModelError",
    "find_layout",
    "get_faast_model",
    "list_tasks",
]
