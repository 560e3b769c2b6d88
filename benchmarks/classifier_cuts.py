"""How FAAST's cut is chosen: fixed α, GCV, ``auto`` (exact leave-one-out) and the validated choice.

On the demo's cached features (Fashion-MNIST, frozen EfficientNet-Lite0 at 64 px; run
``faast demo`` or ``faast classify`` once to fill the feature cache) and the demo's episodes
(same seeds, same validation split), for every regime (K-shot episodes and full data):

* ``alpha=A``: the power-law cut τ = n^(−A) for A in {0.4, 0.6, 0.8, 1.0};
* ``gcv``: truncation rank by generalised cross-validation;
* ``ridge=gcv``: ridge with ρ by generalised cross-validation (``FaastClassifier(ridge="gcv")``);
* ``auto``: ``FaastClassifier(tau="auto")`` — the ridge level with the fewest exact
  leave-one-out errors (ties: lowest PRESS) on the support set alone while the rows are kept
  (n ≤ 2d); GCV truncation beyond. (``FaastClassifier()``'s default, ``ridge="auto"``, is this row
  while n ≤ 2d and the ``ridge=gcv`` row beyond);
* ``auto (PRESS)``: the same, ranked by PRESS only;
* ``auto (errors ± SE, PRESS)``: the lowest PRESS among the levels whose error count is within
  one binomial standard error of the fewest (``criterion="error-se"``);
* ``auto (truncation)``: the truncation rank with the fewest leave-one-out errors instead;
* ``auto (both)``: the best of the truncation ranks and the ridge levels;
* ``validated``: the α / GCV candidate with the best mean accuracy on the demo's validation
  episodes (few-shot) or validation split (full data), as `faast demo` chooses it.

Every row uses one feature preprocessing (``--prep``, fitted on the support set) and the
classifier's default intercept. The table gives
test accuracy (%) per regime and its mean; one FaastClassifier statistics + eigendecomposition per
episode serves every cut. ``--split validation`` scores on validation episodes instead (support
from the fit part of the training split, queries from its validation part: no test data), which is
where the leave-one-out criterion was chosen.

    python benchmarks/classifier_cuts.py        # writes benchmarks/results/classifier_cuts.{json,md}
    python benchmarks/classifier_cuts.py --episodes 20 --skip-full   # quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from faast.classifier import FaastClassifier
from faast.environment import machine_line
from faast.eval.episodes import sample_episodes
from faast.eval.preprocess import Preprocess
from faast.eval.splits import validation_split
from faast.publish import write_public_json, write_public_text

ALPHAS = (0.4, 0.6, 0.8, 1.0)
ROWS = [
    *(f"alpha={a}" for a in ALPHAS), "gcv", "ridge=gcv",
    "auto", "auto (PRESS)", "auto (errors ± SE, PRESS)", "auto (truncation)", "auto (both)",
]  # fmt: skip
VALIDATED = [*(f"alpha={a}" for a in ALPHAS), "gcv"]


def load_features(
    cache: str | None, resolution: int
) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """Cached demo features: train (60000, 1280), labels, test (10000, 1280), labels."""
    from faast.assets.core import cache_dir
    from faast.data import load_dataset
    from faast.encoders import build_encoder, encode_dataset

    encoder = build_encoder("efficientnet-lite0", resolution=resolution, device="cpu", cache=cache)
    out = []
    for split in ("train", "test"):
        ds = load_dataset("fashion-mnist", split, None, cache=cache)
        out += [encode_dataset(encoder, ds, cache_dir(cache) / "features", progress=True), ds.labels]
    return out[0], out[1], out[2], out[3]


def score_cuts(
    x: torch.Tensor, y: np.ndarray, q: torch.Tensor, qy: np.ndarray, prep: str
) -> dict[str, float]:
    """Accuracy of every row's cut on one (support, query) pair, sharing one set of statistics."""
    pre = Preprocess(prep)
    xs, qs = pre.fit_transform(x), pre.transform(q)
    clf = FaastClassifier(tau="auto").fit(xs, y)
    out = {"auto": float(np.mean(clf.predict(qs) == qy))}
    for a in ALPHAS:
        clf.set_params(tau=None, alpha=a).solve()
        out[f"alpha={a}"] = float(np.mean(clf.predict(qs) == qy))
    clf.set_params(tau="gcv", alpha=None).solve()
    out["gcv"] = float(np.mean(clf.predict(qs) == qy))
    clf.set_params(tau=None, alpha=None, ridge="gcv").solve()
    out["ridge=gcv"] = float(np.mean(clf.predict(qs) == qy))
    factor = clf.memory_.stats.factor()
    design = clf._design(qs.to(torch.float64))  # the queries as the solve sees them (intercept column)
    variants = {
        "auto (PRESS)": ("press", ("ridge",)),
        "auto (errors ± SE, PRESS)": ("error-se", ("ridge",)),
        "auto (truncation)": ("error", ("truncation",)),
        "auto (both)": ("error", ("truncation", "ridge")),
    }
    for name, (criterion, families) in variants.items():
        phi, _, _ = factor.loo_choice(criterion, families)
        pred = clf.classes_[(design @ factor.weights(phi).T).argmax(dim=1).numpy()]
        out[name] = float(np.mean(pred == qy))
    return out


def _machine() -> str:
    return machine_line()


def mean_rows(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    tx, ty, sx, sy = load_features(args.cache_dir, args.resolution)
    fit_idx, val_idx = validation_split(ty, round(len(ty) / 6), args.seed)
    if args.split == "validation":  # never touch the test split
        sx, sy = tx[val_idx], ty[val_idx]
        tx, ty = tx[fit_idx], ty[fit_idx]
        fit_idx, val_idx = validation_split(ty, round(len(ty) / 6), args.seed)
    table: dict[str, dict[str, float]] = {}
    chosen: dict[str, str] = {}
    shots = [int(s) for s in args.shots.split(",") if s.strip()]
    for k in shots:
        start = time.perf_counter()
        val_eps = sample_episodes(ty[fit_idx], ty[val_idx], ways=None, shots=k, queries=20,
                                  episodes=args.val_episodes, seed=args.seed + 1_000)  # fmt: skip
        val = mean_rows([
            score_cuts(tx[fit_idx[e.support]], ty[fit_idx[e.support]], tx[val_idx[e.query]],
                       ty[val_idx[e.query]], args.prep)
            for e in val_eps
        ])  # fmt: skip
        test_eps = sample_episodes(
            ty, sy, ways=None, shots=k, queries=20, episodes=args.episodes, seed=args.seed
        )
        test = mean_rows(
            [score_cuts(tx[e.support], ty[e.support], sx[e.query], sy[e.query], args.prep) for e in test_eps]
        )
        regime = f"{k}-shot"
        chosen[regime] = max(VALIDATED, key=lambda r: val[r])  # ties: first in order
        table[regime] = {**test, "validated": test[chosen[regime]]}
        print(f"{regime}: {time.perf_counter() - start:.0f} s, validated {chosen[regime]}", flush=True)
    if not args.skip_full:
        start = time.perf_counter()
        val = score_cuts(tx[fit_idx], ty[fit_idx], tx[val_idx], ty[val_idx], args.prep)
        test = score_cuts(tx, ty, sx, sy, args.prep)
        chosen["full"] = max(VALIDATED, key=lambda r: val[r])
        table["full"] = {**test, "validated": test[chosen["full"]]}
        print(f"full: {time.perf_counter() - start:.0f} s, validated {chosen['full']}", flush=True)
    return {
        "table": table,
        "validated_choice": chosen,
        "settings": {
            **vars(args),
            "machine": _machine(),
        },
    }


def markdown(result: dict) -> str:
    table, chosen = result["table"], result["validated_choice"]
    regimes = list(table)
    rows = [*ROWS, "validated"]
    lines = ["| cut | " + " | ".join(regimes) + " | mean |", "|---" * (len(regimes) + 2) + "|"]
    for r in rows:
        accs = [100 * table[g][r] for g in regimes]
        lines.append(f"| {r} | " + " | ".join(f"{a:.2f}" for a in accs) + f" | {np.mean(accs):.2f} |")
    lines.append("")
    lines.append("validated choice: " + ", ".join(f"{g}: {chosen[g]}" for g in regimes))
    gaps = [100 * (table[g]["auto"] - table[g]["validated"]) for g in regimes]
    lines.append(
        f"auto − validated: mean {np.mean(gaps):+.2f} points, worst {min(gaps):+.2f} points "
        f"({', '.join(f'{g} {d:+.2f}' for g, d in zip(regimes, gaps, strict=True))})"
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shots", default="1,5,16,64")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--val-episodes", type=int, default=10)
    p.add_argument("--skip-full", action="store_true")
    p.add_argument("--prep", default="center-l2", choices=["none", "l2", "center", "center-l2"])
    p.add_argument("--split", default="test", choices=["test", "validation"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/classifier_cuts")
    args = p.parse_args()
    result = run(args)
    md = markdown(result)
    print(md)
    out = Path(args.out)
    write_public_json(out.with_suffix(".json"), result, indent=2)
    where = (
        "test split (queries: Fashion-MNIST test images)" if args.split == "test" else "validation split only"
    )
    header = (
        f"Command: `python benchmarks/classifier_cuts.py {' '.join(sys.argv[1:])}`  \n"
        f"Data: Fashion-MNIST, frozen EfficientNet-Lite0 @{args.resolution} px (1280-d features), "
        f"prep {args.prep}; 10-way K-shot: {args.episodes} episodes, 20 queries/class; "
        f"scored on {where}; "
        f"seed {args.seed}  \nMachine: {result['settings']['machine']}, {args.threads} thread(s)\n"
    )
    write_public_text(out.with_suffix(".md"), f"{header}\n{md}\n")


if __name__ == "__main__":
    main()
