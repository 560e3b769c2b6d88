"""benchmarks/lm_guard_levels.py: any sign-flip level read from a guard study's saved p-values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_guard
import lm_guard_levels
from faast.lm.task_choice import MEMORY_OFF, SIGN_FLIP_LEVEL

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "lm_guard.json"


def _draw(p, gain_points, winner="prob(λ=1,T=0.05;gcv)", model="m", k=16):
    return {
        "model": model,
        "lead": 0,
        "k": k,
        "hold_out": 1.0,
        "sign_flip_p": p,
        "none_choice": winner,
        "none_accuracy": 0.6 + gain_points / 100,
        "off_accuracy": 0.6,
    }


def test_levels_read_from_the_published_study_equal_the_guards_it_scored():
    """The study scored the sign-flip guard at 0.05, 0.1 and 0.2 and `none` itself; read back from
    its p-values and the winner's scores they are the same, row by row."""
    rows = json.loads(PUBLISHED.read_text(encoding="utf-8"))["rows"]
    ours = lm_guard_levels.summary(rows, [0.05, SIGN_FLIP_LEVEL, 0.2])
    theirs = lm_guard.summary(rows)
    assert len(ours) == len(theirs) > 10
    for a, b in zip(ours, theirs, strict=True):
        assert (a["model"], a["lead"], a["k"], a["hold_out"], a["draws"]) == (
            b["model"], b["lead"], b["k"], b["hold_out"], b["draws"]
        )  # fmt: skip
        for mine, published in [
            ("sign-flip@0.05", "sign-flip@0.05"),
            (f"sign-flip@{SIGN_FLIP_LEVEL:g}", "sign-flip"),
            ("sign-flip@0.2", "sign-flip@0.2"),
            ("none", "none"),
        ]:
            assert a[f"{mine}_on"] == pytest.approx(b[f"{published}_on"])
            assert a[f"{mine}_gain"] == pytest.approx(b[f"{published}_gain"])
            assert a[f"{mine}_losses"] == b[f"{published}_losses"]


def test_a_level_keeps_the_winner_below_it_and_the_totals_weigh_rows_equally():
    rows = [
        _draw(0.15, +10.0),
        _draw(0.05, -5.0),
        _draw(0.01, +3.0, winner=MEMORY_OFF.name),  # the winner is the memory off: off at any level
        _draw(0.5, +2.0, model="n", k=64),
    ]
    rows[2]["none_accuracy"] = rows[2]["off_accuracy"]
    lines = lm_guard_levels.summary(rows, [0.1, 0.2])
    m, n = lines
    assert (m["draws"], n["draws"]) == (3, 1)
    assert (m["sign-flip@0.1_on"], m["sign-flip@0.1_gain"], m["sign-flip@0.1_losses"]) == pytest.approx(
        (1 / 3, -5 / 3, 1)
    )
    assert (m["sign-flip@0.2_on"], m["sign-flip@0.2_gain"], m["sign-flip@0.2_losses"]) == pytest.approx(
        (2 / 3, 5 / 3, 1)
    )
    assert (n["sign-flip@0.2_gain"], n["none_gain"], n["none_on"]) == pytest.approx((0.0, 2.0, 1.0))
    totals = {t["guard"]: t for t in lm_guard_levels.over_rows(lines, [0.1, 0.2])}
    assert totals["none"]["mean_gain"] == pytest.approx((5 / 3 + 2.0) / 2)  # rows weigh the same
    assert (totals["none"]["m_gain"], totals["none"]["n_gain"]) == pytest.approx((5 / 3, 2.0))
    assert (totals["sign-flip@0.1"]["losses"], totals["sign-flip@0.1"]["draws"]) == (1, 4)


def test_main_writes_the_table_beside_the_results_and_rejects_bad_levels(tmp_path, capsys):
    results = tmp_path / "lm_guard.json"
    results.write_text(json.dumps({"rows": [_draw(0.15, +10.0), _draw(0.05, -5.0)]}), encoding="utf-8")
    lm_guard_levels.main(["--results", str(results), "--levels", "0.1,0.2"])
    md = (tmp_path / "levels.md").read_text(encoding="utf-8")
    assert "| m | 0 | 16 | 1 | 2 | 60.00 | 0.50 / -2.50 / 1 | 1.00 / +2.50 / 1 | 1.00 / +2.50 / 1 |" in md
    assert "| sign-flip@0.2 | +2.50 | +2.50 | 1 of 2 |" in md
    assert str(tmp_path) not in md  # a published file names no path of the machine that made it
    assert (tmp_path / "levels.csv").is_file() and (tmp_path / "levels.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="levels in"):
        lm_guard_levels.main(["--results", str(results), "--levels", "0,0.2"])
    with pytest.raises(SystemExit, match="no file"):
        lm_guard_levels.main(["--results", str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit, match="no rows"):
        lm_guard_levels.main(["--results", str(results), "--hold-out", "0.5"])
