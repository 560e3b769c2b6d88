"""Integration: test-time learning on the real SmolLM2-135M-Instruct (offline asset, CPU).

The passage is invented for this test (so the model cannot have seen it in pre-training). Only
the parameter-free output memory is used: no trained parameters at all.
"""

from __future__ import annotations

import pytest
import torch

from faast.assets.core import AssetError
from faast.lm import FaastConfig, get_faast_model
from faast.lm.text import perplexity

pytestmark = pytest.mark.assets("smollm2-135m-instruct")

PASSAGE = (
    "The lighthouse on Tessel Point was built in 1871 by the engineer Marguerite Olden, who insisted that "
    "its lamp be fuelled with rapeseed oil rather than whale oil. The keepers, two brothers named Ansel and "
    "Corwin Brack, kept a logbook in which they recorded every passing ship, the colour of the sea at dawn, "
    "and the number of gannets nesting on the western cliff. In the winter of 1883 a storm tore the copper "
    "dome from the tower and carried it half a mile inland, where it was found the next morning in a field "
    "of turnips belonging to a farmer called Eudo Pell. Pell refused to return the dome until the harbour "
    "board paid him eleven shillings for the damaged turnips, and the brothers kept the lamp burning under "
    "a canvas sheet for nineteen days. The logbook entry for the nineteenth day reads only: dome returned, "
    "turnips paid for, gannets unmoved."
)

#: Unrelated text, also invented: learning PASSAGE should leave its perplexity nearly unchanged.
OTHER = (
    "To repot a fig tree, water it the day before, then ease the root ball out of the old container and "
    "tease apart any roots that circle the bottom. Choose a pot only a few centimetres wider, add a layer "
    "of coarse grit for drainage, and fill around the roots with a loam-based compost. Firm the surface "
    "gently, water until it runs from the base, and keep the tree out of strong sun for a week while the "
    "roots settle."
)


@pytest.fixture(scope="module")
def smollm2():
    from faast.assets.lm import smollm2_dir
    from faast.lm.text import load_causal_lm

    try:  # the `assets` marker already skips (locally) or fails (CI) when the asset is missing
        smollm2_dir(fetch=False)
    except AssetError as exc:
        pytest.skip(f"SmolLM2 not fetched ({exc})")
    # One thread: on a shared machine two OpenMP threads can run ~10× slower than one (spinning).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_causal_lm("smollm2")
    finally:
        torch.set_num_threads(threads)


def test_learning_a_passage_lowers_its_perplexity_and_reset_restores_it(smollm2):
    model, tok = smollm2
    ids = tok(PASSAGE, return_tensors="pt").input_ids
    assert ids.shape[1] > 150
    base_logits = model(input_ids=ids).logits
    base = perplexity(model, ids)

    fm = get_faast_model(model, FaastConfig(num_memories=0))  # output memory only: no trained parameters
    assert torch.equal(fm(input_ids=ids).logits, base_logits)
    assert fm.learn(**tok(PASSAGE, return_tensors="pt")) == ids.shape[1] - 1
    after = perplexity(fm, ids)
    print(f"\nSmolLM2 passage ({ids.shape[1]} tokens): ppl {base.ppl:.3f} → {after.ppl:.3f} after learn")
    assert after.ppl < 0.5 * base.ppl
    other = tok(OTHER, return_tensors="pt").input_ids
    with fm.disabled():
        other_base = perplexity(fm, other)
    other_after = perplexity(fm, other)
    print(f"unrelated text: ppl {other_base.ppl:.3f} → {other_after.ppl:.3f} (the recall gate stays shut)")
    assert other_after.ppl < 1.05 * other_base.ppl

    fm.reset_projection()
    reset = perplexity(fm, ids)
    print(f"after reset_projection: ppl {reset.ppl:.6f} (base {base.ppl:.6f})")
    assert reset.nll == base.nll
    assert torch.equal(fm(input_ids=ids).logits, base_logits)
    fm.unload()


def test_left_and_right_padding_agree_on_the_real_model(smollm2):
    model, tok = smollm2
    halves = [PASSAGE[: len(PASSAGE) // 3], PASSAGE[len(PASSAGE) // 3 :]]
    fm = get_faast_model(model, FaastConfig(num_memories=1))
    stats = {}
    try:
        for side in ("right", "left"):
            tok.padding_side = side
            batch = tok(halves, return_tensors="pt", padding=True)
            assert int((batch.attention_mask == 0).sum()) > 0
            fm.reset_projection().learn(**batch)
            stats[side] = {n: (m.stats.count, m.stats.gram.clone()) for n, m in fm.memories.items()}
    finally:
        tok.padding_side = "right"
        fm.unload()
    for name, (count, gram) in stats["right"].items():
        count_left, gram_left = stats["left"][name]
        assert count == count_left
        assert float((gram - gram_left).abs().max()) <= 1e-4 * float(gram.abs().max()), name


def test_the_bundled_general_readout_loads_by_name_and_its_middle_memory_learns_a_passage(smollm2):
    """``smollm2-general`` (trained on non-Austen text, shipped in the package) loads by name; its
    middle memory alone (output memory read with weight 0) leaves the model unchanged until it
    learns, then lowers the perplexity of a passage it learned at test time."""
    from faast.lm import FaastModel
    from faast.lm.pretrained import bundled

    model, tok = smollm2
    assert "smollm2-general" in bundled()
    ids = tok(PASSAGE, return_tensors="pt").input_ids
    base = perplexity(model, ids)
    fm = FaastModel.from_pretrained(model, "smollm2-general")
    try:
        assert len(fm.middle_memories) == 1
        fm.output_memory.weight = 0.0
        empty = perplexity(fm, ids)  # the readout with no fast weights yet
        fm.learn(input_ids=ids)
        after = perplexity(fm, ids)
        print(f"\nsmollm2-general, middle memory alone: ppl {base.ppl:.3f} base, {empty.ppl:.3f} empty")
        print(f"after learning the passage: {after.ppl:.3f}")
        assert empty.nll == pytest.approx(base.nll, rel=1e-6)  # no fast weights: the readout adds nothing
        # Measured 36.83 → 34.81: a general readout buys a few percent on recall (it was trained
        # to carry a domain, not to recite); the output memory is what recalls a passage.
        assert after.ppl < 0.97 * base.ppl
    finally:
        fm.unload()


def test_smollm2_tokenizer_encodes_answers_alone_as_in_the_joined_text(smollm2):
    """SmolLM2's byte-level tokenizer adds no dummy prefix, so answers stay encoded alone, as every
    published table was made (PromptCodec.continuation_ids changes only prefix-adding tokenizers)."""
    from faast.lm.prompts import PromptCodec, PromptTemplate, adds_text_prefix

    _, tok = smollm2
    assert not adds_text_prefix(tok)
    codec = PromptCodec(tok, PromptTemplate("Review: {input}\nSentiment:"))
    for output in ("positive", "10", "Austen", "¿Qué?"):
        assert codec.answer_ids(output) == codec.text_ids(f" {output}\n")
