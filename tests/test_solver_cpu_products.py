"""faast.solver.cpu_products.matmul: the NumPy route equals torch's product on random inputs of
many shapes and layouts, and falls back to torch where NumPy cannot take the tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.solver.cpu_products import matmul


@settings(max_examples=40, deadline=None)
@given(
    p=st.integers(0, 40),
    q=st.integers(0, 40),
    s=st.integers(0, 12),
    transpose_a=st.booleans(),
    transpose_b=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matmul_equals_torch_product(p, q, s, transpose_a, transpose_b, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    a = (
        torch.randn(q, p, generator=g, dtype=dtype).T
        if transpose_a
        else torch.randn(p, q, generator=g, dtype=dtype)
    )
    b = (
        torch.randn(s, q, generator=g, dtype=dtype).T
        if transpose_b
        else torch.randn(q, s, generator=g, dtype=dtype)
    )
    got = matmul(a, b)
    want = (a.double() @ b.double()).to(dtype)
    assert got.shape == (p, s) and got.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * max(1, q))


def test_matmul_result_shares_no_memory_with_inputs():
    a, b = torch.eye(3, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64)
    out = matmul(a, b)
    out += 1
    assert torch.equal(b, torch.ones(3, 2, dtype=torch.float64)) and torch.equal(
        a, torch.eye(3, dtype=torch.float64)
    )


def test_matmul_mixed_dtypes_refused_as_torch_refuses():
    with pytest.raises(RuntimeError):
        matmul(torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float32))


@pytest.mark.parametrize(
    "a, b",
    [
        (torch.ones(2, 3, dtype=torch.int64), torch.ones(3, 2, dtype=torch.int64)),
        (torch.ones(2, 3, dtype=torch.float64, requires_grad=True), torch.ones(3, 2, dtype=torch.float64)),
    ],
)
def test_matmul_falls_back_to_torch(a, b):
    got, want = matmul(a, b), a @ b
    assert torch.equal(got, want) and got.dtype == want.dtype and got.requires_grad == want.requires_grad


def test_matmul_numpy_route_is_numpy_product():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 3))
    assert np.array_equal(matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy(), a @ b)


def test_matmul_of_a_negated_view_is_torch_product():
    """``z.conj().imag`` is a view with the negative bit, which ``.numpy()`` refuses: predict on
    such features raised "Can't call numpy() on Tensor that has negative bit set"."""
    z = torch.complex(torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
    a = z.conj().imag
    assert a.is_neg()
    b = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(matmul(a, b), a.resolve_neg() @ b)
    torch.testing.assert_close(matmul(b.T, a.T), b.T @ a.resolve_neg().T)
