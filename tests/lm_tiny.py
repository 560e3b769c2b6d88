"""Tiny randomly initialised causal LMs of each supported family (no downloads) for the LM tests."""

from __future__ import annotations

import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 97
FAMILIES = ("llama", "qwen2", "gpt2", "gemma3")


def tiny_model(family: str, *, seed: int = 0, layers: int = 2, hidden: int = 32, dtype=torch.float64):
    """A 2-block, hidden-32 model of ``family`` in eval mode (float64 by default, for exact checks)."""
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    decoders = {  # Llama-style configs; GPT-2 names its sizes differently
        "llama": (LlamaConfig, LlamaForCausalLM, {}),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
        "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM, {"head_dim": 8, "sliding_window": 4}),
    }
    if family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_positions=64, **common))
    elif family in decoders:
        config_class, model_class, extra = decoders[family]
        cfg = config_class(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            **extra,
            **common,
        )
        model = model_class(cfg)
    else:
        raise ValueError(family)
    return model.to(dtype).eval()


def random_batch(lengths: list[int], *, seed: int = 1, side: str = "right", pad_id: int = 0):
    """(input_ids, attention_mask) for sequences of the given lengths, padded on ``side``.

    Sequence i is the same tokens whatever the padding side, so left and right padding of one
    batch describe the same texts.
    """
    gen = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(3, VOCAB, (n,), generator=gen) for n in lengths]
    width = max(lengths)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)], mask[i, : len(s)] = s, 1
        else:
            ids[i, width - len(s) :], mask[i, width - len(s) :] = s, 1
    return ids, mask
