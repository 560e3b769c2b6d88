"""Every draw of a guard study, one line each: what the fit saw on its held-out examples against
what the development sentences then showed, and the label mix of the draw (no fits).

For each draw of ``benchmarks/lm_guard.py``'s results: the sign-flip p-value, the winner (guard
``none``), how many held-out examples the winner and the memory off got right in the fit's
cross-validation, the change of held-out accuracy (points), the change of development accuracy
with the winner on (points), whether the default guard kept it on, and how many of the examples the
memory learned carry each label (the draw is made again from the study's own seeds, read from its
command: ``--seed``, ``--split-seed``, ``--dev`` and ``--balance``).

    python benchmarks/lm_guard_draws.py --results benchmarks/results/lm_guard_seed2/lm_guard.json

Writes ``draws.md``, ``draws.csv`` and ``draws.png`` (held-out against development change, per
model) beside the results JSON.
"""

from __future__ import annotations

import argparse
import json
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from faast.lm.task_choice import MEMORY_OFF
from faast.publish import save_figure, write_public_csv, write_public_text
from lm_guard import LABELS, balanced, build_parser, development_split, draw_support
from lm_guard_levels import held_out_right
from task_bench import rel


def study_options(command: str) -> dict[str, int]:
    """``--seed``, ``--split-seed``, ``--dev`` and ``balance`` (1 with ``--balance``) of a recorded
    ``python benchmarks/lm_guard.py ...`` command, read by the study's own parser (its defaults
    where the command gives none)."""
    words = shlex.split(command)
    script = next((i for i, w in enumerate(words) if w.endswith("lm_guard.py")), None)
    if script is None:
        raise SystemExit(f"not an lm_guard.py command: {command!r}")
    args = build_parser().parse_args(words[script + 1 :])
    return {"seed": args.seed, "split-seed": args.split_seed, "dev": args.dev, "balance": int(args.balance)}


def draw_lines(rows: list[dict[str, Any]], commands: dict[str, str]) -> list[dict[str, Any]]:
    """One line per row: held-out and development changes and the label mix of the draw's learned
    examples. ``commands``: model name -> the lm_guard.py command that made its rows."""
    splits: dict[tuple[int, int], list] = {}
    lines = []
    for r in rows:
        if r["model"] not in commands:
            raise SystemExit(f"the results name no command for {r['model']}: cannot draw its support sets")
        opts = study_options(commands[r["model"]])
        key = (opts["dev"], opts["split-seed"])
        if key not in splits:
            splits[key] = development_split(opts["dev"], opts["split-seed"], 1, opts["seed"])[0]
        learned = draw_support(splits[key], opts["seed"], r["k"], r["draw"])[r["lead"] :]
        if opts["balance"]:
            learned = balanced(learned)
        mix = Counter(e.output for e in learned)
        n = r["n_validation"]
        won, off = held_out_right(r, r["none_choice"]), held_out_right(r, MEMORY_OFF.name)
        lines.append(
            {
                "model": r["model"],
                "lead": r["lead"],
                "k": r["k"],
                "draw": r["draw"],
                "hold_out": r["hold_out"],
                "sign_flip_p": r["sign_flip_p"],
                "winner": r["none_choice"],
                "held_out": n,
                "winner_right": won,
                "off_right": off,
                "held_out_change": 100 * (won - off) / n if n else 0.0,
                "dev_change": 100 * (r["none_accuracy"] - r["off_accuracy"]),
                "default_on": r["sign-flip_on"],
                **{f"{label}_learned": mix.get(label, 0) for label in LABELS},
                "majority_share": max(mix.values()) / len(learned) if learned else 0.0,
            }
        )
    return lines


def markdown(lines: list[dict[str, Any]], source: str, command: str) -> str:
    labels = " / ".join(LABELS)
    out = [
        f"Read from {source} by `{command}` (no fits). Held out: the winner's and the memory off's right"
        " answers on the fit's held-out examples; Δ: winner minus memory off (points), held out and on"
        f" the development sentences; on: the default guard kept the winner; learned: {labels} among"
        " the examples the memory learned.",
        "",
        "| model | lead | k | draw | p | winner | held out right (winner / off) | Δ held out | Δ dev | on |"
        " learned |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for x in lines:
        mix = " / ".join(str(x[f"{label}_learned"]) for label in LABELS)
        out.append(
            f"| {x['model']} | {x['lead']} | {x['k']} | {x['draw']} | {x['sign_flip_p']:.3f} |"
            f" {x['winner']} | {x['winner_right']} / {x['off_right']} of {x['held_out']} |"
            f" {x['held_out_change']:+.1f} |"
            f" {x['dev_change']:+.2f} | {'yes' if x['default_on'] else 'no'} | {mix} |"
        )
    return "\n".join(out)


def plot(path: Path, lines: list[dict[str, Any]]) -> None:
    """Development change against held-out change, a panel per model, the colour the majority label's
    share of the learned examples; filled: the default guard kept the winner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(x["model"] for x in lines))
    fig, axes = plt.subplots(
        1, len(models), figsize=(4.6 * len(models) + 1, 3.8), squeeze=False, layout="constrained"
    )
    for ax, model in zip(axes[0], models, strict=True):
        mine = [x for x in lines if x["model"] == model]
        for on in (True, False):
            pts = [x for x in mine if x["default_on"] == on]
            if not pts:
                continue
            dots = ax.scatter(
                [x["held_out_change"] for x in pts],
                [x["dev_change"] for x in pts],
                c=[x["majority_share"] for x in pts],
                cmap="viridis",
                vmin=0.5,
                vmax=0.8,
                marker="o" if on else "x",
                label="default guard on" if on else "kept off",
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("Δ held-out accuracy, winner − off (points)")
        ax.set_ylabel("Δ dev accuracy, winner − off (points)")
        ax.legend(fontsize=7)
    if lines:
        fig.colorbar(dots, ax=axes[0].tolist(), label="majority label's share of the learned examples")
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="a results JSON written by benchmarks/lm_guard.py")
    args = ap.parse_args(argv)
    path = Path(args.results)
    if not path.is_file():
        raise SystemExit(f"--results: no file {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not data.get("rows"):
        raise SystemExit(f"no rows in {rel(path)}")
    commands = {model: run["command"] for model, run in data.get("runs", {}).items()}
    lines = draw_lines(data["rows"], commands)
    command = f"python benchmarks/lm_guard_draws.py --results {rel(path)}"
    md = markdown(lines, rel(path), command)
    write_public_text(path.parent / "draws.md", md + "\n")
    write_public_csv(path.parent / "draws.csv", lines)
    plot(path.parent / "draws.png", lines)
    print(md)


if __name__ == "__main__":
    main()
