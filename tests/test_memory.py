"""The three memories behind one interface: add / read / forget / reset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.memory import InverseMemory, KNNMemory, SoftmaxMemory, softmax
from faast.solver import GramStats


def data(n=30, d=8, m=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randn(n, m, generator=gen)


def onehot(labels, classes):
    return F.one_hot(torch.as_tensor(labels), classes).float()


@pytest.mark.parametrize("memory", [InverseMemory(), SoftmaxMemory(), KNNMemory(k=3)])
def test_interface_shapes_reset_and_errors(memory):
    keys, values = data()
    with pytest.raises(ValueError, match="is empty"):
        memory.read(keys)
    memory.add(keys[:10], values[:10]).add(keys[10:], values[10:])
    assert memory.num_pairs == 30
    out = memory.read(keys[:5])
    assert out.shape == (5, 3) and out.dtype == torch.float32
    assert memory.nbytes > 0
    with pytest.raises(ValueError, match="keys: memory holds 8-d keys"):
        memory.add(torch.randn(2, 9), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"queries: expected 8 columns"):
        memory.read(torch.randn(2, 9))
    memory.reset()
    assert memory.num_pairs == 0 and memory.nbytes == 0
    memory.add(torch.randn(4, 5), torch.randn(4, 2))  # new dimensions after reset
    assert memory.read(torch.randn(1, 5)).shape == (1, 2)


def test_inverse_memory_reads_the_solved_fast_weights():
    keys, values = data(n=50, d=10)
    mem = InverseMemory(alpha=1.0, c=1.0).add(keys, values)
    w = GramStats(10, 3).add(keys, values).solve()
    assert torch.allclose(mem.read(keys), keys @ w.T, atol=1e-6)
    assert mem.nbytes == 3 * 10 * 4  # W only, however many pairs


def test_inverse_memory_remove_forgets_exactly():
    keys, values = data(n=60, d=6)
    mem = InverseMemory(tau=1e-3).add(keys, values)
    mem.remove(keys[40:], values[40:])
    ref = InverseMemory(tau=1e-3).add(keys[:40], values[:40])
    assert torch.allclose(mem.read(keys), ref.read(keys), atol=1e-5)


def test_inverse_memory_forget_few_shot_is_exact_and_refuses_pairs_never_added():
    keys, values = data(n=12, d=20)  # n < d: the rows are kept, each forgotten pair is checked
    mem = InverseMemory(cut="auto").add(keys, values)
    mem.forget(keys[:3], values[:3])
    ref = InverseMemory(cut="auto").add(keys[3:], values[3:])
    assert torch.allclose(mem.read(keys), ref.read(keys), atol=1e-5)
    with pytest.raises(ValueError, match="never added"):
        mem.forget(keys[:1], values[:1])
    with pytest.raises(ValueError, match="never added"):
        mem.forget(keys[5:6], values[5:6] + 1)
    assert mem.num_pairs == 9


def test_inverse_memory_recovers_a_linear_map():
    gen = torch.Generator().manual_seed(0)
    w_true = torch.randn(4, 16, generator=gen, dtype=torch.float64)
    keys = torch.randn(200, 16, generator=gen, dtype=torch.float64)
    mem = InverseMemory().add(keys, keys @ w_true.T)
    q = torch.randn(5, 16, generator=gen, dtype=torch.float64)
    assert torch.allclose(mem.read(q), q @ w_true.T, atol=1e-9)


def test_softmax_memory_equals_formula_and_blocks(monkeypatch):
    keys, values = data(n=40)
    q = torch.randn(7, 8)
    mem = SoftmaxMemory(temperature=0.5).add(keys, values)
    ref = torch.softmax(q @ keys.T / 0.5, dim=1) @ values
    assert torch.allclose(mem.read(q), ref, atol=1e-6)
    monkeypatch.setattr(softmax, "_SCORE_BLOCK", 40 * 2)  # two queries per block
    assert torch.allclose(mem.read(q), ref, atol=1e-6)


def test_softmax_memory_temperature_limits():
    keys, values = data(n=20)
    sharp = SoftmaxMemory(temperature=1e-4, normalize=True).add(keys, values)
    assert torch.allclose(sharp.read(keys), values, atol=1e-5)  # each key retrieves its own value
    flat = SoftmaxMemory(temperature=1e6).add(keys, values)
    assert torch.allclose(flat.read(keys[:3]), values.mean(0).expand(3, -1), atol=1e-4)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SoftmaxMemory(temperature=0)


def test_knn_majority_vote_and_tie_break():
    keys = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.1, 0.9]])
    labels = [0, 0, 1, 1, 1]
    mem = KNNMemory(k=3, metric="l2").add(keys, onehot(labels, 2))
    # neighbours of (1, 0): labels 0, 0, 1 → class 0 by majority
    assert torch.equal(mem.read(torch.tensor([[1.0, 0.0]])), onehot([0], 2))
    tie = KNNMemory(k=2, metric="l2").add(keys, onehot(labels, 2))
    # neighbours of (0.85, 0.15): indices 1 (class 0, nearest) and 2 (class 1): tie → nearest wins
    assert torch.equal(tie.read(torch.tensor([[0.86, 0.14]])), onehot([0], 2))
    assert torch.equal(tie.read(torch.tensor([[0.79, 0.21]])), onehot([1], 2))


def test_knn_default_k_follows_the_paper_rule():
    keys, _ = data(n=60)
    mem = KNNMemory().add(keys[:5], onehot([0, 1, 2, 3, 4], 5))
    assert mem.effective_k() == 1  # one shot per class
    mem = KNNMemory().add(keys[:25], onehot(torch.arange(25) % 5, 5))
    assert mem.effective_k() == 5
    mem = KNNMemory().add(keys, onehot(torch.arange(60) % 2, 2))
    assert mem.effective_k() == 10


def test_knn_one_nn_returns_nearest_value_and_mean_mode():
    keys, values = data(n=30)
    mem = KNNMemory(k=1, metric="cosine").add(keys, values)
    assert torch.allclose(mem.read(keys * 3.0), values)  # cosine ignores scale
    mean = KNNMemory(k=30, aggregate="mean").add(keys, values)
    assert torch.allclose(mean.read(keys[:2]), values.mean(0).expand(2, -1), atol=1e-6)
    with pytest.raises(ValueError, match="metric must be"):
        KNNMemory(metric="dot")


STORED = {
    "softmax": lambda: SoftmaxMemory(temperature=0.1),
    "softmax-normalize": lambda: SoftmaxMemory(temperature=0.1, normalize=True),
    "knn-cosine": lambda: KNNMemory(k=3),
    "knn-l2": lambda: KNNMemory(k=3, metric="l2"),
    "knn-mean": lambda: KNNMemory(aggregate="mean"),
}


def _sorted_rows(keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows (keys (n, d), values (n, m)) in lexicographic order of [keys, values]."""
    rows = torch.cat([keys, values], dim=1).numpy()
    order = torch.as_tensor(np.lexsort(rows.T[::-1]))
    return keys[order], values[order]


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(STORED)),
    n=st.integers(2, 40),
    d=st.integers(1, 12),
    m=st.integers(1, 4),
    batches=st.integers(1, 3),
    data_seed=st.integers(0, 10_000),
)
def test_stored_memories_forget_exactly(kind, n, d, m, batches, data_seed):
    """After forgetting a random subset (asked in another order and batch shape, with a repeated
    pair among them), a softmax or k-NN memory holds exactly the other pairs in their order and
    reads as one that was only ever given those."""
    rng = np.random.default_rng(data_seed)
    keys = torch.as_tensor(rng.normal(size=(n, d)), dtype=torch.float32)
    values = torch.as_tensor(np.eye(m)[rng.integers(0, m, n)], dtype=torch.float32)
    keys[-1], values[-1] = keys[0], values[0]  # the same pair added twice
    mem = STORED[kind]()
    for part in np.array_split(np.arange(n), batches):
        mem.add(keys[part], values[part])
    gone = rng.permutation(n)[: int(rng.integers(1, n))]
    mem.forget(keys[gone], values[gone])
    kept = np.setdiff1d(np.arange(n), gone)
    ref = STORED[kind]()
    if kept.size:
        ref.add(keys[kept], values[kept])
    assert mem.num_pairs == kept.size
    if not kept.size:
        return
    held, ref_held = mem.store.tensors(), ref.store.tensors()
    stored_rows = torch.cat(STORED[kind]().add(keys, values).store.tensors(), dim=1)
    ties = torch.unique(stored_rows, dim=0).shape[0] < n - 1  # other equal stored pairs (e.g. d = 1)
    swapped = (0 in gone) != (n - 1 in gone) or ties
    if swapped:
        # equal stored pairs are interchangeable: the oldest copy is removed, which may sit
        # elsewhere than the one the reference skipped; compare as multisets
        held, ref_held = _sorted_rows(*held), _sorted_rows(*ref_held)
    if kind in ("softmax", "knn-l2"):  # keys stored as given: bit for bit
        assert torch.equal(held[0], ref_held[0]) and torch.equal(held[1], ref_held[1])
    else:  # normalised keys may round differently in another batch shape
        torch.testing.assert_close(held[0], ref_held[0], rtol=1e-6, atol=1e-7)
        assert torch.equal(held[1], ref_held[1])
    if swapped and kind.startswith("knn"):
        return  # the order of equal neighbours breaks k-NN ties: reads may differ where keys tie
    queries = torch.as_tensor(rng.normal(size=(5, d)), dtype=torch.float32)
    torch.testing.assert_close(mem.read(queries), ref.read(queries), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(STORED))
def test_stored_memories_refuse_to_forget_what_they_never_held(kind):
    keys, values = data(n=10, d=4)
    mem = STORED[kind]()
    with pytest.raises(ValueError, match="is empty: there is nothing to forget"):
        mem.forget(keys[:1], values[:1])
    mem.add(keys, values)
    before = mem.read(keys).clone()
    with pytest.raises(ValueError, match="were never added"):
        mem.forget(keys[:2], values[:2] + 1.0)  # the keys were added, with other values
    with pytest.raises(ValueError, match="were never added"):
        mem.forget(torch.cat([keys[:1], keys[:1]]), torch.cat([values[:1], values[:1]]))  # held once
    with pytest.raises(ValueError, match="keys: memory holds 4-d keys"):
        mem.forget(torch.randn(1, 5), values[:1])
    assert mem.num_pairs == 10 and torch.equal(mem.read(keys), before)  # nothing was removed
    mem.remove(keys[:1], values[:1])  # the alias InverseMemory also has
    assert mem.num_pairs == 9


def test_memory_parameters_of_the_wrong_kind_are_named():
    from faast.memory import KNNMemory, SoftmaxMemory
    from faast.solver import Cut

    for k in (2.5, "3", 0, True):  # int() read 2.5 as 2 and "3" as 3
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            KNNMemory(k=k)
    with pytest.raises(ValueError, match="temperature must be a number"):
        SoftmaxMemory(temperature="warm")
    with pytest.raises(ValueError, match="alpha given more than once"):
        Cut.parse("alpha=1,alpha=2")


def test_softmax_memory_scores_beyond_float32_are_computed_in_float64():
    keys, values = data(n=20)
    big = keys.float() * 1e19  # q·k near 10³⁸ / temperature: inf in float32
    mem = SoftmaxMemory(temperature=0.5).add(big, values.float())
    out = mem.read(big[:4])
    ref = torch.softmax(big[:4].double() @ big.double().T / 0.5, dim=1) @ values.double()
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.allclose(out.double(), ref, atol=1e-5)
    huge = SoftmaxMemory(temperature=1e-300).add(keys.double() * 1e10, values.double())
    with pytest.raises(ValueError, match="overflow float64"):
        huge.read(keys.double()[:2] * 1e10)


@pytest.mark.parametrize("given", [{"key_dim": 8}, {"value_dim": 3}, {"key_dim": 8, "value_dim": 3}, {}])
def test_reset_keeps_the_dimensions_given_at_construction(given):
    """reset keeps a dimension given at construction, also one given alone (once forgotten: keys
    of another width were refused before any add and accepted after add and reset)."""
    memory = InverseMemory(**given)
    memory.add(torch.randn(4, 8), torch.randn(4, 3)).reset()
    assert (memory.key_dim, memory.value_dim) == (given.get("key_dim"), given.get("value_dim"))
    for name, keys, values in (
        ("key_dim", torch.randn(4, 5), torch.randn(4, 3)),
        ("value_dim", torch.randn(4, 8), torch.randn(4, 2)),
    ):
        if name in given:
            with pytest.raises(ValueError, match="memory holds"):
                memory.add(keys, values)
    assert memory.add(torch.randn(4, 8), torch.randn(4, 3)).num_pairs == 4
