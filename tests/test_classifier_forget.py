"""FaastClassifier.forget equals a refit without the forgotten examples; save/load round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from faast import FaastClassifier
from faast.classifier_io import load_classifier

#: What FaastClassifier.forget warns where nothing verifies the examples it is given (s84).
UNVERIFIED = "cannot be verified"


def _data(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.standard_normal((n, d)) + 2.0 * np.eye(classes, d)[y]
    return X, y


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(12, 60),
    d=st.sampled_from([8, 40]),
    drop=st.integers(1, 5),
    tau=st.sampled_from(["auto", "gcv", None]),
    seed=st.integers(0, 1000),
)
def test_forget_equals_refit_without_those_examples(n, d, drop, tau, seed):
    assume(n <= 2 * d or n - drop > 2 * d)  # rows kept (n ≤ 2d) before and after, or neither
    X, y = _data(n, d, 3, seed)
    rng = np.random.default_rng(seed + 1)
    gone = rng.choice(n, size=drop, replace=False)
    keep = np.setdiff1d(np.arange(n), gone)
    clf = FaastClassifier(tau=tau).fit(X, y).forget(X[gone], y[gone])
    ref = FaastClassifier(tau=tau).partial_fit(X[keep], y[keep], classes=np.arange(3))
    Q = rng.standard_normal((20, d))
    assert clf.rank_ == ref.rank_
    np.testing.assert_allclose(clf.decision_function(Q), ref.decision_function(Q), rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(clf.class_count_, ref.class_count_)


@pytest.mark.parametrize(("cut", "without_rows"), [({}, {"ridge": "gcv"}), ({"tau": "auto"}, {"tau": "gcv"})])
def test_forgetting_back_below_the_kept_rows_limit_uses_gcv(cut, without_rows):
    X, y = _data(20, 8, 3, 5)  # 20 > 2·8: the rows are not kept
    clf = FaastClassifier(**cut).fit(X, y).forget(X[:6], y[:6])
    ref = FaastClassifier(**without_rows).fit(X[6:], y[6:])  # the auto cuts' GCV fallbacks
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-6, atol=1e-9)


def test_forget_with_weights_and_torch_inputs():
    X, y = _data(30, 50, 3, 0)
    w = np.linspace(0.5, 2.0, 30)
    clf = FaastClassifier(tau="auto").fit(torch.from_numpy(X), y, sample_weight=w)
    clf.forget(torch.from_numpy(X[:4]), y[:4], sample_weight=w[:4])
    ref = FaastClassifier(tau="auto").fit(X[4:], y[4:], sample_weight=w[4:])
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="never added"):  # the weight differs from the one learned
        clf.forget(X[4:5], y[4:5], sample_weight=[3.0])


def test_forgetting_what_was_never_learned_is_an_error_and_changes_nothing():
    X, y = _data(30, 50, 3, 0)
    clf = FaastClassifier(tau="auto").fit(X, y)
    before = clf.coef_.copy()
    with pytest.raises(ValueError, match="never added"):  # rows kept (n < d): each pair is checked
        clf.forget(X[:2] + 1.0, y[:2])
    with pytest.raises(ValueError, match="never added"):  # right features, wrong label
        clf.forget(X[:1], (y[:1] + 1) % 3)
    with pytest.raises(ValueError, match="not in classes_"):
        clf.forget(X[:1], [7])
    np.testing.assert_array_equal(clf.coef_, before)
    big = FaastClassifier().fit(*_data(60, 8, 3, 1))  # n > d: only the counts are kept
    with pytest.raises(ValueError, match="only 20 were learned"):
        big.forget(np.zeros((21, 8)), np.zeros(21, dtype=int))
    with pytest.raises(ValueError, match="nothing to predict"):
        big.forget(*_data(60, 8, 3, 1))


def test_save_load_round_trip_then_learn_and_forget(tmp_path):
    X, y = _data(40, 50, 4, 2)
    labels = np.array(["ant", "bee", "cat", "dog"])[y]
    clf = FaastClassifier(tau="auto").fit(X[:30], labels[:30])
    clf.save(tmp_path / "m", metadata={"encoder": "tiny"})
    loaded, meta = load_classifier(tmp_path / "m")
    assert meta == {"encoder": "tiny"}
    Q = np.random.default_rng(0).standard_normal((10, 50))
    np.testing.assert_array_equal(loaded.predict(Q), clf.predict(Q))
    np.testing.assert_allclose(loaded.decision_function(Q), clf.decision_function(Q), atol=1e-10)
    loaded.partial_fit(X[30:], labels[30:]).forget(X[:3], labels[:3])
    ref = FaastClassifier(tau="auto").fit(X[3:], labels[3:])
    np.testing.assert_allclose(loaded.decision_function(Q), ref.decision_function(Q), rtol=1e-6, atol=1e-8)
    info = json.loads((tmp_path / "m" / "classifier.json").read_text())
    assert info["classes"] == ["ant", "bee", "cat", "dog"] and info["params"]["tau"] == "auto"


def test_load_refuses_what_is_not_a_classifier(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "missing")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "classifier.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a saved FaastClassifier"):
        load_classifier(tmp_path / "x")
    with pytest.raises(ValueError, match="callable prior"):
        FaastClassifier(prior=lambda k: k[:, :3]).fit(*_data(20, 3, 3, 0)).save(tmp_path / "y")


def test_random_features_equal_fitting_the_expanded_features_and_survive_save_forget(tmp_path):
    X, y = _data(40, 12, 3, 4)
    clf = FaastClassifier(random_features=64, random_state=3).fit(X, y)
    gen = torch.Generator().manual_seed(3)
    proj = torch.randn(12, 64, generator=gen, dtype=torch.float64) / 12**0.5
    expanded = torch.relu(torch.from_numpy(X) @ proj).numpy()
    ref = FaastClassifier().fit(expanded, y)
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    assert clf.coef_.shape == (3, 64) and clf.n_features_in_ == 12
    Q = np.random.default_rng(1).standard_normal((5, 12))
    clf.save(tmp_path / "rf")
    loaded = FaastClassifier.load(tmp_path / "rf")
    np.testing.assert_allclose(loaded.decision_function(Q), clf.decision_function(Q), atol=1e-10)
    loaded.forget(X[:5], y[:5])
    refit = FaastClassifier(random_features=64, random_state=3).fit(X[5:], y[5:])
    np.testing.assert_allclose(loaded.decision_function(Q), refit.decision_function(Q), rtol=1e-6, atol=1e-8)


def test_a_file_from_before_the_default_cut_changed_keeps_its_cut(tmp_path):
    """Files written without "cut" (all-None cut parameters then meant tau="auto") load as
    tau="auto": with more than 2d examples it differs from today's default, ridge="auto"."""
    X, y = _data(60, 8, 3, 7)  # 60 > 2·8: the auto cuts use their GCV fallbacks
    folder = FaastClassifier().fit(X, y).save(tmp_path / "new")
    info = json.loads((folder / "classifier.json").read_text())
    assert info["cut"] == "ridge=auto"
    del info["cut"]
    (folder / "classifier.json").write_text(json.dumps(info))
    with pytest.warns(UserWarning, match="does not record the level its fit chose"):
        old = load_classifier(folder)[0]
    assert old.tau == "auto" and str(old.cut_) == "auto"
    ref = FaastClassifier(tau="auto").fit(X, y)
    np.testing.assert_allclose(old.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    assert not np.allclose(old.coef_, FaastClassifier().fit(X, y).coef_)


@pytest.mark.parametrize("n", [12, 200])  # rows kept (n ≤ 2·D) and not
def test_examples_of_zero_weight_are_not_counted_and_forgetting_them_changes_nothing(n):
    """class_count_ counted the examples of weight 0 that the statistics leave out, so forgetting
    every example that carried weight passed the "nothing left" check, emptied the statistics and
    then failed, leaving a classifier that could not predict; forgetting a weight-0 example was
    refused while the rows were kept and accepted beyond."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(n, 5)), np.arange(n) % 2
    w = np.ones(n)
    w[:2] = 0.0
    clf = FaastClassifier().fit(X, y, sample_weight=w)
    without = FaastClassifier().fit(X[2:], y[2:])
    np.testing.assert_array_equal(clf.class_count_, without.class_count_)
    before = clf.decision_function(X[:5]).copy()
    with pytest.raises(ValueError, match="forgetting every learned example"):
        clf.forget(X[2:], y[2:])
    np.testing.assert_array_equal(clf.decision_function(X[:5]), before)
    clf.forget(X[:4], y[:4], sample_weight=w[:4])  # two of weight 0: never learned, nothing to undo
    rest = FaastClassifier().fit(X[4:], y[4:])
    np.testing.assert_allclose(
        clf.decision_function(X[:5]), rest.decision_function(X[:5]), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(clf.class_count_, rest.class_count_)


def test_forgetting_beyond_the_kept_rows_refuses_pairs_larger_than_what_was_learned(tmp_path):
    """Beyond 2·D rows the pairs cannot be matched one by one; until 2026-12-06 examples never
    learned were subtracted as long as the class counts allowed, leaving G with a negative diagonal
    that predictions solved with and that a saved copy could no longer load. Pairs whose squares
    exceed G's diagonal are refused now, before anything changes."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 5)), np.arange(30) % 3  # 30 > 2·(5 + 1): no rows kept
    clf = FaastClassifier().fit(X, y)
    before = clf.decision_function(X)
    with pytest.raises(ValueError, match="never learned"):  # the record of examples learned
        clf.forget(X[:10] + 5.0, y[:10])
    clf._record = None  # a classifier saved before the record: the statistics' own check
    with (
        pytest.raises(ValueError, match="never added .key column 0"),
        pytest.warns(UserWarning, match=UNVERIFIED),
    ):
        clf.forget(X[:10] + 5.0, y[:10])
    np.testing.assert_array_equal(clf.decision_function(X), before)
    np.testing.assert_array_equal(clf.class_count_, [10, 10, 10])
    with pytest.warns(UserWarning, match=UNVERIFIED):  # nothing checks each example: said so
        clf.forget(X[:10], y[:10])  # what was learned still goes, in another batch shape
    clf.save(tmp_path / "m")
    ref = FaastClassifier().fit(X[10:], y[10:])
    np.testing.assert_allclose(
        FaastClassifier.load(tmp_path / "m").decision_function(X), ref.decision_function(X), atol=1e-9
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 12),
    m=st.integers(1, 4),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    weighted=st.booleans(),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 10_000),
)
def test_subtracting_what_was_added_is_never_refused_beyond_the_kept_rows(
    n, d, m, dtype, weighted, scale, seed
):
    """The refusal of pairs larger than the statistics hold never refuses pairs that were added,
    whatever the batches they were added and removed in (against a plain reference: a fresh sum of
    the rest)."""
    from faast.solver import GramStats

    gen = torch.Generator().manual_seed(seed)
    keys = (scale * torch.randn(n, d, generator=gen, dtype=torch.float64)).to(dtype)
    values = torch.randn(n, m, generator=gen, dtype=torch.float64).to(dtype)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1 if weighted else None
    stats = GramStats(d, m, dual_max_pairs=0)
    cut = int(torch.randint(1, n + 1, (1,), generator=gen))
    for part in (slice(0, cut), slice(cut, n)):
        stats.add(keys[part], values[part], None if weights is None else weights[part])
    gone = torch.randperm(n, generator=gen)[: int(torch.randint(1, n, (1,), generator=gen))]
    rest = torch.ones(n, dtype=torch.bool)
    rest[gone] = False
    stats.subtract(keys[gone], values[gone], None if weights is None else weights[gone])
    ref = GramStats(d, m, dual_max_pairs=0)
    ref.add(keys[rest], values[rest], None if weights is None else weights[rest])
    big = float(((keys.double() ** 2).sum(0)).max()) * (1.0 if weights is None else 1.1)
    torch.testing.assert_close(stats.gram, ref.gram, rtol=1e-9, atol=1e-9 * big)
