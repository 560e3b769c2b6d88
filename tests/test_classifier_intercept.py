"""FaastClassifier(fit_intercept=True): the constant feature against plain references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge
from sklearn.utils.estimator_checks import parametrize_with_checks

from faast import FaastClassifier
from tests.classifier_data import offset_classes as _data


@parametrize_with_checks(
    [FaastClassifier(fit_intercept=True), FaastClassifier(fit_intercept=True, tau="gcv")]
)
def test_scikit_learn_estimator_checks_with_intercept(estimator, check):
    check(estimator)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(4, 60),
    d=st.integers(1, 30),
    classes=st.integers(2, 4),
    ridge=st.floats(1e-3, 10.0),
    scaling=st.sampled_from([0.5, 1.0, 3.0]),
    seed=st.integers(0, 10_000),
)
def test_intercept_is_ridge_on_the_features_plus_a_constant_column(n, d, classes, ridge, scaling, seed):
    """W (C, d + 1) solves (KᵀK + ρI) W = Kᵀ Y for K = [X, s·1], by numpy, on any shape (n < d too)."""
    X, y = _data(n, d, classes, seed)
    clf = FaastClassifier(ridge=ridge, fit_intercept=True, intercept_scaling=scaling).fit(X, y)
    K = np.hstack([X, np.full((n, 1), scaling)])
    Y = np.eye(classes)[np.searchsorted(clf.classes_, y)]
    W = np.linalg.solve(K.T @ K + ridge * np.eye(d + 1), K.T @ Y).T
    np.testing.assert_allclose(clf.coef_, W[:, :d], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(clf.intercept_, W[:, d] * scaling, rtol=1e-6, atol=1e-8)
    Q = np.random.default_rng(seed + 1).standard_normal((7, d)) + 3.0
    scores = Q @ clf.coef_.T + clf.intercept_
    expected = scores[:, 1] - scores[:, 0] if classes == 2 else scores
    np.testing.assert_allclose(clf.decision_function(Q), expected, rtol=1e-6, atol=1e-8)


def test_a_large_scaling_gives_scikit_learns_unpenalised_intercept():
    """As the constant grows its penalty vanishes: Ridge(fit_intercept=True) on one-hot targets."""
    X, y = _data(200, 6, 3, 0)
    clf = FaastClassifier(ridge=0.5, fit_intercept=True, intercept_scaling=1e4).fit(X, y)
    ref = Ridge(alpha=0.5).fit(X, np.eye(3)[y])
    np.testing.assert_allclose(clf.coef_, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(clf.intercept_, ref.intercept_, atol=1e-6)


def test_without_intercept_the_intercept_is_zero_and_nothing_changes():
    X, y = _data(40, 5, 3, 1)
    plain = FaastClassifier(fit_intercept=False).fit(X, y)
    np.testing.assert_array_equal(plain.intercept_, np.zeros(3))
    assert plain.coef_.shape == (3, 5)
    assert FaastClassifier().fit_intercept  # the default fits one


def test_the_intercept_splits_classes_that_a_line_through_the_origin_cannot():
    """Two classes at x ≈ 10 and x ≈ 12: without a constant, scores w_c·x all grow with x and
    one class wins everywhere; with it, a threshold between them."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 100)
    X = (10.0 + 2.0 * y + 0.3 * rng.standard_normal(200))[:, None]
    without = FaastClassifier(ridge=1e-6, fit_intercept=False).fit(X, y).score(X, y)
    with_intercept = FaastClassifier(ridge=1e-6, fit_intercept=True).fit(X, y).score(X, y)
    assert without == 0.5
    assert with_intercept > 0.95


@pytest.mark.parametrize("kwargs", [{}, {"tau": "auto"}, {"tau": "gcv"}, {"random_features": 12}])
def test_partial_fit_forget_and_save_keep_the_intercept(tmp_path, kwargs):
    X, y = _data(50, 8, 3, 2)
    full = FaastClassifier(fit_intercept=True, **kwargs).fit(X, y)
    streamed = FaastClassifier(fit_intercept=True, **kwargs)
    for part in np.array_split(np.arange(50), 3):
        streamed.partial_fit(X[part], y[part], classes=np.arange(3))
    Q = np.random.default_rng(3).standard_normal((9, 8)) + 3.0
    np.testing.assert_allclose(streamed.decision_function(Q), full.decision_function(Q), rtol=1e-6, atol=1e-9)
    forgot = FaastClassifier(fit_intercept=True, **kwargs).fit(X, y).forget(X[40:], y[40:])
    ref = FaastClassifier(fit_intercept=True, **kwargs).partial_fit(X[:40], y[:40], classes=np.arange(3))
    np.testing.assert_allclose(forgot.decision_function(Q), ref.decision_function(Q), rtol=1e-6, atol=1e-9)
    loaded = FaastClassifier.load(full.save(tmp_path / "clf"))
    assert loaded.fit_intercept and loaded.intercept_scaling == 1.0
    np.testing.assert_array_equal(loaded.decision_function(Q), full.decision_function(Q))
    np.testing.assert_array_equal(loaded.intercept_, full.intercept_)


def test_logistic_loss_with_intercept_saves_and_loads(tmp_path):
    X, y = _data(60, 4, 3, 4)
    clf = FaastClassifier(fit_intercept=True, loss="logistic").fit(X, y)
    loaded = FaastClassifier.load(clf.save(tmp_path / "clf"))
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert np.any(clf.intercept_ != 0)


@pytest.mark.parametrize("scaling", [0.0, -1.0])
def test_a_scaling_that_is_not_positive_is_refused(scaling):
    X, y = _data(10, 3, 2, 0)
    with pytest.raises(ValueError, match="intercept_scaling"):
        FaastClassifier(fit_intercept=True, intercept_scaling=scaling).fit(X, y)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 90),
    d=st.integers(1, 12),
    block=st.integers(1, 40),
    random_features=st.sampled_from([None, 7]),
    weighted=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_the_design_is_built_in_blocks_of_rows_and_fits_as_one(n, d, block, random_features, weighted, seed):
    """The statistics see the design (random features, the constant column) a block of rows at a
    time, never all of X at once, and the fit equals one that builds it whole (to rounding);
    the scores add the constant column's share instead of building it."""
    import faast.classifier_design as module

    X, y = _data(n, d, 3, seed)
    y[: min(n, 3)] = np.arange(min(n, 3))
    weights = np.random.default_rng(seed).uniform(0.5, 2.0, n) if weighted else None
    kwargs = {"fit_intercept": True, "random_features": random_features, "ridge": 0.5}
    whole = FaastClassifier(**kwargs).fit(X, y, sample_weight=weights)
    seen: list[int] = []
    design = FaastClassifier._design

    def spy(self, keys):
        seen.append(keys.shape[0])
        return design(self, keys)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "DESIGN_BLOCK_ROWS", block)
        patch.setattr(FaastClassifier, "_design", spy)
        blocks = FaastClassifier(**kwargs).fit(X, y, sample_weight=weights)
        assert max(seen) <= block and sum(seen) == n  # every row once, in blocks
        seen.clear()
        scores = blocks.decision_function(X)
        assert not seen  # no design built to score
    np.testing.assert_allclose(blocks.coef_, whole.coef_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(blocks.intercept_, whole.intercept_, rtol=1e-9, atol=1e-9)
    features = X if random_features is None else np.maximum(X @ module._projection(d, 7, 0).numpy(), 0)
    expected = features @ blocks.coef_.T + blocks.intercept_
    if expected.shape[1] == 2:
        expected = expected[:, 1] - expected[:, 0]
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-9)


def test_a_block_refused_after_others_leaves_the_classifier_unchanged(monkeypatch):
    """With the design built in blocks, a later block that the statistics refuse (entries that
    would overflow the float64 sums) changes nothing: the blocks are summed apart and merged."""
    import faast.classifier_design as module

    monkeypatch.setattr(module, "DESIGN_BLOCK_ROWS", 16)
    X, y = _data(60, 4, 3, 2)
    clf = FaastClassifier(ridge=0.5).partial_fit(X, y, classes=np.arange(3))
    coef, count, pairs = clf.coef_.copy(), clf.class_count_.copy(), clf.memory_.stats.count
    huge = X.copy()
    huge[-5:] = 1e160  # finite, but their squares overflow: only the last block holds them
    with pytest.raises(ValueError, match="overflow"):
        clf.partial_fit(huge, y)
    np.testing.assert_array_equal(clf.coef_, coef)
    np.testing.assert_array_equal(clf.class_count_, count)
    assert clf.memory_.stats.count == pairs
    again = FaastClassifier(ridge=0.5).partial_fit(X, y, classes=np.arange(3)).partial_fit(X, y)
    np.testing.assert_allclose(clf.partial_fit(X, y).coef_, again.coef_, rtol=1e-12, atol=1e-12)


def test_files_written_before_the_later_parameters_load_with_their_meaning(tmp_path):
    """A classifier file without ``fit_intercept``, ``tol`` or ``class_weight`` in its params (written
    before they existed, when there was no intercept, no tolerance and no class weights) loads as
    such: the default of today (an intercept) is not imposed on it."""
    import json

    X, y = _data(40, 5, 3, 3)
    old = FaastClassifier(fit_intercept=False, tol=0.0).fit(X, y)
    folder = old.save(tmp_path / "old")
    description = folder / "classifier.json"
    info = json.loads(description.read_text())
    for name in ("fit_intercept", "intercept_scaling", "tol", "class_weight", "center_features"):
        info["params"].pop(name)
    description.write_text(json.dumps(info))
    loaded = FaastClassifier.load(folder)
    assert loaded.fit_intercept is False and loaded.tol == 0.0 and loaded.class_weight is None
    assert loaded.center_features is False
    np.testing.assert_array_equal(loaded.decision_function(X), old.decision_function(X))
    assert FaastClassifier.load(FaastClassifier().fit(X, y).save(tmp_path / "new")).fit_intercept


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60),
    d=st.integers(1, 9),
    rows=st.integers(0, 80),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
    fit_intercept=st.booleans(),
    random_features=st.sampled_from([None, 5]),
    gather=st.sampled_from([1, 7, 512]),
    seed=st.integers(0, 10_000),
)
def test_the_design_of_rows_in_another_order_is_those_rows_of_the_design(
    n, d, rows, dtype, fit_intercept, random_features, gather, seed
):
    """``_design(keys, order)`` (the logistic fit's design, kept rows first: gathered through
    NumPy in blocks of ``GATHER_ROWS`` on the CPU) equals the rows ``order`` of ``_design(keys)``,
    exactly, for any order with repeats, dtype and design."""
    import faast.classifier_design as module

    rng = np.random.default_rng(seed)
    keys = torch.as_tensor(rng.standard_normal((n, d))).to(dtype)
    order = torch.as_tensor(rng.integers(0, n, rows))
    clf = FaastClassifier(fit_intercept=fit_intercept, random_features=random_features, intercept_scaling=2.5)
    clf.n_features_in_ = d
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "GATHER_ROWS", gather)
        ours = clf._design(keys, order)
    whole = clf._design(keys)
    assert ours.dtype == whole.dtype and ours.shape == (rows, whole.shape[1])
    torch.testing.assert_close(ours, whole[order], rtol=0, atol=0)


def test_logistic_auto_C_on_its_ordered_design_equals_the_path_on_the_rows_in_order():
    """``loss="logistic"`` with ``C="auto"`` builds its design with the held-out tenth last and
    splits it by views; the penalty, and the weights to rounding, equal those of the same path
    run on the design in the rows' own order (the split's rows copied out) and a final fit on
    all rows from its weights and curvature pairs."""
    from faast.solver.logistic import choose_ridge, fit_logistic

    X, y = _data(400, 12, 3, 5, offset=0.5)
    ours = FaastClassifier(loss="logistic").fit(X, y)
    ref = FaastClassifier(loss="logistic", C=1.0).fit(X, y)  # the same statistics and start
    keys = ref._design(torch.as_tensor(X))
    labels = torch.as_tensor(y)
    factor = ref.memory_.stats.factor()
    start = FaastClassifier().fit(X, y).memory_.weight(torch.float64)
    choice = choose_ridge(keys, labels, None, factor, 5, 0, 3, tolerance=1e-4, start=start)
    assert choice is not None and choice.folds == 1 and choice.memory is not None
    assert ours.C_ == pytest.approx(1.0 / choice.ridge, rel=1e-12)
    memory = choice.memory  # already scaled from the kept rows' weight to all 400
    weight, _ = fit_logistic(
        keys,
        labels,
        None,
        factor,
        choice.ridge,
        3,
        init=choice.weight,
        num_classes=3,
        tolerance=1e-4,
        memory=memory,
    )
    np.testing.assert_allclose(ours.coef_, weight[:, :-1].numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_, weight[:, -1].numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("scale", "lost"), [(1e-8, "features"), (1e8, "intercept"), (1e-300, "features")])
def test_fit_warns_when_features_and_intercept_scaling_are_too_far_apart_for_float64(scale, lost):
    """Entries 10⁸ times smaller (or larger) than the constant column put 10⁻¹⁶ between their
    Gram entries: the smaller side is rounding noise to the eigendecomposition. The fit says so,
    naming the remedy, instead of answering silently."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5)) * scale
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(UserWarning, match=rf"so the {lost} may be lost.*intercept_scaling near"):
        FaastClassifier().fit(X, y)
    if scale < 1e-150:  # squares below float64's range: said, not read as all-zero features
        with pytest.warns(UserWarning, match=r"root-mean-square entry \([1-9][.0-9]*e-30[01]\)"):
            FaastClassifier().fit(X, y)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*intercept_scaling")  # none where they fit: no intercept,
        FaastClassifier(fit_intercept=False).fit(X, y)
        FaastClassifier(intercept_scaling=scale * np.sqrt(5)).fit(X, y)  # or with it scaled
        FaastClassifier().fit(X / scale * 1e-6, y)  # or 10⁻⁶ apart (the fit keeps them)
        FaastClassifier().fit(np.zeros_like(X), y)  # or all-zero features (nothing to lose)


def test_features_far_from_the_origin_are_named_in_a_warning():
    """A common offset far above the features' spread (a column of years, prices) swamps the
    penalised intercept: fit warns and names center_features; not on data near the origin, not with
    center_features=True (which keeps the accuracy the offset costs), not without an intercept."""
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 5))
    y = rng.integers(0, 3, 400)
    X = means[y] + rng.normal(size=(400, 5))
    with pytest.warns(UserWarning, match=r"far from the origin .* pass center_features=True"):
        FaastClassifier().fit(X[:200] + 1e3, y[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = FaastClassifier().fit(X[:200] + 3.0, y[:200])  # ‖μ‖²/Σσ² ≈ 4, as raw tables are
        centred = FaastClassifier(center_features=True).fit(X[:200] + 1e3, y[:200])
        FaastClassifier(fit_intercept=False).fit(X[:200] + 1e3, y[:200])
    assert centred.score(X[200:] + 1e3, y[200:]) == pytest.approx(plain.score(X[200:] + 3.0, y[200:]))


def test_a_refused_fit_leaves_the_earlier_one():
    """As scikit-learn's estimators: a fit refused for its input (NaN features, lengths that
    disagree, NaN labels) keeps the classifier fitted before it, predictions and input width included (the fit
    had cleared it first, and predict then raised NotFittedError)."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 4)), np.arange(30) % 3
    clf = FaastClassifier().fit(X, y)
    before = clf.predict_proba(X)
    bad_X = rng.normal(size=(30, 6))
    bad_X[3, 2] = np.nan
    nan_y = np.full(30, np.nan)
    for args in ((bad_X, y), (rng.normal(size=(29, 6)), y), (rng.normal(size=(30, 6)), nan_y)):
        with pytest.raises(ValueError):
            clf.fit(*args)
        assert clf.n_features_in_ == 4 and np.array_equal(clf.predict_proba(X), before)


def test_partial_fit_classes_and_all_zero_weights_are_named():
    X, y = np.random.default_rng(0).normal(size=(6, 3)), np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"classes must be a non-empty list of labels, got \[\]"):
        FaastClassifier().partial_fit(X, y, classes=[])
    with pytest.raises(ValueError, match=r"classes holds 1 missing label\(s\)"):
        FaastClassifier().partial_fit(X, y, classes=[0, 1, None])
    with pytest.raises(ValueError, match="every example weighs 0"):
        FaastClassifier(class_weight={0: 0, 1: 0}).fit(X, y)
