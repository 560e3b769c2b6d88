"""A gated output memory that learned too few distinct next tokens (a one-token text, a repeated
phrase): W·z then lies near a learned token's LM-head row whatever z is, the gate opened on any
text, and unseen text moved by up to ×10 perplexity without a word. The gate of such a narrow
memory now also takes how far z's key lies among the learned keys: its share in their dominant
directions, or (since s84) its leverage zᵀ(G + ρI)⁻¹z, at most 1 for every key learned, so that a
context learned once beside one repeated a hundred times still opens it (hunt s83 review)."""

from __future__ import annotations

import pytest
import torch

from faast.lm import FaastConfig, get_faast_model
from faast.lm.output_readouts import CONTEXT_RIDGE, CONTEXT_SPAN, NARROW_SUPPORT, effective_tokens
from tests.lm_tiny import tiny_model

UNSEEN = torch.randint(3, 97, (1, 24), generator=torch.Generator().manual_seed(11))


def _fresh(dtype: torch.dtype = torch.float64):
    return get_faast_model(tiny_model("llama", dtype=dtype), FaastConfig(num_memories=0))


def _gate(fm, z: torch.Tensor) -> torch.Tensor:
    """λ(z) (n,) of the output memory at head inputs z (n, d), read as a model reads (no gradients:
    with them λ carries the graph of the tiny model's trainable head rows, and reading it as a float
    made torch warn)."""
    with torch.no_grad():
        _, lam, _ = fm.output_memory.support_log_probs(
            z, fm.base_model.get_output_embeddings(), torch.float64
        )
    return torch.full((z.shape[0],), lam) if isinstance(lam, float) else lam[:, 0]


def test_effective_tokens_is_the_exponential_of_the_entropy():
    counts = torch.zeros(10, dtype=torch.int64)
    assert effective_tokens(counts) == 0.0
    counts[3] = 7
    assert effective_tokens(counts) == pytest.approx(1.0)
    counts[[1, 2, 3, 4]] = 5
    assert effective_tokens(counts) == pytest.approx(4.0)


@pytest.fixture
def warn_always():
    """torch's once-per-process warnings (such as reading a tensor with a graph as a float) raised
    each time, so that an earlier test cannot hide them."""
    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    yield
    torch.set_warn_always(before)


def _reference_share(keys: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The share (n,) of contexts z (n, d) among learned keys (k, d), in plain float64: the larger
    of ‖Pẑ‖ (P: eigenvectors of G = KᵀK with λ ≥ CONTEXT_SPAN·λ_max) and 1/√max(zᵀ(G + ρI)⁻¹z, 1),
    ρ = CONTEXT_RIDGE·trace(G)/k."""
    keys, z = keys.double(), z.double()
    gram = keys.T @ keys
    lam, vec = torch.linalg.eigh(gram)
    span = vec[:, lam >= CONTEXT_SPAN * lam.max()]
    ridge = CONTEXT_RIDGE * float(torch.trace(gram)) / keys.shape[0]
    leverage = (z * torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=torch.float64), z.T).T).sum(
        -1
    )
    dominant = ((z / z.norm(dim=-1, keepdim=True)) @ span).norm(dim=-1)
    return torch.maximum(dominant, leverage.clamp_min(1.0).rsqrt())


@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("text", [[5, 6], [5, 6] * 20], ids=["one-pair", "repeated"])
def test_a_narrow_memory_gates_on_how_far_the_context_lies_among_the_learned_keys(text, warn_always):
    """At every learned context the share is 1 (the gate as before); elsewhere the gate is at most
    what the share allows (computed here from the captured keys), shut where it is below θ."""
    fm = _fresh()
    ids = torch.tensor([text])
    fm.learn(ids)
    out = fm.output_memory
    keys = fm.head_inputs(ids)[0, :-1]  # the learned pairs' keys
    n = keys.shape[0]
    z = torch.cat([keys, fm.head_inputs(UNSEEN)[0]])  # the learned contexts first
    lam = _gate(fm, z)
    share = _reference_share(keys, z)
    assert bool((share[:n] > 1 - 1e-9).all())  # every learned context lies among the learned keys
    assert float(lam[:n].max()) > 0  # and the gate opens there
    bound = out.weight * ((share - out.gate) / (1 - out.gate)).clamp(0, 1)
    assert bool((lam <= bound + 1e-9).all())
    assert bool((lam[share < out.gate] == 0).all())
    assert bool((share[n:] < out.gate).any())  # some unseen context is shut out


def test_a_context_learned_once_beside_one_repeated_a_hundred_times_is_recalled():
    """Hunt s83 review, finding 1: after [5, 6] × 100 + a five-token tail, the tail's own contexts
    had eigenvalues below CONTEXT_SPAN·λ_max, their share in the dominant directions was ≈ 0.5 and
    the gate shut at them: the tail's learned pairs read at the base model's NLL (≈ 4.6 nats, against
    ≈ 0.1 with the gate open). Their leverage is at most 1, so the gate opens there again."""
    fm = _fresh()
    tail = [9, 10, 11, 12, 13]
    ids = torch.tensor([[5, 6] * 100 + tail])
    fm.learn(ids)
    with torch.no_grad():
        log_probs = torch.log_softmax(fm(input_ids=ids).logits[0, :-1].double(), dim=-1)
    nll = -log_probs.gather(-1, ids[0, 1:, None])[:, 0]
    assert float(nll[-4:].max()) < 0.5  # 10 → 11 … 12 → 13: contexts followed by one token only
    keys = fm.head_inputs(ids)[0, :-1]
    assert bool((_reference_share(keys, keys[-4:]) > 1 - 1e-9).all())


def test_the_check_reads_the_statistics_so_forgetting_equals_never_learning():
    """A narrow memory that held more pairs than its width (its rows dropped) and forgot a text
    reads as one that learned only the rest: the check comes from G, not from kept rows."""
    text, rest = torch.tensor([[5, 6] * 24]), torch.tensor([[7, 8, 9, 10] * 5])
    fm = _fresh()
    fm.learn(text)
    fm.learn(rest)
    fm.forget(text)
    ref = _fresh()
    ref.learn(rest)
    with torch.no_grad():
        torch.testing.assert_close(fm(input_ids=UNSEEN).logits, ref(input_ids=UNSEEN).logits)


def test_a_varied_memory_has_no_context_check():
    fm = _fresh()
    varied = torch.arange(3, 97).repeat(2)[None]  # 187 pairs over 94 next tokens
    fm.learn(varied)
    assert effective_tokens(fm.output_memory.counts) >= NARROW_SUPPORT
    _gate(fm, fm.head_inputs(UNSEEN)[0])
    assert fm.output_memory._context is None
    fm.reset_projection()
    fm.learn(torch.tensor([[5, 6, 7]]))
    _gate(fm, fm.head_inputs(UNSEEN)[0])
    assert fm.output_memory._context is not None  # narrow: checked
    fm.set_read(fm.read_config.replace(gate=None))  # without a gate: nothing to check
    _gate(fm, fm.head_inputs(UNSEEN)[0])
    assert fm.output_memory._context is None
