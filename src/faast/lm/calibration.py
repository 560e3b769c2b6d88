"""Contextual calibration of label scores (Zhao et al., 2021, "Calibrate Before Use").

A prompted LM often prefers some labels whatever the input: the label seen last among the
demonstrations, the most frequent one, or one the template itself favours. Contextual calibration
measures that preference on inputs that carry no content (:data:`CONTENT_FREE_INPUTS`, written in
the same prompt after the same demonstrations) and divides it out:

    p_cf = mean over the content-free inputs c of softmax_L(scores(c))       (L,)
    q(x) = softmax_L(log softmax_L(scores(x)) - log p_cf)                    (L,)

(the paper's W = diag(p_cf)^-1, b = 0, applied to probabilities renormalised over the L labels).
It needs no labelled data and no gradients: the stronger in-context-learning and zero-shot
baselines FAAST is measured against (``InContextModel.label_scores(..., calibrate=True)``), and an
option for a task's own scores, zero-shot or with fast weights
(``TaskModel.label_scores(..., calibrate=True)``); on the command line ``faast task
classify/evaluate --calibrate``, with or without ``--demonstrations``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: The content-free inputs of the paper ("N/A", the empty string, "[MASK]"), averaged.
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


def content_free_inputs(codec: Any, *, after_text: bool = False) -> list[str]:
    """The :data:`CONTENT_FREE_INPUTS` that have a state to score a label from: all of them after
    text (``after_text``: demonstrations, start tokens), else those whose prompt is not empty.
    With the template ``{input}`` and a model without start tokens (Qwen2.5, SmolLM2) the empty
    input's prompt has no token: its first label token was scored from position −1, which
    wrapped to the end of the sequence (a wrong score for a label of several tokens) or failed.
    codec: a :class:`~faast.lm.prompts.PromptCodec`."""
    if after_text or codec.lead_ids:
        return list(CONTENT_FREE_INPUTS)
    return [x for x in CONTENT_FREE_INPUTS if codec.prompt_ids(x, start=False)]


def contextually_calibrated(scores: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Calibrated label log-probabilities (n, L) float64.

    Parameters
    ----------
    scores : (n, L) label log-scores of the inputs (log-probabilities, or any scores whose
        softmax over the L labels is the model's label distribution)
    content_free : (c, L) the same scores of the c content-free inputs, c >= 1
    """
    if scores.ndim != 2 or content_free.ndim != 2:
        shapes = f"scores {tuple(scores.shape)} and content_free {tuple(content_free.shape)}"
        raise ValueError(f"{shapes} must be (n, L) and (c, L)")
    if content_free.shape[0] < 1 or content_free.shape[1] != scores.shape[1]:
        raise ValueError(
            f"content_free {tuple(content_free.shape)} needs at least one row of the {scores.shape[1]} labels"
        )
    if not (torch.isfinite(scores).all() and torch.isfinite(content_free).all()):
        raise ValueError("label scores must be finite to be calibrated")
    prior = torch.logsumexp(torch.log_softmax(content_free.double(), dim=1), dim=0) - math.log(
        content_free.shape[0]
    )  # log of the mean content-free label distribution (L,)
    return torch.log_softmax(torch.log_softmax(scores.double(), dim=1) - prior, dim=1)


#: Label log-probabilities are floored here where they are scored or calibrated: a label the read-out
#: gives probability 0 (the "prob" mix at the memory's full weight) counts as e^-10000, last but
#: finite.
LOG_PROB_FLOOR = -1e4


def calibrated_label_scores(scores: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """:func:`~faast.lm.calibration.contextually_calibrated` of label log-probabilities (n, L) by
    those of the content-free inputs (c, L), both floored at :data:`LOG_PROB_FLOOR` first."""
    return contextually_calibrated(scores.clamp_min(LOG_PROB_FLOOR), content_free.clamp_min(LOG_PROB_FLOOR))
