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
    ours = lm_guard_levels.summary(rows, lm_guard_levels.parse_guards(f"0.05,{SIGN_FLIP_LEVEL},0.2", None))
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
    guards = lm_guard_levels.parse_guards("0.1,0.2", None)
    assert guards == ["sign-flip@0.1", "sign-flip@0.2", "none"]
    lines = lm_guard_levels.summary(rows, guards)
    m, n = lines
    assert (m["draws"], n["draws"]) == (3, 1)
    assert (m["sign-flip@0.1_on"], m["sign-flip@0.1_gain"], m["sign-flip@0.1_losses"]) == pytest.approx(
        (1 / 3, -5 / 3, 1)
    )
    assert (m["sign-flip@0.2_on"], m["sign-flip@0.2_gain"], m["sign-flip@0.2_losses"]) == pytest.approx(
        (2 / 3, 5 / 3, 1)
    )
    assert (n["sign-flip@0.2_gain"], n["none_gain"], n["none_on"]) == pytest.approx((0.0, 2.0, 1.0))
    totals = {t["guard"]: t for t in lm_guard_levels.over_rows(lines, guards)}
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


def test_the_accuracy_guards_ask_the_winners_held_out_right_answers_against_the_memory_offs():
    winner = "prob(λ=1,T=0.05;gcv)"
    rows = [_draw(0.05, -5.0), _draw(0.05, +4.0), _draw(0.05, +2.0), _draw(0.5, +9.0)]
    held_out = [("0011", "0111"), ("0111", "0011"), ("0101", "1010"), ("1111", "0000")]  # (winner, off)
    for row, (won, off) in zip(rows, held_out, strict=True):
        row["validation_correct"] = {winner: won, MEMORY_OFF.name: off}
    guards = lm_guard_levels.parse_guards("", "sign-flip@0.1,sign-flip@0.1+acc,sign-flip@0.1+acc-gain")
    [line] = lm_guard_levels.summary(rows, guards)
    # draw 0: fewer right than off (kept off by both); 1: more (on by both); 2: as many (on by +acc
    # only); 3: p above the level (off by all three, however many right)
    assert (line["sign-flip@0.1_on"], line["sign-flip@0.1_gain"]) == pytest.approx((3 / 4, 1 / 4))
    assert (line["sign-flip@0.1+acc_on"], line["sign-flip@0.1+acc_gain"]) == pytest.approx((2 / 4, 6 / 4))
    assert (line["sign-flip@0.1+acc-gain_on"], line["sign-flip@0.1+acc-gain_gain"]) == pytest.approx(
        (1 / 4, 1)
    )
    assert (line["sign-flip@0.1_losses"], line["sign-flip@0.1+acc_losses"], line["none_losses"]) == (1, 0, 1)


def test_guard_names_and_results_without_right_answers_are_clear_errors(tmp_path):
    results = tmp_path / "lm_guard.json"
    results.write_text(json.dumps({"rows": [_draw(0.05, +1.0)]}), encoding="utf-8")
    for bad in ("sign-flip", "sign-flip@2", "sign-flip@0.1+accuracy", "selection"):
        with pytest.raises(SystemExit, match="is not none or sign-flip@a"):
            lm_guard_levels.main(["--results", str(results), "--guards", bad])
    with pytest.raises(SystemExit, match="validation_correct"):  # results saved before the right answers
        lm_guard_levels.main(["--results", str(results), "--guards", "sign-flip@0.1+acc"])
    with pytest.raises(SystemExit, match="--name"):
        lm_guard_levels.main(["--results", str(results), "--name", "../x"])
    lm_guard_levels.main(["--results", str(results), "--guards", "sign-flip@0.2", "--name", "mine"])
    md = (tmp_path / "mine.md").read_text(encoding="utf-8")
    assert "--guards sign-flip@0.2,none --name mine`" in md and "| sign-flip@0.2 | +1.00 |" in md
    assert not (tmp_path / "levels.md").exists() and (tmp_path / "mine.png").stat().st_size > 0
