"""Scores of predictions against references: accuracy with its 95 % interval for labels, corpus
BLEU and chrF (sacrebleu, its default tokenisation) for free text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faast.eval.stats import binomial_ci95, wilson_ci95


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")


def label_accuracy(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """``{"accuracy", "ci95", "ci95_wilson", "n"}``: the share of exact matches, the half-width of
    its normal 95 % interval (1.96·√(p(1−p)/n)) and the Wilson score interval [low, high] (the
    one to read on few examples or near 0 / 100 %, where the normal one collapses)."""
    _check_pairs(predictions, references)
    right = sum(p == r for p, r in zip(predictions, references, strict=True))
    n = len(references)
    acc = right / n
    return {
        "accuracy": acc,
        "ci95": binomial_ci95(acc, n),
        "ci95_wilson": list(wilson_ci95(right, n)),
        "n": n,
    }


def translation_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """``{"bleu", "chrf", "n"}``: sacrebleu's corpus BLEU (13a tokenisation) and chrF (β = 2), one
    reference per prediction."""
    try:
        import sacrebleu
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("BLEU and chrF need sacrebleu: pip install 'faast[lm]'") from exc
    _check_pairs(predictions, references)
    preds = [p.strip() for p in predictions]
    refs = [[r.strip() for r in references]]
    return {
        "bleu": float(sacrebleu.corpus_bleu(preds, refs).score),
        "chrf": float(sacrebleu.corpus_chrf(preds, refs).score),
        "n": len(preds),
    }


__all__ = ["label_accuracy", "translation_scores"]
