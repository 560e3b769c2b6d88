"""Memories: a refused add changes nothing, forgetting keys that require grad, reads in the queries'
dtype, and ``InverseMemory.weight`` handing out a copy of the cached W."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from faast.memory import InverseMemory, KNNMemory, SoftmaxMemory
from faast.solver import PairBuffer

STORED = {
    "softmax": lambda: SoftmaxMemory(temperature=0.1),
    "softmax-normalize": lambda: SoftmaxMemory(temperature=0.1, normalize=True),
    "knn-cosine": lambda: KNNMemory(k=3),
    "knn-l2": lambda: KNNMemory(k=3, metric="l2"),
    "knn-mean": lambda: KNNMemory(k=3, aggregate="mean"),
}


def pairs(n: int = 20, d: int = 4, m: int = 2, seed: int = 0, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen, dtype=dtype), torch.randn(n, m, generator=gen, dtype=dtype)


# ----------------------------------------------------------------- a refused first add
@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(lambda k, v: (k, v, torch.tensor([1.0, -1.0, 1.0])), id="negative-weight"),
        pytest.param(lambda k, v: (k.double() * 1e-200, v.double(), None), id="keys-underflow"),
    ],
)
def test_refused_first_add_leaves_inverse_memory_empty_and_undimensioned(refused):
    keys, values = pairs(3, 4)
    mem = InverseMemory()
    with pytest.raises(ValueError):
        mem.add(*refused(keys, values))
    assert (mem.key_dim, mem.value_dim, mem.stats, mem.num_pairs) == (None, None, None, 0)
    other_keys, other_values = pairs(3, 5, 3, seed=1)  # other dimensions: the memory holds none
    assert mem.add(other_keys, other_values).num_pairs == 3
    assert (mem.key_dim, mem.value_dim) == (5, 3)
    want = InverseMemory().add(other_keys, other_values).weight(torch.float64)
    torch.testing.assert_close(mem.weight(torch.float64), want, rtol=0, atol=0)


def test_refused_add_keeps_the_dimensions_given_at_construction():
    mem = InverseMemory(key_dim=4, value_dim=2)
    keys, values = pairs(3, 4)
    with pytest.raises(ValueError, match="weights: must be non-negative"):
        mem.add(keys, values, torch.tensor([1.0, -1.0, 1.0]))
    assert (mem.key_dim, mem.value_dim, mem.num_pairs) == (4, 2, 0)
    assert mem.add(keys, values).num_pairs == 3


@pytest.mark.parametrize("make", STORED.values(), ids=STORED.keys())
def test_refused_add_leaves_stored_memories_unchanged(make):
    mem = make()
    keys, values = pairs(3, 4)
    bad = keys.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="keys: contains 1 NaN or Inf"):
        mem.add(bad, values)
    assert (mem.key_dim, mem.value_dim, mem.num_pairs) == (None, None, 0)
    mem.add(keys, values)
    with pytest.raises(TypeError, match="buffer holds torch.float32"):
        mem.add(keys.double(), values.double())
    assert (mem.key_dim, mem.value_dim, mem.num_pairs) == (4, 2, 3)


# ----------------------------------------------------------------- forgetting keys that require grad
MEMORIES = {**STORED, "inverse": InverseMemory}


@pytest.mark.parametrize("make", MEMORIES.values(), ids=MEMORIES.keys())
def test_forget_accepts_keys_and_values_that_require_grad(make):
    keys, values = pairs()
    keys.requires_grad_(True)
    values.requires_grad_(True)
    mem = make().add(keys, values)
    mem.forget(keys[:2], values[:2])
    want = make().add(keys[2:].detach(), values[2:].detach())
    assert mem.num_pairs == 18
    torch.testing.assert_close(mem.read(keys[:5].detach()), want.read(keys[:5].detach()))


def test_pair_buffer_find_matches_rows_that_require_grad():
    keys, values = pairs(5, 3, 2)
    buffer = PairBuffer().append(keys.clone(), values.clone())
    found = buffer.find(keys[[3, 1]].requires_grad_(True), values[[3, 1]].requires_grad_(True))
    assert found.tolist() == [3, 1]


# ----------------------------------------------------------------- reads in the queries' dtype
def softmax_reference(keys, values, queries, temperature, normalize=False):
    """softmax(q Kᵀ / temperature) V (q, m) in float64 over the pairs as stored (keys normalised in
    their own dtype)."""
    if normalize:
        keys, queries = F.normalize(keys, dim=1), F.normalize(queries.double(), dim=1)
    k, v, q = keys.double(), values.double(), queries.double()
    return torch.softmax(q @ k.T / temperature, dim=1) @ v


@pytest.mark.parametrize("key_dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("normalize", [False, True])
def test_softmax_read_scores_wide_and_answers_in_the_queries_dtype(key_dtype, normalize):
    keys, values = pairs(30, 8, 3, dtype=key_dtype)
    queries = pairs(6, 8, seed=2, dtype=torch.float64)[0]
    mem = SoftmaxMemory(temperature=0.05, normalize=normalize).add(keys, values)
    out = mem.read(queries)
    assert out.dtype == torch.float64
    want = softmax_reference(keys, values, queries, 0.05, normalize)
    torch.testing.assert_close(out, want, rtol=1e-9, atol=1e-9)


def test_low_precision_reads_keep_the_low_precision_dtype_but_score_in_float32():
    keys, values = pairs(30, 8, 3, dtype=torch.float16)
    queries = pairs(6, 8, seed=2, dtype=torch.float16)[0]
    out = SoftmaxMemory(temperature=0.05).add(keys, values).read(queries)
    assert out.dtype == torch.float16
    want = softmax_reference(keys, values, queries, 0.05).half()
    torch.testing.assert_close(out, want, rtol=0, atol=1e-3)
    assert KNNMemory(k=3).add(keys, values).read(queries).dtype == torch.float16


def test_softmax_float32_overflow_still_falls_back_to_float64():
    keys, values = pairs(6, 4, 3)
    out = SoftmaxMemory().add(keys * 1e19, values).read(keys[:2] * 1e19)  # q·k/T ≈ 1e40: inf in float32
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    want = softmax_reference(keys * 1e19, values, keys[:2] * 1e19, 0.01).float()
    torch.testing.assert_close(out, want)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("aggregate", ["vote", "mean"])
def test_knn_read_answers_in_the_queries_dtype(metric, aggregate):
    keys = pairs(30, 8, dtype=torch.bfloat16)[0]
    values = torch.eye(3, dtype=torch.bfloat16)[torch.arange(30) % 3]
    queries = keys[:6].double()  # each query is a stored key: its own nearest neighbour
    mem = KNNMemory(k=1, metric=metric, aggregate=aggregate).add(keys, values)
    out = mem.read(queries)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, values[:6].double(), rtol=0, atol=0)


# ----------------------------------------------------------------- InverseMemory.weight is a copy
def test_changing_the_returned_weight_does_not_change_the_memory():
    keys, values = pairs(30, 4, 2)
    queries = pairs(3, 4, seed=3)[0]
    mem = InverseMemory().add(keys, values)
    before = mem.read(queries).clone()
    mem.weight().zero_()
    mem.weight(torch.float64).mul_(0)
    torch.testing.assert_close(mem.read(queries), before, rtol=0, atol=0)
    torch.testing.assert_close(mem.read(queries.double()), queries.double() @ mem.weight(torch.float64).T)
    assert bool(mem.weight().abs().sum() > 0)


def test_hot_paths_read_the_cached_weight_without_a_copy():
    """weight() copies; the reads that run per token or per predict take the cached W itself
    (weight_view), so the LM middle memory's fused out_proj·W cache, keyed on that tensor's
    identity, still hits."""
    from faast.lm import FaastConfig, get_faast_model
    from tests.lm_tiny import random_batch, tiny_model

    mem = InverseMemory().add(*pairs(30, 4, 2))
    assert mem.weight_view(torch.float64) is mem.weight_view(torch.float64)
    assert mem.weight(torch.float64) is not mem.weight(torch.float64)
    model = tiny_model("llama")
    fm = get_faast_model(model, FaastConfig(num_memories=1))
    fm.learn(input_ids=random_batch([9], seed=1)[0])
    middle = fm.middle_memories[0]
    first = middle.fused_weight(torch.float32, torch.device("cpu"))
    assert middle.fused_weight(torch.float32, torch.device("cpu")) is first


@pytest.mark.parametrize("make", STORED.values(), ids=STORED.keys())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_stored_memories_forget_low_precision_pairs(make, dtype):
    """forget on bfloat16 pairs raised a TypeError from inside NumPy (which has no bfloat16); the
    pairs are compared widened to float32, exactly, and forgetting equals never adding them."""
    keys, values = pairs(12, 4, 3, dtype=dtype)
    mem = make().add(keys, values).forget(keys[4:7], values[4:7])
    rest = torch.cat([torch.arange(4), torch.arange(7, 12)])
    want = make().add(keys[rest], values[rest])
    assert mem.num_pairs == 9
    torch.testing.assert_close(mem.read(keys.float()), want.read(keys.float()), rtol=0, atol=0)
    with pytest.raises(ValueError, match="never added"):
        mem.forget(keys[4:5], values[4:5])  # already forgotten
