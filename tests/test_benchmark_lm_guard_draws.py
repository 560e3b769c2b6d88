"""benchmarks/lm_guard_draws.py: every draw of a guard study, with the label mix of its support set
drawn again from the study's own seeds."""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_guard_draws
from faast.lm.examples import Example
from faast.lm.task_choice import MEMORY_OFF

WINNER = "prob(λ=1,T=0.05;gcv)"


def _row(draw, k=8, lead=0, model="m"):
    return {
        "model": model,
        "lead": lead,
        "k": k,
        "draw": draw,
        "hold_out": 1.0,
        "n_validation": 4,
        "sign_flip_p": 0.05,
        "none_choice": WINNER,
        "none_accuracy": 0.55,
        "off_accuracy": 0.6,
        "sign-flip_on": True,
        "validation_correct": {WINNER: "1110", MEMORY_OFF.name: "1000"},
    }


def test_study_options_are_read_from_the_command_with_lm_guards_defaults():
    assert lm_guard_draws.study_options("python benchmarks/lm_guard.py --models x") == {
        "seed": 0, "split-seed": 0, "dev": 400, "balance": 0
    }  # fmt: skip
    command = "python benchmarks/lm_guard.py --dev 100 --seed 2 --split-seed=3 --out o"
    assert lm_guard_draws.study_options(command) == {"seed": 2, "split-seed": 3, "dev": 100, "balance": 0}
    assert lm_guard_draws.study_options(command + " --balance")["balance"] == 1
    quoted = "python benchmarks/lm_guard.py --models 'a,b' --lead '0,4' --seed=7"
    assert lm_guard_draws.study_options(quoted)["seed"] == 7
    with pytest.raises(SystemExit, match="not an lm_guard.py command"):
        lm_guard_draws.study_options("python benchmarks/lm_sentiment.py --seed 2")


def test_each_draw_is_drawn_again_with_the_studys_seed_and_its_label_mix_counted(monkeypatch, tmp_path):
    pool = [Example(f"s{i}", "positive" if i % 3 else "negative") for i in range(60)]
    asked = []

    def split(dev, split_seed, draws, seed):
        asked.append((dev, split_seed))
        return pool, [], "d"

    monkeypatch.setattr(lm_guard_draws, "development_split", split)
    rows = [_row(0), _row(1, lead=2)]
    command = "python benchmarks/lm_guard.py --models m --seed 5 --dev 50"
    lines = lm_guard_draws.draw_lines(rows, {"m": command})
    assert asked == [(50, 0)]  # one split for both rows
    for row, line in zip(rows, lines, strict=True):
        learned = random.Random(f"5-8-{row['draw']}").sample(pool, 8)[row["lead"] :]
        mix = Counter(e.output for e in learned)
        assert (line["positive_learned"], line["negative_learned"]) == (mix["positive"], mix["negative"])
        assert line["majority_share"] == pytest.approx(max(mix.values()) / len(learned))
        assert (line["winner_right"], line["off_right"], line["held_out_change"]) == (3, 1, 50.0)
        assert line["dev_change"] == pytest.approx(-5.0)
    [balanced] = lm_guard_draws.draw_lines(rows[:1], {"m": command + " --balance"})  # as the study learned it
    learned = random.Random("5-8-0").sample(pool, 8)
    even = min(Counter(e.output for e in learned).values())
    assert (balanced["positive_learned"], balanced["negative_learned"]) == (even, even)
    with pytest.raises(SystemExit, match="no command for m"):
        lm_guard_draws.draw_lines(rows, {})


def test_main_writes_the_table_and_plot_beside_the_results(monkeypatch, tmp_path):
    pool = [Example(f"s{i}", "positive" if i % 2 else "negative") for i in range(30)]
    monkeypatch.setattr(lm_guard_draws, "development_split", lambda *a: (pool, [], "d"))
    results = tmp_path / "lm_guard.json"
    runs = {"m": {"command": "python benchmarks/lm_guard.py --models m"}}
    results.write_text(json.dumps({"runs": runs, "rows": [_row(0)]}), encoding="utf-8")
    lm_guard_draws.main(["--results", str(results)])
    md = (tmp_path / "draws.md").read_text(encoding="utf-8")
    assert f"| m | 0 | 8 | 0 | 0.050 | {WINNER} | 3 / 1 of 4 | +50.0 | -5.00 | yes |" in md
    assert str(tmp_path) not in md and (tmp_path / "draws.png").stat().st_size > 0
    assert (tmp_path / "draws.csv").is_file()
    results.write_text(json.dumps({"rows": []}), encoding="utf-8")
    with pytest.raises(SystemExit, match="no rows"):
        lm_guard_draws.main(["--results", str(results)])
