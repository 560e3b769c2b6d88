"""benchmarks/lm_sentiment.py and lm_translation.py: the rows of FAAST on top of in-context learning
(``--parts faast-icl`` / ``--faast-icl``), on a tiny random model with a word-level tokenizer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_sentiment
import lm_translation
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.prompts import PromptTemplate
from faast.lm.task import TaskModel, TaskSpec
from task_bench import PUBLISHED_ANCHOR, PUBLISHED_CALIBRATED, PUBLISHED_GUARD, PUBLISHED_HOLD_OUT
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import tiny_causal_lm, word_tokenizer

TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")


def _task() -> TaskModel:
    torch.manual_seed(0)
    return TaskModel.create(
        tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True), TaskSpec(TEMPLATE), cache=True
    )


def on_tiny_model(monkeypatch: Any, modules: Sequence[ModuleType], labels: Sequence[str]) -> None:
    """Point each benchmark module's model loader, prompt template and labels at the tiny
    word-level model (:func:`tests.lm_wordlevel.tiny_causal_lm`), :data:`TEMPLATE` and ``labels``."""
    for module in modules:
        monkeypatch.setattr(module, "load_causal_lm", tiny_causal_lm)
        monkeypatch.setattr(module, "TEMPLATE", TEMPLATE)
        monkeypatch.setattr(module, "LABELS", list(labels))


def published_fit_args(**options: object) -> argparse.Namespace:
    """The arguments lm_sentiment's rows read: ``options`` and the fit options at the published
    tables' settings (task_bench.add_fit_options), batch 8, seed 0."""
    return argparse.Namespace(
        batch_size=8,
        seed=0,
        guard=PUBLISHED_GUARD,
        hold_out=PUBLISHED_HOLD_OUT,
        calibrated=PUBLISHED_CALIBRATED,
        anchor=PUBLISHED_ANCHOR,
        **options,
    )


def _labelled(n: int, offset: int = 0) -> list[Example]:
    return [Example(f"w{3 + (i + offset) % 12} w{20 + i % 5}", "w40" if i % 2 else "w41") for i in range(n)]


def test_sentiment_rows_learn_the_examples_after_the_demonstrations(monkeypatch):
    monkeypatch.setattr(lm_sentiment, "TEMPLATE", TEMPLATE)
    monkeypatch.setattr(lm_sentiment, "LABELS", ["w40", "w41"])
    task = _task()
    pool, test = _labelled(24), _labelled(10, offset=5)
    args = published_fit_args(faast_icl=[3])
    rows: list = []
    lm_sentiment._faast_icl_rows("tiny", task, pool, test, [2, 12, 24], args, rows)
    assert [(r.method, r.k) for r in rows] == [
        ("in-context (task prompts)", 3),
        ("faast-answer + 3 in context", 12),
        ("faast-answer + 3 in context", 24),
    ]
    assert rows[1].detail.startswith("3 in context + 9 learned") and rows[1].extra["n_validation"] > 0
    # the demonstrations alone read as in-context learning with the same demonstrations
    demos = [(e.input, e.output) for e in pool[:3]]
    icl = InContextModel(task.model.base_model, task.codec, demos, reserve=8)
    with task.model.disabled():
        scores = icl.label_scores([e.input for e in test], ["w40", "w41"])
    assert rows[0].score == lm_sentiment.accuracy(scores, test)[0]
    assert task.model.output_memory.memory.num_pairs == 0  # left reset for the next rows


def test_sentiment_faast_rows_fit_each_size(monkeypatch):
    monkeypatch.setattr(lm_sentiment, "TEMPLATE", TEMPLATE)
    monkeypatch.setattr(lm_sentiment, "LABELS", ["w40", "w41"])
    task = _task()
    pool, test = _labelled(24), _labelled(10, offset=5)
    args = published_fit_args(key_features=[0], modes=["answer", "all"])
    rows: list = []
    lm_sentiment._faast_rows("tiny", task, pool, test, [12, 24], 0.01, 0.02, args, rows)
    assert [(r.method, r.k) for r in rows] == [(f"faast-{m}", k) for m in ("answer", "all") for k in (12, 24)]
    assert all(r.nbytes > 0 and r.adapt_s >= 0.01 * r.k and r.infer_ms >= 20.0 for r in rows)
    assert task.spec.pairs == "answer" and task.model.output_memory.memory.num_pairs == 0


def test_translation_rows_learn_the_examples_after_the_demonstrations(monkeypatch):
    monkeypatch.setattr(lm_translation, "TEMPLATE", TEMPLATE)
    task = _task()
    pool = [Example(f"w{3 + i % 12} w{20 + i % 5}", f"w{40 + i % 7} w{50 + i % 3}") for i in range(20)]
    test = pool[:4]
    args = argparse.Namespace(
        faast_icl=[2],
        sizes=[2, 20],
        batch_size=8,
        seed=0,
        guard="one-se",
        hold_out=0.5,
        folds=2,
        max_validation=6,
        max_new_tokens=4,
        no_repeat_ngram=0,
        cache=True,
    )
    added: list = []

    def add(method, k, scores, adapt, infer, nbytes, detail):
        added.append((method, k, scores, detail))

    args.key_features = [0]
    lm_translation.add_faast_rows(task, "prob", pool, test, test, args, add)
    assert [(m, k) for m, k, _, _ in added] == [("faast-answer", 2), ("faast-answer", 20)]
    added.clear()
    lm_translation.add_faast_icl_rows(task, pool, test, test, args, add)
    assert [(m, k) for m, k, _, _ in added] == [
        ("in-context (task prompts)", 2),
        ("faast-answer + 2 in context", 20),
    ]
    assert added[1][3].startswith("2 in context + 18 learned")
    assert all({"bleu", "chrf", "nll"} <= set(s) for _, _, s, _ in added)
