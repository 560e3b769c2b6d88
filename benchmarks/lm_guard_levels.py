"""Any level of the sign-flip guard, read from the p-values a guard study saved (no fits).

``benchmarks/lm_guard.py`` stores, for every draw, the sign-flip p-value of the fit's validation
scores and the development scores of the winner (guard ``none``) and of the memory off. The
``sign-flip`` guard at level a keeps the winner when p < a and the memory off otherwise, so every
level is read from those rows: its share of draws with the memory on, its mean change of
development accuracy over the memory off (points) and its draws that lose more than a point, per
(model, lead demonstrations, k, held-out share), then over the rows: the mean, the mean per model
and the losing draws in all.

    python benchmarks/lm_guard_levels.py --results benchmarks/results/lm_guard_fresh/lm_guard.json \
        --levels 0.1,0.2,0.3

Writes ``levels.md``, ``levels.csv`` and ``levels.png`` beside the results JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from faast.lm.task_choice import MEMORY_OFF, SIGN_FLIP_LEVEL
from faast.publish import write_public_csv, write_public_text
from task_bench import rel

#: A draw "loses" when its development accuracy falls by more than this many points.
LOSS_POINTS = 1.0


def level_name(level: float) -> str:
    return f"sign-flip@{level:g}"


def gain_at(row: dict[str, Any], level: float | None) -> tuple[bool, float]:
    """(memory on, change of development accuracy in points) of one draw under the sign-flip guard
    at ``level`` (None: no guard, the winner always)."""
    p = row["sign_flip_p"]
    on = row["none_choice"] != MEMORY_OFF.name and (level is None or (p is not None and p < level))
    return on, 100 * (row["none_accuracy"] - row["off_accuracy"]) if on else 0.0


def summary(rows: list[dict[str, Any]], levels: list[float]) -> list[dict[str, Any]]:
    """One line per (model, lead, k, held-out share): draws, memory-off accuracy (%) and, per level
    and for ``none``, the share of draws on, the mean change (points) and the losing draws."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["lead"], r["k"], r["hold_out"])].append(r)
    lines = []
    for (model, lead, k, share), rs in groups.items():
        line: dict[str, Any] = {"model": model, "lead": lead, "k": k, "hold_out": share, "draws": len(rs)}
        line["off_accuracy"] = 100 * float(np.mean([r["off_accuracy"] for r in rs]))
        for name, level in [*((level_name(a), a) for a in levels), ("none", None)]:
            on, gain = zip(*(gain_at(r, level) for r in rs), strict=True)
            line[f"{name}_on"] = float(np.mean(on))
            line[f"{name}_gain"] = float(np.mean(gain))
            line[f"{name}_losses"] = int(sum(g < -LOSS_POINTS for g in gain))
        lines.append(line)
    return lines


def over_rows(lines: list[dict[str, Any]], levels: list[float]) -> list[dict[str, Any]]:
    """Per level (and ``none``): the mean change over the lines (each line weighs the same), the
    mean over each model's lines, and the losing draws in all."""
    models = list(dict.fromkeys(line["model"] for line in lines))
    out = []
    for name in [*(level_name(a) for a in levels), "none"]:
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


def markdown(lines: list[dict], totals: list[dict], levels: list[float], source: str, command: str) -> str:
    names = [*(level_name(a) for a in levels), "none"]
    out = [
        f"Read from {source} by `{command}` (no fits). Per guard: share of draws with the memory on,"
        " mean change of development accuracy over the memory off (points), draws that lose more than"
        f" {LOSS_POINTS:g} point; sign-flip@a keeps the winner when p < a (the default level is"
        f" {SIGN_FLIP_LEVEL:g}), none keeps it always.",
        "",
        "| model | lead demos | k | held out | draws | memory off | " + " | ".join(names) + " |",
        "|---|---:|---:|---:|---:|---:|" + "---|" * len(names),
    ]
    for x in lines:
        cells = [f"{x[f'{n}_on']:.2f} / {x[f'{n}_gain']:+.2f} / {x[f'{n}_losses']}" for n in names]
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


def plot(path: Path, lines: list[dict], levels: list[float]) -> None:
    """Mean change of development accuracy against the level, one line per (model, lead, k)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for x in lines:
        ax.plot(
            levels,
            [x[f"{level_name(a)}_gain"] for a in levels],
            marker="o",
            label=f"{x['model']}, {x['lead']} lead, k={x['k']}, {x['hold_out']:g} held out",
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(SIGN_FLIP_LEVEL, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("sign-flip level a (memory on when p < a)")
    ax.set_ylabel("Δ dev accuracy vs memory off (points)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_levels(text: str) -> list[float]:
    levels = [float(x) for x in text.split(",") if x.strip()]
    if not levels or any(not 0 < a <= 1 for a in levels):
        raise SystemExit(f"--levels: comma list of levels in (0, 1], got {text!r}")
    return sorted(levels)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="a results JSON written by benchmarks/lm_guard.py")
    ap.add_argument("--levels", default="0.05,0.1,0.2,0.3", help="sign-flip levels (comma list)")
    ap.add_argument("--hold-out", type=float, default=None, help="only the rows of this held-out share")
    args = ap.parse_args(argv)
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
    levels = parse_levels(args.levels)
    lines = summary(rows, levels)
    totals = over_rows(lines, levels)
    command = f"python benchmarks/lm_guard_levels.py --results {rel(path)} --levels {args.levels}"
    if args.hold_out is not None:
        command += f" --hold-out {args.hold_out:g}"
    md = markdown(lines, totals, levels, rel(path), command)
    write_public_text(path.parent / "levels.md", md + "\n")
    write_public_csv(path.parent / "levels.csv", lines)
    plot(path.parent / "levels.png", lines, levels)
    print(md)


if __name__ == "__main__":
    main()
