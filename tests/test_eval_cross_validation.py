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


def test_small_classes_keep_the_folds_as_scikit_learn_does_and_clear_errors():
    """A class of fewer examples than folds is in fewer test folds (a single example: an error
    where tested), as scikit-learn's StratifiedKFold does (its warning becomes the note); the
    folds shrink only when every class is smaller than them."""
    X, y = _data(per_class=(12, 9, 3))
    for n in (27, 22):  # 'c' of 3 examples, then of 1
        got = cross_validate(FaastClassifier(), X[:n], y[:n], 5)
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
        with pytest.warns(UserWarning, match="least populated"):
            want = cross_val_score(FaastClassifier(), X[:n], y[:n], cv=folds, scoring="accuracy")
        assert got["fold_accuracies"] == pytest.approx(want.tolist(), abs=1e-12) and got["folds"] == 5
    assert got["note"] == (
        "1 class(es) of fewer than 5 examples (e.g. 'c': 1) in fewer test folds; 1 of a single example, "
        "unseen where tested: errors"
    )
    assert "(1 class(es) of fewer than 5 examples" in describe(got)
    few = cross_validate(FaastClassifier(), X[[0, 1, 2, 12, 13, 21]], y[[0, 1, 2, 12, 13, 21]], 5)
    assert few["folds"] == 3 and few["note"].startswith("3 folds, not 5: no class has more than 3 examples; ")
    with pytest.raises(ValueError, match="needs a class of at least 2 examples; every class has 1"):
        cross_validate(FaastClassifier(), X[[0, 12, 21]], y[[0, 12, 21]], 2)
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
