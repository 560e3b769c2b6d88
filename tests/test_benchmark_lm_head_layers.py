"""benchmarks/lm_sentiment.py ``--head-layers`` and benchmarks/lm_authors.py's layer-head methods: the
rows are the library's head on the chosen layer (guarded and not), scored on the test inputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_authors
import lm_sentiment
from faast.lm.examples import Example
from faast.lm.label_head import LabelHead, candidate_layers, describe_layer_choice
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled, _task


def test_sentiment_layer_head_rows_are_the_fitted_heads(monkeypatch):
    monkeypatch.setattr(lm_sentiment, "TEMPLATE", TEMPLATE)
    monkeypatch.setattr(lm_sentiment, "LABELS", ["w40", "w41"])
    task = _task()
    pool, test = _labelled(30), _labelled(12, offset=5)
    rows: list = []
    lm_sentiment._layer_head_rows("tiny", task, pool, test, [10, 30], rows)
    assert [(r.method, r.k) for r in rows] == [
        ("faast-head (layer auto)", 10),
        ("faast-head (layer unguarded)", 10),
        ("faast-head (layer auto)", 30),
        ("faast-head (layer unguarded)", 30),
    ]
    layers = candidate_layers(2)
    for row in rows:
        feats = task.prompt_layer_features(pool[: row.k], layers)
        guard = row.method == "faast-head (layer auto)"
        head = LabelHead.fit_layers(
            feats, layers, [e.output for e in pool[: row.k]], ["w40", "w41"], guard=guard
        )
        scores = head.scores(task.prompt_features([e.input for e in test], layer=head.layer))
        assert row.score == pytest.approx(lm_sentiment.accuracy(scores, test)[0])
        assert row.detail.startswith("head input" if head.layer is None else f"block {head.layer}")


def test_head_layers_needs_the_heads_part():
    with pytest.raises(SystemExit, match="--head-layers needs the heads part"):
        lm_sentiment.parse_args(["--parts", "zero-shot", "--head-layers"])
    assert lm_sentiment.parse_args(["--heads-only", "--head-layers"]).head_layers


def _fitted_setting(task, support, test) -> argparse.Namespace:
    """What lm_authors' runners read (task, test inputs, labels, options), the task fitted on
    ``support`` (its labels come from there)."""
    task.fit(support, labels=["w40", "w41"], progress=False)
    inputs = [e.input for e in test]
    return argparse.Namespace(
        task=task, inputs=inputs, labels=["w40", "w41"], args=argparse.Namespace(batch_size=4)
    )


def test_authors_layer_head_methods_score_the_chosen_layer():
    task = _task()
    support, test = _labelled(20), _labelled(8, offset=3)
    setting = _fitted_setting(task, support, test)
    for method, guard in (("faast head (layer auto)", True), ("faast head (layer unguarded)", False)):
        scores, detail = lm_authors.RUNNERS[method](setting, support)
        assert "of 3 layers" in detail
        layers = candidate_layers(2)
        feats = task.prompt_layer_features(support, layers)
        head = LabelHead.fit_layers(feats, layers, [e.output for e in support], ["w40", "w41"], guard=guard)
        torch.testing.assert_close(
            scores, head.scores(task.prompt_features(setting.inputs, layer=head.layer))
        )
    scores, _ = lm_authors.RUNNERS["faast head"](setting, support)
    assert task.head.layer is None  # the published rows' head: what the LM head reads
    torch.testing.assert_close(scores, task.head.scores(task.prompt_features(setting.inputs)))


def test_authors_play_fold_head_holds_out_whole_plays():
    task = _task()
    support = [Example(e.input, e.output, {"play": f"p{i % 4}"}) for i, e in enumerate(_labelled(24))]
    test = _labelled(8, offset=3)
    setting = _fitted_setting(task, support, test)
    scores, detail = lm_authors.RUNNERS["faast head (layer play folds)"](setting, support)
    layers = candidate_layers(2)
    feats = task.prompt_layer_features(support, layers)
    plays = [f"p{i % 4}" for i in range(24)]
    head = LabelHead.fit_layers(feats, layers, [e.output for e in support], ["w40", "w41"], groups=plays)
    assert detail == describe_layer_choice(head, 3)  # the held-out shares of folds of whole plays
    ungrouped = LabelHead.fit_layers(feats, layers, [e.output for e in support], ["w40", "w41"])
    assert ungrouped.held_out != head.held_out
    torch.testing.assert_close(scores, head.scores(task.prompt_features(setting.inputs, layer=head.layer)))
    with pytest.raises(ValueError, match="needs passages that carry their play"):
        lm_authors.RUNNERS["faast head (layer play folds)"](setting, _labelled(24))
