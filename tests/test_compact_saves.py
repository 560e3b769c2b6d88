"""Saves of statistics whose rows stand for G: while every pair's row is kept and they are fewer
than the keys' width, a save writes the rows and the scalar sums, not the d × d Gram matrix (a
classifier of 20 examples of 50,000 features wrote 20 GB before, and was killed for memory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from faast.classifier import FaastClassifier
from faast.solver import GramStats


def _tensor_names(path) -> set[str]:
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def _wide(n: int = 20, d: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), np.arange(n) % 3


def test_a_wide_classifier_saves_its_rows_not_a_gram_matrix(tmp_path):
    X, y = _wide()
    clf = FaastClassifier().fit(X, y)
    folder = clf.save(tmp_path / "model")
    tensors = folder / "classifier.safetensors"
    names = _tensor_names(tensors)
    assert "gram" not in names and "cross" not in names
    assert {"rows_keys", "rows_values"} <= names
    # the rows (20 × 6,001 float64) and little else: far below G's 6,001² × 8 bytes = 288 MB
    assert tensors.stat().st_size < 3 * 20 * 6001 * 8
    assert clf.memory_.stats._gram is None  # saving formed no Gram matrix


def test_a_loaded_wide_classifier_predicts_and_learns_as_the_one_saved(tmp_path):
    X, y = _wide(seed=1)
    clf = FaastClassifier().fit(X[:15], y[:15])
    loaded = FaastClassifier.load(clf.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.decision_function(X), clf.decision_function(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X[15:], y[15:])
    loaded.partial_fit(X[15:], y[15:])
    np.testing.assert_allclose(loaded.decision_function(X), clf.decision_function(X), rtol=1e-10, atol=1e-12)
    assert loaded.ridge_ == pytest.approx(clf.ridge_, rel=1e-9)
    clf.forget(X[:2], y[:2])
    loaded.forget(X[:2], y[:2])  # the rows are kept: each forgotten pair is matched
    np.testing.assert_allclose(loaded.decision_function(X), clf.decision_function(X), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="never"):
        loaded.forget(X[:1] + 1.0, y[:1])


def test_a_classifier_of_more_examples_than_features_still_saves_g(tmp_path):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(40, 8)), np.arange(40) % 2
    folder = FaastClassifier().fit(X, y).save(tmp_path / "model")
    assert {"gram", "cross"} <= _tensor_names(folder / "classifier.safetensors")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 30),
    d=st.integers(2, 24),
    m=st.integers(1, 4),
    weighted=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_a_saved_state_restores_the_same_statistics(n, d, m, weighted, seed):
    """Any shape: the state a save writes (rows only while n < d, else G and B) restores G, B, the
    sums and the kept rows of the statistics it came from."""
    gen = torch.Generator().manual_seed(seed)
    keys = torch.randn(n, d, generator=gen, dtype=torch.float64)
    values = torch.randn(n, m, generator=gen, dtype=torch.float64)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5 if weighted else None
    stats = GramStats(d, m, dual_max_pairs=2 * d)
    stats.add(keys, values, weights)
    state, rows = stats.saved_state()
    assert ("gram" in state) == (n >= d)
    copy = GramStats(d, m, dual_max_pairs=2 * d)
    copy.load_state_dict(state, rows=rows)
    torch.testing.assert_close(copy.gram, stats.gram, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(copy.cross, stats.cross, rtol=1e-12, atol=1e-12)
    for index in (0, d - 1):
        torch.testing.assert_close(copy.cross_row(index), stats.cross[index], rtol=1e-12, atol=1e-12)
    assert (copy.count, copy.weight_sum, copy.value_sq_sum) == (
        stats.count,
        stats.weight_sum,
        stats.value_sq_sum,
    )
    assert copy.kept_row_count == stats.kept_row_count


def test_cross_row_reads_b_without_forming_g():
    gen = torch.Generator().manual_seed(3)
    keys, values = torch.randn(5, 40, generator=gen), torch.randn(5, 3, generator=gen)
    stats = GramStats(40, 3)
    stats.add(keys, values)
    row = stats.cross_row(-1)
    assert stats._gram is None
    torch.testing.assert_close(row, (keys.double()[:, -1] @ values.double()))


def test_a_statistics_file_of_few_wide_pairs_holds_no_gram(tmp_path):
    gen = torch.Generator().manual_seed(4)
    keys, values = torch.randn(6, 300, generator=gen), torch.randn(6, 2, generator=gen)
    stats = GramStats(300, 2)
    stats.add(keys, values)
    path = tmp_path / "stats.safetensors"
    stats.save(path)
    assert "gram" not in _tensor_names(path)
    loaded = GramStats.load(path)
    copy = loaded.copy()  # loading, copying and moving keep G unformed
    copy.to("cpu")
    assert loaded._gram is None and copy._gram is None and copy.kept_row_count == 6
    torch.testing.assert_close(copy.gram, stats.gram, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loaded.cross, stats.cross, rtol=1e-12, atol=1e-12)


def test_damaged_rows_only_states_are_refused():
    gen = torch.Generator().manual_seed(5)
    stats = GramStats(10, 2)
    stats.add(torch.randn(4, 10, generator=gen), torch.randn(4, 2, generator=gen))
    state, rows = stats.saved_state()
    target = GramStats(10, 2)
    with pytest.raises(ValueError, match="missing"):
        target.load_state_dict(state)  # no rows, no G: nothing to solve with
    with pytest.raises(ValueError, match="kept rows"):
        target.load_state_dict(state, rows=(rows[0][:3], rows[1][:3]))
    too_many = dict(state, count=torch.tensor(10))
    with pytest.raises(ValueError, match="cannot stand for it"):
        target.load_state_dict(too_many, rows=rows)
    assert target.count == 0  # every refusal left it as it was


def test_a_rows_only_state_takes_its_value_sum_from_the_rows():
    """The saved sum carries the rounding of pairs added and removed since: a pair of weight 10¹⁷
    forgotten beside one of weight 1 leaves it 0 (1e17 + 1 − 1e17 in float64); the rows say 1."""
    stats = GramStats(4, 1)
    keys = torch.eye(4, dtype=torch.float64)[:2]
    values = torch.ones(2, 1, dtype=torch.float64)
    stats.add(keys, values, torch.tensor([1e17, 1.0], dtype=torch.float64))
    stats.subtract(keys[:1], values[:1], torch.tensor([1e17], dtype=torch.float64))
    state, rows = stats.saved_state()
    loaded = GramStats(4, 1)
    loaded.load_state_dict(state, rows=rows)
    assert loaded.value_sq_sum == 1.0 and loaded.count == 1
