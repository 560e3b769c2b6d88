"""Backward passes through the output memory with a trainable LM head (fine-tuning the head, or
embeddings tied to it, after learning): the prob and logit mixes' gradients of the head's weight
equal finite differences (the memory's support rows and ρ² carry their graph then; hunt: they were
detached, so the gradient left their part out); the correction memory, whose step is computed
without a graph, warns once instead."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import faast.lm.correction as correction
from faast.lm import FaastConfig, get_faast_model
from tests.lm_tiny import VOCAB, tiny_model


def _learned(mix: str):
    base = tiny_model("llama", dtype=torch.float64)
    fm = get_faast_model(base, FaastConfig(num_memories=0, output_mix=mix))
    text = torch.randint(3, VOCAB, (1, 24), generator=torch.Generator().manual_seed(5))
    fm.learn(input_ids=text)
    return base, fm, text


def _loss(fm, text: torch.Tensor) -> torch.Tensor:
    logits = fm(input_ids=text).logits
    return F.cross_entropy(logits[0, :-1].double(), text[0, 1:])


@pytest.mark.parametrize("mix", ["prob", "logit"])
def test_lm_head_gradient_through_the_memory_equals_finite_differences(mix):
    base, fm, text = _learned(mix)
    weight = base.lm_head.weight
    base.zero_grad()
    _loss(fm, text).backward()
    direction = torch.randn(weight.shape, generator=torch.Generator().manual_seed(1), dtype=weight.dtype)
    autograd = float((weight.grad * direction).sum())
    eps = 1e-6
    with torch.no_grad():
        start = weight.clone()
        weight.copy_(start + eps * direction)
        up = float(_loss(fm, text))
        weight.copy_(start - eps * direction)
        down = float(_loss(fm, text))
        weight.copy_(start)
    assert autograd == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_reading_without_gradients_still_uses_the_cached_support():
    _, fm, text = _learned("prob")
    with torch.no_grad():
        before = fm(input_ids=text).logits
    memory = fm.output_memory
    assert memory._support is not None  # cached by the no-grad read
    cached = memory._support[1]
    with torch.no_grad():
        torch.testing.assert_close(fm(input_ids=text).logits, before, rtol=0, atol=0)
    assert memory._support[1] is cached


def test_the_correction_memory_warns_once_when_a_backward_pass_reaches_the_head(monkeypatch):
    base, fm, text = _learned("correction")
    monkeypatch.setattr(correction, "_WARNED_CONSTANT_STEP", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            fm(input_ids=text)
        fm(input_ids=text)  # a forward with gradients on, but no backward pass: no warning
        base.lm_head.weight.requires_grad_(False)
        _loss(fm, text).backward()  # a frozen head: no warning
    base.lm_head.weight.requires_grad_(True)
    with pytest.warns(UserWarning, match="held constant in a backward pass") as caught:
        _loss(fm, text).backward()
        _loss(fm, text).backward()
    mine = [w for w in caught if "held constant" in str(w.message)]
    assert len(mine) == 1 and mine[0].filename == __file__  # the line that ran backward


@pytest.mark.parametrize("mix", ["prob", "logit", "correction"])
def test_reading_in_inference_mode_then_training_outside_it(mix):
    """The read-outs' caches made by a read inside ``torch.inference_mode()`` (the support rows,
    the correction's step) are normal tensors: a training step after it can save them (hunt: an
    evaluation in inference mode, then a step with the head frozen, failed)."""
    base, fm, text = _learned(mix)
    with torch.inference_mode():
        fm(input_ids=text)
    base.requires_grad_(False)
    norm = base.model.norm.weight
    norm.requires_grad_(True)
    _loss(fm, text).backward()
    assert norm.grad is not None and bool(torch.isfinite(norm.grad).all())


def test_a_forward_with_gradients_on_reuses_the_cached_support_and_scale(monkeypatch):
    """Outside torch.no_grad (the default of a loaded model's parameters: trainable), a forward
    takes the cached support and ρ², with their gradients attached, instead of a pass over the
    head per forward (hunt: a pass over the whole head, and a copy of it, at every forward)."""
    import faast.lm.output_readouts as output_readouts

    _, fm, text = _learned("prob")
    memory = fm.output_memory
    fm(input_ids=text)
    built = []
    real = output_readouts.ProbReadOut._support_rows
    monkeypatch.setattr(output_readouts.ProbReadOut, "_support_rows", lambda *a: built.append(1) or real(*a))
    fm(input_ids=text)
    fm(input_ids=text)
    assert built == [] and memory._support is not None
