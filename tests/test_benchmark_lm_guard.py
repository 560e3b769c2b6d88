"""benchmarks/lm_guard.py (every guard's choice scored on development examples) and
lm_guard_published.py (which published rows a guard would change), on a tiny random model with a
word-level tokenizer."""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_guard
import lm_guard_published
import lm_sentiment
from faast.lm import FaastConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_choice import GUARDS, MEMORY_OFF
from task_bench import published_candidates
from tests.lm_wordlevel import tiny_causal_lm
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled, on_tiny_model, published_fit_args

LABELS = ["w40", "w41"]


@pytest.fixture
def tiny(monkeypatch):
    """The benchmarks' model loader, template and labels pointed at the tiny model."""

    on_tiny_model(monkeypatch, (lm_guard, lm_guard_published, lm_sentiment), LABELS)
    return tiny_causal_lm


def test_guard_rows_score_every_guards_choice_on_the_development_examples(tiny):
    support, dev = _labelled(40), _labelled(12, offset=5)
    args = argparse.Namespace(
        lead=[0, 3],
        sizes=[12],
        draws=2,
        hold_out=[0.5, 1.0],
        seed=0,
        batch_size=8,
        device=None,
        balance=False,
        folds=5,
    )
    rows = lm_guard.run_model("tiny", args, support, dev)
    assert [(r["lead"], r["k"], r["draw"], r["hold_out"]) for r in rows] == [
        (m, 12, d, h) for m in (0, 3) for d in (0, 1) for h in (0.5, 1.0)
    ]
    model, tok = tiny("tiny")
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    for row in rows:
        assert row["n_validation"] == int(row["hold_out"] * (12 - row["lead"]))
        assert 0 < row["sign_flip_p"] <= 1
        # the row's draw, fit again: the same choices, and the same development scores for them
        picked = random.Random(f"0-12-{row['draw']}").sample(support, 12)
        m = row["lead"]
        spec = TaskSpec(TEMPLATE, "answer", LABELS, [(e.input, e.output) for e in picked[:m]])
        task = TaskModel(fm, tok, spec, cache=True)
        report = task.fit(
            picked[m:],
            labels=LABELS,
            candidates=published_candidates(),
            hold_out=row["hold_out"],
            seed=0,
            progress=False,
        )
        for g in GUARDS:
            assert row[f"{g}_choice"] == report.decisions[g]
            assert row[f"{g}_on"] == (report.decisions[g] != MEMORY_OFF.name)
            task.use(lm_guard.CANDIDATES[report.decisions[g]])
            assert (row[f"{g}_accuracy"], row[f"{g}_loglik"]) == pytest.approx(
                lm_guard.dev_scores(task, dev, 8)
            )
        # the saved held-out scores: the fit's own, and right answers that add up to its accuracy
        assert row["validation_loglik"].keys() == report.validation_loglik.keys() == report.scores.keys()
        for name, right in row["validation_correct"].items():
            saved, fit = (
                lm_guard.read_loglik(row["validation_loglik"][name]),
                report.validation_loglik[name].tolist(),
            )
            assert saved == pytest.approx(fit, abs=1e-6)
            assert right == "".join("1" if x else "0" for x in report.validation_correct[name].tolist())
            assert len(right) == row["n_validation"]
        at = report.sign_flip_p is not None and report.sign_flip_p < 0.05
        assert row["sign-flip@0.05_on"] == (at and report.decisions["none"] != MEMORY_OFF.name)
        task.use(MEMORY_OFF)
        assert (row["off_accuracy"], row["off_loglik"]) == pytest.approx(lm_guard.dev_scores(task, dev, 8))
    summary = lm_guard.summary(rows)
    assert [(s["lead"], s["k"], s["hold_out"], s["draws"]) for s in summary] == [
        (m, 12, h, 2) for m in (0, 3) for h in (0.5, 1.0)
    ]
    first, half = summary[0], [rows[0], rows[2]]  # lead 0, half held out: draws 0 and 1
    gains = [100 * (r["none_accuracy"] - r["off_accuracy"]) for r in half]
    assert first["none_gain"] == pytest.approx(sum(gains) / 2)
    assert first["none_losses"] == sum(g < -1 for g in gains)
    assert first["off_accuracy"] == pytest.approx(50 * (half[0]["off_accuracy"] + half[1]["off_accuracy"]))
    md = lm_guard.markdown(summary, {"runs": {}}, Path("guard.png"), Path("guard.csv"))
    assert md.count("| tiny | 3 | 12 | 1 | 2 |") == 1


def _one_draw_rows(support, **options):
    """lm_guard.run_model's rows for draws of 12 from ``support`` without lead demonstrations, seed 0."""
    args = argparse.Namespace(lead=[0], sizes=[12], seed=0, batch_size=8, device=None, **options)
    return lm_guard.run_model("tiny", args, support, _labelled(12, offset=5))


def test_balance_keeps_the_first_examples_of_each_label_as_many_as_the_rarest_has(tiny):
    a, b, c = ([Example(f"{x}{i}", x) for i in range(n)] for x, n in (("p", 5), ("n", 2), ("q", 3)))
    mixed = [a[0], b[0], a[1], c[0], a[2], c[1], b[1], a[3], c[2], a[4]]
    assert lm_guard.balanced(mixed) == [a[0], b[0], a[1], c[0], c[1], b[1]]
    assert lm_guard.balanced(a) == a and lm_guard.balanced([]) == []
    support = _labelled(40)
    for row in _one_draw_rows(support, draws=2, hold_out=[1.0], balance=True, folds=5):
        drawn = lm_guard.draw_support(support, 0, 12, row["draw"])
        counts = Counter(e.output for e in drawn)
        assert row["learned"] == row["n_validation"] == 2 * min(counts.values())  # every example held out


def test_one_fold_scores_half_the_draw_with_a_memory_of_the_other_half(tiny):
    support = _labelled(40)
    [row] = _one_draw_rows(support, draws=1, hold_out=[0.5], balance=False, folds=1)
    model, tok = tiny("tiny")
    task = TaskModel(
        get_faast_model(model, FaastConfig(num_memories=0)), tok, TaskSpec(TEMPLATE, "answer", LABELS)
    )
    drawn = lm_guard.draw_support(support, 0, 12, 0)
    report = task.fit(
        drawn, labels=LABELS, candidates=published_candidates(), hold_out=0.5, folds=1, seed=0, progress=False
    )
    assert row["n_validation"] == 6 and row["sign_flip_p"] == pytest.approx(report.sign_flip_p)
    assert all(row[f"{g}_choice"] == report.decisions[g] for g in report.decisions)


def test_guard_outputs_are_written_and_rendered_again_from_the_results_json(tmp_path, monkeypatch):
    """write_outputs writes the JSON, CSV, plot and table; --render writes the same again from the
    JSON alone (no model)."""
    row = {"model": "tiny", "lead": 0, "k": 12, "draw": 0, "hold_out": 1.0, "off_accuracy": 0.5}
    row |= {"off_loglik": -0.7, "sign_flip_p": 0.5, "raw_sign_flip_p": 0.6, "n_validation": 12}
    row |= {"validation_loglik": {MEMORY_OFF.name: " ".join(["-0.700000"] * 12)}}
    row |= {"validation_correct": {MEMORY_OFF.name: "0" * 12}}
    for g in lm_guard.COMPARED:
        row |= {f"{g}_choice": MEMORY_OFF.name, f"{g}_on": False, f"{g}_accuracy": 0.5, f"{g}_loglik": -0.7}
    run = {
        "command": "python benchmarks/lm_guard.py --models tiny",
        "machine": "m",
        "seconds": 60,
        "data": "d",
    }
    meta = {"command": run["command"], "runs": {"tiny": run}}
    other = row | {"model": "other", "hold_out": 0.5}  # a panel (tiny, 0.5) and (other, 1) with no rows
    lm_guard.write_outputs([row, other], meta, tmp_path)
    written = json.loads((tmp_path / "lm_guard.json").read_text())
    assert written["rows"] == [row, other] and [s["draws"] for s in written["summary"]] == [1, 1]
    assert (tmp_path / "guard.png").stat().st_size > 0
    header = (tmp_path / "guard.csv").read_text().splitlines()[0].split(",")
    assert "off_accuracy" in header and not set(lm_guard.JSON_ONLY) & set(header)  # per-item lists: JSON only
    first = (tmp_path / "guard.md").read_text()
    monkeypatch.setattr(sys, "argv", ["lm_guard.py", "--render", "--out", str(tmp_path)])
    lm_guard.main()
    again = json.loads((tmp_path / "lm_guard.json").read_text())
    assert again == written
    assert (tmp_path / "guard.md").read_text() == first
    assert "| tiny | 0 | 12 | 1 | 1 | 50.00 |" in first
    assert "](guard.png)" in first and "](guard.csv)" in first  # beside guard.md


def test_published_rows_are_fit_again_and_the_one_se_guard_reproduces_them(tiny, tmp_path, monkeypatch):
    """A table made by lm_sentiment's FAAST rows (one-se guard) is read back with its command; the
    fits again choose the published read-outs under one-se."""
    fm_model, tok = tiny("tiny")
    pool = _labelled(40)
    monkeypatch.setattr(lm_guard_published, "load_data", lambda test, size, seed: (pool, []))
    task = TaskModel(
        get_faast_model(fm_model, FaastConfig(num_memories=0)), tok, TaskSpec(TEMPLATE), cache=True
    )
    args = published_fit_args(key_features=[0], modes=["answer"])
    rows: list = []
    lm_sentiment._faast_rows("tiny", task, pool, pool[:6], [4, 12, 40], 0.0, 0.0, args, rows)
    command = (
        "python benchmarks/lm_sentiment.py --models tiny --test 6 --pool 40 --sizes 4,12,40 --modes answer"
    )
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "lm_tiny-block.json").write_text(
        json.dumps({"runs": {"tiny": {"command": command}}, "rows": [r.flat() for r in rows]})
    )
    monkeypatch.setattr(lm_guard_published, "REPO", tmp_path)
    published = lm_guard_published.published_rows("tiny-block")
    assert [(r["method"], r["k"], r["published"]) for r in published] == [
        ("faast-answer", r.k, r.detail) for r in rows
    ]
    checked = lm_guard_published.check(
        published, argparse.Namespace(max_k=40, device=None, hold_out=[0.5, 1])
    )
    by_k = {(r["k"], r["hold_out"]): r for r in checked}
    assert len(checked) == 6 and by_k[4, 1]["note"] == "nothing validated"
    for k in (12, 40):  # two fits in a row of the same task: each starts from an empty memory
        assert by_k[k, 0.5]["one-se"] == by_k[k, 0.5]["published"]  # the published fit: half held out
        assert (by_k[k, 0.5]["n_validation"], by_k[k, 1]["n_validation"]) == (k // 2, k)
        assert set(GUARDS) <= set(by_k[k, 1]) and 0 < by_k[k, 1]["sign_flip_p"] <= 1
    skipped = lm_guard_published.check(published, argparse.Namespace(max_k=12, device=None, hold_out=[1]))
    assert [r["note"] for r in skipped if r["k"] == 40] == ["beyond --max-k"]
    md = lm_guard_published.markdown(checked, "header")
    assert "| tiny-block | tiny | faast-answer | 12 |" in md and " | 1 | " in md
    with pytest.raises(SystemExit, match="no results file"):
        lm_guard_published.published_rows("missing")


def test_hold_out_shares_are_read_and_checked():
    from task_bench import hold_out_shares

    assert hold_out_shares("0.5,1") == [0.5, 1.0]
    for bad in ("0", "0.5,1.5", "-1"):
        with pytest.raises(SystemExit, match=r"--hold-out shares must lie in \(0, 1\]"):
            hold_out_shares(bad)


@pytest.mark.assets("movie-review-sentences")
def test_development_sentences_are_no_published_test_sentence_whatever_the_draw_seed():
    """The published sentiment tables test on the 500- and 2,000-sentence test splits of seed 0;
    the guard study's support and development sentences (any draw seed) are none of them."""
    support, dev, data = lm_guard.development_split(400, 0, 12, 1)
    again, dev_again, _ = lm_guard.development_split(400, 0, 12, 0)
    assert (support, dev) == (again, dev_again)  # the draw seed does not move the split
    assert len(dev) == 400 and len(support) == 8204  # 10,604 distinct sentences less the test split
    used = {e.input for e in support + dev}
    for size in (500, 2000):
        _, test = lm_sentiment.load_data(size, None, 0)
        assert not used & {e.input for e in test}
    assert "8604 left beside" in data and "(seed 0, draw seed 1)" in data and "other 8204" in data
