"""benchmarks/lm_guard_replay.py: the replay of the fallback-only anchor from an anchor study's
draws equals what the study measured for it, where the study measured it."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_guard_replay as replay_mod

REPO = Path(__file__).resolve().parents[1]

MEASURED = [
    REPO / "benchmarks" / "results" / "lm_guard_fallback" / task / "draws.csv"
    for task in ("sentiment", "bible_books")
]


@pytest.mark.parametrize("path", MEASURED, ids=lambda p: p.parent.name)
def test_the_replay_is_the_measured_fallback_only_anchor_draw_by_draw(path):
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    for row in rows:
        low, high = replay_mod.replayed_bounds(row)
        if low == high:
            assert low == float(row["all+balanced-best-fallback_accuracy"])
        else:
            assert low <= float(row["all+balanced-best-fallback_accuracy"]) <= high
    out = replay_mod.replay(rows)
    measured = 100 * sum(float(r["all+balanced-best-fallback_accuracy"]) for r in rows) / len(rows)
    assert out["fallback low"] <= measured <= out["fallback high"]


def test_a_draw_that_does_not_record_the_fallback_gets_both_zero_shot_bounds():
    plain, calibrated = replay_mod.PLAIN, replay_mod.CALIBRATED
    base = {"off_accuracy": "0.5", "calibrated_off_accuracy": "0.6"}
    kept = {
        **base,
        "all_choice": "logit(β=3;gcv)",
        "all_accuracy": "0.7",
        "all+balanced-best_choice": calibrated,
        "all+balanced-best_accuracy": "0.6",
    }
    fell = {
        **base,
        "all_choice": plain,
        "all_accuracy": "0.5",
        "all+balanced-best_choice": calibrated,
        "all+balanced-best_accuracy": "0.6",
    }
    unknown = {
        **base,
        "all_choice": plain,
        "all_accuracy": "0.5",
        "all+balanced-best_choice": "logit(β=3;gcv)",
        "all+balanced-best_accuracy": "0.8",
    }
    assert replay_mod.replayed_bounds(kept) == (0.7, 0.7)
    assert replay_mod.replayed_bounds(fell) == (0.6, 0.6)
    assert replay_mod.replayed_bounds(unknown) == (0.5, 0.6)
    out = replay_mod.replay([kept, fell, unknown])
    assert out["open"] == 1 and out["draws"] == 3
    assert out["fallback low"] == pytest.approx(100 * (0.7 + 0.6 + 0.5) / 3)
    assert out["fallback high"] == pytest.approx(100 * (0.7 + 0.6 + 0.6) / 3)
    with pytest.raises(ValueError, match="no draws"):
        replay_mod.replay([])
    with pytest.raises(SystemExit, match="no such draws file"):
        replay_mod.main(["missing/draws.csv"])
