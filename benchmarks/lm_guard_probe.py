"""One draw of a guard study, probed: is the draw's winner bad everywhere, or are the development
sentences special?

Fits the draw as ``benchmarks/lm_guard.py`` does without lead demonstrations or ``--balance`` (same
split, seeds, hold-out share and folds),
then reads the winner (guard ``none``) and the memory off on the development sentences and on
``--samples`` fresh samples of ``--size`` sentences drawn from the support pool outside the draw
(seeded 100, 101, ...). Accuracy (%) of each and the change, one line per set.

    python benchmarks/lm_guard_probe.py --model smollm2 --seed 2 --k 64 --draw 1 \
        --out benchmarks/results/lm_guard_seed2/probe_smollm2_k64_draw1.md
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from faast.lm import FaastConfig, get_faast_model
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_choice import MEMORY_OFF
from faast.lm.text import load_causal_lm
from faast.publish import write_public_text
from lm_guard import CANDIDATES, LABELS, TEMPLATE, dev_scores, development_split, draw_support
from task_bench import MODEL_NAMES, published_candidates

#: Sentences per batch when scoring (lm_guard.py's default --batch-size).
BATCH_SIZE = 16


def probe(args: argparse.Namespace) -> list[dict]:
    """Rows (set, memory-off accuracy, winner accuracy, change) for the probed draw."""
    support, dev, _ = development_split(args.dev, args.split_seed, 1, args.seed)
    drawn = draw_support(support, args.seed, args.k, args.draw)
    inside = {id(e) for e in drawn}
    outside = [e for e in support if id(e) not in inside]
    if args.size > len(outside):
        raise SystemExit(f"--size {args.size}: only {len(outside)} sentences lie outside the draw")
    model, tok = load_causal_lm(args.model, device=args.device)
    spec = TaskSpec(TEMPLATE, "answer", LABELS)
    task = TaskModel(
        get_faast_model(model, FaastConfig(num_memories=0)), tok, spec, cache=True
    )  # as lm_guard.py
    report = task.fit(
        drawn,
        labels=LABELS,
        candidates=published_candidates(),
        hold_out=args.hold_out,
        folds=args.folds,
        seed=args.seed,
        progress=False,
    )
    winner = report.decisions["none"]
    sets = [("development", dev)] + [
        (f"fresh sample {i} (seed {100 + i})", random.Random(100 + i).sample(outside, args.size))
        for i in range(args.samples)
    ]
    rows = []
    for name, examples in sets:
        task.use(MEMORY_OFF)
        off = 100 * dev_scores(task, examples, BATCH_SIZE)[0]
        task.use(CANDIDATES[winner])
        on = 100 * dev_scores(task, examples, BATCH_SIZE)[0]
        rows.append({"set": name, "n": len(examples), "off": off, "winner": on, "change": on - off})
    return [{"winner_name": winner, "sign_flip_p": report.sign_flip_p}, *rows]


def markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    head, sets = rows[0], rows[1:]
    out = [
        f"`{command}`: {MODEL_NAMES.get(args.model, args.model)}, draw {args.draw} of k = {args.k} (seed"
        f" {args.seed}, split seed {args.split_seed}), held out {args.hold_out:g} in {args.folds} fold(s);"
        f" winner {head['winner_name']}, sign-flip p = {head['sign_flip_p']:.4f}.",
        "",
        "| sentences | n | memory off (%) | winner (%) | change (points) |",
        "|---|---:|---:|---:|---:|",
    ]
    out += [
        f"| {r['set']} | {r['n']} | {r['off']:.2f} | {r['winner']:.2f} | {r['change']:+.2f} |" for r in sets
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--seed", type=int, default=0, help="the study's draw seed (lm_guard.py --seed)")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--dev", type=int, default=400)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--draw", type=int, required=True)
    ap.add_argument("--hold-out", type=float, default=1.0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=3, help="fresh samples from outside the draw")
    ap.add_argument("--size", type=int, default=400, help="sentences per fresh sample")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=None, help="write the table here (Markdown)")
    args = ap.parse_args(argv)
    if args.k < 1 or args.draw < 0 or args.samples < 0 or args.size < 1 or args.folds < 1:
        raise SystemExit("--k >= 1, --draw >= 0, --samples >= 0, --size >= 1 and --folds >= 1 are required")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rows = probe(args)
    command = (
        f"python benchmarks/lm_guard_probe.py --model {args.model} --seed {args.seed} --k {args.k}"
        f" --draw {args.draw}"
        + (
            f" --hold-out {args.hold_out:g} --folds {args.folds}"
            if (args.hold_out, args.folds) != (1.0, 5)
            else ""
        )
    )
    md = markdown(rows, args, command)
    if args.out:
        write_public_text(Path(args.out), md + "\n")
    print(md)


if __name__ == "__main__":
    main()
