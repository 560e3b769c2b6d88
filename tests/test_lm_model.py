"""FaastModel on tiny random models of each family: layout, exactness, masking, accumulation, modes."""

from __future__ import annotations

import math

import pytest
import torch

from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.readouts import MiddleMemory
from tests.lm_statistics import assert_padding_learns_each_sequence, assert_stats_close, stats_of
from tests.lm_tiny import FAMILIES, VOCAB, random_batch, tiny_model

LENGTHS = [9, 5, 12, 2, 7]


def with_random_readout(fm, seed=3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mem in fm.middle_memories:
            w = mem.out_proj.weight
            w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w.dtype) * 0.05)
            if mem.scorer is not None:
                s = mem.scorer.weight
                s.copy_(torch.randn(s.shape, generator=gen, dtype=torch.float64).to(s.dtype) * 0.1)
    return fm


@pytest.mark.parametrize("family", FAMILIES)
def test_layout_and_shapes(family):
    model = tiny_model(family, layers=4)
    fm = get_faast_model(model, FaastConfig(num_memories=1))
    assert [m.layer for m in fm.middle_memories] == [2]
    assert fm._layout.num_layers == 4 and fm._layout.hidden_size == 32
    ids, mask = random_batch(LENGTHS)
    n = fm.learn(input_ids=ids, attention_mask=mask)
    assert n == sum(k - 1 for k in LENGTHS)
    for mem in fm.memories.values():
        assert mem.stats.count == n and mem.stats.gram.shape == (32, 32) and mem.stats.cross.shape == (32, 32)
    out = fm(input_ids=ids, attention_mask=mask)
    assert out.logits.shape == (len(LENGTHS), max(LENGTHS), VOCAB)
    assert fm.config is model.config  # attribute look-ups fall through to the base model


@pytest.mark.parametrize("family", FAMILIES)
def test_untrained_equals_base_bit_for_bit_and_reset_restores_it(family):
    model = tiny_model(family, dtype=torch.float32)
    ids, mask = random_batch(LENGTHS)
    base = model(input_ids=ids, attention_mask=mask).logits
    fm = get_faast_model(model, FaastConfig(num_memories=1))
    assert torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)  # before any learn
    fm.learn(input_ids=ids, attention_mask=mask)
    assert not torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)  # output memory reads W
    with fm.disabled():
        assert torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)
    fm.reset_projection()
    assert fm.num_pairs == 0
    assert torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_readout_middle_memory_is_an_exact_no_op(family):
    model = tiny_model(family, dtype=torch.float32)
    ids, mask = random_batch(LENGTHS)
    base = model(input_ids=ids, attention_mask=mask).logits
    fm = get_faast_model(model, FaastConfig(num_memories=2, output_memory=False))
    fm.learn(input_ids=ids, attention_mask=mask)
    assert fm.num_pairs > 0
    assert torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)
    with_random_readout(fm)  # a trained readout does change the model
    assert not torch.allclose(fm(input_ids=ids, attention_mask=mask).logits, base)


@pytest.mark.parametrize("family", FAMILIES)
def test_left_and_right_padding_give_the_same_statistics(family):
    fm = with_random_readout(get_faast_model(tiny_model(family), FaastConfig(num_memories=1)))
    assert_padding_learns_each_sequence(fm, LENGTHS, rtol=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_repeated_learn_calls_accumulate_exactly(family):
    fm = with_random_readout(get_faast_model(tiny_model(family), FaastConfig(num_memories=1)))
    ids, mask = random_batch([10] * 12, seed=5)
    fm.learn(input_ids=ids, attention_mask=mask)
    one_call = stats_of(fm)
    w_one = {n: m.fast_weight(torch.float64, torch.device("cpu")).clone() for n, m in fm.memories.items()}
    fm.reset_projection()
    for i in range(0, 12, 3):
        fm.learn(input_ids=ids[i : i + 3], attention_mask=mask[i : i + 3])
    assert_stats_close(stats_of(fm), one_call, rtol=1e-12)
    for name, mem in fm.memories.items():
        w = mem.fast_weight(torch.float64, torch.device("cpu"))
        assert torch.allclose(w, w_one[name], rtol=1e-7, atol=1e-9 * float(w_one[name].abs().max()))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_learn_ignores_what_was_learned_before(family):
    """Memories are read-only during learn: stats(A then B) − stats(A) = stats(B alone)."""
    fm = with_random_readout(get_faast_model(tiny_model(family), FaastConfig(num_memories=1)))
    a, b = random_batch([8, 8], seed=11), random_batch([6, 9], seed=12)
    fm.learn(input_ids=b[0], attention_mask=b[1])
    alone = stats_of(fm)
    fm.reset_projection().learn(input_ids=a[0], attention_mask=a[1])
    after_a = stats_of(fm)
    fm(input_ids=a[0])  # reading in between changes nothing either
    fm.learn(input_ids=b[0], attention_mask=b[1])
    both = stats_of(fm)
    diff = {
        n: (both[n][0] - after_a[n][0], both[n][1] - after_a[n][1], both[n][2] - after_a[n][2]) for n in both
    }
    assert_stats_close(diff, alone, rtol=1e-9)


def test_pairs_are_the_consecutive_real_tokens():
    """Output memory of a float64 model: G and B equal sums over hand-made (z_t, head[x_{t+1}]) pairs."""
    model = tiny_model("llama")
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    ids, mask = random_batch([6, 3], side="left", seed=4)
    fm.learn(input_ids=ids, attention_mask=mask)
    keys, values = [], []
    for i, n in enumerate([6, 3]):
        seq = ids[i, ids.shape[1] - n :]
        z = model.model(input_ids=seq[None]).last_hidden_state[0]
        keys.append(z[:-1])
        values.append(model.lm_head.weight[seq[1:]])
    k, v = torch.cat(keys).detach(), torch.cat(values).detach()
    stats = fm.output_memory.stats
    assert stats.count == 5 + 2
    assert torch.allclose(stats.gram, k.T @ k, rtol=1e-10, atol=1e-12)
    assert torch.allclose(stats.cross, k.T @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mix", ["logit", "prob", "paper"])
@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_every_mix_reads_the_memory(family, mix):
    model = tiny_model(family)
    ids, mask = random_batch(LENGTHS)
    base = model(input_ids=ids, attention_mask=mask).logits
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix=mix))
    fm.learn(input_ids=ids, attention_mask=mask)
    logits = fm(input_ids=ids, attention_mask=mask).logits
    assert logits.shape == base.shape and not torch.allclose(logits, base)
    if mix == "prob":  # log-probabilities of a mixture: they normalise
        assert torch.allclose(logits.logsumexp(-1), torch.zeros(()).double(), atol=1e-9)
    fm.reset_projection()
    assert torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_reads_the_fast_weights_with_and_without_cache(family):
    model = tiny_model(family, dtype=torch.float32)
    fm = get_faast_model(model, FaastConfig(num_memories=1, output_mix="logit"), ReadConfig(weight=2.0))
    with_random_readout(fm)
    fm.learn(input_ids=random_batch([20, 20], seed=9)[0])
    prompt = random_batch([4], seed=10)[0]
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    cached = fm.generate(prompt, use_cache=True, **kw)
    plain = fm.generate(prompt, use_cache=False, **kw)
    assert cached.shape == (1, 10) and torch.equal(cached, plain)
    # greedy decoding = argmax of the memory-reading forward, token by token
    seq = prompt
    for _ in range(6):
        nxt = fm(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(seq, cached)


def test_left_padded_generation_batch():
    model = tiny_model("llama", dtype=torch.float32)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    fm.learn(input_ids=random_batch([16], seed=2)[0])
    ids, mask = random_batch([3, 6], side="left", seed=3)
    out = fm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    alone = fm.generate(input_ids=ids[:1, 3:], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(out[0, 3:], alone[0])


def test_follows_dtype_and_keeps_float64_statistics():
    model = tiny_model("llama", dtype=torch.float32)
    fm = get_faast_model(model, FaastConfig(num_memories=1))
    with_random_readout(fm)
    ids, _ = random_batch([12, 12])
    fm.learn(input_ids=ids)
    ref = fm(input_ids=ids).logits
    fm.to(torch.bfloat16)
    assert fm.memories["block1"].out_proj.weight.dtype == torch.bfloat16
    assert all(m.stats.gram.dtype == torch.float64 for m in fm.memories.values())
    low = fm(input_ids=ids).logits
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() < 0.1 * ref.abs().max()
    fm.to(torch.float32).to("cpu")
    fm.learn(input_ids=ids)  # learning more after a dtype round trip is fine
    assert fm.num_pairs == 2 * 2 * 11


def test_unload_restores_the_plain_model():
    model = tiny_model("gpt2", dtype=torch.float32)
    ids, _ = random_batch([8])
    base = model(input_ids=ids).logits
    fm = get_faast_model(model, FaastConfig(num_memories=1))
    fm.learn(input_ids=ids)
    assert fm.unload() is model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(input_ids=ids).logits, base)


def test_scorer_scales_values():
    model = tiny_model("llama")
    fm = with_random_readout(get_faast_model(model, FaastConfig(num_memories=1, output_memory=False)))
    mem = fm.memories["block1"]
    assert isinstance(mem, MiddleMemory)
    ids, _ = random_batch([7])
    h = {}
    handle = model.model.layers[1].register_forward_pre_hook(lambda m, a: h.setdefault("x", a[0].detach()))
    fm.learn(input_ids=ids)
    handle.remove()
    k, v = h["x"][0, :-1], h["x"][0, 1:]
    w = torch.sigmoid(torch.cat([k, v], -1).float() @ mem.scorer.weight.float()[0]).double()
    assert torch.allclose(mem.stats.cross, k.T @ (v * w[:, None]), rtol=1e-6, atol=1e-8)
    assert torch.allclose(mem.stats.gram, k.T @ k, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("support", ["vocab", "learned"])
def test_prob_mix_calls_the_head_once_and_normalises(support):
    """(The formula itself is compared with faast.lm.naive in test_lm_naive.py.)"""
    model = tiny_model("llama")
    ids, _ = random_batch([10, 10], seed=3)
    read = ReadConfig(weight=0.3, support=support, gate=None)
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix="prob"), read)
    fm.learn(input_ids=ids)
    learned = torch.zeros(VOCAB, dtype=torch.bool)
    learned[ids[:, 1:].reshape(-1)] = True
    assert torch.equal(fm.output_memory.seen, learned)  # the memory only speaks for tokens it learned
    calls = []
    handle = model.lm_head.register_forward_hook(lambda m, a, o: calls.append(a[0].shape))
    got = fm(input_ids=ids).logits
    handle.remove()
    assert len(calls) == 1
    # over the whole vocabulary the head multiplies [z; W·z] in its one pass over its weight
    assert calls[0][0] == (2 if support == "vocab" else 1) * ids.shape[0]
    assert bool((got.exp().sum(-1) - 1).abs().max() < 1e-9)
    prompt = random_batch([4], seed=10)[0]
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(fm.generate(prompt, use_cache=True, **kw), fm.generate(prompt, use_cache=False, **kw))


def test_prob_mix_cost_is_bounded_by_log_one_minus_lambda():
    """Whatever the memory says, log p_mix ≥ log p_model + log(1 − λ) for every token."""
    model = tiny_model("qwen2")
    fm = get_faast_model(model, FaastConfig(num_memories=0), ReadConfig(weight=0.2))
    fm.learn(input_ids=random_batch([30, 30], seed=8)[0])
    probe = random_batch([12, 12], seed=9)[0]
    with fm.disabled():
        base = torch.log_softmax(fm(input_ids=probe).logits, -1)
    mixed = fm(input_ids=probe).logits
    assert not torch.allclose(mixed, base)  # the memory does move the distribution
    assert bool((mixed >= base + math.log(0.8) - 1e-12).all())


def test_gated_prob_mix_opens_on_learned_contexts_and_leaves_new_text_exactly_as_it_was():
    model = tiny_model("llama")
    learned_ids = random_batch([12], seed=21)[0]
    fm = get_faast_model(model, FaastConfig(num_memories=0), ReadConfig(weight=0.6, gate=0.9))
    fm.learn(input_ids=learned_ids)
    probe = torch.cat([learned_ids, random_batch([12], seed=22)[0]], dim=1)
    got = fm(input_ids=probe).logits[0]
    with fm.disabled():
        base = torch.log_softmax(fm(input_ids=probe).logits[0], -1)
    moved = (got - base).abs().amax(-1) > 1e-9
    assert bool(moved[:11].all())  # every learned context opens the gate
    shut = ~moved[12:]
    assert bool(shut.any())  # some new ones keep it shut ...
    assert torch.equal(got[12:][shut], base[12:][shut])  # ... and are then the base model exactly


def test_bad_read_knobs():
    with pytest.raises(ValueError, match="cosine threshold"):
        ReadConfig(gate=1.0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ReadConfig(temperature=0.0)
    with pytest.raises(ValueError, match="unknown read knob"):
        ReadConfig().replace(gates=0.5)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        ReadConfig(cut="alpha=-1")


def test_deprecated_read_fields_still_work_and_are_not_saved():
    model = tiny_model("llama")
    with pytest.warns(DeprecationWarning, match="read-time knobs"):
        cfg = FaastConfig(num_memories=0, output_weight=0.3, output_gate=None, alpha=0.5)
    assert "output_weight" not in cfg.to_dict() and "alpha" not in cfg.to_dict()
    fm = get_faast_model(model, cfg)
    assert fm.read_config == ReadConfig(cut="alpha=0.5", weight=0.3, gate=None)
    assert fm.output_memory.weight == 0.3 and fm.output_memory.gate is None
    with pytest.raises(ValueError, match="cosine threshold"), pytest.warns(DeprecationWarning):
        FaastConfig(output_gate=1.0)


def test_set_read_changes_only_how_the_statistics_are_read():
    model = tiny_model("llama")
    ids, _ = random_batch([16, 16], seed=3)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    fm.learn(input_ids=ids)
    default = fm(input_ids=ids).logits
    before = stats_of(fm)
    fm.set_read(weight=0.5, gate=None, cut="gcv")
    assert fm.output_memory.weight == 0.5 and fm.output_memory.memory.cut.kind == "gcv"
    assert not torch.allclose(fm(input_ids=ids).logits, default)
    assert_stats_close(stats_of(fm), before, rtol=0)
    fm.set_read(ReadConfig())
    assert torch.equal(fm(input_ids=ids).logits, default)
