"""FaastModel on more layouts than the four the LM tests build everywhere: twenty more Hugging
Face causal-LM families (tiny random models, no downloads; a mixture of experts and a state-space
model, Mamba, among them), each found by ``find_layout`` (a known block path, or the generic
search for the one list of blocks).
On each: the untrained model equals the base bit for bit, learning changes it and recalls the
learned text, cached generation equals the step-by-step argmax, unloading restores the plain
model, and a padded batch (left or right) learns what its sequences learn one by one."""

from __future__ import annotations

import pytest
import torch

from faast.lm import FaastConfig, ReadConfig, get_faast_model
from tests.lm_statistics import assert_padding_learns_each_sequence
from tests.lm_tiny import MORE_FAMILIES, more_tiny_model, random_batch


@pytest.mark.parametrize("family", sorted(MORE_FAMILIES))
def test_learn_read_generate_and_unload(family):
    model = more_tiny_model(family)
    ids, mask = random_batch([9, 5, 12])
    base = model(input_ids=ids, attention_mask=mask).logits
    fm = get_faast_model(model, FaastConfig(num_memories=1), ReadConfig(cut="ridge=1e-6"))
    assert fm._layout.num_layers == 2 and fm._layout.hidden_size == 32
    assert torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)  # nothing learned yet
    text = random_batch([24], seed=5)[0]
    fm.learn(input_ids=text)
    assert fm.num_pairs == 23
    assert not torch.equal(fm(input_ids=ids, attention_mask=mask).logits, base)
    # the learned text is recalled: its next tokens are the output memory's argmax
    recalled = fm(input_ids=text).logits[0, :-1].argmax(-1) == text[0, 1:]
    assert float(recalled.float().mean()) >= 0.9
    prompt = text[:, :4]
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    cached = fm.generate(prompt, use_cache=True, **kw)
    seq = prompt
    for _ in range(cached.shape[1] - prompt.shape[1]):
        seq = torch.cat([seq, fm(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(seq, cached)
    assert fm.unload() is model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, base)


@pytest.mark.parametrize("family", sorted(MORE_FAMILIES))
def test_padding_on_either_side_learns_what_each_sequence_learns_alone(family):
    """float32 (two families' eager attention gives NaN on left-padded float64 batches in
    transformers itself, and the mixture of experts needs float32): equal up to its rounding."""
    fm = get_faast_model(more_tiny_model(family), FaastConfig(num_memories=1))
    assert_padding_learns_each_sequence(fm, [9, 5, 12, 2], rtol=1e-5)


def test_the_readme_counts_the_families_tested_here():
    """The README's Language models section says how many more families these tests cover."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    counted = re.search(r"tiny random models of (\d+) more\s+families", readme)
    assert counted is not None and int(counted.group(1)) == len(MORE_FAMILIES)
