"""How well ``FaastClassifier.predict_proba`` is calibrated: the temperature ``logit_scale="auto"``
(from exact leave-one-out scores) against the fixed T = 10 it replaced, and against logistic losses.

``predict_proba`` of the squared loss is softmax(T · scores). Until 2026-12 T was fixed at 10;
``logit_scale="auto"`` (the default since) chooses it from the training set alone
(:mod:`faast.solver.temperature`). This benchmark measures, on held-out data:

* **log-loss** (mean negative log-probability of the true class, nats) and
* **ECE** (expected calibration error of the top class, 15 equal-width confidence bins, %),

for ``FaastClassifier(logit_scale=10)`` and ``FaastClassifier()`` (one fit: the fixed T is applied
to the same fitted scores), ``FaastClassifier(loss="logistic")`` and scikit-learn's
``LogisticRegression(max_iter=5000)`` (C = 1), plus a *reference, not a method*: the T that is best
on the test data itself (a grid of 81 values, 10⁻² to 10³), the most any temperature could give.
Accuracy is the same for both temperatures (T does not change the argmax); it is listed for
FAAST and LogisticRegression.

Data (the data sets of ``classifier_datasets.py``; no default was chosen on them except the
intercept, and the temperature rule has no constant tuned on any data):

* scikit-learn's bundled tables (``digits``, ``breast_cancer``, ``wine``, ``iris``, standardised on
  the training fold) and MiniLM embeddings of text (``books``, ``austen``, ``polarity``;
  ``--per-class`` texts per class): stratified 5-fold CV, regimes ``all`` and 16, 4 and 2
  examples per class drawn from the training fold (seeded);
* ``fashion-mnist``: the demo's EfficientNet-Lite0 features (L2-normalised), test-split episodes
  of 1, 5, 16 and 64 shots (``--episodes``, 20 queries per class, seed) and the full training set
  against the 10,000 test images.

One thread (torch and BLAS). ``--datasets iris,wine`` runs the bundled tables alone.

    python benchmarks/classifier_calibration.py

writes ``benchmarks/results/classifier_calibration.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.special
import sklearn.metrics
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from faast import FaastClassifier
from faast.publish import save_figure

sys.path.insert(0, str(Path(__file__).parent))
from classifier_cuts import _machine, load_features
from classifier_datasets import TABLES, TEXTS, datasets, few, fold, write_results

FASHION = "fashion-mnist"
#: Examples per class of the few-shot regimes of the CV data sets ("all": the whole fold).
PER_CLASS = (16, 4, 2)
SHOTS = (1, 5, 16, 64)
#: The reference temperatures: the best of these on the test data.
ORACLE_GRID = np.geomspace(1e-2, 1e3, 81)
ECE_BINS = 15
COLUMNS = ("FAAST T=10", "FAAST auto", "best T on test (reference)", "FAAST logistic", "LogisticRegression")


def log_loss(proba: np.ndarray, y_index: np.ndarray) -> float:
    """Mean −log p(true class), nats (scikit-learn's, which clips p at float64's eps); proba
    (n, C), y_index (n,) column of the true class."""
    with warnings.catch_warnings():
        # float32 probabilities (FAAST's on float32 features) cast to float64 sum to 1 within
        # float32's rounding, not within the float64 tolerance of scikit-learn's check; the loss
        # is computed all the same (scikit-learn does not renormalise)
        warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
        return float(sklearn.metrics.log_loss(y_index, proba, labels=np.arange(proba.shape[1])))


def ece(proba: np.ndarray, y_index: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top class (%): Σ_b (n_b / n)·|accuracy_b − confidence_b|
    over ``bins`` equal-width bins of the top probability."""
    top = proba.max(axis=1)
    right = proba.argmax(axis=1) == y_index
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, top, side="right") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(right[members].mean() - top[members].mean())
    return 100.0 * total


def _softmax(scores: np.ndarray, t: float) -> np.ndarray:
    """softmax(t · scores) over classes; scores (n, C)."""
    return scipy.special.softmax(t * scores, axis=1)


def evaluate(Xtr: Any, ytr: np.ndarray, Xte: Any, yte: np.ndarray) -> dict[str, Any]:
    """Log-loss, ECE and accuracy of every column on one (train, test) pair, and the chosen T."""
    clf = FaastClassifier().fit(Xtr, ytr)
    y_index = np.searchsorted(clf.classes_, yte)
    scores = clf._scores(Xte).double().cpu().numpy()  # (n, C) one-hot scores, any number of classes
    probas = {
        "FAAST T=10": _softmax(scores, 10.0),
        "FAAST auto": np.asarray(clf.predict_proba(Xte), dtype=np.float64),
    }
    oracle = min(ORACLE_GRID, key=lambda t: log_loss(_softmax(scores, t), y_index))
    probas["best T on test (reference)"] = _softmax(scores, oracle)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes on tiny folds
        logistic = FaastClassifier(loss="logistic").fit(Xtr, ytr)
        logreg = LogisticRegression(max_iter=5000).fit(np.asarray(Xtr), ytr)
    probas["FAAST logistic"] = np.asarray(logistic.predict_proba(Xte), dtype=np.float64)
    probas["LogisticRegression"] = logreg.predict_proba(np.asarray(Xte))
    return {
        "log_loss": {k: log_loss(p, y_index) for k, p in probas.items()},
        "ece": {k: ece(p, y_index) for k, p in probas.items()},
        "accuracy": {
            "FAAST": 100.0 * float(np.mean(clf.predict(Xte) == yte)),
            "LogisticRegression": 100.0 * float(np.mean(logreg.predict(np.asarray(Xte)) == yte)),
        },
        "T": {"auto": float(clf.logit_scale_), "best on test": float(oracle)},
    }


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Metric-wise means over runs (T: medians)."""
    out: dict[str, Any] = {}
    for metric in ("log_loss", "ece", "accuracy"):
        out[metric] = {k: float(np.mean([r[metric][k] for r in runs])) for k in runs[0][metric]}
    out["T"] = {k: float(statistics.median(r["T"][k] for r in runs)) for k in runs[0]["T"]}
    return out


def cross_validated(name: str, X: np.ndarray, y: np.ndarray, scale: bool, seed: int) -> dict[str, Any]:
    """Every regime of one CV data set: {regime: means over the 5 folds}."""
    runs: dict[str, list[dict[str, Any]]] = {"all": [], **{f"{k}/class": [] for k in PER_CLASS}}
    rng = np.random.default_rng(seed)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y))
    for train, test in tqdm(folds, desc=name, unit="fold"):
        parts = {"all": train, **{f"{k}/class": few(y, train, k, rng) for k in PER_CLASS}}
        for regime, part in parts.items():
            Xtr, Xte = fold(X, part, test, scale)
            runs[regime].append(evaluate(Xtr, y[part], Xte, y[test]))
    return {regime: _mean(r) for regime, r in runs.items()}


def fashion(episodes: int, seed: int) -> dict[str, Any]:
    """The demo's features: {regime: means over the episodes} and the full training set."""
    from faast.eval.episodes import sample_episodes

    tx, ty, sx, sy = load_features(None, 64)
    tx, sx = F.normalize(tx, dim=1), F.normalize(sx, dim=1)  # as the demo's classifiers see them
    out: dict[str, Any] = {}
    for k in SHOTS:
        eps = sample_episodes(ty, sy, ways=None, shots=k, queries=20, episodes=episodes, seed=seed)
        runs = [
            evaluate(tx[e.support], ty[e.support], sx[e.query], sy[e.query])
            for e in tqdm(eps, desc=f"{k}-shot")
        ]
        out[f"{k}-shot"] = _mean(runs)
    out["full"] = _mean([evaluate(tx, ty, sx, sy)])
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    unknown = set(names) - {*TABLES, *TEXTS, FASHION}
    if unknown:
        raise SystemExit(f"unknown data sets: {sorted(unknown)}")
    torch.set_num_threads(1)
    result: dict[str, Any] = {}
    with threadpool_limits(1):
        cv = datasets([n for n in names if n != FASHION], args.per_class, args.seed)
        for name, (X, y, scale) in cv.items():
            result[name] = cross_validated(name, X, y, scale, args.seed)
        if FASHION in names:
            result[FASHION] = fashion(args.episodes, args.seed)
    return {"results": result, "settings": {**vars(args), "machine": _machine(), "threads": 1}}


def _cells(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (name, regime, row) for name, regimes in result["results"].items() for regime, row in regimes.items()
    ]


def markdown(result: dict[str, Any]) -> str:
    cells = _cells(result)
    lines = [
        "**log-loss** (nats, lower is better; bold: the better of FAAST T=10 and auto) and the T "
        "`auto` chose (median over folds / episodes)",
        "",
        "| data | regime | " + " | ".join(COLUMNS) + " | T auto | best T | acc. FAAST | acc. LogReg |",
        "|---" * (len(COLUMNS) + 6) + "|",
    ]
    for name, regime, row in cells:
        ll = row["log_loss"]
        better = min(ll["FAAST T=10"], ll["FAAST auto"])
        text = [
            f"**{ll[c]:.3f}**" if c in ("FAAST T=10", "FAAST auto") and ll[c] == better else f"{ll[c]:.3f}"
            for c in COLUMNS
        ]
        acc = row["accuracy"]
        lines.append(
            f"| {name} | {regime} | " + " | ".join(text) + f" | {row['T']['auto']:.2f} | "
            f"{row['T']['best on test']:.2f} | {acc['FAAST']:.1f} | {acc['LogisticRegression']:.1f} |"
        )
    means = {c: statistics.mean(row["log_loss"][c] for _, _, row in cells) for c in COLUMNS}
    wins = sum(row["log_loss"]["FAAST auto"] < row["log_loss"]["FAAST T=10"] for _, _, row in cells)
    lines += [
        "| **mean** | | " + " | ".join(f"{means[c]:.3f}" for c in COLUMNS) + " | | | | |",
        "",
        f"`auto` has the lower log-loss than T = 10 in {wins} of {len(cells)} rows.",
        "",
        "**ECE** (%, top class, 15 bins; lower is better)",
        "",
        "| data | regime | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for name, regime, row in cells:
        lines.append(f"| {name} | {regime} | " + " | ".join(f"{row['ece'][c]:.1f}" for c in COLUMNS) + " |")
    ece_means = {c: statistics.mean(row["ece"][c] for _, _, row in cells) for c in COLUMNS}
    lines.append("| **mean** | | " + " | ".join(f"{ece_means[c]:.1f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Log-loss of ``auto`` against T = 10 and against LogisticRegression, one point per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = _cells(result)
    auto = np.array([row["log_loss"]["FAAST auto"] for _, _, row in cells])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, other in zip(axes, ("FAAST T=10", "LogisticRegression"), strict=True):
        theirs = np.array([row["log_loss"][other] for _, _, row in cells])
        ax.scatter(theirs, auto, s=18)
        top = float(max(theirs.max(), auto.max())) * 1.05
        ax.plot([0, top], [0, top], color="grey", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"log-loss, {other}")
        ax.set_ylabel('log-loss, FAAST logit_scale="auto"')
        ax.set_title(f"below the line: auto better than {other}", fontsize=9)
    fig.suptitle("predict_proba on held-out data: one point per data set and regime (1 thread)")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join([*TABLES, *TEXTS, FASHION]))
    p.add_argument("--per-class", type=int, default=300, help="text examples per class")
    p.add_argument("--episodes", type=int, default=10, help="Fashion-MNIST episodes per shot count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/classifier_calibration")
    args = p.parse_args()
    result = run(args)
    md = markdown(result)
    print(md)
    data = (
        f"scikit-learn digits / breast_cancer / wine / iris (standardised per fold) and MiniLM "
        f"embeddings of {args.per_class} texts per class (books, austen, polarity): stratified 5-fold "
        f"CV, seed {args.seed}; Fashion-MNIST, frozen EfficientNet-Lite0 @64 px (1280-d, "
        f"L2-normalised), {args.episodes} test episodes per shot count (seed {args.seed}) and full data"
    )
    write_results(args.out, result, md, "classifier_calibration.py", data, plot)


if __name__ == "__main__":
    main()
