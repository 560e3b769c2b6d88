"""Long sequences of calls on one ``FaastClassifier`` (hunt s81_state): a call that raises leaves
the classifier as it was (:mod:`faast.classifier_rollback`), ``logit_scale="auto"`` is found again
after a fixed or logistic temperature, and the dict of the weights ``"balanced"`` fitted is the
same design."""

from __future__ import annotations

import warnings
from unittest import mock

import numpy as np
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from faast import FaastClassifier
from faast.classifier_refine import RefinementMixin
from faast.cli import main
from faast.memory import InverseMemory
from faast.solver import GramStats


def _data(n: int, d: int, seed: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    X = rng.normal(size=(n, d)) + 1.2 * np.eye(classes, d)[y]
    return X, y


def _outputs(clf: FaastClassifier, X: np.ndarray) -> dict[str, object]:
    """What the classifier predicts and holds, to compare bit for bit."""
    return {
        "decision": clf.decision_function(X),
        "proba": clf.predict_proba(X),
        "coef": np.array(clf.coef_),
        "intercept": np.array(clf.intercept_),
        "class_count": np.array(clf.class_count_),
        "logit_scale": clf.logit_scale_,
        "count": clf.memory_.stats.count,
    }


def _assert_same(got: dict[str, object], want: dict[str, object]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:
            assert got[key] == value, key


def _fitted_names(clf: FaastClassifier) -> list[str]:
    return sorted(name for name in vars(clf) if name not in clf.get_params())


# ------------------------------------------------------------------ findings 1 and 2: a failed refit
DESIGN_CHANGES = {
    "random_state": ({"random_features": 24, "random_state": 0}, {"random_state": 1}),
    "normalize_keys": ({}, {"normalize_keys": True}),
    "fit_intercept": ({}, {"fit_intercept": False}),
    "intercept_scaling": ({}, {"intercept_scaling": 3.0}),
}


def _refuse_refit(clf: FaastClassifier, X: np.ndarray, y: np.ndarray, how: str) -> None:
    """A refit that fails part-way: class_embeddings of the wrong shape (refused after the design
    parameters were noted), or Ctrl-C while the statistics are built."""
    if how == "class_embeddings":
        clf.set_params(class_embeddings=np.zeros((len(np.unique(y)) + 2, 3)))
        with pytest.raises(ValueError, match="class_embeddings: expected shape"):
            clf.fit(X, y)
        clf.set_params(class_embeddings=None)
    else:
        with (
            mock.patch.object(InverseMemory, "add", side_effect=KeyboardInterrupt),
            pytest.raises(KeyboardInterrupt),
        ):
            clf.fit(X, y)


@settings(max_examples=16)
@given(
    change=st.sampled_from(sorted(DESIGN_CHANGES)),
    how=st.sampled_from(["class_embeddings", "interrupt"]),
    seed=st.integers(0, 2**16),
)
def test_a_failed_refit_keeps_the_design_the_statistics_were_built_with(change, how, seed):
    """Finding 1: the refused refit had noted its design parameters, so predictions read the old
    statistics through the new design; now they are refused as without the failed refit, and with
    the parameter set back they are those before it, bit for bit."""
    fitted, changed = DESIGN_CHANGES[change]
    X, y = _data(40, 6, seed)
    clf = FaastClassifier(**fitted).fit(X, y)
    before = _outputs(clf, X)
    clf.set_params(**changed)
    _refuse_refit(clf, X, y, how)
    with pytest.raises(ValueError, match=rf"{change}=.*\(fitted with .*set them back, or fit anew"):
        clf.predict(X)
    clf.set_params(**{name: fitted.get(name, FaastClassifier().get_params()[name]) for name in changed})
    _assert_same(_outputs(clf, X), before)


def _fail_after_the_solve(clf: FaastClassifier, X: np.ndarray, y: np.ndarray, how: str) -> None:
    if how == "warning":  # "far from the origin", raised after the solve
        with warnings.catch_warnings(), pytest.raises(UserWarning, match="far from the origin"):
            warnings.simplefilter("error")
            clf.fit(X + 1e3, y)
    elif how == "interrupt_refine":
        with (
            mock.patch.object(RefinementMixin, "_retarget", side_effect=KeyboardInterrupt),
            mock.patch.object(RefinementMixin, "_fit_logistic", side_effect=KeyboardInterrupt),
            pytest.raises(KeyboardInterrupt),
        ):
            clf.fit(X, y)
    else:  # Ctrl-C in the refit's solve
        with (
            mock.patch.object(FaastClassifier, "_solved", side_effect=KeyboardInterrupt),
            pytest.raises(KeyboardInterrupt),
        ):
            clf.fit(X, y)


@settings(max_examples=16)
@given(
    params=st.sampled_from([{"refine": 3}, {"loss": "logistic"}, {"loss": "logistic", "C": 1.0}]),
    how=st.sampled_from(["warning", "interrupt_refine", "interrupt_solve"]),
    seed=st.integers(0, 2**16),
)
def test_a_failed_refit_keeps_the_refined_or_logistic_solution(params, how, seed):
    """Finding 2: the refit's plain solve had dropped the earlier retargeted / logistic weights
    (and cut_, n_iter_, C_), which no one put back: coef_ stayed, the predictions did not."""
    X, y = _data(120, 5, seed)
    clf = FaastClassifier(**params).fit(X, y)
    before = _outputs(clf, X)
    steps = (clf.cut_, clf.n_iter_, clf.C_, clf.retargeted_)
    _fail_after_the_solve(clf, X, y, how)
    _assert_same(_outputs(clf, X), before)
    assert (clf.cut_, clf.n_iter_, clf.C_, clf.retargeted_) == steps


def test_an_interrupted_solve_keeps_the_solve_held():
    """The same rollback guards ``solve``: the memory's cut is put back with ``cut_``."""
    X, y = _data(40, 6, 3)
    clf = FaastClassifier().fit(X, y)
    before = _outputs(clf, X)
    cut, memory_cut = clf.cut_, clf.memory_.cut
    clf.set_params(ridge=5.0, center_features=True)
    with (
        mock.patch.object(FaastClassifier, "_solved", side_effect=KeyboardInterrupt),
        pytest.raises(KeyboardInterrupt),
    ):
        clf.solve()
    assert clf.cut_ == cut and clf.memory_.cut == memory_cut
    assert clf.memory_.stats.center_on_last_key is False
    _assert_same(_outputs(clf, X), before)


# ------------------------------------------------------------------ finding 3: "auto" found again
def _large(seed: int) -> tuple[np.ndarray, np.ndarray]:
    return _data(300, 4, seed)  # beyond 2·D = 10 rows: the temperature's rows are a sample


@settings(max_examples=12)
@given(
    start=st.sampled_from([{"logit_scale": 50.0}, {"logit_scale": 0.5}, {"loss": "logistic"}]),
    then=st.sampled_from(["solve", "forget"]),
    seed=st.integers(0, 2**16),
)
def test_auto_temperature_is_found_again_after_a_fixed_or_logistic_one(start, then, seed):
    """Finding 3: beyond 2·D rows, the fit with a fixed logit_scale (or loss="logistic") kept no
    sample, so switching to "auto" kept the fixed (or logistic) T instead of finding one."""
    X, y = _large(seed)
    clf = FaastClassifier(**start).fit(X, y)
    ref = FaastClassifier().fit(X, y)
    clf.set_params(logit_scale="auto", loss="squared")
    if then == "solve":
        clf.solve()
    else:
        clf.forget(X[:30], y[:30])
        ref.forget(X[:30], y[:30])
    assert clf.logit_scale_ == ref.logit_scale_
    np.testing.assert_array_equal(clf.predict_proba(X), ref.predict_proba(X))


def test_a_fixed_temperature_after_auto_still_holds():
    X, y = _large(1)
    clf = FaastClassifier().fit(X, y)
    clf.set_params(logit_scale=7.0).solve()
    assert clf.logit_scale_ == 7.0


# ------------------------------------------------------------------ finding 4: a refused first partial_fit
def _refused_first(how: str, X: np.ndarray, y: np.ndarray) -> FaastClassifier:
    if how == "class_embeddings":
        clf = FaastClassifier(class_embeddings=np.eye(3))
        with pytest.raises(ValueError, match="class_embeddings: expected shape"):
            clf.partial_fit(X, y, classes=[0, 1])
        return clf.set_params(class_embeddings=None)
    if how == "zero_weights":
        clf = FaastClassifier(class_weight={0: 0.0, 1: 0.0})
        with pytest.raises(ValueError, match="every example weighs 0"):
            clf.partial_fit(X, y, classes=[0, 1])
        return clf.set_params(class_weight=None)
    clf = FaastClassifier()
    with (
        mock.patch.object(InverseMemory, "add", side_effect=KeyboardInterrupt),
        pytest.raises(KeyboardInterrupt),
    ):
        clf.partial_fit(X, y, classes=[0, 1])
    return clf


@settings(max_examples=12)
@given(
    how=st.sampled_from(["class_embeddings", "zero_weights", "interrupt"]),
    classes=st.sampled_from([[0, 1], [0, 1, 2], [-1, 0, 1, 5]]),
    seed=st.integers(0, 2**16),
)
def test_a_refused_first_partial_fit_leaves_the_classifier_unfitted(how, classes, seed):
    """Finding 4: classes_, memory_ and _design_params_ stayed, so the next call failed with an
    AttributeError, or refused other classes, and predict did not say NotFittedError."""
    X, y = _data(20, 4, seed, classes=2)
    clf = _refused_first(how, X, y)
    assert _fitted_names(clf) == []
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.partial_fit(X, y, classes=classes)
    ref = FaastClassifier().partial_fit(X, y, classes=classes)
    np.testing.assert_array_equal(clf.classes_, ref.classes_)
    _assert_same(_outputs(clf, X), _outputs(ref, X))


# ------------------------------------------------------------------ finding 5: a forget that raises
def _zero_rows_data(d: int, zeros: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rest = rng.normal(size=(4, d))
    X = np.vstack([np.zeros((zeros, d)), rest])
    y = np.r_[np.arange(zeros) % 2, [0, 1, 0, 1]]
    return X, y, rest


def _refused_forget(clf: FaastClassifier, rest: np.ndarray, how: str) -> None:
    y_rest = np.array([0, 1, 0, 1])
    if how == "only_zero_keys_left":  # the solve after the subtraction refuses
        with pytest.raises(ValueError, match="every key added so far is zero"):
            clf.forget(rest, y_rest)
    elif how == "interrupt":
        with (
            mock.patch.object(FaastClassifier, "_solved", side_effect=KeyboardInterrupt),
            pytest.raises(KeyboardInterrupt),
        ):
            clf.forget(rest[:2], y_rest[:2])
    elif how == "tau_and_ridge":
        clf.set_params(tau=0.1, ridge=1.0)
        with pytest.raises(ValueError, match="set either tau or ridge"):
            clf.forget(rest[:2], y_rest[:2])
        clf.set_params(tau=None, ridge=None)
    else:  # center_features without the intercept
        clf.set_params(center_features=True)
        with pytest.raises(ValueError, match="center_features=True needs fit_intercept=True"):
            clf.forget(rest[:2], y_rest[:2])
        clf.set_params(center_features=False)


@settings(max_examples=16)
@given(
    how=st.sampled_from(["only_zero_keys_left", "interrupt", "tau_and_ridge", "center"]),
    d=st.integers(2, 6),
    zeros=st.integers(2, 4),
    seed=st.integers(0, 2**16),
)
def test_a_forget_that_raises_changes_nothing(how, d, zeros, seed):
    """Finding 5: the statistics, class_count_ and the record were changed before the solve (and
    the cut) refused, so every later prediction failed and the forget could not be retried."""
    X, y, rest = _zero_rows_data(d, zeros, seed)
    clf = FaastClassifier(fit_intercept=False).fit(X, y)
    before = _outputs(clf, X)
    record = clf._record.digests
    _refused_forget(clf, rest, how)
    _assert_same(_outputs(clf, X), before)
    np.testing.assert_array_equal(clf._record.digests, record)
    # and a forget that can go through gives what it gives on a classifier that never saw the refusal
    clf.forget(rest[:2], y[zeros : zeros + 2])
    ref = FaastClassifier(fit_intercept=False).fit(X, y).forget(rest[:2], y[zeros : zeros + 2])
    _assert_same(_outputs(clf, X), _outputs(ref, X))


def test_a_forget_beyond_the_kept_rows_that_is_interrupted_changes_nothing():
    """Beyond 2·D rows (G held, no rows): the copy the subtraction is made on is dropped."""
    X, y = _data(200, 4, 2)
    clf = FaastClassifier().fit(X, y)
    assert clf.memory_.stats.kept_row_count == 0
    before, stats = _outputs(clf, X), clf.memory_.stats
    with (
        mock.patch.object(FaastClassifier, "_solved", side_effect=KeyboardInterrupt),
        pytest.raises(KeyboardInterrupt),
    ):
        clf.forget(X[:10], y[:10])
    assert clf.memory_.stats is stats
    _assert_same(_outputs(clf, X), before)


# ------------------------------------------------------------------ finding 7: "balanced" to its dict
@settings(max_examples=12)
@given(sizes=st.lists(st.integers(2, 12), min_size=2, max_size=4), seed=st.integers(0, 2**16))
def test_the_dict_of_the_balanced_weights_fitted_is_the_same_design(sizes, seed):
    """Finding 7: the refusal of "balanced" advises dict(zip(clf.classes_, clf.class_weight_)),
    which then got partial_fit, forget and predict refused as a change of design. The statistics
    are the same: partial_fit and forget give what a fit with that dict gives, bit for bit."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(sizes)), sizes)
    X = rng.normal(size=(len(y), 5)) + np.eye(len(sizes), 5)[y]
    clf = FaastClassifier(class_weight="balanced").fit(X, y)
    before = _outputs(clf, X)
    with pytest.raises(ValueError, match=r"dict\(zip\(clf.classes_, clf.class_weight_\)\)"):
        clf.partial_fit(X[:2], y[:2])
    table = dict(zip(clf.classes_, clf.class_weight_, strict=True))
    clf.set_params(class_weight=table)
    _assert_same(_outputs(clf, X), before)
    ref = FaastClassifier(class_weight=table).fit(X, y)
    clf.partial_fit(X[:3], y[:3])
    ref.partial_fit(X[:3], y[:3])
    _assert_same(_outputs(clf, X), _outputs(ref, X))
    clf.forget(X[-2:], y[-2:])
    ref.forget(X[-2:], y[-2:])
    _assert_same(_outputs(clf, X), _outputs(ref, X))
    other = {**table, clf.classes_[0]: table[clf.classes_[0]] + 1.0}
    with pytest.raises(ValueError, match="class_weight=.*fitted with 'balanced'"):
        clf.set_params(class_weight=other).predict(X)


def test_the_cli_refusal_of_balanced_weights_names_a_command(tmp_path, capsys):
    """Finding 7, CLI: `faast classify` takes no dict of weights, so its refusal names the refit."""
    y = np.r_[np.zeros(30, int), np.ones(8, int)]
    X = np.random.default_rng(0).normal(size=(38, 4)) + np.eye(2, 4)[y]
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    data = ["--labels", str(tmp_path / "y.npy"), "--model", str(tmp_path / "m")]
    assert main(["classify", "fit", str(tmp_path / "x.npy"), *data, "--class-weight", "balanced"]) == 0
    for action in ("partial-fit", "forget"):
        capsys.readouterr()
        assert main(["classify", action, str(tmp_path / "x.npy"), *data]) != 0
        err = capsys.readouterr().err
        assert 'not available with class_weight="balanced"' in err
        assert "faast classify fit" in err and "dict(zip" not in err


def test_the_cli_refusal_of_logistic_steps_names_a_command(tmp_path, capsys):
    """As for balanced weights: `faast classify` has no flag for loss="squared" on a saved
    classifier, so its refusal of partial-fit and forget after --loss logistic names the refit."""
    X, y = _data(40, 4, 0)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    data = ["--labels", str(tmp_path / "y.npy"), "--model", str(tmp_path / "m")]
    assert main(["classify", "fit", str(tmp_path / "x.npy"), *data, "--loss", "logistic"]) == 0
    for action in ("partial-fit", "forget"):
        capsys.readouterr()
        assert main(["classify", action, str(tmp_path / "x.npy"), *data]) != 0
        err = capsys.readouterr().err
        assert 'not available with loss="logistic"' in err
        assert "faast classify fit" in err and 'set loss="squared"' not in err


# ------------------------------------------------------------------ the rollback itself
def test_the_fitted_state_is_named():
    """Every attribute the classifier keeps besides its parameters is one fit clears: scikit-learn's
    trailing underscore, or PRIVATE_STATE (an attribute of neither would outlive a refit)."""
    from faast.classifier import PRIVATE_STATE
    from faast.classifier_rollback import is_fitted_name

    X, y = _data(300, 4, 0)
    for params in ({}, {"refine": 2}, {"loss": "logistic"}, {"random_features": 8}):
        clf = FaastClassifier(**params).fit(X, y)
        clf.predict_proba(X)
        if not params:
            clf.partial_fit(X[:5], y[:5])
        odd = [name for name in _fitted_names(clf) if not is_fitted_name(name, PRIVATE_STATE)]
        assert odd == []


def test_a_refit_keeps_what_scikit_learn_set_and_drops_the_rest():
    X, y = _data(30, 4, 0)
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FaastClassifier().set_fit_request(sample_weight=True)
        request = clf._metadata_request
        clf.fit(X, y)
        clf._parent_callback_ctx = context = object()  # as a pipeline leaves it during the fit
        clf.fit(X[:20], y[:20])
        assert clf._metadata_request is request and clf._parent_callback_ctx is context
        assert clf.memory_.stats.count == 20


def test_a_committed_partial_fit_keeps_what_it_learned():
    """Once the statistics held took a batch, in place, an interrupt keeps it learned (class counts
    and record included) rather than putting back counts that no longer describe them."""
    X, y = _data(40, 4, 5)
    clf = FaastClassifier().partial_fit(X[:20], y[:20], classes=[0, 1, 2])
    with (
        mock.patch.object(FaastClassifier, "_calibrate", side_effect=KeyboardInterrupt),
        pytest.raises(KeyboardInterrupt),
    ):
        clf.partial_fit(X[20:], y[20:])
    # no solve() first: the earlier solve was marked stale before the statistics took the batch
    ref = FaastClassifier().partial_fit(X[:20], y[:20], classes=[0, 1, 2]).partial_fit(X[20:], y[20:])
    got, want = _outputs(clf, X), _outputs(ref, X)
    for key in ("proba", "logit_scale"):  # the temperature's sample is the first call's: interrupted
        del got[key], want[key]
    _assert_same(got, want)
    np.testing.assert_array_equal(clf._record.digests, ref._record.digests)


@pytest.mark.parametrize("step", ["_note_learned", "add"])
def test_a_partial_fit_interrupted_before_its_add_changes_nothing(step):
    """The class counts, the record and the stale mark of the solve are set before the statistics
    take the batch, as bindings the rollback puts back: an interrupt up to the add leaves the
    classifier as it was (once it came after them, with coef_ of the solve before and a record
    without the batch, so that forgetting those examples was refused)."""
    from faast.memory import InverseMemory

    X, y = _data(40, 4, 5)
    clf = FaastClassifier().partial_fit(X[:20], y[:20], classes=[0, 1, 2])
    before, record = _outputs(clf, X), clf._record.digests
    target = FaastClassifier if step == "_note_learned" else InverseMemory
    with mock.patch.object(target, step, side_effect=KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
        clf.partial_fit(X[20:], y[20:])
    _assert_same(_outputs(clf, X), before)
    np.testing.assert_array_equal(clf._record.digests, record)
    assert clf.memory_.stats.count == 20


def test_rollback_puts_back_attributes_and_objects():
    from faast.classifier_rollback import Rollback

    class Holder:
        value = 1

    X, y = _data(20, 3, 0)
    clf = FaastClassifier().fit(X, y)
    holder = Holder()
    names = _fitted_names(clf)
    with pytest.raises(RuntimeError), Rollback(clf, objects=((holder, "value"),)):
        clf.classes_ = None
        clf.extra_ = 1
        holder.value = 2
        raise RuntimeError
    assert _fitted_names(clf) == names and clf.classes_ is not None and holder.value == 1
    with Rollback(clf) as rollback:
        clf.extra_ = 1
        rollback.commit()
    assert clf.extra_ == 1
    assert isinstance(clf.memory_.stats, GramStats)


@settings(max_examples=15, deadline=None)
@given(st.integers(30, 120), st.integers(1, 25), st.booleans(), st.integers(0, 2**31 - 1))
def test_forget_beyond_the_kept_rows_finds_the_temperature_of_a_refit(n, forgotten, weighted, seed):
    """Beyond 2·D rows the temperature comes from the fit's sample, which held the examples
    forget removes: T was found with them (1.52 against a refit's 2.12 in the hunt's case). They
    are taken out of the sample by their digests, so while the sample held every row (n ≤ 1,024)
    T and predict_proba are a refit's; an example learned twice and forgotten once stays once."""
    X, y = _data(n, 4, seed % 1000)
    X[-1], y[-1] = X[0], y[0]  # the first example learned twice
    w = np.random.default_rng(seed).uniform(0.5, 2.0, n) if weighted else None
    w_kept = None if w is None else w[forgotten:]
    if w is not None:
        w[-1] = w[0]
    clf = FaastClassifier().fit(X, y, sample_weight=w)
    assert clf.memory_.stats.kept_row_count == 0  # beyond 2·D: the sample, not the rows
    clf.forget(X[:forgotten], y[:forgotten], sample_weight=None if w is None else w[:forgotten])
    ref = FaastClassifier().fit(X[forgotten:], y[forgotten:], sample_weight=w_kept)
    assert clf.logit_scale_ == pytest.approx(ref.logit_scale_, rel=1e-9)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), atol=1e-9)


def test_forgetting_every_sampled_row_keeps_the_sample_and_a_shrunk_one_is_replaced_later():
    """Forgetting the batch the temperature's sample came from left no sample, and T fell to the
    fallback 10 (a refit: 4.46): the sample now stays as it was. A sample that forget shrank kept
    the size it had, so a later partial_fit of fewer rows than that could not replace it: T came
    from a handful of rows (1.74 against a refit's 4.49). It now counts what is left."""
    X, y = _data(1200, 4, 0)
    clf = (
        FaastClassifier().partial_fit(X[:200], y[:200], classes=[0, 1, 2]).partial_fit(X[200:600], y[200:600])
    )
    clf.forget(X[200:600], y[200:600])
    assert clf.logit_scale_ != 10.0 and clf._calibration_sample[0].shape[0] == 400
    clf = FaastClassifier().partial_fit(X[:600], y[:600], classes=[0, 1, 2])
    clf.forget(X[:594], y[:594])
    assert clf._calibration_sample[0].shape[0] == 6 and clf._calibration_rows == 6
    clf.partial_fit(X[600:1100], y[600:1100])
    assert clf._calibration_sample[0].shape[0] == 500
    ref = FaastClassifier().fit(
        np.concatenate([X[594:600], X[600:1100]]), np.concatenate([y[594:600], y[600:1100]])
    )
    assert abs(clf.logit_scale_ - ref.logit_scale_) < 0.2 * ref.logit_scale_
