"""Replay the fallback-only anchor on the draws of an earlier anchor study, without refitting.

``benchmarks/lm_calibrated_candidates.py`` records, per draw, the choice and development accuracy of
``all`` (the guard tests against, and falls back on, the zero-shot model as it is) and of
``all+balanced-best``. The anchor ``balanced-best-fallback`` keeps ``all``'s choice when that keeps
the memory on (both test against the plain zero-shot model with the same scores), and otherwise
falls back on the read-out of ``balanced-best``: ``all+balanced-best``'s choice when that is a
memory-off read-out. Where ``all+balanced-best`` kept the memory on instead, the draws do not record
its anchor, so the replay gives a low and a high bound (the worse and the better of the two
zero-shot models' accuracies). This is how the idea behind
benchmarks/results/lm_guard_fallback/rule.md was found; those draws could not decide it.

    python benchmarks/lm_guard_replay.py benchmarks/results/lm_guard_label_mix/draws.csv \
        benchmarks/results/lm_guard_bible_books/draws.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from faast.lm.task_choice import MEMORY_OFF

PLAIN, CALIBRATED = MEMORY_OFF.name, MEMORY_OFF.calibrated().name
BASE = "all+balanced-best"


def replayed_bounds(row: dict[str, str]) -> tuple[float, float]:
    """(low, high) development accuracy of the fallback-only anchor on one draws.csv row (equal
    unless the row does not record the read-out it falls back on)."""
    if row["all_choice"] != PLAIN:  # all keeps a read-out over the plain zero-shot model: so would it
        return float(row["all_accuracy"]), float(row["all_accuracy"])
    if row[f"{BASE}_choice"] in (PLAIN, CALIBRATED):  # falls back where balanced-best does
        return float(row[f"{BASE}_accuracy"]), float(row[f"{BASE}_accuracy"])
    zero_shot = (float(row["off_accuracy"]), float(row["calibrated_off_accuracy"]))  # one of the two
    return min(zero_shot), max(zero_shot)


def replay(rows: list[dict[str, str]]) -> dict[str, float | int]:
    """Mean development accuracy (%) over ``rows`` (draws.csv rows) of ``all``, ``all+balanced-best``
    and the replayed fallback-only anchor (``fallback low``/``fallback high``), and the number of
    draws whose bounds differ (``open``)."""
    if not rows:
        raise ValueError("no draws to replay")
    bounds = [replayed_bounds(r) for r in rows]
    n = len(rows)
    return {
        "draws": n,
        "all": 100 * sum(float(r["all_accuracy"]) for r in rows) / n,
        BASE: 100 * sum(float(r[f"{BASE}_accuracy"]) for r in rows) / n,
        "fallback low": 100 * sum(b[0] for b in bounds) / n,
        "fallback high": 100 * sum(b[1] for b in bounds) / n,
        "open": sum(b[0] != b[1] for b in bounds),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("draws", nargs="+", help="draws.csv files of benchmarks/lm_calibrated_candidates.py")
    args = ap.parse_args(argv)
    print("| draws file | draws | all | all+balanced-best | fallback-only (low–high) | open draws |")
    print("|---|---|---|---|---|---|")
    for name in args.draws:
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"{name}: no such draws file")
        with path.open(encoding="utf-8", newline="") as f:
            out = replay(list(csv.DictReader(f)))
        print(
            f"| {name} | {out['draws']} | {out['all']:.2f} | {out[BASE]:.2f} | "
            f"{out['fallback low']:.2f}–{out['fallback high']:.2f} | {out['open']} |"
        )


if __name__ == "__main__":
    main()
