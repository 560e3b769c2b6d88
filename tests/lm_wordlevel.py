"""A word-level tokenizer for the tiny test models (token ``wK`` has id K), and a saved model folder."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.lm_tiny import VOCAB, tiny_model

#: Token ids 0, 1, 2 are <pad>/<unk>, <s>, </s>; the words w3 … w96 follow.
WORDS = [f"w{i}" for i in range(3, VOCAB)]


def word_tokenizer(*, bos: bool = False) -> PreTrainedTokenizerFast:
    """Whitespace-split words ``w3`` … ``w96`` (id = the number); ``bos=True`` prepends <s> (id 1)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: int(w[1:]) for w in WORDS}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        from tokenizers.processors import TemplateProcessing

        tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    fast.model_max_length = 64
    return fast


def save_tiny_model(path: Path, family: str = "llama") -> Path:
    """A tiny float32 model of ``family`` and the word tokenizer, saved as a Hugging Face folder."""
    tiny_model(family, dtype=torch.float32).save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


def tiny_causal_lm(name: str, device: str | None = None):
    """A stand-in for :func:`faast.lm.text.load_causal_lm` in the benchmarks' tests: (the tiny
    float64 llama seeded 0, the word tokenizer with <s>), whatever the name."""
    torch.manual_seed(0)
    return tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True)
