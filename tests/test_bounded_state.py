"""What faast keeps does not grow with the data: the tokenizer runs in bounded chunks (with the
same tokens as one call), and the classifier's and the LM's statistics have a fixed size.
benchmarks/memory_bound.py measures the peak memory of whole runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faast import FaastClassifier
from faast.lm import FaastConfig, get_faast_model
from faast.lm.text import encode
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import WORDS, word_tokenizer


def _text(words: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(WORDS), words)
    return "\n".join(" ".join(WORDS[i] for i in picks[j : j + 9]) for j in range(0, words, 9)) + "\n"


@pytest.mark.parametrize("chunk", [7, 50, 301])
def test_chunked_encoding_equals_one_call(chunk):
    tok, text = word_tokenizer(), _text(2000)
    whole = torch.tensor(tok(text, add_special_tokens=False).input_ids)
    assert torch.equal(encode(tok, text, chunk_chars=chunk), whole)


@pytest.mark.assets("smollm2-135m-instruct")
def test_chunked_encoding_equals_one_call_on_a_bpe_tokenizer():
    from transformers import AutoTokenizer

    from faast.assets.lm import smollm2_dir

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir()))
    text = "It is a truth universally acknowledged,\n  that a single man\n\nin possession " * 200
    text += "of a good fortune,  must be in want of a wife. Ünïcödé — “quotes” 1234567\n" * 200
    whole = torch.tensor(tok(text, add_special_tokens=False).input_ids)
    for chunk in (97, 1000, 4096):
        assert torch.equal(encode(tok, text, chunk_chars=chunk), whole)


def test_classifier_state_does_not_grow_with_rows():
    rng = np.random.default_rng(0)
    sizes = []
    for batches in (2, 20):
        clf = FaastClassifier()
        for _ in range(batches):
            clf.partial_fit(rng.standard_normal((100, 8)), rng.integers(0, 3, 100), classes=np.arange(3))
        sizes.append(clf.memory_.stats.nbytes)
    assert sizes[0] == sizes[1]


def test_lm_statistics_do_not_grow_with_text():
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    gen = torch.Generator().manual_seed(0)
    sizes = []
    for batches in (1, 10):
        for _ in range(batches):
            fm.learn(input_ids=torch.randint(3, 97, (4, 32), generator=gen))
        sizes.append(sum(r.stats.nbytes for r in fm.memories.values()))
    assert sizes[0] == sizes[1]
