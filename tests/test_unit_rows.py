"""``faast.unit_rows.unit_rows`` (the L2 normalisation of cosine reads, ``normalize_keys`` and the
cosine similarity of class scores) against a float64 reference on rows of every magnitude float32
holds: ``F.normalize`` squared float32 entries beyond about 1.8·10¹⁹ to infinity and made the row
zero, and left rows of norm below its eps, 10⁻¹², short of unit length."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faast.unit_rows as unit_rows_module
from faast.unit_rows import unit_rows


@st.composite
def _rows(draw: st.DrawFn) -> torch.Tensor:
    """(n, d) float32 rows, each of one random magnitude between 10⁻³⁰ and 10³⁰, some zero."""
    n, d = draw(st.integers(0, 6)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * 10.0 ** rng.uniform(-30, 30, size=(n, 1))
    x[rng.random(n) < 0.2] = 0.0
    return torch.from_numpy(x).to(torch.float32)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=_rows(), block=st.sampled_from([1, 5, 1 << 20]))
def test_unit_rows_equal_the_float64_normalisation_at_every_magnitude(monkeypatch, x, block):
    monkeypatch.setattr(unit_rows_module, "_BLOCK_VALUES", block)  # rows in blocks of 1 and more
    got = unit_rows(x)
    x64 = x.double()
    norms = x64.norm(dim=1, keepdim=True)
    want = torch.where(norms > 0, x64 / norms.clamp_min(1e-300), torch.zeros_like(x64))
    assert got.dtype == x.dtype and got.shape == x.shape
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


def test_unit_rows_equal_f_normalize_where_its_squares_are_finite():
    x = torch.randn(50, 7, dtype=torch.float64) * 3
    torch.testing.assert_close(unit_rows(x), F.normalize(x, dim=1), rtol=1e-15, atol=1e-15)
    assert unit_rows(torch.zeros(3, 0)).shape == (3, 0)
    assert unit_rows(torch.zeros(0, 4)).shape == (0, 4)
    assert torch.isnan(unit_rows(torch.tensor([[1.0, float("inf")]]))).all()
