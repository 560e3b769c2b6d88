"""Hunt s84 (loading what an older faast saved): a saved classifier records the level its fit
chose (``cut_level``) and a load predicts with it, whatever the loading faast's rule would choose;
files written before it load as before with a warning (and, from 2026-12-01, one naming the
ridge="auto" default they may have meant); the first classifier layout loads; ``forget`` without
a record of the examples warns in the library, once; the CLI's warning about a CSV's column order
is true of an older CSV fit too."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faast.classifier import FaastClassifier
from faast.classifier_io import load_classifier, save_classifier
from faast.cli import main
from faast.solver.spectral import SpectralFactor

NOT_RECORDED = "does not record the level its fit chose"


def _problem(n_per: int, d: int = 8, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)) * 1.5
    y = np.repeat(np.arange(classes), n_per)
    X = centers[y] + rng.normal(size=(len(y), d))
    Xt = centers[rng.integers(0, classes, 40)] + rng.normal(size=(40, d))
    return X, y, Xt


@pytest.fixture
def other_rule(monkeypatch):
    """Change the data-chosen rules (as a later faast might): leave-one-out, GCV ridge and GCV
    truncation choose another level than they do now. Returns a function that applies it."""
    loo, gcv_ridge, gcv_truncation = (
        SpectralFactor.loo_choice,
        SpectralFactor.gcv_ridge,
        SpectralFactor.gcv_truncation,
    )

    def other_loo(self, *args, **kwargs):
        phi, tau, rho = loo(self, *args, **kwargs)
        if rho is not None:
            return self.ridge_choice(rho * 1e3 + 1.0)
        return self.rank_filter(max(1, int((phi > 0).sum()) // 2)), tau, None

    def other_gcv_truncation(self):
        tau, rank = gcv_truncation(self)
        return tau, max(1, rank // 2)

    def apply() -> None:
        monkeypatch.setattr(SpectralFactor, "loo_choice", other_loo)
        monkeypatch.setattr(
            SpectralFactor, "gcv_ridge", lambda self, grid=None: gcv_ridge(self, grid) * 1e3 + 1
        )
        monkeypatch.setattr(SpectralFactor, "gcv_truncation", other_gcv_truncation)

    return apply


def _strip(folder: Path, *keys: str, params: tuple[str, ...] = ()) -> None:
    """Remove ``keys`` (and ``params``) from a save's classifier.json, as an older faast wrote it."""
    path = folder / "classifier.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    for key in keys:
        info.pop(key, None)
    for name in params:
        info["params"].pop(name, None)
    path.write_text(json.dumps(info), encoding="utf-8")


def _edit_level(folder: Path, level: Any) -> None:
    """Write ``level`` as the ``cut_level`` of a save's classifier.json, as a hand edit would."""
    path = folder / "classifier.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info["cut_level"] = level
    path.write_text(json.dumps(info), encoding="utf-8")


CASES = [
    pytest.param({}, 4, id="default-rows-kept"),
    pytest.param({}, 30, id="default-beyond-2D"),
    pytest.param({}, 1, id="default-one-per-class"),
    pytest.param({"tau": "auto"}, 30, id="tau-auto-beyond-2D"),
    pytest.param({"tau": "gcv"}, 30, id="tau-gcv"),
    pytest.param({"ridge": "gcv"}, 4, id="ridge-gcv"),
    pytest.param({"refine": 2}, 4, id="refine"),
    pytest.param({"refine": 2}, 30, id="refine-beyond-2D"),
    pytest.param({"center_features": True}, 30, id="centred"),
]


# ----------------------------------------------------------------- 1. the level the fit chose
@pytest.mark.parametrize(("kw", "per"), CASES)
def test_a_loaded_classifier_predicts_with_the_level_its_fit_chose_when_the_rule_changes(
    tmp_path, other_rule, kw, per
):
    X, y, Xt = _problem(per)
    clf = FaastClassifier(**kw).fit(X, y)
    save_classifier(clf, tmp_path / "m")
    shutil.copytree(tmp_path / "m", tmp_path / "old")
    _strip(tmp_path / "old", "cut_level")  # as an older faast wrote it
    other_rule()  # the rule of the faast that loads it chooses another level
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file recording the level loads without a word
        loaded, _ = load_classifier(tmp_path / "m")
    assert (loaded.ridge_, loaded.rank_, loaded.tau_) == (clf.ridge_, clf.rank_, clf.tau_)
    assert str(loaded.cut_) == str(clf.cut_)  # the rule, for the next solve
    np.testing.assert_allclose(
        loaded.decision_function(Xt), clf.decision_function(Xt), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(loaded.predict_proba(Xt), clf.predict_proba(Xt), rtol=1e-12, atol=1e-12)
    assert np.array_equal(loaded.predict(Xt), clf.predict(Xt))
    # the level recorded, exact (JSON floats round-trip); saved again, the loaded one records it too
    info = json.loads((tmp_path / "m" / "classifier.json").read_text(encoding="utf-8"))
    level = info["cut_level"]
    assert level == (
        {"ridge": clf.ridge_} if clf.ridge_ is not None else {"rank": clf.rank_, "tau": clf.tau_}
    )
    save_classifier(loaded, tmp_path / "again")
    again = json.loads((tmp_path / "again" / "classifier.json").read_text(encoding="utf-8"))
    assert again["cut_level"] == level and again["cut"] == info["cut"]
    # the same file without the level (an older faast's) chooses again, with the changed rule
    with pytest.warns(UserWarning, match=NOT_RECORDED) as caught:
        old, _ = load_classifier(tmp_path / "old")
    assert sum(NOT_RECORDED in str(w.message) for w in caught) == 1
    assert caught[0].filename == __file__
    assert (old.ridge_, old.rank_) != (clf.ridge_, clf.rank_)  # the patched rule did act


def test_after_loading_partial_fit_forget_and_solve_choose_the_level_by_the_rule_again(tmp_path, other_rule):
    X, y, _ = _problem(30)
    X2, y2, Xt = _problem(5, seed=1)
    clf = FaastClassifier().fit(X, y)
    save_classifier(clf, tmp_path / "m")
    other_rule()
    loaded, _ = load_classifier(tmp_path / "m")
    assert loaded.ridge_ == clf.ridge_
    refit = FaastClassifier().fit(np.concatenate([X, X2]), np.concatenate([y, y2]))  # the new rule
    loaded.partial_fit(X2, y2)
    assert loaded.ridge_ == pytest.approx(refit.ridge_, rel=1e-9)
    np.testing.assert_allclose(
        loaded.decision_function(Xt), refit.decision_function(Xt), rtol=1e-8, atol=1e-10
    )
    loaded.forget(X2, y2)
    fresh = FaastClassifier().fit(X, y)  # the new rule on the examples saved
    assert loaded.ridge_ == pytest.approx(fresh.ridge_, rel=1e-9) and fresh.ridge_ != clf.ridge_
    again, _ = load_classifier(tmp_path / "m")
    assert again.solve().ridge_ == pytest.approx(fresh.ridge_, rel=1e-9)


def test_a_fixed_cut_or_a_logistic_fit_saved_before_the_level_loads_without_the_warning(tmp_path):
    X, y, Xt = _problem(30)
    for name, kw in (
        ("ridge", {"ridge": 0.1}),
        ("power", {"alpha": 1.0}),
        ("logistic", {"loss": "logistic"}),
    ):
        clf = FaastClassifier(**kw).fit(X, y)
        save_classifier(clf, tmp_path / name)
        _strip(tmp_path / name, "cut_level")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded, _ = load_classifier(tmp_path / name)
        np.testing.assert_allclose(
            loaded.decision_function(Xt), clf.decision_function(Xt), rtol=1e-9, atol=1e-9
        )


@pytest.mark.parametrize(
    "level",
    [{"ridge": -1.0}, {"ridge": "auto"}, {"rank": 99, "tau": 0.1}, {"rank": 2}, {"ridge": 1.0, "rank": 2}, 3],
)
def test_a_malformed_level_is_refused_naming_the_field(tmp_path, level):
    X, y, _ = _problem(4)
    save_classifier(FaastClassifier().fit(X, y), tmp_path / "m")
    _edit_level(tmp_path / "m", level)
    with pytest.raises(ValueError, match=r"malformed classifier description \(cut_level: expected"):
        load_classifier(tmp_path / "m")


@pytest.mark.parametrize(
    ("kw", "level", "named"),
    [
        ({}, {"ridge": 0}, "expected"),  # an unpenalised solve, which no rule chooses
        ({}, {"rank": 3, "tau": 0.1}, "a truncation rank, which the cut ridge=auto does not choose"),
        ({"tau": "gcv"}, {"ridge": 0.5}, "a ridge, which the cut gcv does not choose"),
    ],
    ids=["ridge-0", "rank-for-ridge", "ridge-for-gcv"],
)
def test_an_edited_level_the_rule_cannot_have_chosen_is_refused(tmp_path, kw, level, named):
    """Review s84_review2 (1): a hand-edited cut_level of ρ = 0, or of a kind its rule does not
    choose, loaded silently and was used (every score 0, or 2 to 37 of 50 predictions changed)."""
    X, y, _ = _problem(30)
    save_classifier(FaastClassifier(**kw).fit(X, y), tmp_path / "m")
    _edit_level(tmp_path / "m", level)
    with pytest.raises(ValueError, match=rf"\(cut_level: {re.escape(named)}"):
        load_classifier(tmp_path / "m")


def test_the_level_of_a_rule_that_does_not_choose_from_the_data_is_its_own(tmp_path):
    """A fixed ridge gives its level again: an edited cut_level does not override it."""
    X, y, Xt = _problem(30)
    clf = FaastClassifier(ridge=0.1).fit(X, y)
    save_classifier(clf, tmp_path / "m")
    _edit_level(tmp_path / "m", {"ridge": 7.0})
    loaded, _ = load_classifier(tmp_path / "m")
    assert loaded.ridge_ == 0.1
    np.testing.assert_allclose(loaded.decision_function(Xt), clf.decision_function(Xt), rtol=1e-9)


def test_a_level_whose_cut_the_parameters_no_longer_give_is_chosen_again_with_a_warning(tmp_path):
    """An edited file (params.ridge changed by hand): the level recorded belongs to the cut saved,
    not to the one the parameters give, which solves (as before the level was recorded)."""
    X, y, Xt = _problem(30)
    save_classifier(FaastClassifier(ridge=0.1).fit(X, y), tmp_path / "m")
    path = tmp_path / "m" / "classifier.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    info["params"]["ridge"] = 0.5
    path.write_text(json.dumps(info), encoding="utf-8")
    with pytest.warns(
        UserWarning, match=r"records the level \{'ridge': 0.1\} chosen by the cut ridge=0.1, but"
    ):
        clf, _ = load_classifier(tmp_path / "m")
    assert clf.ridge_ == 0.5
    np.testing.assert_allclose(
        clf.decision_function(Xt), FaastClassifier(ridge=0.5).fit(X, y).decision_function(Xt), rtol=1e-9
    )


# ----------------------------------------------------------------- 2. no "cut" (2026-11-30, 12-01)
def test_a_file_without_cut_from_2026_12_01_warns_that_it_may_have_meant_ridge_auto(tmp_path):
    X, y, _ = _problem(30)
    save_classifier(FaastClassifier(fit_intercept=False).fit(X, y), tmp_path / "m")
    shutil.copytree(tmp_path / "m", tmp_path / "before")
    _strip(tmp_path / "m", "cut", "cut_level")  # the layout of 640ce83..a635068 (fit_intercept saved)
    with pytest.warns(UserWarning, match=NOT_RECORDED) as caught:
        clf, _ = load_classifier(tmp_path / "m")
    assert clf.tau == "auto" and clf.ridge is None
    text = " ".join(str(w.message) for w in caught)
    assert 'saved between 05:12 and 05:25 UTC it meant ridge="auto"' in text
    assert 'set_params(tau=None, ridge="auto") and solve()' in text
    # without fit_intercept it was written before 2026-12-01 04:46: tau="auto", said without doubt
    _strip(tmp_path / "before", "cut", "cut_level", params=("fit_intercept", "intercept_scaling"))
    with pytest.warns(UserWarning, match=NOT_RECORDED) as caught:
        clf, _ = load_classifier(tmp_path / "before")
    assert clf.tau == "auto"
    assert not any("05:12" in str(w.message) for w in caught)


# ----------------------------------------------------------------- 3. the first classifier layout
FIRST_PARAMS = ("alpha", "c", "logit_scale", "n0", "normalize_keys", "ridge", "similarity", "tau")
FIRST_KEYS = (
    "class_count", "classes", "classes_kind", "format", "format_version", "input_dtype", "metadata",
    "n_features_in", "params", "prior", "tensors_sha256",
)  # fmt: skip


@pytest.mark.parametrize("kw", [{"alpha": 0.8}, {"ridge": 0.1}], ids=["power", "ridge"])
def test_the_first_classifier_layout_loads_with_the_predictions_it_had(tmp_path, kw):
    """82b5db1 (2026-11-30) wrote no random_features/random_state: refused as malformed before;
    its alpha default 0.8 was saved beside ridge, which ignored it (no warning that it is)."""
    X, y, Xt = _problem(30)
    clf = FaastClassifier(**kw, fit_intercept=False, logit_scale=10.0).fit(X, y)
    save_classifier(clf, tmp_path / "m")
    path = tmp_path / "m" / "classifier.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    first = {key: info[key] for key in FIRST_KEYS}
    first["params"] = {name: info["params"][name] for name in FIRST_PARAMS}
    first["params"]["alpha"] = 0.8
    path.write_text(json.dumps(first), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _ = load_classifier(tmp_path / "m")
    assert loaded.random_features is None and loaded.random_state == 0
    np.testing.assert_array_equal(loaded.decision_function(Xt), clf.decision_function(Xt))
    np.testing.assert_array_equal(loaded.predict_proba(Xt), clf.predict_proba(Xt))


# ----------------------------------------------------------------- 4. forget without a record
def test_forget_without_a_record_beyond_2D_warns_once_at_the_caller(tmp_path):
    X, y, _ = _problem(30)  # 90 examples, D = 9
    clf = FaastClassifier().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the record: each example is checked, no warning
        clf.forget(X[:1], y[:1])
    clf._record = None  # as saved before the record (2026-12-06)
    with pytest.warns(UserWarning, match="cannot be verified") as caught:
        clf.forget(X[1:2], np.array([(y[1] + 1) % 3]))  # a wrong label: accepted, but said
    assert len([w for w in caught if "cannot be verified" in str(w.message)]) == 1
    assert caught[0].filename == __file__
    assert "holds 89 examples" in str(caught[0].message)
    few = FaastClassifier().fit(X[:6], y[:6])  # within 2·D the kept rows check each example
    few._record = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        few.forget(X[:1], y[:1])


def _run(*argv: object) -> int:
    return main(["classify", *map(str, argv)])


def _write_rows(path: Path, rows) -> Path:
    path.write_text("f0,label\n" + "".join(f"{x!r},{c}\n" for x, c in rows), encoding="utf-8")
    return path


def test_partial_fit_and_forget_of_an_old_folder_do_not_warn_of_the_level_predict_does(tmp_path, capsys):
    """Review s84_review2 (4): partial-fit and forget choose the level again by the rule and save
    it, so "predictions may differ from those before saving" was not true of them; predict keeps it."""
    rows = [(float(i) + 0.1 * (i % 3), "a" if i % 2 else "b") for i in range(30)]
    assert _run("fit", _write_rows(tmp_path / "train.csv", rows), "--model", tmp_path / "m") == 0
    _strip(tmp_path / "m", "cut_level")  # as a faast before the level was recorded saved it
    warned = "does not record the level its fit chose"
    for action, rows_given in (("predict", rows[:3]), ("partial-fit", rows[:4]), ("forget", rows[:2])):
        capsys.readouterr()
        given = _write_rows(tmp_path / f"{action}.csv", rows_given)
        more = ["--out", tmp_path / "p.csv"] if action == "predict" else []
        assert _run(action, given, "--model", tmp_path / "m", *more) == 0
        err = " ".join(capsys.readouterr().err.split())
        assert (warned in err) == (action == "predict"), (action, err)
        if action == "partial-fit":
            _strip(tmp_path / "m", "cut_level")  # its save recorded the level: old again for forget


# ----------------------------------------------------------------- 5. a CSV fit without column names
def test_the_column_order_warning_is_true_of_a_folder_an_older_faast_fitted_on_a_csv(tmp_path, capsys):
    rows = "".join(
        f"{i * 0.1!r},{i % 3 * 1.0!r},{(i % 2) * 2.0!r},{'a' if i % 2 else 'b'}\n" for i in range(12)
    )
    (tmp_path / "t.csv").write_text("f0,f1,f2,label\n" + rows, encoding="utf-8")
    assert _run("fit", tmp_path / "t.csv", "--model", tmp_path / "m") == 0
    clf, meta = load_classifier(tmp_path / "m")
    assert meta["source"].get("columns") == ["f0", "f1", "f2"]
    meta["source"].pop("columns")  # as classify fit wrote it before 2026-12-05
    save_classifier(clf, tmp_path / "m", meta)
    capsys.readouterr()
    assert _run("predict", tmp_path / "t.csv", "--model", tmp_path / "m", "--out", tmp_path / "p.csv") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "its feature columns (f0, f1, f2) are taken in the file's order" in err
    assert (
        "it was fitted on a CSV by a faast before 2026-12-05, which did not record them, or on features"
        in err
    )
    assert "was fitted on features without column names (not a CSV)" not in err
