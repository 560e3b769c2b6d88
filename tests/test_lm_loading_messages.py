"""Messages of model loading and text windows that name the problem: a name the Hugging Face Hub
did not serve (a typo of an offline name), and a text too short once start tokens are set aside."""

from __future__ import annotations

import pytest
import torch

from faast.lm.text import load_causal_lm, text_windows


def _no_hub(monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nmore lines")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


def test_a_misspelt_offline_name_that_the_hub_does_not_serve_names_the_close_offline_model(monkeypatch):
    _no_hub(monkeypatch)
    with pytest.raises(OSError) as caught:
        load_causal_lm("gemma")
    message = str(caught.value)
    assert "'gemma'" in message and "Hugging Face Hub id" in message
    assert "We couldn't connect" in message and "more lines" not in message  # the Hub's first line
    assert "Did you mean the offline model 'gemma3'?" in message
    assert "gemma3, qwen2.5, smollm2" in message


def test_a_hub_id_far_from_every_offline_name_gets_no_guess(monkeypatch):
    _no_hub(monkeypatch)
    with pytest.raises(OSError) as caught:
        load_causal_lm("someone/private-model")
    assert "Did you mean" not in str(caught.value)
    assert "Offline models: gemma3, qwen2.5, smollm2" in str(caught.value)


def test_a_one_token_text_with_start_tokens_says_they_are_not_counted():
    with pytest.raises(
        ValueError, match=r"1 token\(s\), a window needs 2 of the text's own \(the start token ids \[2\]"
    ):
        text_windows(torch.tensor([7]), 16, [2])
    with pytest.raises(ValueError, match=r"1 token\(s\), a window needs 2$"):  # no start tokens: as before
        text_windows(torch.tensor([7]), 16)
    assert [w.tolist() for w in text_windows(torch.tensor([7, 8]), 16, [2])] == [[2, 7, 8]]


def test_context_errors_advise_by_what_was_too_long():
    from faast.lm import FaastConfig, get_faast_model
    from tests.lm_tiny import tiny_model

    fm = get_faast_model(tiny_model("gpt2"), FaastConfig(num_memories=0))  # 64 positions
    long = torch.arange(3, 68)[None]
    with pytest.raises(ValueError, match=r"learn: sequences of 65 tokens .* \(--window of faast lm; "):
        fm.learn(input_ids=long)
    with pytest.raises(
        ValueError, match=r"the prompt of 65 tokens .*; shorten the prompt or max_new_tokens"
    ) as got:
        fm.generate(input_ids=long, max_new_tokens=1)
    assert "--window" not in str(got.value)
