"""FaastModel on more layouts than the four the LM tests build everywhere: twenty more Hugging
Face causal-LM families (tiny random models, no downloads; a mixture of experts and a state-space
model, Mamba, among them), each found by ``find_layout`` (a known block path, or the generic
search for the one list of blocks).
On each: the untrained model equals the base bit for bit, learning changes it and recalls the
learned text, cached generation equals the step-by-step argmax, unloading restores the plain
model, a padded batch (left or right) learns what its sequences learn one by one, and the block
states the middle-layer label head reads are the blocks' outputs."""

from __future__ import annotations

import pytest
import torch

from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.prompts import pad_batch
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


@pytest.mark.parametrize("family", sorted(MORE_FAMILIES))
def test_layer_states_read_each_family_s_blocks(family):
    """What the middle-layer label head reads (``layer_states``, forward hooks on the blocks): block
    0's output equals transformers' ``hidden_states[1]`` (Mamba's ``hidden_states[0]``: its list
    starts after the first block, not at the embeddings) and ``None`` the head input, on a
    right-padded batch of two lengths (float64 where the family allows it, else float32)."""
    try:
        model = more_tiny_model(family, dtype=torch.float64)
        model(input_ids=torch.tensor([[1, 5]]))
    except (RuntimeError, TypeError, ValueError):  # a kernel without float64
        model = more_tiny_model(family)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    rows = [[1, 5, 6, 7, 8], [1, 9, 10]]
    ids, mask = pad_batch(rows, 0)
    states = fm.layer_states(ids, mask, layers=[0, None])
    assert states.shape == (2, 5, 2, 32)
    tol = {} if states.dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    for r, row in enumerate(rows):
        n = len(row)
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([row]), output_hidden_states=True).hidden_states
        torch.testing.assert_close(states[r, :n, 0], ref[0 if family == "mamba" else 1][0], **tol)
        torch.testing.assert_close(states[r, :n, 1], fm.head_inputs(ids[r : r + 1, :n])[0], **tol)
