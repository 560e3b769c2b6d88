"""Evaluation on frozen features: few-shot episodes and full-data protocols, the baselines FAAST
is compared with, and reporting (tables, CSV, PNG)."""

from faast.eval.episodes import Episode, sample_episodes
from faast.eval.methods import METHODS, Fitted, Method, build_methods
from faast.eval.protocols import Features, MethodResult, run_fewshot, run_full

__all__ = [
    "METHODS",
    "Episode",
    "Features",
    "Fitted",
    "Method",
    "MethodResult",
    "build_methods",
    "run_fewshot",
    "run_full",
    "sample_episodes",
]
