"""The ridge of ``FaastClassifier()`` with one example per class, where leave-one-out cannot rank
penalties: ρ = s / divisor (s = trace(G)/rank(G), the mean non-zero eigenvalue of the examples'
Gram), for a range of divisors, against scikit-learn's ``RidgeClassifierCV``.

Removing a class's only example leaves its class unseen at every penalty, so the ``auto`` cuts
take a penalty from the spectrum alone (:func:`faast.solver.spectral.one_per_class_penalty`). This
benchmark is how its divisor was chosen (2026-12-06: ρ = s, until then s/100), on development
data only — no test split:

* Fashion-MNIST validation episodes: the demo's frozen EfficientNet-Lite0 features (1280-d, 64 px,
  fetched and encoded on first use), support and queries both from the training split (the
  validation part of ``classifier_cuts.py --split validation``), 10-way and 5-way, 1 shot, 20
  queries per class, ``--episodes`` episodes, features raw (``none``), L2-normalised (``l2``) and
  centred then L2-normalised (``center-l2``);
* synthetic N-way 1-shot data (seeded): class centres N(0, I_d), each example its centre plus
  noise·N(0, I_d), 5 queries per class, ``--draws`` draws per row; unit-norm rows at d = 256 with
  32 to 400 classes (n from far below d to beyond it), and raw rows at d = 64, centred at the
  origin or shifted by +3 in every feature (far from the origin for a ridge without centring).

The table gives each row's accuracy (%) per divisor; the last rows the loss of each divisor
against the best divisor of its row, worst and mean over the rows: the default takes the divisor
with the smallest worst loss (a few points lost on some data rather than tens on other).

    python benchmarks/classifier_one_shot.py   # writes benchmarks/results/classifier_one_shot.{json,md,png}
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.linear_model import RidgeClassifierCV
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import faast.solver.spectral as spectral
from faast.classifier import FaastClassifier
from faast.environment import machine_line
from faast.eval.episodes import sample_episodes
from faast.eval.preprocess import Preprocess
from faast.eval.splits import validation_split
from faast.publish import save_figure

#: ρ = s / divisor for each column (s / 100 was the default until 2026-12-06).
DIVISORS = (100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.01)
RIDGE_CV_ALPHAS = np.logspace(-6, 3, 25)  # as classifier_datasets.py
#: (d, classes, noises, unit-norm rows, offsets) of the synthetic rows.
SYNTHETIC = (
    (256, (32, 128, 256, 400), (0.5, 1.0, 2.0), True, (0.0,)),
    (64, (16, 32, 64, 100), (0.6, 1.2), False, (0.0, 3.0)),
)


@contextmanager
def divisor(value: float) -> Iterator[None]:
    """``FaastClassifier()``'s one-example-per-class penalty at ρ = s / ``value`` inside the block."""
    before = spectral.ONE_PER_CLASS_DIVISOR
    spectral.ONE_PER_CLASS_DIVISOR = value
    try:
        yield
    finally:
        spectral.ONE_PER_CLASS_DIVISOR = before


def accuracies(
    x: np.ndarray | torch.Tensor, y: np.ndarray, q: np.ndarray | torch.Tensor, qy: np.ndarray
) -> dict:
    """Accuracy (%) of ``FaastClassifier()`` at every divisor and of RidgeClassifierCV, one support
    set x (n, d) with labels y (n,), queries q (m, d) with labels qy (m,)."""
    out = {}
    for div in DIVISORS:
        with divisor(div), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # far-from-origin warnings on the shifted rows
            clf = FaastClassifier().fit(x, y)
        out[f"s/{div:g}"] = 100.0 * float(np.mean(clf.predict(q) == qy))
    ridge = RidgeClassifierCV(alphas=RIDGE_CV_ALPHAS).fit(np.asarray(x), y)
    out["RidgeClassifierCV"] = 100.0 * float(np.mean(ridge.predict(np.asarray(q)) == qy))
    return out


def mean_row(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def synthetic_rows(draws: int) -> Iterator[tuple[str, dict]]:
    for d, classes, noises, unit, offsets in SYNTHETIC:
        for c in classes:
            for noise in noises:
                for offset in offsets:
                    rows = []
                    for seed in range(draws):
                        rng = np.random.default_rng(seed)
                        centres = rng.normal(size=(c, d))
                        y, qy = np.arange(c), np.repeat(np.arange(c), 5)
                        x = centres + noise * rng.normal(size=(c, d)) + offset
                        q = centres[qy] + noise * rng.normal(size=(len(qy), d)) + offset
                        if unit:
                            x /= np.linalg.norm(x, axis=1, keepdims=True)
                            q /= np.linalg.norm(q, axis=1, keepdims=True)
                        rows.append(accuracies(x, y, q, qy))
                    kind = "unit-norm" if unit else f"offset {offset:g}"
                    yield f"synthetic d={d}, {c} classes, noise {noise:g}, {kind}", mean_row(rows)


def fashion_rows(episodes: int, cache: str | None, resolution: int) -> Iterator[tuple[str, dict]]:
    from classifier_cuts import load_features  # benchmarks/ on the path, as when run from the repo

    train_x, train_y, _, _ = load_features(cache, resolution)  # the test split is never read here
    fit_idx, val_idx = validation_split(train_y, round(len(train_y) / 6), 0)
    qx, qy = train_x[val_idx], train_y[val_idx]
    sx, sy = train_x[fit_idx], train_y[fit_idx]
    for ways in (None, 5):
        eps = sample_episodes(sy, qy, ways=ways, shots=1, queries=20, episodes=episodes, seed=0)
        for prep in ("none", "l2", "center-l2"):
            rows = []
            for e in eps:
                pre = Preprocess(prep)
                support, queries = pre.fit_transform(sx[e.support]), pre.transform(qx[e.query])
                rows.append(accuracies(support, sy[e.support], queries, qy[e.query]))
            yield f"Fashion-MNIST validation, {ways or 10}-way, {prep}", mean_row(rows)


def losses(table: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per divisor column: the worst and the mean loss (points) against the best divisor of each row."""
    columns = [f"s/{d:g}" for d in DIVISORS]
    gaps = {c: [max(r[k] for k in columns) - r[c] for r in table.values()] for c in columns}
    return {c: {"worst": max(g), "mean": float(np.mean(g))} for c, g in gaps.items()}


def markdown(result: dict) -> str:
    columns = [f"s/{d:g}" for d in DIVISORS] + ["RidgeClassifierCV"]
    lines = [
        "| data (1 example per class) | "
        + " | ".join(f"ρ = {c}" if c.startswith("s/") else c for c in columns)
        + " |"
    ]
    lines.append("|---" * (len(columns) + 1) + "|")
    for name, row in result["table"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    for what in ("worst", "mean"):
        cells = [f"{result['losses'][c][what]:.2f}" for c in columns[:-1]]
        lines.append(f"| {what} loss against the row's best divisor | " + " | ".join(cells) + " | |")
    lines.append("")
    lines.append(f"Smallest worst loss: ρ = {result['chosen']}.")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    divs = list(DIVISORS)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for what, style in (("worst", "o-"), ("mean", "s--")):
        ax.plot([1 / d for d in divs], [result["losses"][f"s/{d:g}"][what] for d in divs], style, label=what)
    ax.set_xscale("log")
    ax.set_xlabel("ρ / s (s: mean non-zero eigenvalue of the Gram)")
    ax.set_ylabel("points below the row's best ρ")
    ax.set_title("One example per class: FaastClassifier's ridge")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    from classifier_datasets import write_results

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=40, help="Fashion-MNIST validation episodes per row")
    p.add_argument("--draws", type=int, default=3, help="seeded draws per synthetic row")
    p.add_argument("--skip-fashion", action="store_true", help="synthetic rows only (no encoder)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/classifier_one_shot")
    args = p.parse_args()
    torch.set_num_threads(1)
    table = {}
    sources = [synthetic_rows(args.draws)]
    if not args.skip_fashion:
        sources.append(fashion_rows(args.episodes, args.cache_dir, args.resolution))
    with threadpool_limits(1):
        for source in sources:
            for name, row in tqdm(source, desc="rows", unit="row"):
                table[name] = row
    result = {"table": table, "losses": losses(table), "settings": {**vars(args), "machine": machine_line()}}
    result["chosen"] = min(result["losses"], key=lambda c: result["losses"][c]["worst"])
    md = markdown(result)
    print(md)
    data = f"synthetic N-way 1-shot ({args.draws} seeded draws per row)" + (
        ""
        if args.skip_fashion
        else f"; Fashion-MNIST validation episodes ({args.episodes} per row, seed 0), "
        f"EfficientNet-Lite0 @{args.resolution} px features"
    )
    write_results(args.out, result, md, "classifier_one_shot.py", data, plot)


if __name__ == "__main__":
    main()
