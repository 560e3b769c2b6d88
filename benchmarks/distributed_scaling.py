"""Wall time of data-parallel learning with 1 and 2 processes on this machine (docs/distributed.md).

Three jobs, each run ``--repeats`` times with one process and with two (``torchrun
--nproc_per_node 2``), the two alternating (which goes first alternates too), one thread per
process (``OMP_NUM_THREADS=1``):

* **classifier**: ``benchmarks/distributed_fit.py --limit 2000 --test 1000``: EfficientNet-Lite0
  @64 px encodes 2,000 Fashion-MNIST training images (each process its block, no feature cache)
  and ``FaastClassifier(distributed=True)`` fits them; the times of the slowest process, the test
  accuracy on 1,000 test images and a checksum of ``coef_`` (which must not depend on the number
  of processes);
* **lm learn**: ``faast lm learn --model smollm2 --window 256 --threads 1`` on the first 30,000
  characters of *Persuasion* (``austen-novels`` asset): the learning time it prints and the whole
  command's wall time (start-up, model loading, learning, writing); the fast-weight files of the
  two process counts are compared (largest difference relative to the largest entry);
* **task learn**: ``faast task learn --model smollm2 --threads 1 --folds 4 --max-validation 40``
  on 80 movie-review sentences (the first 40 positive and the first 40 negative of the
  ``movie-review-sentences`` asset, template ``Review:{input}\\nSentiment:``): the learning and
  cross-validation time it prints and the whole command's wall time.

Needs the offline assets (``faast assets fetch --group demo`` and ``smollm2-135m-instruct``,
``austen-novels``, ``movie-review-sentences``). About ten minutes on the 2-core VM.

    python benchmarks/distributed_scaling.py     # writes benchmarks/results/distributed_scaling.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from tqdm import tqdm

from faast.environment import machine_line
from faast.publish import write_public_json, write_public_text

ROOT = Path(__file__).resolve().parents[1]
JOBS = ("classifier", "lm learn", "task learn")
PROCESSES = (1, 2)
TEXT_CHARS = 30_000
TASK_PER_LABEL = 40
TASK_TEMPLATE = "Review:{input}\\nSentiment:"
#: "[faast] N pairs in S s" — the learning time the lm and task commands print.
LEARNED = re.compile(r"\[faast\] \d+ pairs in ([0-9.]+) s")


def _launcher(processes: int) -> list[str]:
    """The interpreter, under ``torchrun --nproc_per_node P`` for P > 1."""
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]


def command(job: str, processes: int, inputs: dict[str, Path], out: Path) -> list[str]:
    """The command line of one run of ``job`` on ``processes`` processes, writing to ``out``."""
    if job == "classifier":
        return [
            *_launcher(processes),
            str(ROOT / "benchmarks" / "distributed_fit.py"),
            "--limit",
            "2000",
            "--test",
            "1000",
        ]
    if job == "lm learn":
        args = ["lm", "learn", "--model", "smollm2", "--text", str(inputs["text"]), "--window", "256"]
    elif job == "task learn":
        args = [
            "task",
            "learn",
            "--model",
            "smollm2",
            "--examples",
            str(inputs["examples"]),
            "--template",
            TASK_TEMPLATE,
        ]
        args += ["--folds", "4", "--max-validation", "40"]
    else:
        raise ValueError(f"unknown job {job!r}; expected one of {JOBS}")
    return [*_launcher(processes), "-m", "faast", *args, "--out", str(out), "--threads", "1"]


def parse(job: str, stdout: str) -> dict[str, Any]:
    """What a run printed: the classifier's JSON line, or the learning time of a faast command."""
    if job == "classifier":
        line = [x for x in stdout.splitlines() if x.startswith("{")][-1]
        data = json.loads(line)
        return {
            "encode+fit s": float(data["encode_plus_fit_s"]),
            "encode s": max(data["encode_s_per_rank"]),
            "fit s": max(data["fit_s_per_rank"]),
            "test accuracy": float(data["test_accuracy"]),
            "coef checksum": float(data["coef_checksum"]),
        }
    found = LEARNED.findall(stdout)
    if not found:
        raise RuntimeError(f"{job}: no '[faast] N pairs in S s' line in its output:\n{stdout[-2000:]}")
    return {"learning s": float(found[-1])}


def run_once(job: str, processes: int, inputs: dict[str, Path], out: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(
        command(job, processes, inputs, out), env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{job} on {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return {"wall s": wall, "load average": load, **parse(job, done.stdout)}


def relative_difference(a: Path, b: Path) -> float:
    """Largest |a − b| over the floating tensors of two safetensors files, relative to the largest
    |a| of the same tensor (0 when every tensor is equal)."""
    ta, tb = load_file(str(a)), load_file(str(b))
    if set(ta) != set(tb):
        raise ValueError(f"{a} and {b} hold different tensors")
    worst = 0.0
    for name, x in ta.items():
        if x.is_floating_point():
            scale = float(x.double().abs().max()) or 1.0
            worst = max(worst, float((x.double() - tb[name].double()).abs().max()) / scale)
    return worst


def prepare_inputs(folder: Path) -> dict[str, Path]:
    """The text and the examples file the faast commands learn."""
    from faast.assets.core import cache_dir
    from faast.assets.text import movie_review_sentences

    text = folder / "persuasion-30k.txt"
    source = cache_dir(None) / "austen-novels" / "texts" / "persuasion.txt"
    text.write_text(source.read_text(encoding="utf-8")[:TEXT_CHARS], encoding="utf-8")
    rows = movie_review_sentences()
    picked = [r for r in rows if r["label"] == "positive"][:TASK_PER_LABEL]
    picked += [r for r in rows if r["label"] == "negative"][:TASK_PER_LABEL]
    examples = folder / "reviews.tsv"
    lines = [f"{' '.join(r['text'].split())}\t{r['label']}" for r in picked]
    examples.write_text("input\toutput\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return {"text": text, "examples": examples}


def run(args: argparse.Namespace) -> dict[str, Any]:
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {j: {p: [] for p in PROCESSES} for j in jobs}
    checks: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = prepare_inputs(folder)
        plan = [(rep, job) for rep in range(args.repeats) for job in jobs]
        for rep, job in tqdm(plan, desc="runs", unit="pair"):
            order = PROCESSES if rep % 2 == 0 else PROCESSES[::-1]
            for p in order:
                out = folder / f"{job.replace(' ', '-')}-{p}.safetensors"
                runs[job][p].append(run_once(job, p, inputs, out))
        if "lm learn" in jobs:
            checks["lm learn: fast weights, 1 vs 2 processes (relative)"] = relative_difference(
                folder / "lm-learn-1.safetensors", folder / "lm-learn-2.safetensors"
            )
    if "classifier" in jobs:
        for key in ("test accuracy", "coef checksum"):
            checks[f"classifier: {key}"] = {
                p: sorted({r[key] for r in runs["classifier"][p]}) for p in PROCESSES
            }
    loads = [r["load average"] for j in runs.values() for p in j.values() for r in p]
    settings = {**vars(args), "machine": machine_line(), "load average": [min(loads), max(loads)]}
    return {"runs": runs, "checks": checks, "settings": settings}


#: The rows of the table: (job, measurement, label).
ROWS = (
    ("classifier", "encode+fit s", "classifier: feature extraction + fit, slowest process"),
    ("classifier", "encode s", "— of which encoding"),
    ("classifier", "fit s", "— of which fit (accumulate + all-reduce + eigh of 1,281 × 1,281)"),
    ("lm learn", "learning s", "`faast lm learn`: learning, as printed"),
    ("lm learn", "wall s", "— the whole command (start-up, model loading, learning, writing)"),
    ("task learn", "learning s", "`faast task learn`: learning and cross-validation, as printed"),
    ("task learn", "wall s", "— the whole command"),
)


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        "| job | 1 process | 2 processes (`torchrun --nproc_per_node 2`) | median 1 / median 2 |",
        "|---|---:|---:|---:|",
    ]
    for job, key, label in ROWS:
        if job not in runs:
            continue
        cells = [", ".join(f"{r[key]:.2f} s" for r in runs[job][p]) for p in PROCESSES]
        one, two = (statistics.median(r[key] for r in runs[job][p]) for p in PROCESSES)
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {one / two:.2f}× |")
    checks = result["checks"]
    if checks:
        lines += ["", "Results against the number of processes:", ""]
        for name, value in checks.items():
            if isinstance(value, dict):
                text = "; ".join(f"{p} process{'es' if int(p) > 1 else ''}: {v}" for p, v in value.items())
            else:
                text = f"{value:.1e}"
            lines.append(f"- {name}: {text}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2, help="runs per job and process count (alternating)")
    p.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, among {', '.join(JOBS)}")
    p.add_argument("--out", default="benchmarks/results/distributed_scaling")
    args = p.parse_args()
    result = run(args)
    low, high = result["settings"]["load average"]
    text = (
        f"Command: `python benchmarks/distributed_scaling.py{''.join(' ' + a for a in sys.argv[1:])}`  \n"
        "Data: 2,000 Fashion-MNIST training images (EfficientNet-Lite0 @64 px) and 1,000 test images, "
        f"seed 0; SmolLM2-135M-Instruct on the first {TEXT_CHARS:,} characters of Persuasion and on "
        f"{2 * TASK_PER_LABEL} Pang & Lee sentences; {args.repeats} runs each, 1 and 2 processes "
        f"alternating; one thread per process; load average {low:.1f}–{high:.1f} at the starts  \n"
        f"Machine: {result['settings']['machine']} (shared: timings vary)\n\n" + markdown(result) + "\n"
    )
    print(text)
    write_public_json(Path(args.out).with_suffix(".json"), result)
    write_public_text(Path(args.out).with_suffix(".md"), text)


if __name__ == "__main__":
    main()
