"""Accuracy options of FaastClassifier without backprop, measured: random features, retargeting.

On the demo's cached features (Fashion-MNIST, frozen EfficientNet-Lite0 @64 px; centre + L2
preprocessing fitted on the support set), single-threaded, for 16- and 64-shot episodes and
full data, accuracy (%) and fit time of the ``--variants``:

* ``plain``: ``FaastClassifier()`` (its defaults: the cut ``ridge=auto``, an intercept);
* ``nointercept``: ``FaastClassifier(fit_intercept=False)`` (scores through the origin);
* ``intercept``: ``FaastClassifier(fit_intercept=True)`` (the default since 2026-12: ``plain``);
* ``center``: ``FaastClassifier(center_features=True)`` (the features centred on their mean at
  the solve: the cut shrinks the weights around it, not through the origin);
* ``rf:M``: ``FaastClassifier(random_features=M)`` (fixed Gaussian projection to M dimensions +
  ReLU before the solve, RanPAC-style);
* ``refine:R:θ``: ``FaastClassifier(refine=R, margin=θ)`` (R rounds of margin retargeting,
  :mod:`faast.solver.retarget`);
* ``logistic`` / ``logistic:C`` / ``logistic:C:tol`` / ``logistic:C:tol:max_iter``:
  ``FaastClassifier(loss="logistic")`` (quasi-Newton steps on the penalised logistic loss from
  the least-squares solve, :mod:`faast.solver.logistic`; C chosen on a held-out tenth of the
  support set (``auto``), or fixed; ``tol`` and ``max_iter`` when given);
* ``logreg:C``: scikit-learn ``LogisticRegression(C=C, max_iter=1000)`` on L2-normalised features
  (the demo's validated preprocessing and full-data C), full data only.

Any variant may end with ``@prep`` (``none``, ``l2``, ``center``, ``center-l2``) to change its
preprocessing, e.g. ``nointercept@l2`` (an intercept matters on features that are not centred).

``--split validation`` never reads the test images (support and queries from the training
split), which is where M, R and θ are to be chosen; ``--split test`` reports on the test split.

    python benchmarks/classifier_options.py --split validation
    python benchmarks/classifier_options.py   # writes benchmarks/results/classifier_options.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from faast.classifier import FaastClassifier
from faast.eval.episodes import sample_episodes
from faast.eval.preprocess import KINDS as PREP_KINDS
from faast.eval.preprocess import Preprocess
from faast.eval.splits import validation_split
from faast.publish import write_public_json, write_public_text

sys.path.insert(0, str(Path(__file__).parent))
from classifier_cuts import _machine, load_features


def estimator(variant: str) -> tuple[Any, str]:
    """The estimator of a ``--variants`` entry and its preprocessing (``@prep`` overrides it)."""
    variant, _, prep = variant.partition("@")
    if prep:
        if prep not in PREP_KINDS:
            raise ValueError(f"unknown preprocessing {prep!r} in a variant: use one of {PREP_KINDS}")
        return estimator(variant)[0], prep
    kind, *args = variant.split(":")
    if kind == "plain" and not args:
        return FaastClassifier(), "center-l2"
    if kind == "intercept" and not args:
        return FaastClassifier(fit_intercept=True), "center-l2"
    if kind == "nointercept" and not args:
        return FaastClassifier(fit_intercept=False), "center-l2"
    if kind == "center" and not args:
        return FaastClassifier(center_features=True), "center-l2"
    if kind == "rf" and len(args) == 1:
        return FaastClassifier(random_features=int(args[0])), "center-l2"
    if kind == "refine" and len(args) == 2:
        return FaastClassifier(refine=int(args[0]), margin=float(args[1])), "center-l2"
    if kind == "logistic" and len(args) <= 3:
        C = "auto" if not args or args[0] == "auto" else float(args[0])
        more = {"tol": float(args[1])} if len(args) > 1 else {}
        if len(args) > 2:
            more["max_iter"] = int(args[2])
        return FaastClassifier(loss="logistic", C=C, **more), "center-l2"
    if kind == "logreg" and len(args) == 1:
        return LogisticRegression(C=float(args[0]), max_iter=1000), "l2"
    raise ValueError(
        f"unknown variant {variant!r}: plain, intercept, nointercept, center, rf:M, refine:R:theta, "
        "logistic[:C[:tol[:max_iter]]] "
        "or logreg:C, "
        "each optionally followed by @prep"
    )


def label(variant: str) -> str:
    variant, _, prep = variant.partition("@")
    if prep:
        return f"{label(variant)}, prep {prep}"
    kind, *args = variant.split(":")
    return {
        "plain": "default (ridge=auto, intercept)",
        "intercept": "with intercept (ridge=auto)",
        "nointercept": "without intercept (ridge=auto)",
        "center": "features centred at the solve (ridge=auto, intercept)",
        "rf": f"random features M={args[0] if args else ''} (ridge=auto)",
        "refine": f"retargeting R={args[0]}, θ={args[-1]} (ridge=auto)" if args else "",
        "logistic": f"logistic steps, C={args[0] if args else 'auto'}"
        + (f", tol={args[1]}" if len(args) > 1 else "")
        + (f", max_iter={args[2]}" if len(args) > 2 else "")
        + " (ridge=auto cut)",
        "logreg": f"LogisticRegression C={args[0] if args else ''} (L2)",
    }[kind]


def score(x, y, q, qy, variant: str) -> tuple[float, float]:
    est, prep = estimator(variant)
    pre = Preprocess(prep)
    xs, qs = pre.fit_transform(x), pre.transform(q)
    if isinstance(est, LogisticRegression):
        xs, qs = xs.numpy(), qs.numpy()
    start = time.perf_counter()
    est.fit(xs, y)
    fit_s = time.perf_counter() - start
    return float(np.mean(est.predict(qs) == qy)), fit_s


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    tx, ty, sx, sy = load_features(None, 64)
    if args.split == "validation":
        fit_idx, val_idx = validation_split(ty, round(len(ty) / 6), args.seed)
        sx, sy, tx, ty = tx[val_idx], ty[val_idx], tx[fit_idx], ty[fit_idx]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        estimator(v)  # fail before any work on a malformed variant
    table: dict[str, dict[str, list[float]]] = {}
    with threadpool_limits(1):
        for k in [int(s) for s in args.shots.split(",") if s.strip()]:
            eps = sample_episodes(
                ty, sy, ways=None, shots=k, queries=20, episodes=args.episodes, seed=args.seed
            )
            for m in variants:
                if m.startswith("logreg"):
                    continue
                runs = [score(tx[e.support], ty[e.support], sx[e.query], sy[e.query], m) for e in eps]
                table.setdefault(f"{k}-shot", {})[m] = [
                    float(np.mean([a for a, _ in runs])),
                    statistics.median(t for _, t in runs),
                ]
                print(k, m, table[f"{k}-shot"][m], flush=True)
        if not args.skip_full:
            for m in variants:
                table.setdefault("full", {})[m] = list(score(tx, ty, sx, sy, m))
                print("full", m, table["full"][m], flush=True)
    return {"table": table, "settings": {**vars(args), "machine": _machine(), "threads": 1}}


def markdown(result: dict) -> str:
    table = result["table"]
    regimes = list(table)
    lines = [
        "| features | " + " | ".join(f"{g} acc. | {g} fit" for g in regimes) + " |",
        "|---" * (2 * len(regimes) + 1) + "|",
    ]
    for m in dict.fromkeys(v for row in table.values() for v in row):
        cells = []
        for g in regimes:
            if m not in table[g]:
                cells += ["—", "—"]
                continue
            acc, fit_s = table[g][m]
            cells += [f"{100 * acc:.2f}", f"{fit_s:.2f} s" if fit_s >= 1 else f"{fit_s * 1e3:.1f} ms"]
        lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shots", default="16,64")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument(
        "--variants",
        default="plain,rf:2048,rf:4096,refine:5:0.5,logreg:10",
        help="comma-separated: plain, rf:M, refine:R:theta, logistic[:C[:tol[:max_iter]]], "
        "logreg:C (full data only)",
    )
    p.add_argument("--skip-full", action="store_true")
    p.add_argument("--split", default="test", choices=["test", "validation"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default benchmarks/results/classifier_options[_validation]")
    args = p.parse_args()
    result = run(args)
    md = markdown(result)
    print(md)
    suffix = "" if args.split == "test" else "_validation"
    out = Path(args.out or f"benchmarks/results/classifier_options{suffix}")
    write_public_json(out.with_suffix(".json"), result, indent=2)
    prep = "centre + L2" + (" unless the row names its prep" if "@" in args.variants else "")
    header = (
        f"Command: `python benchmarks/classifier_options.py {' '.join(sys.argv[1:])}`  \n"
        f"Data: Fashion-MNIST, frozen EfficientNet-Lite0 @64 px (1280-d), {prep}; "
        f"{args.episodes} episodes per K (seed {args.seed}); scored on the {args.split} split; 1 thread  \n"
        f"Machine: {result['settings']['machine']} (shared VM: timings vary)\n"
    )
    write_public_text(out.with_suffix(".md"), f"{header}\n{md}\n")


if __name__ == "__main__":
    main()
