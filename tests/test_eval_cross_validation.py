"""faast.eval.cross_validation and ``faast classify fit --cv``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, cross_val_score

from faast import FaastClassifier
from faast.cli import main
from faast.eval.cross_validation import cross_validate, cross_validate_baselines, describe, describe_baseline


def _data(seed: int = 0, per_class=(12, 9, 6)):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n, name) for name, n in zip(("a", "b", "c"), per_class, strict=True)])
    X = rng.normal(size=(len(y), 5)) + (np.unique(y, return_inverse=True)[1][:, None] == np.arange(5)) * 2.0
    return X, y


def _fit_command(folder, X, y) -> list[str]:
    """``faast classify fit`` of X and y saved in ``folder`` (x.npy, y.npy) into ``folder/m``."""
    np.save(folder / "x.npy", X)
    np.save(folder / "y.npy", y)
    return [
        "classify",
        "fit",
        str(folder / "x.npy"),
        "--labels",
        str(folder / "y.npy"),
        "--model",
        str(folder / "m"),
    ]


def test_cross_validate_equals_scikit_learns_stratified_folds():
    X, y = _data()
    got = cross_validate(FaastClassifier(), X, y, 3, seed=4)
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=4)
    want = cross_val_score(FaastClassifier(), X, y, cv=folds, scoring="accuracy")
    assert got["fold_accuracies"] == pytest.approx(want.tolist(), abs=1e-12)
    assert got["accuracy"] == pytest.approx(want.mean()) and got["std"] == pytest.approx(want.std())
    assert got["majority"] == pytest.approx(12 / 27) and got["folds"] == 3 and got["note"] == ""
    assert describe(got).startswith(
        f"3-fold cross-validation (stratified, seed 4): accuracy {100 * want.mean():.2f} %"
    )


def test_fewer_folds_when_a_class_is_small_and_clear_errors():
    X, y = _data(per_class=(12, 9, 3))
    got = cross_validate(FaastClassifier(), X, y, 5)
    assert got["folds"] == 3 and got["note"] == "3 folds, not 5: class 'c' has only 3 examples"
    assert "(3 folds, not 5: class 'c' has only 3 examples)" in describe(got)
    with pytest.raises(ValueError, match="class 'c' has 1"):
        cross_validate(FaastClassifier(), X[:22], y[:22], 5)
    with pytest.raises(ValueError, match="at least 2 folds"):
        cross_validate(FaastClassifier(), X, y, 1)
    with pytest.raises(ValueError, match="two classes"):
        cross_validate(FaastClassifier(), X[:12], y[:12], 2)


def test_classify_fit_cv_prints_and_keeps_the_cross_validated_accuracy(tmp_path, capsys):
    X, y = _data()
    model = tmp_path / "m"
    base = _fit_command(tmp_path, X, y)
    assert main([*base, "--cv", "3", "--center-features"]) == 0
    printed = capsys.readouterr().out
    want = cross_validate(FaastClassifier(center_features=True), X, y, 3)
    assert describe(want) in printed
    meta = json.loads((model / "classifier.json").read_text())["metadata"]
    assert meta["cross_validation"]["fold_accuracies"] == pytest.approx(want["fold_accuracies"])
    assert meta["source"] == {"input": "features"}
    assert main([*base, "--cv"]) == 0  # the default number of folds
    assert "5-fold cross-validation" in capsys.readouterr().out
    assert main([*base, "--cv", "1"]) == 1
    assert "--cv needs at least 2 folds, got 1" in capsys.readouterr().err
    assert main([*base, "--cv", "3"]) == 0
    more = [
        "classify",
        "partial-fit",
        str(tmp_path / "x.npy"),
        "--labels",
        str(tmp_path / "y.npy"),
        "--model",
        str(model),
    ]
    assert main(more) == 0  # the classifier changed: fit's cross-validation is dropped
    assert "cross_validation" not in json.loads((model / "classifier.json").read_text())["metadata"]
    assert main(base) == 0  # no --cv: nothing kept
    assert "cross_validation" not in json.loads((model / "classifier.json").read_text())["metadata"]


def test_baselines_are_scored_on_the_same_folds_and_kept(tmp_path, capsys):
    from sklearn.linear_model import LogisticRegression, RidgeClassifier

    X, y = _data(seed=3)
    got = cross_validate_baselines(X, y, 3, seed=1)
    assert list(got) == ["RidgeClassifier", "LogisticRegression"]
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=1)
    for name, model in (
        ("RidgeClassifier", RidgeClassifier()),
        ("LogisticRegression", LogisticRegression(max_iter=1000)),
    ):
        want = cross_val_score(model, X, y, cv=folds, scoring="accuracy")
        assert got[name]["fold_accuracies"] == pytest.approx(want.tolist(), abs=1e-12), name
    assert describe_baseline("RidgeClassifier", got["RidgeClassifier"]).startswith(
        f"RidgeClassifier on the same folds: accuracy {100 * got['RidgeClassifier']['accuracy']:.2f} %"
    )
    base = _fit_command(tmp_path, X, y)
    assert main([*base, "--cv", "3", "--baselines"]) == 0
    printed = capsys.readouterr().out
    kept = json.loads((tmp_path / "m" / "classifier.json").read_text())["metadata"]["cross_validation"]
    for name, result in cross_validate_baselines(X, y, 3).items():
        assert describe_baseline(name, result) in printed
        assert kept["baselines"][name]["fold_accuracies"] == pytest.approx(result["fold_accuracies"])
    assert main([*base, "--baselines"]) == 1
    assert "--baselines compares on cross-validation folds: add --cv" in capsys.readouterr().err
