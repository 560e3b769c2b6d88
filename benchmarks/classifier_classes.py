"""Fit time, first-prediction time and peak memory of FaastClassifier as the number of classes grows.

Few-shot data with many classes (ImageNet's 1,000, product catalogues) makes the default cut's
exact leave-one-out score n × m held-out predictions at every one of its 25 ridge levels. This
command measures what that costs, against scikit-learn's ``RidgeClassifierCV`` (the same choice:
α among 25 values by exact leave-one-out) and ``RidgeClassifier`` (α fixed), on synthetic
features: ``--dim`` Gaussian dimensions, each class a Gaussian (noise 4 per dimension) around
its own random mean (a standard Gaussian vector; seeded), rows L2-normalised, ``--shots``
examples per class for ``--classes`` classes, and 1,000 query rows. One thread (torch and BLAS).

Every (classes, shots, method) runs in a fresh Python process (this file with ``--one``), so
the peak resident memory it reports (``ru_maxrss``) is that one fit's and prediction's, data
included; the data alone (the ``data only`` row) is measured the same way. Before the timed fit,
one fit on four classes' examples pays the process's one-time costs. Times: the fit, then
the first ``predict_proba`` on the queries (FAAST's first one also chooses ``logit_scale="auto"``'s
temperature), and the query accuracy.

    python benchmarks/classifier_classes.py   # writes benchmarks/results/classifier_classes.{json,md,png}
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from faast.environment import machine_line
from faast.publish import save_figure, write_public_json, write_public_text

METHODS = ("data only", "FAAST", "RidgeClassifierCV", "RidgeClassifier")
QUERIES = 1000
#: Noise per dimension around each class mean, in units of the means' own scale.
NOISE = 4.0


def make_data(classes: int, shots: int, dim: int, seed: int) -> tuple[np.ndarray, ...]:
    """(X (classes·shots, dim), y, queries (QUERIES, dim), their labels), float32, rows
    L2-normalised: class c's rows are its mean (a standard Gaussian vector) plus Gaussian noise
    ``NOISE`` times that scale, so that few-shot accuracy is far from both chance and 100 %."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, dim))
    y = np.repeat(np.arange(classes), shots)
    qy = rng.integers(0, classes, QUERIES)
    X = means[y] + NOISE * rng.standard_normal((len(y), dim))
    Q = means[qy] + NOISE * rng.standard_normal((QUERIES, dim))

    def unit(a: np.ndarray) -> np.ndarray:
        return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

    return unit(X), y, unit(Q), qy


def estimator(method: str) -> Any:
    from sklearn.linear_model import RidgeClassifier, RidgeClassifierCV

    from faast import FaastClassifier

    if method == "FAAST":
        return FaastClassifier()
    if method == "RidgeClassifierCV":
        return RidgeClassifierCV(alphas=np.logspace(-6, 3, 25))
    if method == "RidgeClassifier":
        return RidgeClassifier()
    raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")


def measure_one(method: str, classes: int, shots: int, dim: int, seed: int) -> dict[str, float]:
    """One method on one data set, in this process: seconds of fit and first prediction, query
    accuracy, and this process's peak resident memory (MiB)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    X, y, Q, qy = make_data(classes, shots, dim, seed)
    out: dict[str, float] = {}
    if method != "data only":
        with threadpool_limits(1):
            # one small fit first: the one-time costs of a fresh process (lazy imports, BLAS
            # start-up) are not the fit's
            warm = estimator(method).fit(X[: 4 * shots], y[: 4 * shots])
            warm.decision_function(Q[:10])
            est = estimator(method)
            start = time.perf_counter()
            est.fit(X, y)
            out["fit_s"] = time.perf_counter() - start
            start = time.perf_counter()
            if hasattr(est, "predict_proba"):
                scores = est.predict_proba(Q)
            else:
                scores = est.decision_function(Q)
            out["predict_s"] = time.perf_counter() - start
            out["accuracy"] = float(np.mean(est.classes_[np.argmax(scores, axis=1)] == qy))
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return out


def run_case(method: str, classes: int, shots: int, dim: int, seed: int) -> dict[str, float]:
    """:func:`measure_one` in a fresh process (its own peak memory)."""
    cmd = [
        sys.executable,
        __file__,
        "--one",
        method,
        str(classes),
        str(shots),
        "--dim",
        str(dim),
        "--seed",
        str(seed),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} on {classes} classes failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    classes = [int(c) for c in args.classes.split(",") if c.strip()]
    shots = [int(k) for k in args.shots.split(",") if k.strip()]
    cases = [(c, k) for k in shots for c in classes]
    table: dict[str, dict[str, dict[str, float]]] = {}
    with tqdm(total=len(cases) * len(METHODS), desc="fits", unit="fit") as bar:
        for c, k in cases:
            row = table.setdefault(f"{c} classes × {k} shots", {})
            for method in METHODS:
                row[method] = run_case(method, c, k, args.dim, args.seed)
                bar.update()
            print(f"{c} × {k}", row, flush=True)
    return {"table": table, "settings": {**vars(args), "machine": machine_line(), "threads": 1}}


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.0f} ms"


def markdown(result: dict) -> str:
    methods = [m for m in METHODS if m != "data only"]
    head = ["n × d, classes", *(f"{m} fit" for m in methods), "FAAST first predict_proba"]
    head += [*(f"{m} peak MiB" for m in METHODS), *(f"{m} acc. %" for m in methods)]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    dim = result["settings"]["dim"]
    for regime, row in result["table"].items():
        c, k = (int(t.split()[0]) for t in regime.split(" × "))
        cells = [f"{c * k:,} × {dim}, {c:,}", *(_fmt(row[m]["fit_s"]) for m in methods)]
        cells.append(_fmt(row["FAAST"]["predict_s"]))
        cells += [f"{row[m]['peak_mib']:,.0f}" for m in METHODS]
        cells += [f"{100 * row[m]['accuracy']:.1f}" for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Fit time and peak memory against the number of classes, one line per method and shots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[tuple[str, int], list[tuple[int, float, float]]] = {}
    for regime, row in result["table"].items():
        c, k = (int(t.split()[0]) for t in regime.split(" × "))
        for method, values in row.items():
            series.setdefault((method, k), []).append((c, values.get("fit_s", np.nan), values["peak_mib"]))
    shots = sorted({k for _, k in series})
    for (method, k), points in series.items():
        points.sort()
        xs = [p[0] for p in points]
        style = {
            "color": f"C{METHODS.index(method)}",
            "linestyle": ("-", "--", ":", "-.")[shots.index(k) % 4],
            "marker": "o",
            "label": f"{method}, {k} shots",
        }
        if method != "data only":
            left.plot(xs, [p[1] for p in points], **style)
        right.plot(xs, [p[2] for p in points], **style)
    left.legend(fontsize=7)
    for ax, what in ((left, "fit time (s)"), (right, "peak resident memory (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("classes")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle(
        f"FaastClassifier with many classes ({result['settings']['dim']}-d synthetic features, 1 thread)"
    )
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", default="10,100,1000")
    p.add_argument("--shots", default="2,16")
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/classifier_classes")
    p.add_argument("--one", nargs=3, metavar=("METHOD", "CLASSES", "SHOTS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        method, classes, shots = args.one
        print(json.dumps(measure_one(method, int(classes), int(shots), args.dim, args.seed)))
        return
    result = run(args)
    md = markdown(result)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_public_json(out.with_suffix(".json"), result, indent=2)
    plot(result, out.with_suffix(".png"))
    header = (
        f"Command: `python benchmarks/classifier_classes.py {' '.join(sys.argv[1:])}`  \n"
        f"Data: synthetic Gaussian classes (noise {NOISE:g} per dimension), {args.dim}-d, "
        f"rows L2-normalised, {QUERIES} queries, "
        f"seed {args.seed}; each fit in a fresh process; 1 thread  \n"
        f"Machine: {result['settings']['machine']} (shared: timings vary)\n"
    )
    write_public_text(out.with_suffix(".md"), f"{header}\n{md}\n")


if __name__ == "__main__":
    main()
