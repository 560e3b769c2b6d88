"""Fixes from the architecture hunt over transformers' causal-LM families (tiny random models):
the "prob" mix and a head bias, the "logit" mix's β under a logit scale, bidirectional models,
list block outputs, models that return no KV cache, layouts found through other attributes,
final norms under other names, 4-D block states, logit transforms read from other config fields,
and layouts refused by name."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
import transformers

from faast.lm import FaastConfig, ReadConfig, UnsupportedModelError, find_layout, get_faast_model
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.logit_transform import LogitTransform, logit_transform
from faast.lm.output_readouts import layout_logits
from faast.lm.prompts import PromptCodec, PromptTemplate
from faast.lm.task import TaskModel
from faast.lm.task_spec import TaskSpec
from tests.lm_tiny import VOCAB, tiny_model
from tests.lm_wordlevel import word_tokenizer

torch.set_num_threads(1)

COMMON = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
#: a 2-block, hidden-32 Llama-style size
DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
TEXT = torch.randint(3, VOCAB, (1, 24), generator=torch.Generator().manual_seed(5))


def build(config_name: str, model_name: str, dtype=torch.float64, **sizes):
    """A tiny randomly initialised ``model_name`` from ``config_name(**sizes)`` in eval mode (seed 0);
    skips the test when the installed transformers lacks the class."""
    config_class = getattr(transformers, config_name, None)
    model_class = getattr(transformers, model_name, None)
    if config_class is None or model_class is None:
        pytest.skip(f"transformers {transformers.__version__} has no {model_name}")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model_class(config_class(**{**COMMON, **sizes})).to(dtype).eval()


def text_nll(model) -> float:
    """Mean next-token NLL of ``TEXT`` (1, T) under ``model``'s returned logits."""
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=TEXT).logits.double(), -1)
    return float(-lp[0, :-1].gather(-1, TEXT[0, 1:, None]).mean())


# --------------------------------------------------------------------------- #9: head bias, prob mix
def _phi(bias_std: float | None):
    """A tiny Phi (its LM head has a bias): the bias drawn with std ``bias_std``, zero for 0, removed
    for None; every other weight the same."""
    model = build("PhiConfig", "PhiForCausalLM", **DECODER)
    with torch.no_grad():
        if bias_std is None:
            model.lm_head.bias = None
        elif bias_std == 0:
            model.lm_head.bias.zero_()
        else:
            model.lm_head.bias.normal_(0, bias_std, generator=torch.Generator().manual_seed(1))
    return model


def _learned_nll(model, read: ReadConfig | None = None) -> tuple[float, float]:
    """(NLL of TEXT before, after learning it with the "prob" mix read as ``read``)."""
    fm = get_faast_model(model, FaastConfig(num_memories=0), read)
    before = text_nll(fm)
    fm.learn(input_ids=TEXT)
    return before, text_nll(fm)


@pytest.mark.parametrize("read", [None, ReadConfig(gate=None, weight=0.9, temperature=0.025)])
def test_prob_mix_learns_as_well_with_a_head_bias(read):
    """The memory's distribution leaves the head bias (logit units) out: it is no longer multiplied
    by 1/T = 40 next to the ρ²-normalised scores, so learning a text lowers its NLL about as much
    with a bias of std 1 as with none (before the fix: 4.8 → 5.7, worse than not learning)."""
    before0, after0 = _learned_nll(_phi(0.0), read)
    before1, after1 = _learned_nll(_phi(1.0), read)
    assert after0 < before0 - 2
    assert after1 < before1 - 2
    assert abs(after1 - after0) < 0.3


def test_prob_mix_with_a_zero_head_bias_equals_no_bias():
    with torch.no_grad():
        zero = _learned_nll(_phi(0.0))
        none = _learned_nll(_phi(None))
    assert zero == pytest.approx(none, abs=1e-12)


# --------------------------------------------------------------------------- #7: β and a logit scale
@pytest.mark.parametrize(
    ("config_name", "model_name", "field", "values"),
    [
        ("CohereConfig", "CohereForCausalLM", "logit_scale", (1.0, 0.0625)),
        ("GraniteConfig", "GraniteForCausalLM", "logits_scaling", (1.0, 16.0)),
    ],
)
def test_logit_mix_beta_is_in_the_models_logit_units(config_name, model_name, field, values):
    """The learned token's logit gains β·(about 1) whatever scale the model puts on its head's
    output (before the fix the gain was multiplied by Cohere's logit_scale, divided by Granite's
    logits_scaling)."""
    gains = []
    for value in values:
        model = build(config_name, model_name, **DECODER, num_key_value_heads=2, **{field: value})
        fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix="logit"))
        fm.learn(input_ids=TEXT)
        with torch.no_grad():
            read = fm(input_ids=TEXT).logits
            with fm.disabled():
                base = fm(input_ids=TEXT).logits
        gains.append(float((read - base)[0, :-1].gather(-1, TEXT[0, 1:, None]).mean()))
    assert gains[0] > 0.3
    assert gains[1] == pytest.approx(gains[0], rel=1e-6)


# --------------------------------------------------------------------------- #1: bidirectional models
@pytest.mark.parametrize(
    ("config_name", "model_name", "sizes"),
    [
        ("XLNetConfig", "XLNetLMHeadModel", dict(d_model=32, n_layer=2, n_head=4, d_inner=64)),
        (
            "BertGenerationConfig",
            "BertGenerationDecoder",
            dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
        ),
    ],
)
def test_a_bidirectional_causal_lm_class_is_refused_by_name(config_name, model_name, sizes):
    model = build(config_name, model_name, dtype=torch.float32, **sizes)
    with pytest.raises(UnsupportedModelError, match=f"{model_name} is not causal"):
        get_faast_model(model, FaastConfig(num_memories=0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3", "gpt2"])
def test_the_causality_probe_accepts_causal_models_in_one_forward_pass(family, dtype):
    model = tiny_model(family, dtype=dtype)
    calls, forward = [], model.forward

    @functools.wraps(forward)
    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape)
        return forward(*args, **kwargs)

    model.forward = counted  # not a hook: the probe does not run on a model that carries hooks
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    assert calls == [(2, 4)]  # the probe shares the model's one pass with the logit-transform check
    fm.unload()


# --------------------------------------------------------------------------- #4, #5: OpenAI GPT
def _openai_gpt():
    return build(
        "OpenAIGPTConfig", "OpenAIGPTLMHeadModel", dtype=torch.float32, n_embd=32, n_layer=2, n_head=4
    )


def test_layer_states_of_blocks_that_return_a_list():
    """OpenAI GPT's blocks return a list [hidden, ...]: layer_states keeps its first entry."""
    fm = get_faast_model(_openai_gpt(), FaastConfig(num_memories=0))
    states = fm.layer_states(TEXT, layers=[0, None])
    assert states.shape == (1, TEXT.shape[1], 2, 32)
    torch.testing.assert_close(states[:, :, 1], fm.head_inputs(TEXT))


TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")
LABELS = ["w40", "w41 w42", "w45"]


def test_in_context_learning_on_a_model_that_returns_no_cache():
    """OpenAI GPT returns no past_key_values: the demonstrations run whole before every row (no
    AttributeError), and the scores are the model's own."""
    model = _openai_gpt()
    codec = PromptCodec(word_tokenizer(), TEMPLATE, context=60)
    demos = [("w5", "w40")]
    icl = InContextModel(model, codec, demos, reserve=12)
    assert icl.cache_nbytes() == 0
    scores = icl.label_scores(["w8"], LABELS)
    prompt = codec.icl_prompt(demos, "w8", reserve=12)[0]
    with torch.no_grad():
        for j, label in enumerate(codec.scored_label_ids(LABELS)):
            lp = torch.log_softmax(model(input_ids=torch.tensor([prompt + label])).logits[0].float(), -1)
            expected = sum(float(lp[len(prompt) - 1 + k, t]) for k, t in enumerate(label))
            assert scores[0, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_lead_demonstrations_on_a_model_that_returns_no_cache():
    spec = TaskSpec(TEMPLATE, "answer", LABELS, demonstrations=[("w5", "w40")])
    task = TaskModel.create(_openai_gpt(), word_tokenizer(), spec)
    assert not task.model.serves_prefix_cache
    task.learn([Example("w8", "w45"), Example("w9", "w40")], progress=False)
    assert task.label_scores(["w8"]).shape == (1, len(LABELS))


def test_an_attribute_error_inside_a_property_is_not_hidden(monkeypatch):
    """An AttributeError raised by a FaastModel property reaches the caller as what it is, not as
    "<base model> has no attribute <property>"."""
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0))

    def broken(_model):
        raise AttributeError("'Output' object has no attribute 'cache'")

    monkeypatch.setattr("faast.lm.model.model_extends_by_attention", broken)
    with pytest.raises(RuntimeError, match="serves_prefix_cache failed: AttributeError: 'Output' object"):
        _ = fm.serves_prefix_cache


# --------------------------------------------------------------------------- #10: Llama 4's backbone
def test_llama4_text_is_found_through_its_model_attribute():
    """Llama4ForCausalLM's base_model_prefix ('language_model') names no attribute of it: the
    backbone is the child holding the blocks (``model``)."""
    model = build(
        "Llama4TextConfig",
        "Llama4ForCausalLM",
        dtype=torch.float32,
        **DECODER,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size_mlp=64,
        num_local_experts=2,
        num_experts_per_tok=1,
        attention_chunk_size=8,
    )
    layout = find_layout(model)
    assert layout.backbone is model.model and layout.final_norm_path == "model.norm"
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    before = text_nll(fm)
    fm.learn(input_ids=TEXT)
    assert text_nll(fm) < before - 1


# --------------------------------------------------------------------------- #11: decoder halves
@pytest.mark.parametrize("path", [None, "model.decoder.layers"])
def test_the_decoder_half_of_an_encoder_decoder_counts_its_decoder_layers(path):
    """BartForCausalLM: config.num_hidden_layers is the encoder's count (1), the decoder has 2."""
    model = build(
        "BartConfig",
        "BartForCausalLM",
        dtype=torch.float32,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
    )
    fm = get_faast_model(model, FaastConfig(num_memories=0, decoder_layers_path=path))
    assert fm._layout.num_layers == 2


def test_an_explicit_decoder_layers_path_skips_the_configs_count():
    model = tiny_model("llama", dtype=torch.float32)
    model.config.num_hidden_layers = 5  # a count that describes another stack
    assert find_layout(model, decoder_layers_path="model.layers").num_layers == 2
    with pytest.raises(UnsupportedModelError, match="config says 5"):
        find_layout(model)


# --------------------------------------------------------------------------- #12: final norms
FINAL_NORMS = [
    (
        "OPTConfig",
        "OPTForCausalLM",
        dict(DECODER, ffn_dim=64, word_embed_proj_dim=32),
        "model.decoder.final_layer_norm",
    ),
    ("BioGptConfig", "BioGptForCausalLM", dict(DECODER), "biogpt.layer_norm"),
    (
        "CTRLConfig",
        "CTRLLMHeadModel",
        dict(n_embd=32, n_layer=2, n_head=4, dff=64, n_positions=64),
        "transformer.layernorm",
    ),
    (
        "RwkvConfig",
        "RwkvForCausalLM",
        dict(
            hidden_size=32,
            num_hidden_layers=2,
            attention_hidden_size=32,
            intermediate_size=64,
            context_length=64,
        ),
        "rwkv.ln_out",
    ),
]


@pytest.mark.parametrize(("config_name", "model_name", "sizes", "norm_path"), FINAL_NORMS)
def test_final_norms_under_other_names_are_found(config_name, model_name, sizes, norm_path):
    """The norm found is the model's last step before the head: the head applied to it reproduces
    the model's logits, and the paper mix (which needs it) wraps."""
    model = build(config_name, model_name, dtype=torch.float32, **sizes)
    layout = find_layout(model)
    assert layout.final_norm_path == norm_path
    recorded = []
    handle = layout.final_norm.register_forward_pre_hook(lambda _m, args: recorded.append(args[0]))
    with torch.no_grad():
        logits = model(input_ids=TEXT).logits
        handle.remove()
        torch.testing.assert_close(layout_logits(layout.final_norm(recorded[0]), layout), logits)
    get_faast_model(model, FaastConfig(num_memories=0, output_mix="paper"))


# --------------------------------------------------------------------------- #3: Gemma-3n's 4-D state
def _gemma3n():
    return build(
        "Gemma3nTextConfig",
        "Gemma3nForCausalLM",
        dtype=torch.float32,
        **DECODER,
        num_key_value_heads=2,
        head_dim=8,
        laurel_rank=4,
        hidden_size_per_layer_input=4,
        altup_num_inputs=2,
        num_kv_shared_layers=0,
        activation_sparsity_pattern=[0.0, 0.0],
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=4,
        vocab_size_per_layer_input=VOCAB,
    )


def test_blocks_with_a_4d_state_refuse_middle_memories_and_layer_states_by_name():
    model = _gemma3n()
    with pytest.raises(
        UnsupportedModelError, match="Gemma3nForCausalLM's decoder blocks pass .* middle memories"
    ):
        get_faast_model(model)  # the default: one middle memory
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    with pytest.raises(
        UnsupportedModelError, match="Gemma3nForCausalLM's decoder blocks pass .* layer states"
    ):
        fm.layer_states(TEXT, layers=[0, None])
    before = text_nll(fm)
    fm.learn(input_ids=TEXT)  # the output memory alone works
    assert text_nll(fm) < before - 1


# --------------------------------------------------------------------------- #8: more logit transforms
def test_recurrent_gemma_soft_cap_and_falcon_h1_multiplier_are_read():
    assert logit_transform(transformers.PretrainedConfig(logits_soft_cap=3.0)) == LogitTransform(1.0, 3.0)
    assert logit_transform(transformers.PretrainedConfig(lm_head_multiplier=0.5)) == LogitTransform(0.5)
    model = build(
        "RecurrentGemmaConfig",
        "RecurrentGemmaForCausalLM",
        dtype=torch.float32,
        **DECODER,
        num_key_value_heads=2,
        lru_width=32,
        attention_window_size=8,
        block_types=["recurrent", "attention"],
        logits_soft_cap=3.0,
    )
    fm = get_faast_model(model, FaastConfig(num_memories=0))  # refused before: logits differ
    assert fm.logit_transform == LogitTransform(1.0, 3.0)


def test_the_logit_transform_refusal_gives_the_measured_scale():
    raw = torch.randn(2, 4, VOCAB, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"about 0\.5 × the head's output"):
        LogitTransform().check(raw * 0.5, raw, "toy")


# --------------------------------------------------------------------------- #13, #2: refused by name
def test_a_projection_before_the_head_is_refused_by_name():
    """OPT-350m's layout: project_out maps the blocks' width to the head's (word_embed_proj_dim)."""
    model = build(
        "OPTConfig",
        "OPTForCausalLM",
        dtype=torch.float32,
        **DECODER,
        ffn_dim=64,
        word_embed_proj_dim=16,
        do_layer_norm_before=False,
    )
    with pytest.raises(UnsupportedModelError, match="model.decoder.project_out"):
        get_faast_model(model, FaastConfig(num_memories=0))


def test_minicpm3_is_refused_by_name():
    """MiniCPM3 divides the head's input by logits_scaling (Granite's field divides its output)."""
    model = build(
        "MiniCPM3Config",
        "MiniCPM3ForCausalLM",
        dtype=torch.float32,
        **DECODER,
        num_key_value_heads=4,
        q_lora_rank=16,
        kv_lora_rank=8,
        qk_nope_head_dim=4,
        qk_rope_head_dim=4,
        v_head_dim=8,
        dim_model_base=8,
    )
    with pytest.raises(UnsupportedModelError, match="minicpm3"):
        get_faast_model(model, FaastConfig(num_memories=0))


# --------------------------------------------------------------------------- #5: a model ignoring the mask
def _rwkv():
    return build(
        "RwkvConfig",
        "RwkvForCausalLM",
        num_hidden_layers=2,
        hidden_size=32,
        attention_hidden_size=32,
        intermediate_size=64,
        context_length=64,
    )


def _left_padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    return ids, mask


def test_left_padded_rows_learn_what_they_learn_alone_on_a_model_that_ignores_the_mask():
    """RWKV runs its state through pad tokens whatever the mask says: left-padded rows run
    right-padded, so their keys, head inputs and layer states are those of each row alone."""
    long, short = TEXT[0, :10], TEXT[0, :6]
    ids, mask = _left_padded([long, short])
    fm = get_faast_model(_rwkv(), FaastConfig(num_memories=0))
    assert not fm.masks_left_padding
    states = fm.layer_states(ids, mask, layers=[0, None])
    alone = fm.layer_states(short[None], layers=[0, None])
    torch.testing.assert_close(states[1, 4:], alone[0], rtol=1e-10, atol=1e-10)
    fm.learn(input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        padded = fm(input_ids=short[None]).logits.clone()
    fm.reset_projection()
    fm.learn(input_ids=long[None])
    fm.learn(input_ids=short[None])
    with torch.no_grad():
        torch.testing.assert_close(fm(input_ids=short[None]).logits, padded, rtol=1e-9, atol=1e-9)


def test_left_padding_is_masked_on_an_attention_model():
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0))
    assert fm.masks_left_padding
    ids, mask = _left_padded([TEXT[0, :10], TEXT[0, :6]])
    torch.testing.assert_close(fm.head_inputs(ids, mask)[1, 4:], fm.head_inputs(TEXT[:, :6])[0])


def test_task_generate_in_batches_equals_one_at_a_time_on_a_model_that_ignores_the_mask():
    spec = TaskSpec(PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91"), "answer", None)
    task = TaskModel.create(_rwkv().float(), word_tokenizer(), spec)
    task.learn([Example("w5 w6 w7", "w40 w41"), Example("w8", "w42")], progress=False)
    inputs = ["w5 w6 w7 w9 w9", "w8", "w10 w11"]
    batched = task.generate(inputs, max_new_tokens=3, batch_size=3, progress=False)
    assert batched == [task.generate([x], max_new_tokens=3, batch_size=1, progress=False)[0] for x in inputs]
