"""How long ``TaskModel.fit`` takes, and how much its scoring shortcuts save.

A fit learns the examples once (one forward pass over each), then scores every read-out
candidate (76 plain ones, and their calibrated twins for labels) on held-out folds. Two shortcuts
make the scoring cheaper without changing what it computes:

* **label tokens only**: a "prob"-mix candidate (61 of the 76) and the memory off are scored at
  the labels' tokens from the base model's log-probabilities there, computed once per fold
  (``FaastModel.output_token_log_probs``), instead of a pass over the whole vocabulary per
  candidate;
* **learned states**: the held-out examples are scored on the head inputs their learning captured
  (the prompt's, for single-token labels; the whole example's, for free text), not run again.

This benchmark times the same fit with both (``current``) and without either (``reference``: every
candidate through the whole head, held-out examples run again — the scoring before 2026-12-04),
interleaved, in one process, on the same model and examples (both keep the head's ρ² across the
fit's switches between mixes, new at the same time), and checks that the two choose the
same read-out with held-out log-likelihoods equal to float32 rounding. Tasks: ``sentiment``
(positive / negative movie-review sentences, single-token labels) and ``translation``
(English → Spanish Bible verses, free text).

    python benchmarks/lm_fit_time.py --threads 2      # SmolLM2, 200 examples per task (~20 min on 2 threads)

Writes benchmarks/results/lm_fit_time.{json,md,png} (``--out``).
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from faast.assets.text import bible_pairs, movie_review_sentences
from faast.lm.examples import Example
from faast.lm.model import FaastModel
from faast.lm.prompts import PromptTemplate
from faast.lm.task import FitReport, TaskModel
from faast.lm.task_spec import TaskSpec
from faast.lm.text import load_causal_lm
from faast.publish import save_figure, write_public_json, write_public_text
from task_bench import MODEL_NAMES, machine

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    "sentiment": (PromptTemplate("Review: {input}\nSentiment:"), "auto"),
    "translation": (PromptTemplate("English: {input}\nSpanish:"), None),
}
PATHS = ("current", "reference")
#: What each task's examples are, for the published tables.
TASK_DATA = {
    "sentiment": "movie-review sentences (movie-review-sentences asset, labels positive/negative)",
    "translation": "English → Spanish Bible verses of at most 120 characters (bible-en-es asset)",
}


def task_examples(task: str, n: int, seed: int) -> list[Example]:
    """``n`` examples of ``task``, drawn by ``seed``: movie-review sentences with their label, or
    Bible verses of at most 120 characters with their Spanish."""
    rng = random.Random(seed)
    if task == "sentiment":
        rows = movie_review_sentences()
        return [Example(r["text"], r["label"]) for r in rng.sample(rows, n)]
    rows = [r for r in bible_pairs() if len(r["en"]) <= 120]
    return [Example(r["en"], r["es"]) for r in rng.sample(rows, n)]


def fit_once(model: Any, tok: Any, task: str, examples: list[Example], path: str) -> tuple[FitReport, float]:
    """(report, seconds) of a default fit of ``examples``, with the shortcuts (``current``) or
    without (``reference``: the token-level path refused, learned states not shared)."""
    template, labels = TASKS[task]
    tm = TaskModel.create(model, tok, TaskSpec(template))
    saved = FaastModel.output_token_log_probs, TaskModel._share_head_inputs
    if path == "reference":
        FaastModel.output_token_log_probs = lambda self, *a: None  # type: ignore[method-assign]
        TaskModel._share_head_inputs = lambda self, *a: None  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        report = tm.fit(examples, labels=labels, progress=False)
        return report, time.perf_counter() - start
    finally:
        FaastModel.output_token_log_probs, TaskModel._share_head_inputs = saved
        tm.model.unload()


def compare(a: FitReport, b: FitReport) -> float:
    """The largest relative difference between two fits' held-out mean log-likelihoods."""
    return max(abs(a.criterion[k] - v) / max(abs(v), 1e-12) for k, v in b.criterion.items())


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Command: `{res['command']}`  ",
        f"Model: {res['model']}; data: {res['data']}  ",
        f"Machine: {res['machine']} (interleaved: current, reference, current, ...)",
        "",
        "| task | examples | current fit | reference fit | speed-up | same choice "
        "| largest relative difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['task']} | {r['examples']} | {r['current_s']:.1f} s | {r['reference_s']:.1f} s | "
            f"{r['reference_s'] / r['current_s']:.2f}× | {'yes' if r['same_choice'] else 'no'} | "
            f"{r['max_rel_diff']:.1e} |"
        )
    lines.append("")
    lines.append(
        "Seconds: the median over the repeats of each path; every fit chose "
        + "; ".join(f"{r['task']}: `{r['chosen']}`" for r in res["rows"])
        + "."
    )
    return "\n".join(lines) + "\n"


def plot(path: Path, res: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    names = [f"{r['task']}\n({r['examples']} examples)" for r in res["rows"]]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [r["current_s"] for r in res["rows"]], 0.4, label="current")
    ax.bar([i + 0.2 for i in x], [r["reference_s"] for r in res["rows"]], 0.4, label="reference")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("fit time (s)")
    ax.set_title(f"TaskModel.fit on {res['model'].split(' ')[0]}, {res['threads']} thread(s)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3, qwen2.5 or a local folder")
    ap.add_argument("--tasks", default="sentiment,translation")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "lm_fit_time"))
    args = ap.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        ap.error(f"--tasks: unknown {unknown}; known: {', '.join(TASKS)}")
    torch.set_num_threads(args.threads)
    model, tok = load_causal_lm(args.model)
    rows = []
    for task in tasks:
        examples = task_examples(task, args.examples, args.seed)
        seconds: dict[str, list[float]] = {p: [] for p in PATHS}
        reports: dict[str, FitReport] = {}
        for repeat in range(args.repeats):
            for path in PATHS:
                reports[path], s = fit_once(model, tok, task, examples, path)
                seconds[path].append(s)
                print(f"[{task}] {path} fit {repeat + 1}/{args.repeats}: {s:.1f} s", flush=True)
        rows.append(
            {
                "task": task,
                "examples": len(examples),
                "current_s": statistics.median(seconds["current"]),
                "reference_s": statistics.median(seconds["reference"]),
                "seconds": seconds,
                "same_choice": reports["current"].chosen == reports["reference"].chosen,
                "chosen": reports["current"].chosen.name,
                "max_rel_diff": compare(reports["current"], reports["reference"]),
            }
        )
    res = {
        "command": "python benchmarks/lm_fit_time.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": MODEL_NAMES.get(args.model, args.model),
        "data": (
            f"{args.examples} examples per task drawn by seed {args.seed}: "
            + " and ".join(TASK_DATA[t] for t in tasks)
            + "; the library's default fit (5 folds, every example held out once)"
        ),
        "machine": machine(args.threads),
        "threads": args.threads,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_public_json(out.with_suffix(".json"), res)
    write_public_text(out.with_suffix(".md"), markdown(res))
    plot(out.with_suffix(".png"), res)
    print(markdown(res))


if __name__ == "__main__":
    main()
