"""faast.lm.lora_baseline: the LoRA baseline trains on exactly the answer transitions TaskModel
scores, chooses its learning rate on the examples alone, and comes out of the model cleanly."""

from __future__ import annotations

import functools
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import lora_baseline
from faast.lm.examples import Example
from tests.test_benchmark_lm_lead import _task

RECIPE = lora_baseline.LoraRecipe(epochs=12, batch_size=4, learning_rates=(1e-4, 3e-2), seed=0)


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
        for ids, mask, pairs in lora_baseline.answer_batches(codec, examples, 3, pad):
            loss, n = lora_baseline.answer_loss(model, ids, mask, pairs)
            total, count = total + float(loss), count + n
        expected = _by_hand(model, codec, examples)
        # the TaskModel scores the same tokens (its answer NLL, memory off)
        scored = task.answer_nll(examples, batch_size=5)
    assert count == expected[1] == scored[1]
    assert total == pytest.approx(expected[0], rel=1e-9)
    assert total == pytest.approx(scored[0], rel=1e-9)


def test_held_out_split_is_seeded_disjoint_and_refuses_too_few():
    examples = _examples(10)
    train, held = lora_baseline.held_out_split(examples, 0.2, seed=3)
    assert len(held) == 2 and len(train) == 8
    assert {id(e) for e in train}.isdisjoint({id(e) for e in held})
    assert lora_baseline.held_out_split(examples, 0.2, seed=3) == (train, held)
    assert lora_baseline.held_out_split(examples, 0.2, seed=4) != (train, held)
    assert len(lora_baseline.held_out_split(examples[:2], 0.9, seed=0)[0]) == 1  # one left to train on
    with pytest.raises(ValueError, match="at least 2 examples"):
        lora_baseline.held_out_split(examples[:1], 0.2, seed=0)
    with pytest.raises(ValueError, match="held_out"):
        lora_baseline.held_out_split(examples, 1.0, seed=0)


def test_fit_learns_the_examples_chooses_on_held_out_and_comes_out_cleanly():
    task = _task()
    fm, codec = task.model, task.codec
    examples, pad = _examples(24), task.tokenizer.pad_token_id
    probe = torch.tensor([codec.encode(examples[0].input, examples[0].output).ids])
    with torch.no_grad(), fm.disabled():
        before_logits = fm.base_model(input_ids=probe).logits.clone()
        before = lora_baseline.answer_nll(fm.base_model, codec, examples, 8, pad)
    with fm.disabled():
        peft_model, fit = lora_baseline.fit_lora(fm.base_model, codec, examples, RECIPE)
    assert len(fit.held_out_nll) == 2 and fit.parameters > 0 and fit.seconds > 0
    assert fit.learning_rates == RECIPE.learning_rates and fit.nbytes == 8 * fit.parameters  # float64
    assert fit.held_out_summary() == ", ".join(
        f"{lr:g}: {v:.3f}" for lr, v in zip((1e-4, 3e-2), fit.held_out_nll, strict=True)
    )
    assert fit.learning_rate == RECIPE.learning_rates[min(range(2), key=fit.held_out_nll.__getitem__)]
    with torch.no_grad(), fm.disabled():
        after = lora_baseline.answer_nll(peft_model, codec, examples, 8, pad)
        # the TaskModel over the same model reads the adapter (it is injected in place)
        total, count = task.answer_nll(examples, batch_size=8)
    assert after < 0.9 * before  # the examples were learned (slowly, on this tiny model)
    assert total / count == pytest.approx(after, rel=1e-9)
    base = lora_baseline.remove_lora(peft_model)
    assert base is fm.base_model
    assert not any("lora" in name for name, _ in base.named_modules())
    with torch.no_grad(), fm.disabled():
        assert torch.equal(base(input_ids=probe).logits, before_logits)  # the base weights untouched


def test_recipe_refuses_bad_settings():
    for bad, match in (
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"rank": 2.5}, "rank must be an integer >= 1"),
        ({"learning_rates": ()}, "learning_rates"),
        ({"learning_rates": (1e-3, -1.0)}, "learning_rates"),
        ({"learning_rates": (float("nan"),)}, "learning_rates"),
        ({"learning_rates": (1e-3, 1e-4, 1e-3)}, "must not repeat a rate"),
        ({"stop_at_rise": 1}, "stop_at_rise must be True or False"),
        ({"held_out": 0.0}, "held_out"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            lora_baseline.LoraRecipe(**bad)


def test_fit_refuses_examples_without_outputs():
    task = _task()
    with pytest.raises(ValueError, match="has no output"):
        lora_baseline.fit_lora(task.model.base_model, task.codec, [Example("w3 w20", None)] * 3, RECIPE)


class _NoHeadPositions(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep`` (as older or custom models)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)


def test_the_head_runs_at_answer_positions_only_and_models_without_the_keyword_get_the_same_loss():
    task = _task()
    model, codec = task.model.base_model, task.codec
    pad = task.tokenizer.pad_token_id
    head_rows = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: head_rows.append(args[0].shape[:-1].numel())
    )
    try:
        with torch.no_grad(), task.model.disabled():
            ids, mask, pairs = next(lora_baseline.answer_batches(codec, _examples(6), 6, pad))
            assert lora_baseline.takes_head_positions(model)
            kept, n = lora_baseline.answer_loss(model, ids, mask, pairs)
            answer_positions = int(pairs.any(dim=0).sum())
            assert head_rows == [ids.shape[0] * answer_positions]
            assert answer_positions < ids.shape[1] - 1  # the prompts' positions were skipped
            plain = _NoHeadPositions(model)
            assert not lora_baseline.takes_head_positions(plain)
            everywhere, m = lora_baseline.answer_loss(plain, ids, mask, pairs)
            assert head_rows[-1] == ids.numel()
    finally:
        hook.remove()
    assert n == m == int(pairs.sum())
    assert float(kept) == pytest.approx(float(everywhere), rel=1e-6)


@functools.cache
def _shared_task():
    """One tiny task for the property test below (built once: hypothesis reruns the body)."""
    return _task()


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.lists(st.integers(3, 60), min_size=1, max_size=9),
            st.lists(st.integers(3, 60), min_size=1, max_size=6),
        ),
        min_size=1,
        max_size=6,
    ),
    batch_size=st.integers(1, 6),
)
def test_the_answer_positions_fast_path_equals_the_whole_head_on_random_batches(rows, batch_size):
    """Prompts and answers of random words and lengths, any batch size: the loss and count through
    ``logits_to_keep`` equal those of the whole head (the same model without the keyword)."""
    task = _shared_task()
    model, codec = task.model.base_model, task.codec
    examples = [Example(" ".join(f"w{i}" for i in p), " ".join(f"w{i}" for i in a)) for p, a in rows]
    plain = _NoHeadPositions(model)
    with torch.no_grad(), task.model.disabled():
        for ids, mask, pairs in lora_baseline.answer_batches(
            codec, examples, batch_size, task.tokenizer.pad_token_id
        ):
            fast, n = lora_baseline.answer_loss(model, ids, mask, pairs)
            reference, m = lora_baseline.answer_loss(plain, ids, mask, pairs)
            assert n == m == int(pairs.sum()) > 0
            assert float(fast) == pytest.approx(float(reference), rel=1e-6)


class _CountOnlyHead(torch.nn.Module):
    """A causal LM whose ``logits_to_keep`` is a count of last positions only (as transformers
    before tensors of positions, or a custom model): slice(-n, None)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask=None, use_cache=None, logits_to_keep=0):
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache).logits
        return types.SimpleNamespace(logits=logits[:, slice(-logits_to_keep, None)])


class _KeepsEverything(_NoHeadPositions):
    """A causal LM that takes ``logits_to_keep`` and ignores it."""

    def forward(self, input_ids, attention_mask=None, use_cache=None, logits_to_keep=0):
        return super().forward(input_ids, attention_mask, use_cache)


def test_a_lone_answer_position_is_read_right_or_refused():
    """One scored position (1 of 4): transformers' models give the whole-head loss; a model that
    reads logits_to_keep as a count (it would keep position 3 for [1]) or ignores it is refused
    with a clear error instead of a wrong loss."""
    task = _task()
    model = task.model.base_model
    ids, mask = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]]), torch.ones(2, 4, dtype=torch.long)
    pairs = torch.zeros(2, 3, dtype=torch.bool)
    pairs[:, 1] = True
    with torch.no_grad(), task.model.disabled():
        kept, n = lora_baseline.answer_loss(model, ids, mask, pairs)
        everywhere, m = lora_baseline.answer_loss(_NoHeadPositions(model), ids, mask, pairs)
        assert n == m == 2 and float(kept) == pytest.approx(float(everywhere), rel=1e-6)
        with pytest.raises(ValueError, match="_CountOnlyHead takes logits_to_keep but not as a tensor"):
            lora_baseline.answer_loss(_CountOnlyHead(model), ids, mask, pairs)
        with pytest.raises(ValueError, match="_KeepsEverything kept 4 positions where logits_to_keep asked"):
            lora_baseline.answer_loss(_KeepsEverything(model), ids, mask, pairs)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=10.0) | st.just(float("nan")), min_size=1, max_size=6))
def test_the_search_stops_at_the_first_rise_of_the_held_out_nll(scores):
    as_ranked = [float("inf") if s != s else s for s in scores]  # NaN (diverged) ranks last
    expected = len(scores) >= 2 and as_ranked[-1] > min(as_ranked[:-1])
    assert lora_baseline.stops_search(scores, True) is expected
    assert lora_baseline.stops_search(scores, False) is False


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0.0, max_value=10.0) | st.just(float("nan")) | st.just(float("inf")),
        min_size=1,
        max_size=6,
    )
)
def test_the_lowest_loss_is_the_first_smallest_finite_one(losses):
    finite = [(loss, i) for i, loss in enumerate(losses) if loss == loss and loss != float("inf")]
    expected = min(finite)[1] if finite else None  # ties: the first index
    assert lora_baseline.lowest_loss(losses) == expected


def _fake_search(monkeypatch, nll_by_rate: dict[float, float]) -> list[float]:
    """Replace training by a record of the rates trained at and the held-out NLL by a table of
    the last rate trained; returns the record."""
    trained: list[float] = []
    monkeypatch.setattr(lora_baseline, "train_lora", lambda _m, _c, _e, lr, _r, _p: trained.append(lr))
    monkeypatch.setattr(lora_baseline, "answer_nll", lambda *_a: nll_by_rate[trained[-1]])
    return trained


GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


@pytest.mark.parametrize(
    ("nll_by_rate", "stop", "tried", "chosen"),
    [
        # falls to 3e-3, rises at 1e-2: every rate tried, the minimum chosen
        (
            {1e-4: 3.0, 3e-4: 1.9, 1e-3: 0.43, 3e-3: 0.18, 1e-2: 1.7},
            True,
            (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
            3e-3,
        ),
        # rises at 1e-3: 3e-3 and 1e-2 are not trained
        ({1e-4: 0.59, 3e-4: 0.185, 1e-3: 0.193, 3e-3: 0.1, 1e-2: 0.4}, True, (1e-4, 3e-4, 1e-3), 3e-4),
        # without the stop, the later (lower) minimum is found
        (
            {1e-4: 0.59, 3e-4: 0.185, 1e-3: 0.193, 3e-3: 0.1, 1e-2: 0.4},
            False,
            (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
            3e-3,
        ),
        # a diverged rate (NaN) is never chosen and stops the search
        ({1e-4: 2.0, 3e-4: 1.0, 1e-3: float("nan"), 3e-3: 0.1, 1e-2: 0.4}, True, (1e-4, 3e-4, 1e-3), 3e-4),
    ],
)
def test_rates_are_tried_from_the_smallest_up_and_the_best_is_trained_on_every_example(
    monkeypatch, nll_by_rate, stop, tried, chosen
):
    task = _task()
    trained = _fake_search(monkeypatch, nll_by_rate)
    grid = (1e-2, 1e-4, 3e-3, 3e-4, 1e-3)  # given in any order: searched from the smallest
    recipe = lora_baseline.LoraRecipe(epochs=1, batch_size=4, learning_rates=grid, stop_at_rise=stop)
    with task.model.disabled():
        peft_model, fit = lora_baseline.fit_lora(task.model.base_model, task.codec, _examples(10), recipe)
        lora_baseline.remove_lora(peft_model)
    assert fit.learning_rates == tried and fit.learning_rate == chosen
    assert fit.held_out_nll == pytest.approx([nll_by_rate[lr] for lr in tried], nan_ok=True)
    assert trained == [*tried, chosen]  # one training per rate tried, then the chosen one on all
    assert fit.held_out_summary().startswith("0.0001: ")


def test_a_search_that_diverges_at_every_rate_is_a_clear_error(monkeypatch):
    task = _task()
    _fake_search(monkeypatch, {1e-3: float("nan"), 1e-2: float("nan")})
    recipe = lora_baseline.LoraRecipe(epochs=1, batch_size=4, learning_rates=(1e-3, 1e-2))
    with (
        task.model.disabled(),
        pytest.raises(ValueError, match="diverged at every learning rate tried .0.001, 0.01"),
    ):
        lora_baseline.fit_lora(task.model.base_model, task.codec, _examples(10), recipe)
    assert not any("lora" in name for name, _ in task.model.base_model.named_modules())  # taken out


def test_the_default_grid_reaches_ten_to_the_minus_two_in_half_decades():
    recipe = lora_baseline.LoraRecipe()
    assert recipe.learning_rates == GRID and recipe.stop_at_rise is True
