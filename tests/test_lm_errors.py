"""Bad input to the LM API fails early with a clear message and leaves the memories unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from faast.lm import FaastConfig, UnsupportedModelError, get_faast_model
from tests.lm_tiny import random_batch, tiny_model


@pytest.fixture
def fm():
    return get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))


def test_only_padding_is_refused(fm):
    ids = torch.zeros(2, 6, dtype=torch.long)
    with pytest.raises(ValueError, match="only padding"):
        fm.learn(input_ids=ids, attention_mask=torch.zeros_like(ids))
    one_token_rows = torch.tensor([[0, 0, 1], [1, 0, 0]])  # no two consecutive real tokens
    with pytest.raises(ValueError, match="nothing to learn"):
        fm.learn(input_ids=torch.full((2, 3), 5), attention_mask=one_token_rows)
    assert fm.num_pairs == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input_ids": torch.rand(2, 5)}, TypeError, "integer token ids"),
        ({"input_ids": torch.ones(2, 5, dtype=torch.bool)}, TypeError, "integer token ids"),
        (
            {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5) * 0.5},
            TypeError,
            "0/1",
        ),
        (
            {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.full((2, 5), 2)},
            ValueError,
            "only 0",
        ),
        (
            {
                "input_ids": torch.ones(2, 5, dtype=torch.long),
                "attention_mask": torch.ones(2, 4, dtype=torch.long),
            },
            ValueError,
            "shape",
        ),
        ({"input_ids": torch.ones(2, 3, 4, dtype=torch.long)}, ValueError, "batch, seq_len"),
        ({"input_ids": torch.ones(2, 1, dtype=torch.long)}, ValueError, "at least 2 tokens"),
        ({"input_ids": torch.full((1, 4), 1000)}, ValueError, r"\[0, 97\)"),
        ({"input_ids": torch.full((1, 4), -1)}, ValueError, r"\[0, 97\)"),
        ({"inputs_embeds": torch.zeros(1, 4, 32)}, ValueError, "needs input_ids"),
        ({}, ValueError, "needs input_ids"),
    ],
)
def test_bad_learn_inputs(fm, kwargs, error, match):
    with pytest.raises(error, match=match):
        fm.learn(**kwargs)
    assert fm.num_pairs == 0


def test_lists_and_1d_inputs_are_accepted(fm):
    assert fm.learn(input_ids=[5, 6, 7, 8]) == 3
    assert fm.learn(input_ids=[[5, 6, 7], [8, 9, 10]], attention_mask=[[1, 1, 1], [1, 1, 0]]) == 3


def test_unknown_layout_fails_clearly():
    class Config:
        num_hidden_layers = 2
        hidden_size = 8
        vocab_size = 11

    class Odd(nn.Module):  # a causal LM whose blocks live in two lists
        def __init__(self):
            super().__init__()
            self.config = Config()
            self.base_model = nn.Module()
            self.base_model.a = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
            self.base_model.b = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
            self.head = nn.Linear(8, 11, bias=False)

        def get_output_embeddings(self):
            return self.head

    with pytest.raises(UnsupportedModelError, match="decoder_layers_path"):
        get_faast_model(Odd())
    fm = get_faast_model(Odd(), FaastConfig(decoder_layers_path="base_model.a", output_memory=False))
    assert fm._layout.blocks_path == "base_model.a"
    with pytest.raises(UnsupportedModelError, match="does not exist"):
        get_faast_model(Odd(), FaastConfig(decoder_layers_path="base_model.c"))
    with pytest.raises(ValueError, match="final norm"):
        get_faast_model(Odd(), FaastConfig(decoder_layers_path="base_model.a", output_mix="paper"))


def test_not_a_causal_lm():
    with pytest.raises(UnsupportedModelError, match="config"):
        get_faast_model(nn.Linear(3, 3))
    with pytest.raises(TypeError, match="FaastConfig"):
        get_faast_model(tiny_model("llama"), {"num_memories": 1})  # type: ignore[arg-type]


def _tiny_bert(cls_name: str, **config):
    import transformers

    small = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    return getattr(transformers, cls_name)(transformers.BertConfig(intermediate_size=32, **small, **config))


@pytest.mark.parametrize(
    ("cls_name", "config", "match"),
    [
        ("BertForMaskedLM", {}, r"BertForMaskedLM is a masked \(bidirectional\) LM"),
        # what AutoModelForCausalLM gives for a BERT checkpoint: bidirectional all the same
        ("BertLMHeadModel", {}, r"BertLMHeadModel with is_decoder=False attends in both directions"),
    ],
)
def test_bidirectional_models_are_refused(cls_name, config, match):
    """Their states see the next token, so the pairs learned from them would read their answer."""
    with pytest.raises(UnsupportedModelError, match=match):
        get_faast_model(_tiny_bert(cls_name, **config), FaastConfig(num_memories=1))


def test_an_encoder_family_model_made_causal_is_refused_for_its_head_s_own_layers():
    """BERT made causal (is_decoder=True) passes the masked-LM guard, but its LM head runs a dense
    layer and a layer norm before the output projection, so logits faast computes from the states
    it reads are not the model's: refused by name when wrapped (it was accepted until 2026-12-05,
    and its label scores were not its probabilities)."""
    with pytest.raises(ValueError, match="the bert model's logits differ .* as BERT's"):
        get_faast_model(_tiny_bert("BertLMHeadModel", is_decoder=True), FaastConfig(num_memories=1))


def test_too_many_memories():
    with pytest.raises(ValueError, match="exceeds"):
        get_faast_model(tiny_model("llama"), FaastConfig(num_memories=3))


def test_nan_hidden_states_are_refused():
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.embed_tokens.weight[7] = float("nan")
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    ids, _ = random_batch([6])
    ids[0, 2] = 7
    with pytest.raises(ValueError, match="NaN"):
        fm.learn(input_ids=ids)
    assert fm.num_pairs == 0


def test_hidden_states_the_base_model_made_non_finite_are_named_as_its_own(fm):
    """A base model whose forward yields NaN at real tokens (float16 overflow, a left-padding bug
    in an eager attention) is refused with that cause, before anything is learned; NaN at
    padding only, which no pair keys on, is not an error."""
    ids, mask = random_batch([6, 4], side="right")
    norm = fm._layout.final_norm
    poison = {"where": (0, 2)}

    def to_nan(module, args, out):
        out = out.clone()
        out[poison["where"]] = float("nan")
        return out

    handle = norm.register_forward_hook(to_nan)
    try:
        with pytest.raises(
            ValueError, match=r"hidden states \(head_input\) hold NaN or Inf at 1 of the 8 positions"
        ):
            fm.learn(input_ids=ids, attention_mask=mask)
        assert fm.num_pairs == 0
        poison["where"] = (1, 5)  # a padding position of the 4-token row
        assert fm.learn(input_ids=ids, attention_mask=mask) == 8
        assert all(bool(torch.isfinite(m.stats.gram).all()) for m in fm.memories.values())
    finally:
        handle.remove()


def test_a_base_model_carries_one_faast_model_at_a_time():
    """Wrapping a base model that already carries another FaastModel's hooks is refused (both would
    act on every forward pass: an empty second wrapper returned the first one's fast weights, and
    a second task's learning changed the first one's answers); after unload() it is allowed, and
    a FaastModel dropped without unload() takes its hooks with it."""
    import gc

    base = tiny_model("llama")
    ids = torch.randint(3, 97, (1, 12), generator=torch.Generator().manual_seed(0))
    plain = base(input_ids=ids).logits.detach()
    first = get_faast_model(base, FaastConfig(num_memories=0))
    first.learn(input_ids=ids)
    with pytest.raises(ValueError, match=r"the hooks of another FaastModel \(11 pairs learned\)"):
        get_faast_model(base, FaastConfig(num_memories=0))
    assert first.attached and first.num_pairs == 11
    first.unload()
    second = get_faast_model(base, FaastConfig(num_memories=0))
    assert torch.equal(second(input_ids=ids).logits, plain)  # it reads nothing of the first's
    with pytest.raises(ValueError, match="already carries the hooks"):
        first.attach()
    del second
    gc.collect()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in base.modules())
    assert torch.equal(base(input_ids=ids).logits, plain)
    first.attach()
    assert not torch.equal(base(input_ids=ids).logits, plain)


def test_generate_takes_a_one_row_prompt_as_learn_does():
    """A 1-D tensor or a list of ids is one prompt, as for learn (transformers failed on them)."""
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0))
    kw = {"max_new_tokens": 3, "do_sample": False, "pad_token_id": 0}
    expected = fm.generate(torch.tensor([[5, 6, 7]]), **kw)
    assert torch.equal(fm.generate(torch.tensor([5, 6, 7]), **kw), expected)
    assert torch.equal(fm.generate(input_ids=[5, 6, 7], **kw), expected)


def test_a_device_this_torch_cannot_use_and_learning_while_unloaded_are_named():
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="FaastModel.to='cuda': no CUDA device is available"):
            fm.to("cuda")
    assert fm.to("cpu") is fm and fm.to(torch.float32).base_model.dtype == torch.float32
    fm.unload()
    with pytest.raises(ValueError, match=r"lacks the states \['block1'\] .*the model is unloaded"):
        fm.learn(input_ids=torch.tensor([[5, 6, 7, 8]]))


def test_a_model_in_training_mode_is_wrapped_and_keeps_its_mode():
    """The logit check at wrapping runs the model twice; in eval mode, so that dropout (GPT-2's in
    train mode) does not make the passes differ; the model's own mode is kept."""
    model = tiny_model("gpt2", dtype=torch.float32).train()
    model.transformer.h[0].eval()  # a mixed state, kept module by module
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    assert model.training and not model.transformer.h[0].training and model.transformer.h[1].training
    assert fm.base_model is model


@pytest.mark.parametrize("name", ["", " ", "a ", "a/b", ".", ".."])
def test_task_names_that_are_blank_padded_or_path_like_are_refused(name, tmp_path):
    from faast.lm.fastweights import check_task_name

    with pytest.raises(ValueError, match="task names must be non-empty strings without '/'"):
        check_task_name(name)
    assert check_task_name("sentiment v2") == "sentiment v2"


def test_a_padded_batch_without_its_mask_is_warned_about(fm):
    import warnings

    pad = 7
    fm.base_model.config.pad_token_id = pad
    right = torch.tensor([[3, 4, 5, 6], [3, 4, pad, pad]])
    left = torch.tensor([[pad, pad, 4, 5], [3, 4, 5, 6]])
    for ids in (right, left):
        with pytest.warns(UserWarning, match="pad token 7 and no attention_mask") as record:
            fm.learn(input_ids=ids)
        assert record[0].filename == __file__  # pointed at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fm.learn(input_ids=right, attention_mask=(right != pad).long())  # the mask given
        fm.learn(input_ids=torch.tensor([[3, 4, pad], [5, 6, pad]]))  # every row ends so: not padding
        fm.learn(input_ids=right[1:])  # one row needs no padding
        fm.base_model.config.pad_token_id = None
        fm.learn(input_ids=right)
