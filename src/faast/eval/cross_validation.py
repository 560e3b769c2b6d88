"""How well a classifier does on the user's own labelled data when no test set is at hand:
stratified k-fold cross-validation (scikit-learn's folds), with the most frequent class as the
floor to read it against, and scikit-learn's linear classifiers on the same folds to compare with."""

from __future__ import annotations

import statistics
import warnings
from collections import Counter
from typing import Any

import numpy as np


def cross_validate(estimator: Any, X: Any, y: np.ndarray, folds: int, *, seed: int = 0) -> dict[str, Any]:
    """Accuracy of fresh clones of ``estimator`` over stratified ``folds``-fold cross-validation
    (shuffled with ``seed``) on features X (n, d) and labels y (n,).

    Returns ``{"folds", "seed", "accuracy" (mean), "std" (across folds), "fold_accuracies",
    "majority" (the most frequent class's share: what predicting it alone scores), "note"}``.
    The folds are scikit-learn's ``StratifiedKFold``: a class of fewer examples than ``folds`` is
    in fewer test folds (a class of one example is unseen by the one fold that tests it, so it
    counts as an error there, as a class too rare to learn would in use), said in ``note``; the
    folds shrink only when every class is smaller than ``folds``, to the largest class's size.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    counts = Counter(np.asarray(y).tolist())
    if len(counts) < 2:
        raise ValueError("cross-validation needs at least two classes")
    largest = max(counts.values())
    if largest < 2:
        raise ValueError("cross-validation needs a class of at least 2 examples; every class has 1")
    used = min(folds, largest)
    notes = [f"{used} folds, not {folds}: no class has more than {largest} examples"] if used < folds else []
    rare = sorted((n, str(name)) for name, n in counts.items() if n < used)
    if rare:
        alone = sum(n == 1 for n, _ in rare)
        notes.append(
            f"{len(rare)} class(es) of fewer than {used} examples (e.g. {rare[0][1]!r}: {rare[0][0]}) in "
            "fewer test folds"
            + (f"; {alone} of a single example, unseen where tested: errors" if alone else "")
        )
    splitter = StratifiedKFold(n_splits=used, shuffle=True, random_state=seed)
    features = X.detach().cpu().numpy() if hasattr(X, "detach") else np.asarray(X)
    scores = []
    with warnings.catch_warnings():  # scikit-learn's warning about small classes: said in the note
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros((len(y), 1)), y))
    for train, test in splits:
        model = clone(estimator).fit(features[train], y[train])
        scores.append(float(np.mean(np.asarray(model.predict(features[test])) == y[test])))
    note = "; ".join(notes)
    return {
        "folds": used,
        "seed": seed,
        "accuracy": statistics.fmean(scores),
        "std": statistics.pstdev(scores),
        "fold_accuracies": scores,
        "majority": max(counts.values()) / len(y),
        "note": note,
    }


def describe(result: dict[str, Any]) -> str:
    """One line: ``5-fold cross-validation (stratified, seed 0): accuracy 87.30 % ± 1.20 (folds
    85.00–89.10 %); the most frequent class alone: 33.33 %``."""
    low, high = min(result["fold_accuracies"]), max(result["fold_accuracies"])
    line = (
        f"{result['folds']}-fold cross-validation (stratified, seed {result['seed']}): accuracy "
        f"{100 * result['accuracy']:.2f} % ± {100 * result['std']:.2f} (folds {100 * low:.2f}–"
        f"{100 * high:.2f} %); the most frequent class alone: {100 * result['majority']:.2f} %"
    )
    return line + (f" ({result['note']})" if result["note"] else "")


def baselines() -> dict[str, Any]:
    """scikit-learn's linear classifiers at their defaults (LogisticRegression with room to
    converge: 1,000 iterations), by the name a comparison prints."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    return {
        "RidgeClassifier": RidgeClassifier(),
        "LogisticRegression": LogisticRegression(max_iter=1000),
    }


def cross_validate_baselines(
    X: Any, y: np.ndarray, folds: int, *, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """:func:`cross_validate` of each of :func:`baselines` on the same folds (same ``folds`` and
    ``seed``: scikit-learn's stratified split depends on the labels alone). Convergence warnings
    are silenced: the comparison reports accuracy, and the iteration cap is part of the recipe. A
    baseline that cannot be fitted on some fold's training examples (``LogisticRegression`` on a
    fold of one class, where a class of one example is the one tested) is ``{"skipped": why}``;
    the others are kept."""
    from sklearn.exceptions import ConvergenceWarning

    results: dict[str, dict[str, Any]] = {}
    for name, model in baselines().items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                results[name] = cross_validate(model, X, y, folds, seed=seed)
        except ValueError as exc:
            results[name] = {"skipped": " ".join(str(exc).split())}
    return results


def describe_baseline(name: str, result: dict[str, Any]) -> str:
    """One line: ``LogisticRegression on the same folds: accuracy 86.10 % ± 1.30``, or why it was
    skipped."""
    if "skipped" in result:
        return f"{name} on the same folds: skipped, cannot fit a fold's examples ({result['skipped']})"
    return f"{name} on the same folds: accuracy {100 * result['accuracy']:.2f} % ± {100 * result['std']:.2f}"
