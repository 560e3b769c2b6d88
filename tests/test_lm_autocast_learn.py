"""Learning and forgetting inside ``torch.autocast``: the backbone runs in the model's own dtype
there (autocast is turned off for the capture), so what is learned under autocast equals what the
same text teaches outside it, and can be forgotten exactly (hunt: states learned under autocast
passed the dtype guard as other numbers, and forgetting them left the statistics off)."""

from __future__ import annotations

import torch

from faast.lm import FaastConfig, get_faast_model
from tests.lm_tiny import VOCAB, tiny_model


def _text(n: int, seed: int) -> torch.Tensor:
    return torch.randint(3, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def test_learning_under_autocast_equals_learning_outside_it():
    text = _text(48, 5)
    inside = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=1))
    outside = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside.learn(input_ids=text)
    outside.learn(input_ids=text)
    for a, b in zip(inside.memories.values(), outside.memories.values(), strict=True):
        assert torch.equal(a.memory.stats.gram, b.memory.stats.gram)
        assert torch.equal(a.memory.stats.cross, b.memory.stats.cross)


def test_a_text_learned_under_autocast_is_forgotten_exactly_outside_it():
    text, rest = _text(48, 5), _text(20, 6)
    fm = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fm.learn(input_ids=text)
    fm.learn(input_ids=rest)
    fm.forget(input_ids=text)
    ref = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=0))
    ref.learn(input_ids=rest)
    torch.testing.assert_close(fm.output_memory.stats.gram, ref.output_memory.stats.gram, rtol=0, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(fm(input_ids=text).logits, ref(input_ids=text).logits)


def test_reading_under_autocast_still_runs_under_it():
    """Only the capture leaves autocast: a forward under it still computes in bfloat16."""
    fm = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=0))
    fm.learn(input_ids=_text(30, 1))
    with torch.no_grad():
        plain = fm(input_ids=_text(10, 2)).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = fm(input_ids=_text(10, 2)).logits
    assert not torch.equal(plain.float(), cast.float())
    assert torch.is_autocast_enabled("cpu") is False
