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
#: More layouts of Hugging Face causal LMs that ``find_layout`` must find (tests/test_lm_families.py):
#: family → (config class name, model class name, size arguments of a 2-block, hidden-32 model).
_DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
MORE_FAMILIES = {
    "mistral": ("MistralConfig", "MistralForCausalLM", {**_DECODER, "num_key_value_heads": 2}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {**_DECODER, "num_key_value_heads": 2}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**_DECODER, "num_key_value_heads": 2, "head_dim": 8}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {**_DECODER, "num_key_value_heads": 2, "head_dim": 8}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(_DECODER)),
    # logits divided by 8 (Granite 3's scaling; the config's default 1 would not test it)
    "granite": (
        "GraniteConfig",
        "GraniteForCausalLM",
        {**_DECODER, "num_key_value_heads": 2, "logits_scaling": 8.0},
    ),
    "cohere": ("CohereConfig", "CohereForCausalLM", {**_DECODER, "num_key_value_heads": 2}),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", {**_DECODER, "num_key_value_heads": 2}),
    "smollm3": ("SmolLM3Config", "SmolLM3ForCausalLM", {**_DECODER, "num_key_value_heads": 2}),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(_DECODER)),
    "opt": (
        "OPTConfig",
        "OPTForCausalLM",
        dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=32),
    ),
    "falcon": (
        "FalconConfig",
        "FalconForCausalLM",
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
    ),
    "gptj": (
        "GPTJConfig",
        "GPTJForCausalLM",
        dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64),
    ),
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(hidden_size=32, n_layer=2, n_head=4)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {**_DECODER, "num_key_value_heads": 2, "head_dim": 8}),
    "phi": ("PhiConfig", "PhiForCausalLM", dict(_DECODER)),
    "mixtral": (
        "MixtralConfig",
        "MixtralForCausalLM",
        {**_DECODER, "num_key_value_heads": 2, "num_local_experts": 2, "num_experts_per_tok": 1},
    ),
    "gpt_bigcode": (
        "GPTBigCodeConfig",
        "GPTBigCodeForCausalLM",
        dict(n_embd=32, n_layer=2, n_head=4, n_positions=64),
    ),
    "codegen": (
        "CodeGenConfig",
        "CodeGenForCausalLM",
        dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=64, n_ctx=64),
    ),
    "mamba": ("MambaConfig", "MambaForCausalLM", dict(hidden_size=32, num_hidden_layers=2, state_size=4)),
    # hybrids: a state-space / convolution / linear-attention block, then an attention block
    "lfm2": (
        "Lfm2Config",
        "Lfm2ForCausalLM",
        {**_DECODER, "num_key_value_heads": 2, "layer_types": ["conv", "full_attention"]},
    ),
    "jamba": (
        "JambaConfig",
        "JambaForCausalLM",
        {
            **_DECODER,
            "num_key_value_heads": 2,
            "attn_layer_period": 2,
            "attn_layer_offset": 1,
            "expert_layer_period": 2,
            "expert_layer_offset": 1,
            "num_experts": 2,
            "mamba_d_state": 4,
            "mamba_expand": 1,
            "use_mamba_kernels": False,
        },
    ),
    "bamba": (
        "BambaConfig",
        "BambaForCausalLM",
        {
            **_DECODER,
            "num_key_value_heads": 2,
            "attn_layer_indices": [1],
            "mamba_n_heads": 4,
            "mamba_d_head": 8,
            "mamba_n_groups": 1,
            "mamba_d_state": 4,
            "mamba_expand": 1,
        },
    ),
    "qwen3_next": (
        "Qwen3NextConfig",
        "Qwen3NextForCausalLM",
        {
            **_DECODER,
            "num_key_value_heads": 2,
            "layer_types": ["linear_attention", "full_attention"],
            "head_dim": 8,
            "linear_num_value_heads": 4,
            "linear_num_key_heads": 2,
            "linear_key_head_dim": 8,
            "linear_value_head_dim": 8,
            "num_experts": 2,
            "num_experts_per_tok": 1,
            "moe_intermediate_size": 16,
            "shared_expert_intermediate_size": 16,
        },
    ),
}


def more_tiny_model(family: str, *, seed: int = 0, dtype=torch.float32):
    """A 2-block, hidden-32 model of one of ``MORE_FAMILIES``, in eval mode; skips the test when
    the installed transformers lacks the family."""
    import pytest
    import transformers

    config_name, model_name, sizes = MORE_FAMILIES[family]
    config_class = getattr(transformers, config_name, None)
    model_class = getattr(transformers, model_name, None)
    if config_class is None or model_class is None:
        pytest.skip(f"transformers {transformers.__version__} has no {model_name}")
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return model_class(config_class(**sizes, **common)).to(dtype).eval()


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
