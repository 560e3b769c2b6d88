"""benchmarks/lm_translation.py and lm_sentiment.py: the LoRA rows (faast.lm.lora_baseline through
benchmarks/task_lora.py) score the adapter and leave the model as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import task_lora
from tests.test_benchmark_lm_lead import _task
from tests.test_lm_lora_baseline import _examples


def test_translation_lora_rows_score_the_adapter_and_remove_it(monkeypatch):
    import argparse

    import lm_translation
    from tests.test_benchmark_lm_lead import TEMPLATE

    monkeypatch.setattr(lm_translation, "TEMPLATE", TEMPLATE)
    task = _task()
    pool, test = _examples(12), _examples(4, offset=12)
    args = argparse.Namespace(
        sizes=[1, 12],
        batch_size=4,
        seed=0,
        lora_epochs=2,
        lora_lrs=[1e-3, 3e-2],
        max_new_tokens=3,
        no_repeat_ngram=0,
    )
    added: list = []

    def add(method, k, scores, adapt, infer, nbytes, detail):
        added.append((method, k, scores, nbytes, detail))

    with torch.no_grad(), task.model.disabled():
        zero_shot = task.answer_nll(test)
    lm_translation.add_lora_rows(task, pool, test, test, args, add)
    assert [(m, k) for m, k, *_ in added] == [("LoRA r=8 (backprop)", 12)]  # none for one example
    scores, nbytes, detail = added[0][2], added[0][3], added[0][4]
    assert {"bleu", "chrf", "nll", "learning_rate", "held_out_nll"} <= set(scores)
    assert scores["learning_rate"] in args.lora_lrs and len(scores["held_out_nll"]) == 2
    assert nbytes > 0 and detail.endswith("; 2 epochs")
    assert scores["nll"] != pytest.approx(zero_shot[0] / zero_shot[1], rel=1e-6)  # read with the adapter
    assert not any("lora" in name for name, _ in task.model.base_model.named_modules())  # then removed
    with torch.no_grad(), task.model.disabled():
        assert task.answer_nll(test) == pytest.approx(zero_shot, rel=1e-12)


def test_sentiment_lora_rows_score_labels_with_the_adapter(monkeypatch):
    import argparse

    import lm_sentiment
    from tests.test_benchmark_lm_lead import TEMPLATE, _labelled

    monkeypatch.setattr(lm_sentiment, "TEMPLATE", TEMPLATE)
    monkeypatch.setattr(lm_sentiment, "LABELS", ["w40", "w41"])
    task = _task()
    task.spec.labels = ["w40", "w41"]
    pool, test = _labelled(16), _labelled(6, offset=5)
    args = argparse.Namespace(batch_size=4, seed=0, lora_epochs=2, lora_lrs="1e-3,3e-2")
    inputs = [e.input for e in test]
    with torch.no_grad(), task.model.disabled():
        before = task.label_scores(inputs)
    rows: list = []
    lm_sentiment._lora_rows("tiny", task, pool, test, [1, 16], args, rows)
    assert [(r.method, r.k) for r in rows] == [("LoRA r=8 (backprop)", 16)]
    assert rows[0].extra["learning_rate"] in (1e-3, 3e-2) and rows[0].nbytes > 0
    assert 0.0 <= rows[0].score <= 1.0
    assert not any("lora" in name for name, _ in task.model.base_model.named_modules())
    with torch.no_grad(), task.model.disabled():
        torch.testing.assert_close(task.label_scores(inputs), before, rtol=0, atol=0)  # as it was


def test_recipe_options_refuse_bad_values():
    import argparse

    ok = task_lora.recipe_from_args(
        argparse.Namespace(lora_epochs=2, lora_lrs="1e-4,1e-3", batch_size=8, seed=1)
    )
    assert ok.learning_rates == (1e-4, 1e-3) and ok.epochs == 2 and ok.seed == 1
    for epochs, rates in ((0, "1e-3"), (1, "0,1e-3"), (1, "")):
        with pytest.raises(SystemExit, match="lora"):
            task_lora.recipe_from_args(
                argparse.Namespace(lora_epochs=epochs, lora_lrs=rates, batch_size=8, seed=0)
            )
