"""A FaastModel whose LM head changes after wrapping: a PEFT LoRA put on the head afterwards, or a
head replaced by ``resize_token_embeddings``. faast's hooks sit on the head it found and its scores
use that head's weight, so both are refused by name instead of giving the old head's numbers."""

from __future__ import annotations

import warnings

import pytest
import torch

from faast.lm import FaastConfig, get_faast_model
from faast.lm.inject import UnsupportedModelError
from tests.lm_tiny import tiny_model

TEXT = torch.randint(3, 97, (1, 12), generator=torch.Generator().manual_seed(3))


CALLS = ["learn", "forget", "forward", "generate", "output_logits", "base_token_log_probs"]


def _learned():
    base = tiny_model("llama", dtype=torch.float32)
    fm = get_faast_model(base, FaastConfig(num_memories=0))
    fm.learn(TEXT)
    return base, fm


def _calls(fm) -> dict:
    states = {"head_input": torch.zeros(2, fm._layout.hidden_size)}
    tokens = torch.zeros(2, 1, dtype=torch.long)
    return {
        "learn": lambda: fm.learn(TEXT),
        "forget": lambda: fm.forget(TEXT),
        "forward": lambda: fm(input_ids=TEXT),
        "generate": lambda: fm.generate(TEXT, max_new_tokens=1, do_sample=False),
        "output_logits": lambda: fm.output_logits(states),
        "base_token_log_probs": lambda: fm.base_token_log_probs(states["head_input"], tokens),
    }


@pytest.mark.parametrize("call", CALLS)
def test_a_lora_put_on_the_head_after_wrapping_is_refused_by_name(call):
    from peft import LoraConfig, get_peft_model

    base, fm = _learned()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["lm_head"]))
    with pytest.raises(UnsupportedModelError, match=r"LM head is a PEFT layer .*merge_and_unload"):
        _calls(fm)[call]()


def test_a_head_replaced_by_resize_token_embeddings_is_refused():
    base, fm = _learned()
    before = fm.learned_pairs(TEXT, torch.ones_like(TEXT)).sum()
    fm.unload()
    base, fm = _learned()
    base.resize_token_embeddings(base.config.vocab_size + 8)
    with pytest.raises(UnsupportedModelError, match="LM head was replaced after faast wrapped"):
        fm.learn(TEXT)
    with pytest.raises(UnsupportedModelError, match="wrap the model again"):
        fm(input_ids=TEXT)
    fm.unload()  # wrapping again reads the new head
    again = get_faast_model(base, FaastConfig(num_memories=0))
    assert again.learn(TEXT) == int(before)


def test_an_unchanged_head_is_accepted_on_every_call():
    _, fm = _learned()
    calls = _calls(fm)
    assert list(calls) == CALLS
    for call in CALLS:
        calls[call]()  # none refused
    assert fm._layout.lm_head is fm.base_model.get_output_embeddings()
