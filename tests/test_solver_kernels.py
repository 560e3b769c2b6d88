"""The CPU BLAS accumulation path and the torch path against the naive reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.solver import kernels
from faast.solver.stats import GramStats


def run(path: str, keys, values, weights, sign=1.0):
    d, m = keys.shape[1], values.shape[1]
    g = torch.zeros(d, d, dtype=torch.float64)
    b = torch.zeros(d, m, dtype=torch.float64)
    if path == "naive":
        sq = kernels.naive_accumulate(g, b, keys, values, weights, sign)
        return g, b, sq
    if path == "torch":
        sq = kernels.accumulate_torch(g, b, keys, values, weights, sign)
        return g, b, sq
    lower, sq = kernels.accumulate(g, b, keys, values, weights, sign)
    assert lower
    return kernels.symmetrize_lower(g), b, sq


@given(
    st.integers(0, 1200),
    st.integers(1, 40),
    st.integers(1, 9),
    st.booleans(),
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
    st.integers(0, 2**31 - 1),
)
def test_blas_and_torch_paths_equal_naive(n, d, m, weighted, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=gen).to(dtype)
    values = torch.randn(n, m, generator=gen).to(dtype)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) if weighted else None
    g_ref, b_ref, sq_ref = run("naive", keys, values, weights)
    for path in ("blas", "torch"):
        g, b, sq = run(path, keys, values, weights)
        scale = 1.0 + float(g_ref.abs().max())
        assert torch.allclose(g, g_ref, atol=1e-12 * scale, rtol=0)
        assert torch.allclose(b, b_ref, atol=1e-12 * (1.0 + float(b_ref.abs().max())), rtol=0)
        assert sq == pytest.approx(sq_ref, rel=1e-12, abs=1e-12)


def test_chunk_boundaries_and_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(0)
    n = 3 * kernels.CPU_CHUNK_ROWS + 17
    keys = torch.randn(n, 2 * 13, generator=gen)[:, ::2]  # non-contiguous view
    values = torch.randn(4, n, generator=gen).T  # transposed view
    g_ref, b_ref, sq_ref = run("naive", keys, values, None)
    g, b, sq = run("blas", keys, values, None)
    assert torch.allclose(g, g_ref, atol=1e-9) and torch.allclose(b, b_ref, atol=1e-9)
    assert sq == pytest.approx(sq_ref, rel=1e-12)


def test_subtraction_sign():
    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(40, 6, generator=gen), torch.randn(40, 2, generator=gen)
    g, b, _ = run("blas", keys, values, None, sign=-1.0)
    g_ref, b_ref, _ = run("naive", keys, values, None, sign=-1.0)
    assert torch.allclose(g, g_ref) and torch.allclose(b, b_ref)


def test_keys_requiring_grad_are_accepted_without_a_warning():
    """A model's outputs (requiring grad) are accepted as keys, and reading their magnitude
    does not make torch warn about converting them to a Python number."""
    keys = torch.randn(5, 3, requires_grad=True)
    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch warns once per process otherwise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            stats = GramStats(3, 2).add(keys, torch.randn(5, 2))
    finally:
        torch.set_warn_always(before)
    assert stats.count == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_statistics_equal_cpu_statistics():
    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(300, 20, generator=gen), torch.randn(300, 4, generator=gen)
    cpu = GramStats(20, 4).add(keys, values)
    gpu = GramStats(20, 4).add(keys.cuda(), values.cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.gram.cpu(), cpu.gram, atol=1e-10)
    w = gpu.solve(0.01)
    assert w.device.type == "cuda" and w.dtype == torch.float32
    assert torch.allclose(w.cpu(), cpu.solve(0.01), atol=1e-5)


@given(st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_cpu_eigh_path_matches_torch(d, seed):
    from faast.solver.spectral import symmetric_eigh

    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d + 3, d, generator=gen, dtype=torch.float64)
    gram = a.T @ a
    lam, vec = symmetric_eigh(gram)
    ref = torch.linalg.eigvalsh(gram)
    assert torch.allclose(lam, ref, atol=1e-10 * float(ref.abs().max()))
    assert torch.allclose(vec @ torch.diag(lam) @ vec.T, gram, atol=1e-10 * float(ref.abs().max()))


@settings(max_examples=12, deadline=None)
@given(st.sampled_from([1, 7, 255, 256, 257, 300]), st.booleans(), st.integers(0, 2**31 - 1))
def test_eigh_reads_one_triangle_on_both_sides_of_the_size_switch(d, lower, seed):
    """Both sides of the size switch (one BLAS thread up to 256 rows, the BLAS's own beyond) read
    only the requested triangle, like the dual route's dsyrk output whose other triangle is left
    unwritten."""
    from faast.solver.spectral import symmetric_eigh

    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d + 2, d))
    gram = a.T @ a
    noise = rng.normal(size=(d, d))
    if lower:  # the requested triangle holds G, the other one garbage
        half = np.tril(gram) + np.triu(noise, 1)
    else:
        half = np.triu(gram) + np.tril(noise, -1)
    half = np.asfortranarray(half)
    lam, vec = symmetric_eigh(half, lower=lower)
    ref = np.linalg.eigvalsh(gram)
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(lam.numpy(), ref, atol=1e-10 * scale)
    np.testing.assert_allclose((vec.numpy() * lam.numpy()) @ vec.numpy().T, gram, atol=1e-10 * scale)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2 * kernels.CPU_CHUNK_ROWS + 50),
    st.integers(1, 24),
    st.integers(kernels.SPARSE_ROWS_MIN_COLUMNS - 2, kernels.SPARSE_ROWS_MIN_COLUMNS + 70),
    st.booleans(),
    st.sampled_from(["one-hot", "scaled", "with zero rows", "one dense row"]),
    st.sampled_from([1.0, -1.0]),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 2**31 - 1),
)
def test_rows_with_one_value_each_sum_per_column_as_the_product_does(
    n, d, m, weighted, kind, sign, dtype, seed
):
    """Many value columns whose rows hold at most one non-zero (one-hot labels: the per-column
    sums of the CPU path) give the statistics of the naive reference, as do chunks with one dense
    row among them (dgemm), on either side of the column threshold and of a chunk boundary."""
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=gen).to(dtype)
    column = torch.randint(0, m, (n,), generator=gen)
    values = torch.zeros(n, m)
    values[torch.arange(n), column] = 1.0
    if kind == "scaled":
        values *= torch.randn(n, 1, generator=gen)
    elif kind == "with zero rows":
        values[torch.rand(n, generator=gen) < 0.3] = 0.0
    elif kind == "one dense row" and n:
        values[int(torch.randint(0, n, (1,), generator=gen))] = torch.randn(m, generator=gen)
    values = values.to(dtype)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) if weighted else None
    g_ref, b_ref, sq_ref = run("naive", keys, values, weights, sign)
    g, b, sq = run("blas", keys, values, weights, sign)
    assert torch.allclose(g, g_ref, atol=1e-12 * (1.0 + float(g_ref.abs().max())), rtol=0)
    assert torch.allclose(b, b_ref, atol=1e-12 * (1.0 + float(b_ref.abs().max())), rtol=0)
    assert sq == pytest.approx(sq_ref, rel=1e-12, abs=1e-12)


def test_one_hot_rows_skip_the_product_with_many_columns(monkeypatch):
    """The per-column sums replace dgemm for one-hot chunks from SPARSE_ROWS_MIN_COLUMNS columns
    on, and only there (below, B keeps dgemm's rounding)."""
    calls = []
    real = kernels.blas.dgemm
    monkeypatch.setattr(kernels.blas, "dgemm", lambda *a, **k: calls.append(1) or real(*a, **k))
    for m, expected in ((kernels.SPARSE_ROWS_MIN_COLUMNS - 1, 1), (kernels.SPARSE_ROWS_MIN_COLUMNS, 0)):
        calls.clear()
        values = torch.nn.functional.one_hot(torch.arange(50) % m, m).to(torch.float32)
        run("blas", torch.randn(50, 8), values, None)
        assert len(calls) == expected
