"""A tiny llama-architecture GGUF file (llama.cpp's format) written from a random model, with a
byte-level BPE tokenizer, for the tests of loading GGUF files (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
#: 256 byte tokens, one merge ("ĠĠ", two spaces), then <s>, </s>, <pad>.
VOCAB = 260
BOS, EOS, PAD = 257, 258, 259


def _to_gguf_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp stores q/k projections with each head's rotary halves interleaved; transformers
    undoes this on loading, so the writer applies it: (out, in) → (out, in)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def write_tiny_gguf(path: Path, *, seed: int = 0):
    """Write a 2-block, hidden-32 LlamaForCausalLM to ``path`` as float32 GGUF; return the model."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        bos_token_id=BOS,
        eos_token_id=EOS,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(VOCAB)
    byte_chars = bytes_to_unicode()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([byte_chars[i] for i in range(256)] + ["ĠĠ", "<s>", "</s>", "<pad>"])
    writer.add_token_types([1] * 257 + [3] * 3)
    writer.add_token_scores([0.0] * VOCAB)
    writer.add_token_merges(["Ġ Ġ"])
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_pad_token_id(PAD)
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for name, key in (
            ("attn_norm", "input_layernorm"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_norm", "post_attention_layernorm"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ):
            writer.add_tensor(f"blk.{i}.{name}.weight", state[p + key + ".weight"])
        writer.add_tensor(
            f"blk.{i}.attn_q.weight", _to_gguf_rows(state[p + "self_attn.q_proj.weight"], HEADS)
        )
        writer.add_tensor(
            f"blk.{i}.attn_k.weight", _to_gguf_rows(state[p + "self_attn.k_proj.weight"], KV_HEADS)
        )
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.add_tensor("output.weight", state["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model
