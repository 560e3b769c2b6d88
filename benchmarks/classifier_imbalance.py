"""``class_weight="balanced"`` on imbalanced training sets, against scikit-learn's linear models.

The data sets of ``classifier_datasets.py`` (scikit-learn's digits / breast_cancer / wine /
iris, standardised on each training fold, and MiniLM embeddings of three text tasks), none of
them used to choose a FaastClassifier default. Each training fold of a stratified 5-fold split
is made imbalanced: the classes, in label order, keep a fraction ``ratio^(j / (C − 1))`` of their
examples (the first all of them, the last ``--ratio``; at least 2 each, seeded draw); the test
fold is left as it is. Scored by balanced accuracy (the mean recall over the classes, %) and
plain accuracy, mean of the 5 folds. Methods, each with and without ``class_weight="balanced"``:
``FaastClassifier()`` (squared loss, default cut, an intercept), ``FaastClassifier(loss="logistic")``,
each also with ``fit_intercept=False``, ``RidgeClassifier()`` and ``LogisticRegression(max_iter=5000)``
(both fit an intercept). Single-threaded.

    python benchmarks/classifier_imbalance.py   # writes benchmarks/results/classifier_imbalance.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from classifier_cuts import _machine
from classifier_datasets import TABLES, TEXTS, datasets, fold, write_results
from classifier_raw import INTERCEPT_VARIANTS

METHODS: dict[str, Any] = {
    **INTERCEPT_VARIANTS,
    "RidgeClassifier": RidgeClassifier(),
    "LogisticRegression": LogisticRegression(max_iter=5000),
}
SCORES = ("balanced accuracy", "accuracy")


def imbalanced(y: np.ndarray, index: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """The indices of ``index`` that remain when class j of C (label order) keeps a fraction
    ratio^(j / (C − 1)) of its examples, at least 2 (seeded draw)."""
    classes = np.unique(y[index])
    keep = []
    for j, c in enumerate(classes):
        members = index[y[index] == c]
        share = ratio ** (j / max(len(classes) - 1, 1))
        size = min(len(members), max(2, round(share * len(members))))
        keep.append(rng.choice(members, size=size, replace=False))
    return np.sort(np.concatenate(keep))


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    data = datasets(names, args.per_class, args.seed)
    table: dict[str, dict[str, dict[str, float]]] = {}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes on small folds
        for name, (X, y, scale) in data.items():
            rng = np.random.default_rng(args.seed)
            sums: dict[str, dict[str, list[float]]] = {}
            folds = StratifiedKFold(5, shuffle=True, random_state=args.seed).split(X, y)
            for train, test in tqdm(list(folds), desc=name, unit="fold"):
                part = imbalanced(y, train, args.ratio, rng)
                Xtr, Xte = fold(X, part, test, scale)
                for m, method in METHODS.items():
                    for weighting in (None, "balanced"):
                        est = clone(method).set_params(class_weight=weighting).fit(Xtr, y[part])
                        pred = est.predict(Xte)
                        row = sums.setdefault(
                            f"{m}{' balanced' if weighting else ''}", {s: [] for s in SCORES}
                        )
                        row["balanced accuracy"].append(100.0 * balanced_accuracy_score(y[test], pred))
                        row["accuracy"].append(100.0 * float(np.mean(pred == y[test])))
            table[name] = {m: {s: float(np.mean(v)) for s, v in row.items()} for m, row in sums.items()}
            print(name, {m: round(v["balanced accuracy"], 1) for m, v in table[name].items()}, flush=True)
    return {"scores": table, "settings": {**vars(args), "machine": _machine(), "threads": 1}}


def markdown(result: dict) -> str:
    scores = result["scores"]
    methods = list(next(iter(scores.values())))
    lines = []
    for score in SCORES:
        lines += [
            f"**{score}** (%), mean of 5 folds",
            "",
            "| data | " + " | ".join(methods) + " |",
            "|---" * (len(methods) + 1) + "|",
        ]
        for name, row in scores.items():
            lines.append(f"| {name} | " + " | ".join(f"{row[m][score]:.1f}" for m in methods) + " |")
        means = [statistics.mean(scores[n][m][score] for n in scores) for m in methods]
        lines += ["| mean | " + " | ".join(f"{v:.1f}" for v in means) + " |", ""]
    return "\n".join(lines).rstrip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join([*TABLES, *TEXTS]))
    p.add_argument("--ratio", type=float, default=0.1, help="share the last class keeps (default 0.1)")
    p.add_argument("--per-class", type=int, default=300, help="text examples per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/classifier_imbalance")
    args = p.parse_args()
    if not 0 < args.ratio <= 1:
        p.error(f"--ratio must be in (0, 1], got {args.ratio}")
    result = run(args)
    md = markdown(result)
    print(md)
    data = (
        f"the data sets of classifier_datasets.py; each training fold imbalanced (class j of C keeps "
        f"{args.ratio}^(j/(C-1)) of its examples), test folds as they are; stratified 5-fold CV, "
        f"seed {args.seed}"
    )
    write_results(args.out, result, md, "classifier_imbalance.py", data)


if __name__ == "__main__":
    main()
