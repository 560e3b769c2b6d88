"""What OpenBLAS's kernel choice does to faast's CPU times (docs/reliability.md, "BLAS kernels").

The AMD EPYC development VM sets ``OPENBLAS_CORETYPE=Haswell`` and ``OPENBLAS_L2_SIZE=512`` in every
shell (older OpenBLAS builds failed on its CPU); NumPy's and SciPy's OpenBLAS then run their AVX2
kernels, where with both variables unset they choose AVX-512 ones. This command runs
:mod:`classifier_speed`'s measurements (full data with ``LogisticRegression``, and ``--episodes``
64-shot episodes) in child processes, alternating the two environments ``--repeats`` times, one
thread each, and tabulates medians per environment with the kernels each child ran
(threadpoolctl). Needs the demo's feature cache (run ``faast demo`` first).

    python benchmarks/blas_kernels.py       # writes benchmarks/results/blas_kernels.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from faast.environment import cpu_name
from faast.publish import write_public_json, write_public_text

sys.path.insert(0, str(Path(__file__).parent))

#: The environments compared: name → variables set (None: removed).
ENVIRONMENTS: dict[str, dict[str, str | None]] = {
    "VM setting (OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE=512)": {
        "OPENBLAS_CORETYPE": "Haswell",
        "OPENBLAS_L2_SIZE": "512",
    },
    "OpenBLAS's own choice (both unset)": {"OPENBLAS_CORETYPE": None, "OPENBLAS_L2_SIZE": None},
}
#: Measurements tabulated, in order: (row label, regime, column of classifier_speed's stages).
ROWS = (
    ("float64 statistics (Gram), full data", "full", "statistics"),
    ("eigendecomposition 1,281 × 1,281, full data", "full", "eigendecomposition"),
    ("FaastClassifier fit, full data", "full", "FAAST fit"),
    ("RidgeClassifier fit, full data", "full", "Ridge fit"),
    ("FaastClassifier(loss='logistic') fit, full data", "full", "FAAST logistic fit"),
    ("LogisticRegression(C=10) fit, full data", "full", "LogReg fit"),
    ("FaastClassifier fit, 64-shot", "64-shot", "FAAST fit"),
    ("RidgeClassifier fit, 64-shot", "64-shot", "Ridge fit"),
)
#: Ratios tabulated per environment: (label, numerator row, denominator row).
RATIOS = (
    (
        "LogisticRegression / FaastClassifier(loss='logistic'), full data",
        "LogisticRegression(C=10) fit, full data",
        "FaastClassifier(loss='logistic') fit, full data",
    ),
    (
        "FaastClassifier / RidgeClassifier, full data",
        "FaastClassifier fit, full data",
        "RidgeClassifier fit, full data",
    ),
    (
        "FaastClassifier / RidgeClassifier, 64-shot",
        "FaastClassifier fit, 64-shot",
        "RidgeClassifier fit, 64-shot",
    ),
)


def child(args: argparse.Namespace) -> dict:
    """One repeat in this process's environment: the measurements and the kernels that ran."""
    import numpy as np
    import torch.nn.functional as F
    from threadpoolctl import threadpool_limits

    from classifier_cuts import load_features
    from classifier_speed import full_data_run, stages
    from faast.environment import blas_summary
    from faast.eval.episodes import sample_episodes

    torch.set_num_threads(1)
    tx, ty, _, sy = load_features(args.cache_dir, 64)
    tx = F.normalize(tx, dim=1)
    out: dict[str, dict[str, float]] = {}
    with threadpool_limits(1):
        eps = sample_episodes(ty, sy, ways=None, shots=64, queries=20, episodes=args.episodes, seed=0)
        runs = [stages(tx[e.support], ty[e.support]) for e in eps]
        out["64-shot"] = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
        out["full"] = full_data_run(tx, np.asarray(ty), logreg=True)
    return {"table": out, "kernels": blas_summary()}


def _environment(changes: dict[str, str | None]) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run(args: argparse.Namespace) -> dict:
    names = list(ENVIRONMENTS)  # which one runs first alternates from repeat to repeat
    order = [n for i in range(args.repeats) for n in (names if i % 2 == 0 else names[::-1])]
    runs: dict[str, list[dict]] = {name: [] for name in ENVIRONMENTS}
    command = [sys.executable, __file__, "--child", "--episodes", str(args.episodes)]
    if args.cache_dir:
        command += ["--cache-dir", args.cache_dir]
    for name in tqdm(order, desc="runs", unit="run"):
        done = subprocess.run(
            command, env=_environment(ENVIRONMENTS[name]), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"the run under {name} failed:\n{done.stderr[-2000:]}")
        runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    table = {
        name: {
            label: statistics.median(r["table"][regime][column] for r in found)
            for label, regime, column in ROWS
        }
        for name, found in runs.items()
    }
    kernels = {name: sorted({r["kernels"] for r in found}) for name, found in runs.items()}
    machine = f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    return {"table": table, "kernels": kernels, "settings": {**vars(args), "machine": machine}}


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


def markdown(result: dict) -> str:
    table, kernels = result["table"], result["kernels"]
    names = list(table)
    heads = [f"{name}: {', '.join(kernels[name])}" for name in names]
    lines = [
        f"| measurement | {' | '.join(heads)} | speed-up |",
        "|---" * (len(names) + 2) + "|",
    ]
    for label, _, _ in ROWS:
        cells = [_fmt(table[n][label]) for n in names]
        lines.append(
            f"| {label} | {' | '.join(cells)} | {table[names[0]][label] / table[names[-1]][label]:.2f}× |"
        )
    for label, top, bottom in RATIOS:
        cells = [f"{table[n][top] / table[n][bottom]:.2f}×" for n in names]
        lines.append(f"| {label} | {' | '.join(cells)} | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2, help="runs per environment (alternating)")
    p.add_argument("--episodes", type=int, default=5, help="64-shot episodes per run")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/blas_kernels")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    result = run(args)
    text = (
        f"Command: `python benchmarks/blas_kernels.py{''.join(' ' + a for a in sys.argv[1:])}`  \n"
        "Data: Fashion-MNIST, frozen EfficientNet-Lite0 @64 px (1280-d, L2-normalised), full training set "
        f"and {args.episodes} 64-shot demo episodes (seed 0); medians over {args.repeats} runs per "
        "environment, alternating; 1 thread  \n"
        f"Machine: {result['settings']['machine']} (shared: timings vary)\n\n" + markdown(result) + "\n"
    )
    print(text)
    write_public_json(Path(args.out).with_suffix(".json"), result)
    write_public_text(Path(args.out).with_suffix(".md"), text)


if __name__ == "__main__":
    main()
