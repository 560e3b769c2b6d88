"""Guards read from the scores a guard study saved (no fits): any level of the sign-flip guard, and
the sign-flip guard that also asks the held-out accuracy.

``benchmarks/lm_guard.py`` stores, for every draw, the sign-flip p-value of the fit's validation
scores, the development scores of the winner (guard ``none``) and of the memory off and (since
2026-12-03) each candidate's right answers on the held-out examples. Every guard read here chooses
between the winner and the memory off:

* ``sign-flip@a``: the winner when p < a (the library's guard at level a);
* ``sign-flip@a+acc``: also asks that the winner's held-out accuracy be at least the memory off's;
* ``sign-flip@a+acc-gain``: ... above the memory off's;
* ``none``: the winner always.

Per (model, lead demonstrations, k, held-out share): each guard's share of draws with the memory
on, its mean change of development accuracy over the memory off (points) and its draws that lose
more than a point; then over the rows: the mean, the mean per model and the losing draws in all.

    python benchmarks/lm_guard_levels.py --results benchmarks/results/lm_guard_fresh/lm_guard.json \
        --levels 0.1,0.2,0.3
    python benchmarks/lm_guard_levels.py --results benchmarks/results/lm_guard_seed2/lm_guard.json \
        --guards sign-flip@0.1,sign-flip@0.1+acc,sign-flip@0.1+acc-gain --name accuracy

Writes ``levels.md``, ``levels.csv`` and ``levels.png`` (``--name``: ``NAME.md`` ...) beside the
results JSON.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from faast.lm.task_choice import MEMORY_OFF, SIGN_FLIP_LEVEL
from faast.publish import save_figure, write_public_csv, write_public_text
from lm_guard import LOSS_POINTS, passes_sign_flip
from lm_guard import summary as guard_summary
from task_bench import rel

#: sign-flip@a, optionally +acc (held-out accuracy at least the memory off's) or +acc-gain (above it).
GUARD_PATTERN = re.compile(r"sign-flip@(?P<level>[0-9.eE+-]+?)(?P<acc>\+acc(-gain)?)?")


def level_name(level: float) -> str:
    return f"sign-flip@{level:g}"


def check_guard(name: str) -> str:
    """``name`` when it is a guard this module reads ("none" or sign-flip@a[+acc|+acc-gain], 0 < a <= 1)."""
    match = GUARD_PATTERN.fullmatch(name)
    try:
        ok = name == "none" or (match is not None and 0 < float(match["level"]) <= 1)
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"--guards: {name!r} is not none or sign-flip@a[+acc|+acc-gain] with a in (0, 1]")
    return name


def held_out_right(row: dict[str, Any], candidate: str) -> int:
    """How many held-out examples ``candidate`` got right in the draw's fit."""
    if "validation_correct" not in row:
        raise SystemExit(
            "the +acc guards need each candidate's held-out right answers (validation_correct), which"
            " lm_guard.py saves since 2026-12-03; these results are older"
        )
    return row["validation_correct"][candidate].count("1")


def memory_on(row: dict[str, Any], guard: str) -> bool:
    """Whether ``guard`` keeps the draw's winner (else the memory stays off)."""
    winner = row["none_choice"]
    if winner == MEMORY_OFF.name:
        return False
    if guard == "none":
        return True
    match = GUARD_PATTERN.fullmatch(guard)
    assert match is not None, guard
    if not passes_sign_flip(row["sign_flip_p"], float(match["level"])):
        return False
    if match["acc"] is None:
        return True
    won, off = held_out_right(row, winner), held_out_right(row, MEMORY_OFF.name)
    return won > off if match["acc"] == "+acc-gain" else won >= off


def summary(rows: list[dict[str, Any]], guards: list[str]) -> list[dict[str, Any]]:
    """One line per (model, lead, k, held-out share): draws, memory-off accuracy (%) and, per guard,
    the share of draws on, the mean change (points) and the losing draws
    (:func:`lm_guard.summary` on each draw's choices)."""
    chosen = []
    for r in rows:
        row = {key: r[key] for key in ("model", "lead", "k", "hold_out", "off_accuracy")}
        for g in guards:
            row[f"{g}_on"] = on = memory_on(r, g)
            row[f"{g}_accuracy"] = r["none_accuracy"] if on else r["off_accuracy"]
        chosen.append(row)
    return guard_summary(chosen, guards, loglik=False)


def over_rows(lines: list[dict[str, Any]], guards: list[str]) -> list[dict[str, Any]]:
    """Per guard: the mean change over the lines (each line weighs the same), the mean over each
    model's lines, and the losing draws in all."""
    models = list(dict.fromkeys(line["model"] for line in lines))
    out = []
    for name in guards:
        entry: dict[str, Any] = {
            "guard": name,
            "mean_gain": float(np.mean([x[f"{name}_gain"] for x in lines])),
        }
        for m in models:
            entry[f"{m}_gain"] = float(np.mean([x[f"{name}_gain"] for x in lines if x["model"] == m]))
        entry["losses"] = sum(x[f"{name}_losses"] for x in lines)
        entry["draws"] = sum(x["draws"] for x in lines)
        out.append(entry)
    return out


def markdown(lines: list[dict], totals: list[dict], guards: list[str], source: str, command: str) -> str:
    out = [
        f"Read from {source} by `{command}` (no fits). Per guard: share of draws with the memory on,"
        " mean change of development accuracy over the memory off (points), draws that lose more than"
        f" {LOSS_POINTS:g} point; sign-flip@a keeps the winner when p < a (the default level is"
        f" {SIGN_FLIP_LEVEL:g}), +acc also when its held-out accuracy is at least the memory off's"
        " (+acc-gain: above it), none keeps it always.",
        "",
        "| model | lead demos | k | held out | draws | memory off | " + " | ".join(guards) + " |",
        "|---|---:|---:|---:|---:|---:|" + "---|" * len(guards),
    ]
    for x in lines:
        cells = [f"{x[f'{n}_on']:.2f} / {x[f'{n}_gain']:+.2f} / {x[f'{n}_losses']}" for n in guards]
        out.append(
            f"| {x['model']} | {x['lead']} | {x['k']} | {x['hold_out']:g} | {x['draws']} |"
            f" {x['off_accuracy']:.2f} | " + " | ".join(cells) + " |"
        )
    models = list(dict.fromkeys(x["model"] for x in lines))
    out += [
        "",
        "Over the rows (each row weighs the same):",
        "",
        "| guard | mean Δ acc | " + " | ".join(f"{m}: mean Δ acc" for m in models) + " | losing draws |",
        "|---|---:|" + "---:|" * len(models) + "---:|",
    ]
    for t in totals:
        per_model = " | ".join(f"{t[f'{m}_gain']:+.2f}" for m in models)
        out.append(f"| {t['guard']} | {t['mean_gain']:+.2f} | {per_model} | {t['losses']} of {t['draws']} |")
    return "\n".join(out)


def plot(path: Path, lines: list[dict], guards: list[str]) -> None:
    """Mean change of development accuracy per guard, one line per (model, lead, k, held out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(guards)), 4.2))
    for x in lines:
        ax.plot(
            range(len(guards)),
            [x[f"{g}_gain"] for g in guards],
            marker="o",
            label=f"{x['model']}, {x['lead']} lead, k={x['k']}, {x['hold_out']:g} held out",
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(guards)), guards, fontsize=8)
    ax.set_xlabel(f"guard (the default: {level_name(SIGN_FLIP_LEVEL)})")
    ax.set_ylabel("Δ dev accuracy vs memory off (points)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def parse_levels(text: str) -> list[float]:
    try:
        levels = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        levels = []
    if not levels or any(not 0 < a <= 1 for a in levels):
        raise SystemExit(f"--levels: comma list of levels in (0, 1], got {text!r}")
    return sorted(levels)


def parse_guards(levels: str, guards: str | None) -> list[str]:
    """The guards to read: ``--guards`` when given, else sign-flip at each of ``--levels``; ``none``
    last in both cases."""
    names = (
        [check_guard(g.strip()) for g in guards.split(",") if g.strip()]
        if guards is not None
        else [level_name(a) for a in parse_levels(levels)]
    )
    if not names:
        raise SystemExit("--guards: no guard given")
    return [*dict.fromkeys(g for g in names if g != "none"), "none"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="a results JSON written by benchmarks/lm_guard.py")
    ap.add_argument("--levels", default="0.05,0.1,0.2,0.3", help="sign-flip levels (comma list)")
    ap.add_argument(
        "--guards",
        default=None,
        help="guards to read instead of --levels: sign-flip@a[+acc|+acc-gain] (comma list)",
    )
    ap.add_argument("--hold-out", type=float, default=None, help="only the rows of this held-out share")
    ap.add_argument("--name", default="levels", help="the outputs' file name, without suffix")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", args.name):
        raise SystemExit(f"--name: letters, digits, - and _ only, got {args.name!r}")
    path = Path(args.results)
    if not path.is_file():
        raise SystemExit(f"--results: no file {path}")
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    if args.hold_out is not None:
        rows = [r for r in rows if r["hold_out"] == args.hold_out]
    if not rows:
        raise SystemExit(
            f"no rows in {rel(path)}" + (f" with --hold-out {args.hold_out:g}" if args.hold_out else "")
        )
    guards = parse_guards(args.levels, args.guards)
    lines = summary(rows, guards)
    totals = over_rows(lines, guards)
    what = f"--guards {','.join(guards)}" if args.guards is not None else f"--levels {args.levels}"
    command = f"python benchmarks/lm_guard_levels.py --results {rel(path)} {what}"
    if args.hold_out is not None:
        command += f" --hold-out {args.hold_out:g}"
    if args.name != "levels":
        command += f" --name {args.name}"
    md = markdown(lines, totals, guards, rel(path), command)
    write_public_text(path.parent / f"{args.name}.md", md + "\n")
    write_public_csv(path.parent / f"{args.name}.csv", lines)
    plot(path.parent / f"{args.name}.png", lines, guards)
    print(md)


if __name__ == "__main__":
    main()
