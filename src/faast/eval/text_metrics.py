"""Scores of predictions against references: accuracy with its 95 % interval, balanced accuracy,
macro-F1, per-label scores and the confusion matrix for labels; corpus BLEU and chrF (sacrebleu,
its default tokenisation) and exact match for free text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faast.eval.stats import binomial_ci95, wilson_ci95


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")


def label_accuracy(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """``{"accuracy", "ci95", "ci95_wilson", "n", "balanced_accuracy", "macro_f1", "per_label",
    "confusion"}``: the share of exact matches, the half-width of its normal 95 % interval
    (1.96·√(p(1−p)/n)) and the Wilson score interval [low, high] (the one to read on few examples
    or near 0 / 100 %, where the normal one collapses); then what accuracy hides when the labels
    are imbalanced (a model that never answers a rare label loses little accuracy): the mean
    recall over the labels the references hold (as scikit-learn's ``balanced_accuracy_score``), the
    mean F1 over the labels the references or predictions hold (as ``f1_score(average="macro")``;
    the tests compare both with scikit-learn),
    each label's precision, recall, F1 and support (0 where undefined), and the confusion matrix
    (rows: reference, columns: prediction) over ``labels`` (default: the references' and
    predictions' labels, sorted), which must hold every one of them."""
    _check_pairs(predictions, references)
    right = sum(p == r for p, r in zip(predictions, references, strict=True))
    n = len(references)
    acc = right / n
    seen = set(predictions) | set(references)
    names = sorted(seen) if labels is None else list(labels)
    missing = sorted(seen - set(names))
    if missing:
        raise ValueError(f"predictions or references that are not labels: {missing[:5]}")
    index = {name: k for k, name in enumerate(names)}
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)  # (reference, prediction)
    np.add.at(confusion, ([index[r] for r in references], [index[p] for p in predictions]), 1)
    hits, support, said = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    recall = np.divide(hits, support, out=np.zeros(len(names)), where=support > 0)
    precision = np.divide(hits, said, out=np.zeros(len(names)), where=said > 0)
    f1 = np.divide(2 * hits, support + said, out=np.zeros(len(names)), where=support + said > 0)
    return {
        "accuracy": acc,
        "ci95": binomial_ci95(acc, n),
        "ci95_wilson": list(wilson_ci95(right, n)),
        "n": n,
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_f1": float(f1[support + said > 0].mean()),
        "per_label": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(names)
        },
        "confusion": {"labels": names, "matrix": confusion.tolist()},
    }


def translation_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """``{"bleu", "bleu_defined", "chrf", "exact_match", "exact_match_ci95_wilson", "n"}``:
    sacrebleu's corpus BLEU (13a tokenisation) and chrF (β = 2), one reference per prediction,
    and the share of predictions equal to their reference (surrounding whitespace aside) with its
    Wilson score interval.

    ``bleu_defined`` is False when no prediction holds four tokens: BLEU's 4-gram precision is
    then 0/0 and sacrebleu reports 0.00 whatever the outputs (a task of one-word answers scores
    BLEU 0 with every answer right); read exact match and chrF there.
    """
    try:
        import sacrebleu
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("BLEU and chrF need sacrebleu: pip install 'faast[lm]'") from exc
    _check_pairs(predictions, references)
    preds = [p.strip() for p in predictions]
    refs = [r.strip() for r in references]
    bleu = sacrebleu.corpus_bleu(preds, [refs])
    right = sum(p == r for p, r in zip(preds, refs, strict=True))
    return {
        "bleu": float(bleu.score),
        "bleu_defined": bool(bleu.totals[-1] > 0),
        "chrf": float(sacrebleu.corpus_chrf(preds, [refs]).score),
        "exact_match": right / len(preds),
        "exact_match_ci95_wilson": list(wilson_ci95(right, len(preds))),
        "n": len(preds),
    }


__all__ = ["label_accuracy", "translation_scores"]
