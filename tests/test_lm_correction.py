"""The "correction" output read-out (faast.lm.correction): its values are loss gradients, its step
1/L the mean curvature's largest eigenvalue, both checked against autograd on random inputs; it
lowers the loss of what it learned, forgets exactly, saves and loads, and refuses what it cannot
read. (The hooked model against the plain reference: tests/test_lm_naive.py; forgetting = refit
for every family: tests/test_lm_forget.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import FaastConfig, ReadConfig, correction, get_faast_model, naive
from faast.lm.correction import curvature_bound, damped_inverse, loss_gradients
from faast.lm.text import perplexity
from tests.lm_tiny import random_batch, tiny_model


def problem(n: int, d: int, vocab: int, seed: int, bias: bool, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=dtype)
    u = torch.randn(vocab, d, generator=g, dtype=dtype) * 0.7
    b = torch.randn(vocab, generator=g, dtype=dtype) if bias else None
    y = torch.randint(0, vocab, (n,), generator=g)
    return z, u, b, y


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 12),
    vocab=st.integers(2, 30),
    seed=st.integers(0, 10_000),
    bias=st.booleans(),
    chunk=st.sampled_from([1, 7, 64, 1 << 24]),
)
def test_values_are_the_negative_loss_gradient_and_the_sums_are_plain_sums(n, d, vocab, seed, bias, chunk):
    z, u, b, y = problem(n, d, vocab, seed, bias)
    old = correction.CHUNK_ELEMENTS
    correction.CHUNK_ELEMENTS = chunk * vocab  # chunks of `chunk` rows, boundaries anywhere
    try:
        values, prob_sum, outer = loss_gradients(z, y, u, b)
    finally:
        correction.CHUNK_ELEMENTS = old
    zz = z.clone().requires_grad_(True)
    F.cross_entropy(F.linear(zz, u, b), y, reduction="sum").backward()
    assert torch.allclose(values, -zz.grad, rtol=1e-10, atol=1e-12)
    p = torch.softmax(F.linear(z, u, b), -1)
    assert torch.allclose(prob_sum, p.sum(0), rtol=1e-12, atol=1e-12)
    assert torch.allclose(outer, (p @ u).T @ (p @ u), rtol=1e-10, atol=1e-12)


def test_float32_states_give_float32_values_with_float64_sums():
    z, u, b, y = problem(20, 6, 11, 3, True)
    values, prob_sum, outer = loss_gradients(z.float(), y, u.float(), b.float())
    ref, ref_sum, ref_outer = loss_gradients(z, y, u, b)
    assert values.dtype == torch.float32 and prob_sum.dtype == outer.dtype == torch.float64
    assert torch.allclose(values.double(), ref, atol=1e-5)
    assert torch.allclose(prob_sum, ref_sum, atol=1e-5) and torch.allclose(outer, ref_outer, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 12),
    d=st.integers(1, 8),
    vocab=st.integers(2, 20),
    seed=st.integers(0, 10_000),
    rows=st.sampled_from([1, 5, 16384]),
)
def test_the_step_bound_is_the_mean_hessians_largest_eigenvalue(n, d, vocab, seed, rows):
    """L from the two sums equals λ_max of the mean of the per-pair Hessians (autograd)."""
    z, u, b, y = problem(n, d, vocab, seed, True)
    _, prob_sum, outer = loss_gradients(z, y, u, b)
    got = curvature_bound(prob_sum, outer, n, u, rows=rows)
    hessians = [
        torch.autograd.functional.hessian(
            lambda x, i=i: F.cross_entropy(F.linear(x, u, b)[None], y[i : i + 1]), z[i]
        )
        for i in range(n)
    ]
    want = float(torch.linalg.eigvalsh(torch.stack(hessians).mean(0))[-1])
    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    assert curvature_bound(prob_sum, outer, 0, u) == 0.0


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 10), seed=st.integers(0, 10_000), damping=st.floats(1e-3, 10.0))
def test_the_damped_inverse_is_the_plain_inverse(d, seed, damping):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d + 2, generator=g, dtype=torch.float64)
    fisher = a @ a.T / (d + 2)
    values, vectors = torch.linalg.eigh(fisher)
    want = torch.linalg.inv(fisher + damping * float(values[-1]) * torch.eye(d, dtype=torch.float64))
    got = damped_inverse(values, vectors, damping)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))


def corrected(family="llama", weight=None, **layout):
    read = ReadConfig(cut="alpha=0.9,c=1.5", weight=weight)
    return get_faast_model(
        tiny_model(family), FaastConfig(num_memories=0, output_mix="correction", **layout), read
    )


def test_one_step_lowers_the_loss_of_the_learned_text_and_reading_it_off_restores_the_model():
    fm = corrected()
    ids, mask = random_batch([30, 30, 30, 30], seed=4)
    with fm.disabled():
        before = perplexity(fm, ids).nll
        base = fm(input_ids=ids).logits
    fm.learn(input_ids=ids, attention_mask=mask)
    fm.compile_fast_weights()
    out = fm.output_memory
    assert out._effective is not None and out.curvature() > 0  # compiled with the fast weights
    after = perplexity(fm, ids).nll
    assert after < before - 0.01, (before, after)
    fm.set_read(weight=0.0)
    assert torch.equal(fm(input_ids=ids).logits, base)
    # β scales the step: half the step changes the logits by half, to first order exactly
    fm.set_read(weight=0.5)
    half = fm(input_ids=ids).logits - base
    fm.set_read(weight=1.0)
    assert torch.allclose(fm(input_ids=ids).logits - base, 2 * half, rtol=1e-9, atol=1e-10)


def test_the_read_is_scale_free():
    """A model whose head input is c times larger and whose head is c times smaller computes the
    same logits; its corrected logits after learning the same text are the same too (the gradients
    shrink by c, L by c², the keys grow by c), so β means the same on every model."""
    plain, scaled = corrected(), corrected()
    assert not plain.base_model.config.tie_word_embeddings
    with torch.no_grad():
        scaled.base_model.model.norm.weight.mul_(3.0)
        scaled.base_model.get_output_embeddings().weight.div_(3.0)
    ids = random_batch([25, 25], seed=5)[0]
    query = random_batch([12], seed=8)[0]
    for fm in (plain, scaled):
        fm.learn(input_ids=ids)
    assert plain.output_memory.curvature() == pytest.approx(9 * scaled.output_memory.curvature(), rel=1e-9)
    got, want = scaled(input_ids=query).logits, plain(input_ids=query).logits
    with plain.disabled():
        base = plain(input_ids=query).logits
    assert not torch.allclose(want, base, atol=1e-6)
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-9)


def test_key_features_forgetting_and_save_load(tmp_path):
    fm = corrected(output_key_features=24)
    a, b = random_batch([14, 9], seed=1), random_batch([11], seed=2)
    fm.learn(input_ids=a[0], attention_mask=a[1])
    fm.learn(input_ids=b[0], attention_mask=b[1])
    fm.forget(input_ids=b[0], attention_mask=b[1])
    refit = corrected(output_key_features=24)
    refit.learn(input_ids=a[0], attention_mask=a[1])
    mine, theirs = fm.output_memory, refit.output_memory
    assert torch.allclose(mine.prob_sum, theirs.prob_sum, atol=1e-12)
    assert torch.allclose(mine.outer_sum, theirs.outer_sum, atol=1e-12)
    query = random_batch([10], seed=9)[0]
    assert torch.allclose(fm(input_ids=query).logits, refit(input_ids=query).logits, rtol=1e-8, atol=1e-9)
    path = fm.save_fast_weights(tmp_path / "fw.safetensors")
    other = corrected(output_key_features=24)
    other.load_fast_weights(path)
    assert torch.allclose(other(input_ids=query).logits, fm(input_ids=query).logits, rtol=1e-12, atol=1e-12)
    assert torch.equal(other.output_memory.prob_sum, mine.prob_sum)


def test_statistics_of_another_value_are_refused():
    fm = corrected()
    fm.learn(input_ids=random_batch([12], seed=1)[0])
    with pytest.raises(ValueError, match="cannot be read with the 'prob' mix"):
        fm.set_output_mix("prob")
    with pytest.raises(ValueError, match="cannot be read with the 'correction' mix"):
        prob = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0))
        prob.set_output_mix("correction")


def test_damaged_curvature_sums_are_refused(tmp_path):
    fm = corrected()
    fm.learn(input_ids=random_batch([12], seed=1)[0])
    state = fm.output_memory.extra_state()
    out = corrected().output_memory
    bad = {**state, "prob_sum": state["prob_sum"].float()}
    with pytest.raises(ValueError, match="'prob_sum' must be float64"):
        out.load_extra_state(bad, "file.safetensors")
    bad = {**state, "outer_sum": torch.full_like(state["outer_sum"], math.nan)}
    with pytest.raises(ValueError, match="NaN or Inf"):
        out.load_extra_state(bad, "file.safetensors")
    missing = {k: v for k, v in state.items() if k != "outer_sum"}
    with pytest.raises(ValueError, match="'outer_sum' of the correction read-out is missing"):
        out.load_extra_state(missing, "file.safetensors")


def test_the_default_cut_is_a_ridge_of_twice_the_key_dimension_in_pseudo_pairs():
    """ReadConfig(cut=None) reads the correction with ``Cut.pseudo_pairs(2·key_dim)`` (key features
    included) and every other read-out with the paper's τ = n⁻¹; the prior's ridge is
    ρ = N·tr(G)/(n·d), so the step equals the plain ridge solve written out."""
    from faast.solver import Cut

    for features in (0, 7):
        layout = FaastConfig(num_memories=0, output_mix="correction", output_key_features=features)
        fm = get_faast_model(tiny_model("llama"), layout)
        out = fm.output_memory
        assert fm.read_config.cut is None
        assert out.memory.cut == Cut.pseudo_pairs(2 * out.memory.key_dim)
        assert out.memory.key_dim == fm.base_model.config.hidden_size + features
    prob = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0))
    assert prob.output_memory.memory.cut == Cut.power()
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0, output_mix="correction"))
    ids = random_batch([20, 20], seed=6)[0]
    fm.learn(input_ids=ids)
    u = fm.base_model.get_output_embeddings().weight.detach()
    with fm.disabled(), torch.no_grad():
        hidden = fm.base_model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    z, y = hidden[:, :-1].reshape(-1, hidden.shape[-1]), ids[:, 1:].reshape(-1)
    n, d = z.shape
    g = u[y] - torch.softmax(z @ u.T, -1) @ u
    gram = z.T @ z
    ridge = 2 * d * torch.trace(gram) / (n * d)
    w = torch.linalg.solve(gram + ridge * torch.eye(d, dtype=z.dtype), z.T @ g).T  # (d, d): g ≈ W z
    p = torch.softmax(z @ u.T, -1)
    fisher = (u.T @ torch.diag(p.sum(0)) @ u - (p @ u).T @ (p @ u)) / n
    bound = float(torch.linalg.eigvalsh(fisher)[-1])
    step = 0.5 * torch.linalg.inv(fisher + 0.3 * bound * torch.eye(d, dtype=z.dtype)) @ w
    got = fm.output_memory.effective_weight(torch.float64, torch.device("cpu"))
    assert torch.allclose(got, step, rtol=1e-7, atol=1e-10), float((got - step).abs().max())
    # the choice is the read-out's: a ReadConfig naming a cut overrides it, None restores it
    fm.set_read(cut="alpha=1")
    assert fm.output_memory.memory.cut == Cut.power(1.0)
    fm.set_read(fm.read_config.replace(cut=None))
    assert fm.output_memory.memory.cut == Cut.pseudo_pairs(2 * d)
    assert ReadConfig.from_dict(fm.read_config.to_dict()).cut is None


# ----------------------------------------------------------------- several steps (fold_step)
def _plain_step(z, y, u, cut_alpha, cut_c, beta, damping, at=None):
    """One step written out: gradients where the model reads (``at``), least squares from the
    keys z, the damped curvature inverse. z, at: (n, d); y: (n,); u: (V, d) → A (d, d)."""
    at = z if at is None else at
    p = torch.softmax(at @ u.T, -1)
    g = u[y] - p @ u
    w = naive.fast_weight(z, g, cut_alpha, cut_c)
    fisher = (u.T @ torch.diag(p.sum(0)) @ u - (p @ u).T @ (p @ u)) / len(z)
    bound = float(torch.linalg.eigvalsh(fisher)[-1])
    return beta * torch.linalg.inv(fisher + damping * bound * torch.eye(len(fisher), dtype=z.dtype)) @ w


def test_folded_steps_equal_the_plain_recursion_and_lower_the_loss_further():
    fm = corrected(weight=0.6)
    fm.set_read(fm.read_config.replace(damping=0.4))
    ids = random_batch([20, 20, 20], seed=3)[0]
    query = random_batch([9], seed=8)[0]
    u = fm.base_model.get_output_embeddings().weight.detach()
    with fm.disabled(), torch.no_grad():
        hidden = fm.base_model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        zq = fm.base_model(input_ids=query, output_hidden_states=True).hidden_states[-1]
        base_nll = perplexity(fm, ids).nll
    z, y = hidden[:, :-1].reshape(-1, hidden.shape[-1]), ids[:, 1:].reshape(-1)
    correction.learn_in_steps(fm, lambda: fm.learn(input_ids=ids), 1)
    one_nll = perplexity(fm, ids).nll
    fm.reset_projection()
    correction.learn_in_steps(fm, lambda: fm.learn(input_ids=ids), 3)
    out = fm.output_memory
    assert out.folded_steps == 2 and out.folded is not None
    a = torch.zeros(z.shape[1], z.shape[1], dtype=z.dtype)
    for _ in range(3):
        a = a + _plain_step(z, y, u, 0.9, 1.5, 0.6, 0.4, at=z + z @ a.T)
    want = (zq + zq @ a.T) @ u.T
    got = fm(input_ids=query).logits
    assert torch.allclose(got, want, rtol=1e-7, atol=1e-8), float((got - want).abs().max())
    assert perplexity(fm, ids).nll < one_nll < base_nll


def test_folded_steps_save_load_and_refuse_forgetting(tmp_path):
    fm = corrected()
    ids = random_batch([15, 15], seed=2)[0]
    with pytest.raises(ValueError, match="nothing was learned since the last step"):
        fm.output_memory.fold_step()
    correction.learn_in_steps(fm, lambda: fm.learn(input_ids=ids), 2)
    with pytest.raises(ValueError, match="folded 1 step"):
        fm.forget(input_ids=ids)
    query = random_batch([10], seed=9)[0]
    path = fm.save_fast_weights(tmp_path / "fw.safetensors")
    other = corrected()
    other.load_fast_weights(path)
    assert other.output_memory.folded_steps == 1
    assert torch.allclose(other(input_ids=query).logits, fm(input_ids=query).logits, rtol=1e-12, atol=1e-12)
    state = fm.output_memory.extra_state()
    with pytest.raises(ValueError, match="needs both 'folded' and 'folded_steps'"):
        corrected().output_memory.load_extra_state(
            {k: v for k, v in state.items() if k != "folded_steps"}, "f"
        )
    bad = {**state, "folded": torch.full_like(state["folded"], math.inf)}
    with pytest.raises(ValueError, match="'folded' holds NaN or Inf"):
        corrected().output_memory.load_extra_state(bad, "f")
    fm.reset_projection()
    assert fm.output_memory.folded is None and not fm.output_memory.active
    with pytest.raises(ValueError, match="output_mix='correction'"):
        correction.learn_in_steps(
            get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0)), lambda: 0, 2
        )
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        correction.learn_in_steps(corrected(), lambda: 0, 0)


def test_steps_over_captured_windows_equal_steps_over_forward_passes():
    windows = random_batch([16, 16, 16, 16, 16], seed=6)[0]
    query = random_batch([10], seed=9)[0]
    by_capture, by_forward = corrected(), corrected()
    assert correction.learn_windows_in_steps(by_capture, windows, 3, batch_size=2) == 5 * 15

    def learn_once():
        for i in range(0, len(windows), 2):
            by_forward.learn(input_ids=windows[i : i + 2])

    correction.learn_in_steps(by_forward, learn_once, 3)
    assert by_capture.output_memory.folded_steps == by_forward.output_memory.folded_steps == 2
    assert torch.equal(by_capture(input_ids=query).logits, by_forward(input_ids=query).logits)
