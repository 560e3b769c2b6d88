"""The ``prior`` cut (``Cut.pseudo_pairs``): ridge worth N pseudo-pairs, ρ = N·tr(G)/(n·d), against
a plain float64 ridge solve on random problems of many shapes, on the primal (n ≥ d) and the dual
(n < d, rows kept) routes; its text and dict forms; its errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.memory import InverseMemory
from faast.solver import Cut


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 16),
    m=st.integers(1, 4),
    pairs=st.floats(0.5, 500.0),
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_prior_cut_is_a_ridge_worth_n_pseudo_pairs(n, d, m, pairs, seed, scale):
    g = torch.Generator().manual_seed(seed)
    keys = scale * torch.randn(n, d, generator=g, dtype=torch.float64)
    values = torch.randn(n, m, generator=g, dtype=torch.float64)
    got = InverseMemory(cut=Cut.pseudo_pairs(pairs)).add(keys, values).weight(torch.float64)
    gram = keys.T @ keys
    rho = pairs * torch.trace(gram) / (n * d)
    want = torch.linalg.solve(gram + rho * torch.eye(d, dtype=torch.float64), keys.T @ values).T
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-10 * float(want.abs().max()) + 1e-300)


def test_prior_cut_text_dict_and_errors():
    cut = Cut.parse("prior=576")
    assert cut == Cut.pseudo_pairs(576) and str(cut) == "prior=576"
    assert Cut.from_dict(cut.to_dict()) == cut
    with pytest.raises(ValueError, match="prior \\(pseudo-pairs\\) must be > 0"):
        Cut.parse("prior=0")
    with pytest.raises(ValueError, match="prior takes no other fields"):
        Cut.parse("prior=5,alpha=1")
    with pytest.raises(ValueError, match="prior is only used by the 'prior' cut"):
        Cut("power", prior=3.0)
    # few pairs: strong shrinkage; many pairs: close to least squares
    g = torch.Generator().manual_seed(0)
    keys, values = torch.randn(4000, 6, generator=g, dtype=torch.float64), None
    values = keys @ torch.randn(6, 2, generator=g, dtype=torch.float64)
    many = InverseMemory(cut=cut.pseudo_pairs(60)).add(keys, values).weight(torch.float64)
    few = InverseMemory(cut=cut.pseudo_pairs(60)).add(keys[:6], values[:6]).weight(torch.float64)
    exact = torch.linalg.lstsq(keys, values).solution.T
    assert torch.allclose(many, exact, rtol=0.05) and few.norm() < 0.3 * exact.norm()
