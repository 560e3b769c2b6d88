"""benchmarks/dev_tasks.py: the development tasks' splits (fixed, disjoint, balanced, on the real
offline assets) and benchmarks/lm_calibrated_candidates.py on a task of its own labels."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dev_tasks
import lm_calibrated_candidates as study
import lm_guard
from faast.eval.holdout import normalize_text
from faast.lm import FaastConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.task import TaskModel, TaskSpec
from tests.lm_wordlevel import tiny_causal_lm
from tests.test_benchmark_lm_lead import TEMPLATE


@pytest.fixture(scope="module")
def bible_task() -> dev_tasks.DevTask:
    return dev_tasks.dev_task("bible-books", 400, 0, 12, 5)


def test_bible_books_split_is_balanced_disjoint_and_fixed(bible_task):
    task = bible_task
    assert task.labels == list(dev_tasks.BIBLE_BOOKS) and task.template == dev_tasks.BIBLE_TEMPLATE
    assert Counter(e.output for e in task.dev) == {book: 100 for book in dev_tasks.BIBLE_BOOKS}
    per_book = dev_tasks.BIBLE_POOL_PER_BOOK
    assert Counter(e.output for e in task.support) == {book: per_book for book in dev_tasks.BIBLE_BOOKS}
    texts = [normalize_text(e.input) for e in task.support + task.dev]
    assert len(set(texts)) == len(texts)  # no verse twice, so none on both sides
    assert min(len(e.input) for e in task.support + task.dev) >= dev_tasks.MIN_VERSE_CHARS
    # the split depends on no seed: other draws (seed, draws, split seed) see the same verses
    again = dev_tasks.dev_task("bible-books", 400, 3, 4, 0)
    assert again.dev == task.dev and again.support == task.support
    assert "draw seed 5" in task.data and "draw seed 0" in again.data


def test_bible_verses_come_from_their_books():
    from faast.assets.text import bible_pairs

    books_of: dict[str, set[str]] = {}
    for pair in bible_pairs():  # a few verse texts stand in two books (a psalm in 2 Samuel)
        books_of.setdefault(pair["en"], set()).add(pair["book"])
    task = dev_tasks.dev_task("bible-books", 40, 0, 1, 0)
    assert len(task.dev) == 40
    assert all(e.output in books_of[e.input] for e in task.dev + task.support)


def test_sentiment_task_is_the_guard_studies_split():
    task = dev_tasks.dev_task("sentiment", 400, 0, 12, 5)
    support, dev, data = lm_guard.development_split(400, 0, 12, 5)
    assert (task.support, task.dev, task.data) == (support, dev, data)
    assert task.labels == list(lm_guard.LABELS) and task.template == lm_guard.TEMPLATE


def test_bad_development_tasks_are_clear_errors():
    with pytest.raises(ValueError, match="unknown development task 'books'"):
        dev_tasks.dev_task("books", 400, 0, 1, 0)
    with pytest.raises(ValueError, match="dev_size must be at least 4"):
        dev_tasks.dev_task("bible-books", 3, 0, 1, 0)
    with pytest.raises(ValueError, match="usable verses"):
        dev_tasks.dev_task("bible-books", 4000, 0, 1, 0)


def _three_labels(n: int, offset: int = 0) -> list[Example]:
    return [Example(f"w{3 + (i + offset) % 12} w{20 + i % 5}", f"w4{i % 3}") for i in range(n)]


def test_a_study_run_reads_its_tasks_labels(monkeypatch):
    monkeypatch.setattr(study, "load_causal_lm", tiny_causal_lm)
    labels = ["w40", "w41", "w42"]
    support, dev = _three_labels(36), _three_labels(12, offset=5)
    args = argparse.Namespace(sizes=[12], draws=1, seed=0, batch_size=8, device=None)
    (row,) = study.run_model("tiny", args, support, dev, TEMPLATE, labels)
    model, tok = tiny_causal_lm("tiny")
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    task = TaskModel(fm, tok, TaskSpec(TEMPLATE, "answer", labels))
    learned = lm_guard.draw_support(support, 0, 12, 0)
    report = task.fit(learned, labels=labels, progress=False)  # the library's default choice
    assert row["all+balanced-best_choice"] == report.chosen.name
    expected = lm_guard.dev_scores(task, dev, 8, labels)
    assert (row["all+balanced-best_accuracy"], row["all+balanced-best_loglik"]) == pytest.approx(expected)


def test_a_study_does_not_add_its_models_to_a_table_of_other_data(tmp_path):
    path = tmp_path / "results.json"
    study.check_same_data(path, "d")  # nothing there yet
    path.write_text(json.dumps({"data": "d", "rows": []}), encoding="utf-8")
    study.check_same_data(path, "d")
    with pytest.raises(SystemExit, match="holds a run on other data"):
        study.check_same_data(path, "other")


def test_the_study_stops_with_a_clear_message_on_too_many_development_verses(monkeypatch, tmp_path):
    argv = ["lm_calibrated_candidates.py", "--task", "bible-books", "--dev", "4000", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="--task bible-books: Proverbs: .* usable verses"):
        study.main()
    assert not list(tmp_path.iterdir())  # nothing written


def test_overlap_counts_shared_texts_after_normalisation(bible_task):
    """`dev_tasks.py --many-labels-overlap` counts, for each exported file, its rows among the task's
    development and support verses (texts compared after normalize_text)."""
    dev, support = bible_task.dev[0].input, bible_task.support[0].input
    rows = [
        {"input": dev.upper() + "  "},
        {"input": support},
        {"input": support},
        {"input": "not a verse here"},
    ]
    assert dev_tasks.overlap(bible_task, rows) == {"rows": 4, "in development": 1, "in support pool": 2}


def test_many_labels_overlap_command_reads_the_export_it_names(capsys):
    """The command exports the Many labels files (the asset's seeded draw) and counts both."""
    counts = dev_tasks.many_labels_overlap(limit=300, test=50, seed=0, dev_size=400)
    assert counts["training verses"]["rows"] == 300 and counts["test verses"]["rows"] == 50
    for c in counts.values():
        assert 0 <= c["in development"] + c["in support pool"] <= c["rows"]
    assert dev_tasks.main(["--many-labels-overlap", "--limit", "300", "--test", "50"]) == 0
    out = capsys.readouterr().out
    for part, c in counts.items():
        assert f"{part} of the Many labels export (limit 300, test 50, seed 0): {c['rows']}; in " in out
        assert (
            f"development verses (400): {c['in development']}; in its support pool: {c['in support pool']}"
            in out
        )
