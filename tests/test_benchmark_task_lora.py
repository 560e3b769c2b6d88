"""benchmarks/task_lora.py: the LoRA baseline trains on exactly the answer transitions TaskModel
scores, chooses its learning rate on the examples alone, and comes out of the model cleanly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import task_lora
from faast.lm.examples import Example
from tests.test_benchmark_lm_lead import _task

RECIPE = task_lora.LoraRecipe(epochs=12, batch_size=4, learning_rates=(1e-4, 3e-2), seed=0)


def _examples(n: int, offset: int = 0) -> list[Example]:
    """A rule the tiny model can learn and carry to held-out examples: the second input word
    w{20+j} names the answer w{40+j}, followed by w{50+j} for even j (answers of one and two
    words, so rows differ in length)."""
    out = []
    for i in range(offset, offset + n):
        j = i % 5
        out.append(Example(f"w{3 + i % 30} w{20 + j}", f"w{40 + j}" + ("" if j % 2 else f" w{50 + j}")))
    return out


def _by_hand(model, codec, examples) -> tuple[float, int]:
    """Summed answer NLL and answer tokens, one unpadded example at a time."""
    total, count = 0.0, 0
    for e in examples:
        enc = codec.encode(e.input, e.output)
        ids = torch.tensor([enc.ids])
        logits = model(input_ids=ids).logits[0, :-1]
        start = len(enc.prompt) - 1  # the transition into the first answer token
        total += float(F.cross_entropy(logits[start:], ids[0, start + 1 :], reduction="sum"))
        count += len(enc.answer)
    return total, count


def test_the_loss_covers_the_answer_tokens_only_whatever_the_padding():
    task = _task()
    model, codec = task.model.base_model, task.codec
    examples = _examples(7)
    pad = task.tokenizer.pad_token_id
    total, count = 0.0, 0
    with torch.no_grad(), task.model.disabled():
        for ids, mask, pairs in task_lora.answer_batches(codec, examples, 3, pad):
            loss, n = task_lora.answer_loss(model, ids, mask, pairs)
            total, count = total + float(loss), count + n
        expected = _by_hand(model, codec, examples)
        # the TaskModel scores the same tokens (its answer NLL, memory off)
        scored = task.answer_nll(examples, batch_size=5)
    assert count == expected[1] == scored[1]
    assert total == pytest.approx(expected[0], rel=1e-9)
    assert total == pytest.approx(scored[0], rel=1e-9)


def test_held_out_split_is_seeded_disjoint_and_refuses_too_few():
    examples = _examples(10)
    train, held = task_lora.held_out_split(examples, 0.2, seed=3)
    assert len(held) == 2 and len(train) == 8
    assert {id(e) for e in train}.isdisjoint({id(e) for e in held})
    assert task_lora.held_out_split(examples, 0.2, seed=3) == (train, held)
    assert task_lora.held_out_split(examples, 0.2, seed=4) != (train, held)
    assert len(task_lora.held_out_split(examples[:2], 0.9, seed=0)[0]) == 1  # one left to train on
    with pytest.raises(ValueError, match="at least 2 examples"):
        task_lora.held_out_split(examples[:1], 0.2, seed=0)
    with pytest.raises(ValueError, match="held_out"):
        task_lora.held_out_split(examples, 1.0, seed=0)


def test_fit_learns_the_examples_chooses_on_held_out_and_comes_out_cleanly():
    task = _task()
    fm, codec = task.model, task.codec
    examples, pad = _examples(24), task.tokenizer.pad_token_id
    probe = torch.tensor([codec.encode(examples[0].input, examples[0].output).ids])
    with torch.no_grad(), fm.disabled():
        before_logits = fm.base_model(input_ids=probe).logits.clone()
        before = task_lora.answer_nll(fm.base_model, codec, examples, 8, pad)
    with fm.disabled():
        peft_model, fit = task_lora.fit_lora(fm.base_model, codec, examples, RECIPE)
    assert len(fit.held_out_nll) == 2 and fit.parameters > 0 and fit.seconds > 0
    assert fit.learning_rate == RECIPE.learning_rates[min(range(2), key=fit.held_out_nll.__getitem__)]
    with torch.no_grad(), fm.disabled():
        after = task_lora.answer_nll(peft_model, codec, examples, 8, pad)
        # the TaskModel over the same model reads the adapter (it is injected in place)
        total, count = task.answer_nll(examples, batch_size=8)
    assert after < 0.9 * before  # the examples were learned (slowly, on this tiny model)
    assert total / count == pytest.approx(after, rel=1e-9)
    base = task_lora.remove_lora(peft_model)
    assert base is fm.base_model
    assert not any("lora" in name for name, _ in base.named_modules())
    with torch.no_grad(), fm.disabled():
        assert torch.equal(base(input_ids=probe).logits, before_logits)  # the base weights untouched


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
