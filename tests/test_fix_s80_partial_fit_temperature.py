"""A stream of ``partial_fit`` calls solves once, not once per call (hunt: while the rows were kept,
n ≤ 2·D, every call found ``predict_proba``'s temperature, an eigendecomposition, and threw it
away), and its probabilities are those the per-call temperature gave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import faast.solver.spectral as spectral
from faast import FaastClassifier


def _data(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, d)) + y[:, None] * 0.7
    return x, y


def test_a_stream_below_2d_rows_makes_no_eigendecomposition(monkeypatch):
    calls = []
    real = spectral.symmetric_eigh
    monkeypatch.setattr(spectral, "symmetric_eigh", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, y = _data(60, 40, 0)  # 2·D = 82 rows kept
    clf = FaastClassifier()
    for i in range(60):
        clf.partial_fit(x[i : i + 1], y[i : i + 1], classes=[0, 1, 2])
    assert calls == []
    proba = clf.predict_proba(x)
    assert len(calls) >= 1  # the solve and the temperature, on first use
    np.testing.assert_allclose(proba, FaastClassifier().fit(x, y).predict_proba(x), rtol=1e-6, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 7), n=st.integers(12, 40), seed=st.integers(0, 2**31 - 1))
def test_a_stream_crossing_2d_rows_keeps_the_per_call_temperature(batch, n, seed):
    """Against the stream that finds the temperature before every call (what every call did)."""
    x, y = _data(n, 4, seed)  # 2·D = 10 rows kept (4 features and the intercept)
    lazy, eager = FaastClassifier(), FaastClassifier()
    for start in range(0, n, batch):
        part = slice(start, start + batch)
        if start:
            eager.logit_scale_  # noqa: B018 - found now, as each call found it before
        lazy.partial_fit(x[part], y[part], classes=[0, 1, 2])
        eager.partial_fit(x[part], y[part], classes=[0, 1, 2])
    assert lazy.logit_scale_ == pytest.approx(eager.logit_scale_, rel=1e-9)
    np.testing.assert_allclose(lazy.predict_proba(x), eager.predict_proba(x), rtol=1e-9, atol=1e-12)
