"""``faast.lm.logit_transform``: the transform of the LM head's output some models make (Cohere's
scale, Granite's, Gemma 2's soft cap), read from the config, inverted for the "prob" mix's hook, and
the check that refuses a model whose logits differ in another way."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm.logit_transform import LogitTransform, logit_transform


def test_the_transform_is_read_from_the_config():
    assert logit_transform(SimpleNamespace()).is_identity
    assert logit_transform(SimpleNamespace(logit_scale=0.0625)) == LogitTransform(0.0625)
    assert logit_transform(SimpleNamespace(logits_scaling=8.0)) == LogitTransform(0.125)
    assert logit_transform(SimpleNamespace(final_logit_softcapping=30.0)) == LogitTransform(1.0, 30.0)
    assert logit_transform(SimpleNamespace(final_logit_softcapping=None, logits_scaling=1.0)).is_identity
    raw = torch.tensor([[-90.0, 0.0, 45.0]])
    torch.testing.assert_close(LogitTransform(0.5, 30.0)(raw), 30 * torch.tanh(0.5 * raw / 30))


@settings(max_examples=60, deadline=None)
@given(
    scale=st.sampled_from([1.0, 0.0625, 0.125, 2.0]),
    softcap=st.sampled_from([None, 30.0, 50.0]),
    vocab=st.integers(2, 300),
    spread=st.floats(0.1, 55.0),
    seed=st.integers(0, 2**16),
)
def test_a_head_output_is_found_whose_transform_has_the_wanted_distribution(
    scale, softcap, vocab, spread, seed
):
    """head_output_for(y) turns, under the transform, into logits with y's log-softmax: exactly with a
    scale; with a soft cap c wherever y is within 2c of its largest entry (all of it here: spread
    ≤ 55 < 2c), as the mixture's log-probabilities a "prob" hook returns."""
    transform = LogitTransform(scale, softcap)
    gen = torch.Generator().manual_seed(seed)
    wanted = torch.log_softmax(torch.rand(3, vocab, generator=gen, dtype=torch.float64) * spread, -1)
    back = transform(transform.head_output_for(wanted))
    torch.testing.assert_close(torch.log_softmax(back, -1), wanted, rtol=1e-6, atol=1e-6)


def test_entries_far_below_the_top_reach_the_soft_cap_s_bound():
    """Log-probabilities more than 2c below the top come back at the cap's lowest (probability
    e^(−2c) of the top's), not as NaN from atanh beyond ±1."""
    transform = LogitTransform(1.0, 30.0)
    back = transform(transform.head_output_for(torch.tensor([[0.0, -10.0, -200.0]])))
    assert torch.isfinite(back).all()
    gaps = back[0, 0] - back[0]
    assert gaps[1].item() == pytest.approx(10.0, abs=1e-3) and 59.0 < gaps[2].item() <= 60.0


def test_a_model_whose_logits_differ_otherwise_is_refused():
    head_output = torch.randn(1, 3, 11)
    LogitTransform(0.5).check(head_output * 0.5, head_output, "cohere")  # as the transform says
    with pytest.raises(ValueError, match="the mystery model's logits differ .* from its LM head applied"):
        LogitTransform().check(head_output * 0.5, head_output, "mystery")
