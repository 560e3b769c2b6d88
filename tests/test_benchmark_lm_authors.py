"""benchmarks/lm_authors.py (a task no default was chosen on) on a tiny random model with a
word-level tokenizer: its passages, balanced draws, every method's rows, and what it publishes."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import types
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_authors
import passage_data
from faast.lm.examples import Example
from faast.lm.lora_baseline import LoraRecipe
from faast.lm.task import TaskModel
from faast.lm.task_choice import DEFAULT_ANCHOR
from tests.test_benchmark_lm_lead import on_tiny_model

LABELS = ["w40", "w41", "w42", "w43"]


def test_passages_join_consecutive_long_lines_without_overlap():
    long = [f"line {i} " + "x" * 40 for i in range(5)]
    text = "\n".join([long[0], "short", long[1], "", long[2], long[3], "\tTab" + long[4]])
    got = passage_data.passages(text)
    assert got == [f"{long[0]} {long[1]}", f"{long[2]} {long[3]}"]  # the fifth has no partner


def _pool(per_label: int = 10) -> dict[str, list[Example]]:
    return {
        label: [Example(f"w{3 + (i + j) % 12} w{20 + j % 5}", label) for j in range(per_label)]
        for i, label in enumerate(LABELS)
    }


def test_draws_are_balanced_seeded_and_refuse_a_size_the_labels_do_not_divide():
    pool = _pool()
    a = passage_data.draw_support(pool, 8, seed=0, draw=1)
    assert sorted(e.output for e in a) == sorted(LABELS * 2)
    assert a == passage_data.draw_support(pool, 8, seed=0, draw=1)
    assert a != passage_data.draw_support(pool, 8, seed=0, draw=2)
    for bad in (6, 0):
        with pytest.raises(ValueError, match="multiple of the 4 labels"):
            passage_data.draw_support(pool, bad, seed=0, draw=0)


def _on_tiny_data(monkeypatch) -> list[Example]:
    """lm_authors on the tiny model, its pool :func:`_pool` and 3 test passages per label (returned)."""
    on_tiny_model(monkeypatch, (lm_authors,), LABELS)
    pool = _pool()
    test = [e for label in LABELS for e in pool[label][:3]]
    monkeypatch.setattr(lm_authors, "load_data", lambda per_label, seed: (pool, test))
    return test


def test_rows_of_every_method_and_draw_and_what_is_published(monkeypatch, tmp_path):
    test = _on_tiny_data(monkeypatch)
    out = tmp_path / "authors"
    lm_authors.main(["--models", "tiny", "--sizes", "8", "--draws", "2", "--out", str(out)])
    data = json.loads((out / "authors.json").read_text())
    rows = data["rows"]
    assert [(r["method"], r["k"], r["draw"]) for r in rows] == [("zero-shot", 0, None)] + [
        (m, 8, d) for d in (0, 1) for m in lm_authors.DEFAULT_METHODS
    ]
    right = [r["accuracy"] * len(test) for r in rows]  # a share of the test passages
    assert all(0 <= n <= len(test) and abs(n - round(n)) < 1e-9 for n in right)
    assert "lm_authors.py --models tiny --sizes 8 --draws 2 --out " in data["command"]
    assert str(tmp_path) not in (out / "authors.json").read_text() and data["labels"] == LABELS
    for r in rows:  # every test passage predicted once
        assert sum(int(c.split(":")[1]) for c in r["predicted"].split()) == len(test)
    for line in data["summary"]:  # the summary is the mean of the draws it names
        accs = [r["accuracy"] for r in rows if (r["method"], r["k"]) == (line["method"], line["k"])]
        assert line["draws"] == 2 and line["mean"] == pytest.approx(100 * sum(accs) / 2)
        assert line["gain"] == pytest.approx(line["mean"] - 100 * rows[0]["accuracy"])
    table = (out / "authors.md").read_text()
    (out / "authors.md").unlink()
    lm_authors.main(["--render", "--out", str(out)])  # no model: the same table from the JSON
    assert (out / "authors.md").read_text() == table
    assert "| model | k | zero-shot | faast | faast head | linear head (SGD) | in-context |" in table
    assert (out / "authors.png").stat().st_size > 0 and (out / "authors.csv").read_text().count(
        "\n"
    ) == 1 + len(rows)
    lm_authors.main(
        [
            "--models",
            "tiny",
            "--sizes",
            "4",
            "--draws",
            "1",
            "--methods",
            "logistic regression,faast",
            "--out",
            str(out),
        ]
    )
    rows = json.loads((out / "authors.json").read_text())["rows"]
    assert [(r["method"], r["k"]) for r in rows] == [
        ("zero-shot", 0),
        ("logistic regression", 4),
        ("faast", 4),
    ]
    assert "| model | k | zero-shot | faast | logistic regression |" in (out / "authors.md").read_text()
    assert (
        "--methods 'logistic regression,faast'" in json.loads((out / "authors.json").read_text())["command"]
    )
    # a calibrated method reads its plain twin's fit or scores of the draw: the same alone or after it
    calibrated = ["in-context (calibrated)", "faast (calibrated)"]
    got = {}
    for methods in (",".join(calibrated), "in-context,faast,faast (calibrated),in-context (calibrated)"):
        args = ["--models", "tiny", "--sizes", "4", "--draws", "2", "--methods", methods, "--out", str(out)]
        lm_authors.main(args)
        rows = json.loads((out / "authors.json").read_text())["rows"]
        got[methods] = [
            (r["method"], r["draw"], r["accuracy"], r["detail"]) for r in rows if r["method"] in calibrated
        ]
        assert [r["method"] for r in rows[:2]] == ["zero-shot", "zero-shot (calibrated)"]
        assert "| model | k | zero-shot | zero-shot (calibrated) |" in (out / "authors.md").read_text()
    assert len(got[",".join(calibrated)]) == 4
    assert sorted(got[",".join(calibrated)]) == sorted(
        got["in-context,faast,faast (calibrated),in-context (calibrated)"]
    )
    with pytest.raises(SystemExit):
        lm_authors.parse_args(["--methods", "faast,lora"])


def test_the_faast_fit_follows_the_anchor_asked_for(monkeypatch, tmp_path):
    """``--anchor`` reaches the fit; without it the fit takes the library's default."""
    on_tiny_model(monkeypatch, (lm_authors,), LABELS)
    pool = _pool()
    monkeypatch.setattr(lm_authors, "load_data", lambda per_label, seed: (pool, pool[LABELS[0]][:2]))
    seen = []
    fit = TaskModel.fit

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("anchor", DEFAULT_ANCHOR))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(TaskModel, "fit", spy)
    base = ["--models", "tiny", "--sizes", "8", "--draws", "1", "--methods", "faast", "--out", str(tmp_path)]
    for extra, want in (([], DEFAULT_ANCHOR), (["--anchor", "best"], "best")):
        seen.clear()
        lm_authors.main([*base, *extra])
        assert seen == [want]
    with pytest.raises(SystemExit):
        lm_authors.parse_args(["--anchor", "loose"])


def test_genre_split_tests_on_plays_the_pool_never_draws_from():
    """--task genres: per genre TEST_PLAYS_PER_GENRE plays are held out (seeded), the test
    passages come only from them and the support pool only from the others."""
    texts = {
        play: "\n".join(f"{play} line {i} " + "x" * 40 for i in range(20))
        for plays in passage_data.FOLIO_GENRES.values()
        for play in plays
    }
    pool, test, held = passage_data.split_genres(texts, 5, split_seed=3)
    assert pool.keys() == held.keys() == passage_data.FOLIO_GENRES.keys()
    assert sorted(e.output for e in test) == sorted(list(passage_data.FOLIO_GENRES) * 5)
    for genre, plays in held.items():
        assert len(plays) == passage_data.TEST_PLAYS_PER_GENRE and set(plays) <= set(
            passage_data.FOLIO_GENRES[genre]
        )
        assert all(e.input.split()[0] in plays for e in test if e.output == genre)
        assert not any(e.input.split()[0] in plays for e in pool[genre])
        assert len(pool[genre]) == 10 * (len(passage_data.FOLIO_GENRES[genre]) - len(plays))
    assert passage_data.split_genres(texts, 5, split_seed=3) == (pool, test, held)
    assert passage_data.split_genres(texts, 5, split_seed=4)[2] != held
    with pytest.raises(ValueError, match="fewer than 21"):
        passage_data.split_genres(texts, 21, split_seed=3)


def _three_label_data(monkeypatch) -> tuple[list[str], dict[str, list[Example]], list[Example]]:
    """The tiny model, three of its labels, their pool and 3 test passages per label."""
    on_tiny_model(monkeypatch, (lm_authors,), LABELS)
    labels = LABELS[:3]
    pool = {label: _pool()[label] for label in labels}
    return labels, pool, [e for label in labels for e in pool[label][:3]]


def test_the_genre_task_runs_and_publishes_under_its_name(monkeypatch, tmp_path):
    labels, pool, test = _three_label_data(monkeypatch)
    monkeypatch.setattr(lm_authors, "GENRE_TEMPLATE", lm_authors.TEMPLATE)
    monkeypatch.setattr(lm_authors, "FOLIO_GENRES", {label: () for label in labels})
    monkeypatch.setattr(lm_authors, "load_genres", lambda per_label, seed: (pool, test))
    out = tmp_path / "genres"
    lm_authors.main(
        ["--task", "genres", "--models", "tiny", "--sizes", "6", "--draws", "1", "--out", str(out)]
    )
    data = json.loads((out / "genres.json").read_text())
    assert data["task"] == "genres" and data["labels"] == labels
    assert {r["method"] for r in data["rows"]} == {"zero-shot", *lm_authors.DEFAULT_METHODS}
    assert all(
        set(r["predicted"].split()) <= {f"{label}:{n}" for label in labels for n in range(10)}
        for r in data["rows"]
    )
    assert (
        (out / "genres.md").read_text().startswith("Command: `python benchmarks/lm_authors.py --task genres")
    )
    assert (out / "genres.png").is_file() and (out / "genres.csv").is_file()


def test_play_folds_fit_with_the_plays_as_groups_and_need_them(monkeypatch):
    """'faast (play folds)' passes each support passage's play as its group; without plays (the
    author task) it is refused."""
    seen = {}

    class Task:
        calibrated = False

        def fit(self, support, **kw):
            seen.update(kw)
            return type("Report", (), {"sign_flip_p": None, "chosen": type("C", (), {"name": "off"})})()

        def label_scores(self, inputs, **kw):
            return torch.zeros(len(inputs), 3)

        def content_free_scores(self, **kw):
            return torch.zeros(3, 3)

    args = argparse.Namespace(calibrated=None, anchor=None, seed=0, batch_size=4)
    setting = lm_authors.Setting(Task(), ["a", "b"], torch.zeros(2, 4), 8, args, LABELS[:3])
    support = [Example("x", "w40", {"play": "hamlet"}), Example("y", "w41", {"play": "lear"})]
    scores, detail = lm_authors.RUNNERS["faast (play folds)"](setting, support)
    assert seen["groups"] == ["hamlet", "lear"] and scores.shape == (2, 3) and detail == "off"
    with pytest.raises(ValueError, match="needs passages that carry their play"):
        lm_authors.RUNNERS["faast (play folds)"](setting, [Example("x", "w40")])


def test_the_lora_method_trains_per_draw_and_leaves_the_model_as_it_was(monkeypatch, tmp_path):
    _on_tiny_data(monkeypatch)
    out = tmp_path / "authors"
    methods = "faast,LoRA r=8 (backprop),faast head"
    argv = ["--models", "tiny", "--sizes", "8", "--draws", "1", "--methods", methods, "--out", str(out)]
    lm_authors.main(argv)
    rows = json.loads((out / "authors.json").read_text())["rows"]
    lora = [r for r in rows if r["method"] == "LoRA r=8 (backprop)"]
    assert len(lora) == 1 and lora[0]["detail"].startswith("lr=") and 0.0 <= lora[0]["accuracy"] <= 1.0
    # the head after it read the base model's states (the adapter was out again): as in a run without LoRA
    lm_authors.main([*argv[:7], "faast,faast head", "--out", str(tmp_path / "plain")])
    plain = json.loads((tmp_path / "plain" / "authors.json").read_text())["rows"]
    head = [(r["accuracy"], r["predicted"]) for r in rows if r["method"] == "faast head"]
    assert head == [(r["accuracy"], r["predicted"]) for r in plain if r["method"] == "faast head"]


def test_the_lora_rows_take_the_recipe_of_the_command_line(monkeypatch):
    with pytest.raises(SystemExit, match="--lora-lrs"):
        lm_authors.parse_args(["--lora-lrs", "0,1e-3"])
    args = lm_authors.parse_args(["--lora-lrs", "1e-4,3e-4,1e-3", "--lora-epochs", "2", "--seed", "4"])
    seen = []

    @contextlib.contextmanager
    def recorded(task, support, recipe):
        seen.append(recipe)
        yield types.SimpleNamespace(learning_rate=3e-4)

    monkeypatch.setattr(lm_authors, "adapted", recorded)
    task = types.SimpleNamespace(label_scores=lambda inputs, batch_size: torch.zeros(len(inputs), 4))
    scores, detail = lm_authors._lora(types.SimpleNamespace(args=args, task=task, inputs=["a", "b"]), [])
    assert scores.shape == (2, 4) and detail == "lr=0.0003"
    assert seen[0].learning_rates == (1e-4, 3e-4, 1e-3) and seen[0].epochs == 2
    assert seen[0].batch_size == 16 and seen[0].seed == 4  # the benchmark's batch size and seed
    default = lm_authors.parse_args([])
    assert lm_authors.recipe_from_args(default) == LoraRecipe(batch_size=16, seed=0)


def test_agreed_tweets_keep_each_text_once_and_drop_disagreeing_copies():
    """--task tweets: only confidence-1 tweets, whitespace collapsed; a repeated text is kept once,
    and dropped where its copies carry different labels."""
    import tweet_data

    records = [
        {"text": "great  flight", "label": "positive", "confidence": 1.0},
        {"text": "late again", "label": "negative", "confidence": 0.9},  # not every rater agreed
        {"text": "no  idea", "label": "neutral", "confidence": None},
        {"text": "great flight ", "label": "positive", "confidence": 1.0},  # the same text again
        {"text": "ok then", "label": "neutral", "confidence": 1.0},
        {"text": "ok  then", "label": "negative", "confidence": 1.0},  # disagrees: both go
        {"text": "lost my bag", "label": "negative", "confidence": 1.0},
    ]
    assert tweet_data.agreed_tweets(records) == {
        "negative": ["lost my bag"],
        "neutral": [],
        "positive": ["great flight"],
    }


def test_tweet_split_is_seeded_balanced_and_refuses_too_few():
    import tweet_data

    by_label = {label: [f"{label} {i}" for i in range(8)] for label in tweet_data.TWEET_LABELS}
    pool, test = tweet_data.split_tweets(by_label, 3, split_seed=1)
    assert sorted(e.output for e in test) == sorted(tweet_data.TWEET_LABELS * 3)
    for label in tweet_data.TWEET_LABELS:
        assert len(pool[label]) == 5 and all(e.output == label for e in pool[label])
        held = {e.input for e in test if e.output == label}
        assert held.isdisjoint(e.input for e in pool[label])
        assert held | {e.input for e in pool[label]} == set(by_label[label])
    assert tweet_data.split_tweets(by_label, 3, split_seed=1) == (pool, test)
    assert tweet_data.split_tweets(by_label, 3, split_seed=2) != (pool, test)
    with pytest.raises(ValueError, match="8 agreed negative tweets, not more than the 8"):
        tweet_data.split_tweets(by_label, 8, split_seed=1)


def test_the_tweet_task_runs_and_publishes_under_its_name(monkeypatch, tmp_path):
    labels, pool, test = _three_label_data(monkeypatch)
    monkeypatch.setattr(lm_authors, "TWEET_TEMPLATE", lm_authors.TEMPLATE)
    monkeypatch.setattr(lm_authors, "TWEET_LABELS", labels)
    monkeypatch.setattr(lm_authors, "load_tweets", lambda per_label, seed: (pool, test))
    units = []
    plot = lm_authors.plot
    monkeypatch.setattr(lm_authors, "plot", lambda *a: units.append(a[-1]) or plot(*a))
    out = tmp_path / "tweets"
    lm_authors.main([*"--task tweets --models tiny --sizes 6 --draws 1 --test 3 --out".split(), str(out)])
    data = json.loads((out / "tweets.json").read_text())
    assert data["task"] == "tweets" and data["labels"] == labels
    assert data["data"].startswith("tweet-sentiment") and "9 test tweets (3 per label" in data["data"]
    assert {r["method"] for r in data["rows"]} == {"zero-shot", *lm_authors.DEFAULT_METHODS}
    assert (
        (out / "tweets.md").read_text().startswith("Command: `python benchmarks/lm_authors.py --task tweets")
    )
    assert (out / "tweets.png").is_file() and (out / "tweets.csv").is_file()
    assert units == ["tweets"]  # the plot's axis counts tweets, not passages


def test_the_tuned_backprop_head_is_a_method_of_its_own(monkeypatch, tmp_path):
    """`--methods 'linear head (tuned backprop)'`: the tuned head of faast.eval.probe on the same
    prompt-end states, its chosen weight decay in the row's note, every test passage predicted."""
    test = _on_tiny_data(monkeypatch)
    out = tmp_path / "tuned"
    method = "linear head (tuned backprop)"
    lm_authors.main(
        ["--models", "tiny", "--sizes", "8", "--draws", "1", "--methods", method, "--out", str(out)]
    )
    rows = json.loads((out / "authors.json").read_text())["rows"]
    tuned = [r for r in rows if r["method"] == method]
    assert len(tuned) == 1 and tuned[0]["k"] == 8
    assert sum(int(c.split(":")[1]) for c in tuned[0]["predicted"].split()) == len(test)
    assert tuned[0]["detail"].startswith("wd=")
    assert f"| model | k | zero-shot | {method} |" in (out / "authors.md").read_text()
