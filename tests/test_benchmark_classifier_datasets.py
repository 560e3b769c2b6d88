"""benchmarks/classifier_datasets.py: its helpers, and a run on two bundled tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import classifier_datasets as bench


def test_passages_join_groups_of_non_empty_lines():
    text = "a\n\nb\nc\nd\n \ne\nf\ng"
    assert bench.passages(text, lines=3) == ["a b c", "d e f"]


def test_few_draws_k_per_class_from_the_given_rows_only():
    y = np.repeat(np.arange(3), 10)
    rows = np.arange(25)  # class 2 has 5 rows here
    picked = bench.few(y, rows, 4, np.random.default_rng(0))
    assert set(picked) <= set(rows)
    assert np.bincount(y[picked]).tolist() == [4, 4, 4]
    assert len(bench.few(y, rows[:12], 4, np.random.default_rng(0))) == 4 + 2  # class 1 has 2


def test_run_on_two_tables_scores_every_method_in_every_regime(tmp_path):
    args = argparse.Namespace(datasets="iris,wine", per_class=10, seed=0, out=str(tmp_path / "r"))
    result = bench.run(args)
    assert set(result["accuracy"]) == {"iris", "wine"}
    for by_regime in result["accuracy"].values():
        assert set(by_regime) == set(bench.REGIMES)
        for row in by_regime.values():
            assert set(row) == set(bench.METHODS)
            assert all(0.0 <= v <= 100.0 for v in row.values())
    assert result["shapes"]["iris"] == [150, 4, 3]
    # the intercept is what separates iris's classes for the logistic loss (docs/classifier.md)
    iris = result["accuracy"]["iris"]["all"]
    assert iris["FAAST logistic"] > iris["FAAST logistic no intercept"] + 5
    table = bench.markdown(result)
    assert table.count("| iris (150 × 4, 3) |") == len(bench.REGIMES) and "| mean |" in table
    bench.plot(result, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0


def test_the_data_line_names_the_data_sets_of_the_run():
    everything = bench.describe([*bench.TABLES, *bench.TEXTS], 300, 0)
    assert everything == (
        "scikit-learn digits / breast_cancer / wine / iris (standardised per fold); MiniLM embeddings "
        "of 300 texts per class (books, austen: 3-line passages; polarity: Pang & Lee sentences); "
        "stratified 5-fold CV, seed 0"
    )  # the published table's line
    assert bench.describe(["tweets"], 50, 1) == (
        "MiniLM embeddings of 50 texts per class (tweets: tweets labelled negative / neutral / "
        "positive, tweet-sentiment asset); stratified 5-fold CV, seed 1"
    )
    assert bench.describe(["iris"], 10, 0).startswith("scikit-learn iris (standardised")


@pytest.mark.assets("tweet-sentiment")
def test_tweets_task_draws_per_class_tweets_of_three_labels():
    texts, labels = bench.text_task("tweets", 5, 0)
    assert len(texts) == 15 and sorted(set(labels)) == ["negative", "neutral", "positive"]
    assert np.bincount(np.unique(labels, return_inverse=True)[1]).tolist() == [5, 5, 5]
    assert texts == bench.text_task("tweets", 5, 0)[0] != bench.text_task("tweets", 5, 1)[0]
