"""``faast demo``: a small real run of the solver on scikit-learn's bundled digits images."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the demo (FAAST vs a logistic-regression probe on digits)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from faast import FaastClassifier

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.3, random_state=args.seed)
    print(f"digits (scikit-learn): {len(X_tr)} train / {len(X_te)} test, 64 features, seed {args.seed}")
    for name, model in [
        ("FAAST", FaastClassifier()),
        ("LogisticRegression", LogisticRegression(max_iter=2000)),
    ]:
        start = time.perf_counter()
        model.fit(X_tr, y_tr)
        fit_s = time.perf_counter() - start
        print(f"{name:20s} accuracy {model.score(X_te, y_te):.4f}  fit {fit_s * 1e3:7.1f} ms")
    return 0
