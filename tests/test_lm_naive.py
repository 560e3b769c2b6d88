"""The hooked FaastModel against the plain reference (faast.lm.naive): four model families × every
output read-out × middle memories off / on, after learning left- and right-padded batches."""

from __future__ import annotations

import pytest
import torch

from faast.lm import FaastConfig, ReadConfig, get_faast_model, naive
from tests.lm_tiny import FAMILIES, random_batch, tiny_model
from tests.test_lm_model import with_random_readout

#: read-out name → (output_mix, explicit knobs shared by the model and the reference)
READS = {
    "prob-gated": ("prob", {"weight": 0.7, "temperature": 0.3, "gate": 0.6, "support": "learned"}),
    "prob": ("prob", {"weight": 0.3, "temperature": 0.5, "gate": None, "support": "learned"}),
    "prob-vocab": ("prob", {"weight": 0.2, "temperature": 1.0, "gate": None, "support": "vocab"}),
    "prob-gated-vocab": ("prob", {"weight": 0.7, "temperature": 0.3, "gate": 0.6, "support": "vocab"}),
    "logit": ("logit", {"weight": 0.8}),
    "paper": ("paper", {"weight": 0.6}),
    "correction": ("correction", {"weight": 0.7, "damping": 0.2}),
    "none": (None, {}),
}


def modules(model, family):
    if family == "gpt2":
        return model.transformer.h, model.transformer.ln_f
    return model.model.layers, model.model.norm


@pytest.mark.parametrize("middle", [False, True], ids=["no-middle", "middle"])
@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("family", FAMILIES)
def test_hooked_model_equals_the_reference(family, read, middle):
    if read == "none" and not middle:
        pytest.skip("nothing attached")
    model = tiny_model(family)
    mix, knobs = READS[read]
    layout = FaastConfig(
        memory_layers=[0, 1] if middle else [],
        output_memory=mix is not None,
        output_mix=mix or "prob",
    )
    fm = with_random_readout(get_faast_model(model, layout, ReadConfig(cut="alpha=0.9,c=1.5", **knobs)))
    learn = [random_batch([9, 5, 12], seed=1, side="right"), random_batch([7, 11], seed=2, side="left")]
    for ids, mask in learn:
        fm.learn(input_ids=ids, attention_mask=mask)
    # the query repeats a learned row (the gate opens there) next to unseen text
    query_ids = torch.cat([learn[0][0][2:3], random_batch([12], seed=5)[0]])
    query = (query_ids, torch.ones_like(query_ids))
    got = fm(input_ids=query[0], attention_mask=query[1]).logits

    blocks, norm = modules(model, family)
    spec = naive.NaiveSpec(
        mix=mix,
        **{k: v for k, v in knobs.items()},
        alpha=0.9,
        c=1.5,
        middles=[
            naive.NaiveMiddle(m.layer, m.out_proj.weight.detach(), m.scorer.weight.detach())
            for m in fm.middle_memories
        ],
    )
    fm.unload()  # the reference runs the plain model
    expected = naive.logits(model, spec, learn, query, final_norm=norm, blocks=blocks)
    with torch.no_grad():
        base = model(input_ids=query[0], attention_mask=query[1]).logits
    assert not torch.allclose(expected, base)  # the memories do change the model
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got))
    assert torch.allclose(got[finite], expected[finite], rtol=1e-7, atol=1e-8)
    if read == "prob-gated":  # the gate both opened and stayed shut somewhere
        with fm.disabled():
            plain = torch.log_softmax(base, -1)
        shut = (expected - plain).abs().amax(-1) < 1e-12
        if not middle:
            assert bool(shut.any()) and not bool(shut.all())


def test_supervised_pair_mask_equals_the_reference():
    """learn(pair_mask=...) keeps only the selected pairs, as the reference's explicit loops do."""
    model = tiny_model("llama")
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix="logit"), ReadConfig(weight=1.0))
    ids, mask = random_batch([10, 8], seed=4, side="left")
    pm = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
    pm[:, -3:] = True  # only the last three transitions of each row (an "answer")
    assert fm.learn(input_ids=ids, attention_mask=mask, pair_mask=pm) == 6
    query = random_batch([6], seed=9)
    got = fm(input_ids=query[0]).logits
    fm.unload()
    spec = naive.NaiveSpec(mix="logit", weight=1.0)
    blocks, norm = modules(model, "llama")
    expected = naive.logits(
        model, spec, [(ids, mask)], query, final_norm=norm, blocks=blocks, pair_masks=[pm]
    )
    assert torch.allclose(got, expected, rtol=1e-8, atol=1e-9)
