"""``faast.unit_rows.unit_rows`` (the L2 normalisation of cosine reads, ``normalize_keys`` and the
cosine similarity of class scores) against a float64 reference on rows of every magnitude float32
holds: ``F.normalize`` squared float32 entries beyond about 1.8·10¹⁹ to infinity and made the row
zero, and left rows of norm below its eps, 10⁻¹², short of unit length."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

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


@settings(max_examples=200, deadline=None)
@given(x=_rows())
def test_unit_rows_equal_the_float64_normalisation_at_every_magnitude(x):
    got = unit_rows(x)
    x64 = x.double()
    norms = x64.norm(dim=1, keepdim=True)
    want = torch.where(norms > 0, x64 / norms.clamp_min(1e-300), torch.zeros_like(x64))
    assert got.dtype == x.dtype and got.shape == x.shape
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_unit_rows_are_f_normalize_bit_for_bit_where_its_norm_is_finite(dtype):
    """The classifier's record of examples digests normalised keys: rows F.normalize handled are
    kept to its bits (a saved classifier's record must still match them); only the others change."""
    reach = 2 if dtype == torch.float16 else 8  # magnitudes the dtype holds (float16: below 65,504)
    x = (torch.randn(500, 7, dtype=torch.float64) * 10.0 ** torch.randint(-reach, reach, (500, 1))).to(dtype)
    assert torch.equal(unit_rows(x), F.normalize(x, dim=1))
    big = torch.tensor([[3e20, 4e20], [3.0, 4.0]])
    torch.testing.assert_close(unit_rows(big), torch.tensor([[0.6, 0.8], [0.6, 0.8]]))
    assert unit_rows(torch.zeros(3, 0)).shape == (3, 0)
    assert unit_rows(torch.zeros(0, 4)).shape == (0, 4)
    assert torch.isnan(unit_rows(torch.tensor([[1.0, float("inf")]]))).all()
