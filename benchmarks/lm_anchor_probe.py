"""Why a fit's guard keeps (or leaves) the plain zero-shot model: the two zero-shot read-outs as the
``balanced-best`` anchor sees them on the fit's own held-out examples.

For each draw of ``benchmarks/lm_authors.py`` (the same pool, split and draws: ``--seed``,
``--split-seed``, ``--test``), fits the k support passages with the library's defaults and reports,
for the plain zero-shot read-out and its calibrated twin: the label-mix distance of their predicted
labels on the held-out passages (:func:`faast.lm.task_choice.label_mix_distance`), their mean
held-out log-likelihood, held-out accuracy and predicted label counts, and the fit's choice. Only
the support passages are read (every held-out example is one of them): no test passage is scored.

    python benchmarks/lm_anchor_probe.py --model gemma3 --k 16 --draws 3 \
        --out benchmarks/results/lm_authors/anchor_probe_gemma3_k16.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from faast.lm import FaastConfig, get_faast_model
from faast.lm.task import FitReport, TaskModel, TaskSpec
from faast.lm.task_choice import MEMORY_OFF, label_mix_distance
from faast.lm.text import load_causal_lm
from faast.publish import write_public_text
from passage_data import LABELS, TEMPLATE, draw_support, load_data
from task_bench import MODEL_NAMES, machine

#: The two zero-shot read-outs the anchor weighs, by their candidate names.
PLAIN = MEMORY_OFF.name
CALIBRATED = MEMORY_OFF.calibrated().name


def zero_shot_lines(report: FitReport, draw: int) -> list[dict]:
    """One line per zero-shot read-out of ``report`` (the plain one, its calibrated twin): label-mix
    distance, mean held-out log-likelihood, held-out accuracy, predicted label counts."""
    targets = report.validation_targets
    items = report.validation_items
    if targets is None or items is None:
        raise ValueError("the fit validated nothing (fewer than 8 examples): nothing to probe")
    lines = []
    for name in (PLAIN, CALIBRATED):
        predicted = report.validation_predicted[name]
        lines.append(
            {
                "draw": draw,
                "read-out": name,
                "label-mix distance": label_mix_distance(predicted, targets),
                "mean held-out log-likelihood": float(report.validation_loglik[name].sum() / items.sum()),
                "held-out accuracy %": 100 * float((predicted == targets).double().mean()),
                "predicted per label": torch.bincount(predicted, minlength=len(LABELS)).tolist(),
                "chosen": report.chosen.name,
            }
        )
    return lines


def probe(model_name: str, k: int, draws: int, seed: int, split_seed: int, test: int) -> list[dict]:
    """The lines of every draw (see :func:`zero_shot_lines`) of ``model_name`` at ``k`` passages."""
    pool, _ = load_data(test, split_seed)
    model, tok = load_causal_lm(model_name)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    task = TaskModel(fm, tok, TaskSpec(TEMPLATE, "answer", LABELS), cache=True)
    lines = []
    for draw in range(draws):
        task.reset()
        report = task.fit(draw_support(pool, k, seed, draw), labels=LABELS, seed=seed, progress=False)
        lines += zero_shot_lines(report, draw)
    return lines


def markdown(lines: list[dict], command: str, where: str) -> str:
    cols = list(lines[0])

    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    head = (
        f"Command: `{command}`  \nMachine: {where}  \nLabels (counts in this order): {', '.join(LABELS)}\n\n"
    )
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(cell(line[c]) for c in cols) + " |" for line in lines]
    return head + "\n".join(table) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3")
    ap.add_argument("--k", type=int, default=16, help="support passages per draw (a multiple of 4)")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="as lm_authors.py --seed")
    ap.add_argument("--split-seed", type=int, default=0, help="as lm_authors.py --split-seed")
    ap.add_argument("--test", type=int, default=60, help="as lm_authors.py --test (kept out of the pool)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="markdown file to write (default: print only)")
    args = ap.parse_args(argv)
    if args.draws < 1:
        raise SystemExit("--draws must be at least 1")
    torch.set_num_threads(args.threads)
    lines = probe(args.model, args.k, args.draws, args.seed, args.split_seed, args.test)
    command = "python benchmarks/lm_anchor_probe.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = markdown(
        lines, command, f"{machine(args.threads, None)}; {MODEL_NAMES.get(args.model, args.model)}"
    )
    if args.out:
        write_public_text(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    main()
