"""``faast classify``: image folders (tiny pixel encoder) and feature files, end to end."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from faast import FaastClassifier
from faast.classifier_io import load_classifier
from faast.cli import main

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


def _image_folder(root, per_class: int, seed: int, classes=COLOURS):
    rng = np.random.default_rng(seed)
    for name, rgb in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (12, 10, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{seed}-{i}.png")
    return root


def _run(*argv) -> int:
    return main(["classify", *map(str, argv)])


def _features_files(tmp_path, X, y):
    """X and y saved as tmp_path/x.npy and y.npy: the features file and its --labels arguments."""
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", ["--labels", tmp_path / "y.npy"]


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_image_folder_fit_predict_partial_fit_forget(tmp_path, capsys):
    train = _image_folder(tmp_path / "train", 4, 0)
    more = _image_folder(tmp_path / "more", 2, 1)
    test = _image_folder(tmp_path / "test", 3, 2)
    cache = tmp_path / "cache"
    common = ["--cache-dir", cache]
    model = tmp_path / "model"
    assert _run("fit", train, "--model", model, "--encoder", "pixels", "--resolution", 4, *common) == 0
    assert "fitted on 12 examples" in capsys.readouterr().out
    assert any((cache / "features").rglob("*.safetensors"))  # the feature cache was used
    assert _run("predict", test, "--model", model, "--out", tmp_path / "p.csv", "--proba", *common) == 0
    rows = _read_csv(tmp_path / "p.csv")
    assert len(rows) == 9 and set(rows[0]) == {"id", "predicted", "label", "p_blue", "p_green", "p_red"}
    assert rows[0]["id"] == "blue/2-0.png"
    assert sum(r["predicted"] == r["label"] for r in rows) >= 8  # colours are easy
    assert _run("partial-fit", more, "--model", model, *common) == 0
    both = _image_folder(tmp_path / "both", 4, 0)
    _image_folder(both, 2, 1)
    ref = tmp_path / "ref"
    assert _run("fit", both, "--model", ref, "--encoder", "pixels", "--resolution", 4, *common) == 0
    a, b = load_classifier(model)[0], load_classifier(ref)[0]
    assert np.array_equal(a.class_count_, b.class_count_)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-9)  # order of the rows aside
    assert _run("forget", more, "--model", model, *common) == 0
    again = load_classifier(model)[0]
    assert (
        _run("fit", train, "--model", tmp_path / "first", "--encoder", "pixels", "--resolution", 4, *common)
        == 0
    )
    first = load_classifier(tmp_path / "first")[0]
    np.testing.assert_allclose(again.coef_, first.coef_, rtol=1e-6, atol=1e-9)
    assert _run("forget", more, "--model", model, *common) == 1  # already forgotten
    assert "never added" in capsys.readouterr().err


def test_unlabelled_flat_folder_and_errors(tmp_path, capsys):
    train = _image_folder(tmp_path / "train", 3, 0)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.full((5, 5, 3), 200, np.uint8)).save(flat / "a.png")
    model = tmp_path / "m"
    common = ["--no-feature-cache"]
    assert _run("fit", train, "--model", model, "--encoder", "pixels", "--resolution", 3, *common) == 0
    assert _run("predict", flat, "--model", model, "--out", tmp_path / "p.csv", *common) == 0
    assert [r["id"] for r in _read_csv(tmp_path / "p.csv")] == ["a.png"]
    capsys.readouterr()
    assert _run("fit", flat, "--model", tmp_path / "x", "--encoder", "pixels", *common) == 1
    assert "no labels" in capsys.readouterr().err
    other = _image_folder(tmp_path / "other", 1, 3, {"purple": (120, 0, 120)})
    assert _run("partial-fit", other, "--model", model, *common) == 1
    assert "not among the classifier's classes" in capsys.readouterr().err
    assert _run("fit", train, "--model", tmp_path / "y", "--encoder", "pixels", "--device", "cuda:999") == 1
    assert "device='cuda:999'" in capsys.readouterr().err  # named, not torch's assertion
    np.save(tmp_path / "f.npy", np.zeros((2, 27), np.float32))
    assert _run("predict", tmp_path / "f.npy", "--model", model, "--out", tmp_path / "q.csv") == 1
    assert "fitted on an image folder (pixels), not on a features file" in capsys.readouterr().err


def test_feature_files_csv_npy_safetensors(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    X = rng.normal(size=(30, 6)) + 3 * np.eye(3, 6)[y]
    names = np.array(["a", "b", "c"])[y]
    with open(tmp_path / "train.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["name", *[f"f{i}" for i in range(6)], "kind"])
        for i in range(30):
            out.writerow([f"row{i}", *X[i], names[i]])
    model = tmp_path / "m"
    assert (
        _run(
            "fit",
            tmp_path / "train.csv",
            "--label-column",
            "kind",
            "--id-column",
            "name",
            "--model",
            model,
            "--cut",
            "gcv",
        )
        == 0
    )
    ref = FaastClassifier(tau="gcv").fit(X, names)
    np.testing.assert_allclose(load_classifier(model)[0].coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    np.save(tmp_path / "q.npy", X[:5])
    given = ["c", "c", "c", "a", "b"]  # some wrong, so the scores differ from 100 % and each other
    (tmp_path / "q.txt").write_text("\n".join(given) + "\n")
    assert (
        _run(
            "predict",
            tmp_path / "q.npy",
            "--labels",
            tmp_path / "q.txt",
            "--model",
            model,
            "--out",
            tmp_path / "p.csv",
        )
        == 0
    )
    rows = _read_csv(tmp_path / "p.csv")
    assert [r["predicted"] for r in rows] == ref.predict(X[:5]).tolist()
    from sklearn.metrics import balanced_accuracy_score, f1_score

    predicted = ref.predict(X[:5]).tolist()
    out = capsys.readouterr().out
    accuracy = np.mean(np.array(predicted) == np.array(given))
    balanced = balanced_accuracy_score(given, predicted)
    macro_f1 = f1_score(given, predicted, average="macro")
    assert len({accuracy, balanced, macro_f1}) == 3 and 0 < accuracy < 1, (predicted, given)
    assert (
        f"accuracy {100 * accuracy:.2f} %, balanced accuracy {100 * balanced:.2f} %, "
        f"macro-F1 {100 * macro_f1:.2f} % on the 5 with a known class" in out
    )
    save_file(
        {"features": torch.from_numpy(X[:6]), "labels": torch.from_numpy(y[:6])}, tmp_path / "s.safetensors"
    )
    assert _run("fit", tmp_path / "s.safetensors", "--model", tmp_path / "m2") == 0
    assert load_classifier(tmp_path / "m2")[0].classes_.tolist() == [0, 1, 2]
    assert _run("fit", tmp_path / "s.safetensors", "--model", tmp_path / "rf", "--random-features", 16) == 0
    rf = load_classifier(tmp_path / "rf")[0]
    ref_rf = FaastClassifier(random_features=16).fit(X[:6], y[:6])
    assert rf.coef_.shape == (3, 16)
    np.testing.assert_allclose(rf.coef_, ref_rf.coef_, rtol=1e-6, atol=1e-9)
    logistic = ("--loss", "logistic", "--C")
    assert _run("fit", tmp_path / "s.safetensors", "--model", tmp_path / "lg", *logistic, 2) == 0
    lg = load_classifier(tmp_path / "lg")[0]
    ref_lg = FaastClassifier(loss="logistic", C=2.0).fit(X[:6], y[:6])
    assert lg.loss == "logistic" and lg.C_ == 2.0
    np.testing.assert_allclose(lg.coef_, ref_lg.coef_, rtol=1e-6, atol=1e-9)
    assert _run("partial-fit", tmp_path / "s.safetensors", "--model", tmp_path / "lg") == 1
    assert 'loss="logistic"' in capsys.readouterr().err
    assert _run("fit", tmp_path / "s.safetensors", "--model", tmp_path / "lg2", *logistic, "-1") == 1
    assert "--C: expected a positive number or auto, got '-1'" in capsys.readouterr().err
    assert _run("fit", tmp_path / "s.safetensors", "--model", tmp_path / "t", "--logit-scale", 4) == 0
    fixed = load_classifier(tmp_path / "t")[0]
    assert fixed.logit_scale == 4.0 and fixed.logit_scale_ == 4.0
    assert load_classifier(tmp_path / "m2")[0].logit_scale == "auto"  # the default
    assert _run("fit", tmp_path / "s.safetensors", "--model", tmp_path / "t2", "--logit-scale", "hot") == 1
    assert "--logit-scale: expected a positive number or auto, got 'hot'" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("f0,label\nx,1\n")
    assert _run("fit", tmp_path / "bad.csv", "--model", tmp_path / "m3") == 1
    assert "'x' is not a number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run("fit", tmp_path / "train.csv")  # --model is required


def test_fit_with_intercept_from_a_features_file(tmp_path):
    rng = np.random.default_rng(1)
    y = np.arange(40) % 2
    X = rng.normal(size=(40, 3)) + 10.0 + 2.0 * y[:, None]
    features, labels = _features_files(tmp_path, X, y)
    model = tmp_path / "m"
    for flag, fits_one in (("--intercept", True), (None, True), ("--no-intercept", False)):
        assert _run("fit", features, *labels, "--model", model, *([flag] if flag else [])) == 0
        loaded = load_classifier(model)[0]
        ref = FaastClassifier(fit_intercept=fits_one).fit(X, y)
        assert loaded.fit_intercept == fits_one  # an intercept unless --no-intercept
        np.testing.assert_allclose(loaded.intercept_, ref.intercept_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(loaded.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    assert not loaded.intercept_.any()


def test_fit_with_centred_features_and_its_clear_error(tmp_path, capsys):
    """``--center-features`` fits (and saves) ``FaastClassifier(center_features=True)``, with
    ``--loss logistic`` too; with ``--no-intercept`` it is a one-line error naming the clash."""
    rng = np.random.default_rng(3)
    y = np.arange(30) % 3
    X = rng.normal(size=(30, 5)) + 50.0 + 3.0 * y[:, None]
    features, labels = _features_files(tmp_path, X, y)
    for loss in ("squared", "logistic"):
        model = tmp_path / f"m-{loss}"
        assert _run("fit", features, *labels, "--model", model, "--center-features", "--loss", loss) == 0
        loaded = load_classifier(model)[0]
        ref = FaastClassifier(center_features=True, loss=loss).fit(X, y)
        assert loaded.center_features and loaded.loss == loss
        np.testing.assert_allclose(loaded.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(loaded.intercept_, ref.intercept_, rtol=1e-6, atol=1e-9)
    capsys.readouterr()
    assert (
        _run("fit", features, *labels, "--model", tmp_path / "m2", "--center-features", "--no-intercept") == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "center_features=True needs fit_intercept=True" in err[0]
    assert not (tmp_path / "m2").exists()


def test_fit_sets_intercept_scaling_and_warns_in_one_line_when_it_is_far_from_the_features(tmp_path, capsys):
    """Features 10⁻⁸ of the default constant column: the fit warns on one line (no source line)
    naming the remedy, and ``--intercept-scaling`` near the row norm fits them silently, saved
    with the classifier; a bad value is a one-line error."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4)) * 1e-8
    y = (X[:, 0] > 0).astype(int)
    features, labels = _features_files(tmp_path, X, y)
    assert _run("fit", features, *labels, "--model", tmp_path / "m") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("faast classify: warning: the features' root-mean-square")
    assert "intercept_scaling near their row norm" in err[0]
    assert _run("fit", features, *labels, "--model", tmp_path / "m2", "--intercept-scaling", "2e-8") == 0
    assert capsys.readouterr().err == ""
    loaded = load_classifier(tmp_path / "m2")[0]
    ref = FaastClassifier(intercept_scaling=2e-8).fit(X, y)
    assert loaded.intercept_scaling == 2e-8
    np.testing.assert_allclose(loaded.intercept_, ref.intercept_, rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(loaded.predict(X), ref.predict(X))
    assert _run("fit", features, *labels, "--model", tmp_path / "m3", "--intercept-scaling", "0") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "intercept_scaling" in err[0]


def test_fit_with_balanced_class_weights_and_partial_fit_refuses_them(tmp_path, capsys):
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(40, int), np.ones(8, int)]
    X = rng.normal(size=(48, 6)) + 1.5 * np.eye(2, 6)[y]
    features, labels = _features_files(tmp_path, X, y)
    model = tmp_path / "m"
    assert _run("fit", features, *labels, "--model", model, "--class-weight", "balanced") == 0
    loaded = load_classifier(model)[0]
    ref = FaastClassifier(class_weight="balanced").fit(X, y)
    assert loaded.class_weight == "balanced"
    np.testing.assert_allclose(loaded.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    capsys.readouterr()
    assert _run("partial-fit", features, *labels, "--model", model) != 0
    assert 'not available with class_weight="balanced"' in capsys.readouterr().err


def test_cut_ridge_auto_and_a_cut_the_classifier_does_not_take(tmp_path, capsys):
    rng = np.random.default_rng(2)
    y = np.arange(30) % 3
    X = rng.normal(size=(30, 4)) + 2.0 * np.eye(3, 4)[y]
    features, labels = _features_files(tmp_path, X, y)
    model = tmp_path / "m"
    assert _run("fit", features, *labels, "--model", model, "--cut", "ridge=auto") == 0
    loaded = load_classifier(model)[0]
    assert loaded.ridge == "auto"
    ref = FaastClassifier(ridge="auto").fit(X, y)
    np.testing.assert_allclose(loaded.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    capsys.readouterr()
    assert _run("fit", features, *labels, "--model", tmp_path / "p", "--cut", "prior=512") == 1
    assert "the classifier takes" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_model_and_output_paths_under_a_file_are_named_before_the_work(tmp_path, capsys, monkeypatch):
    """mkdir said only "File exists", and after the fit (the images encoded first)."""
    rng = np.random.default_rng(3)
    features, labels = _features_files(tmp_path, rng.normal(size=(12, 4)), np.arange(12) % 2)
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.setattr(FaastClassifier, "fit", lambda *a, **k: pytest.fail("fitted before the check"))
    for model in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "m"):
        assert _run("fit", features, *labels, "--model", model) == 1
        err = capsys.readouterr().err
        assert f"{tmp_path / 'notes.txt'} is a file; a classifier is saved as a folder" in err
    assert (tmp_path / "notes.txt").read_text() == "x"
    model = tmp_path / "m"
    monkeypatch.undo()
    assert _run("fit", features, *labels, "--model", model) == 0
    monkeypatch.setattr(FaastClassifier, "predict", lambda *a, **k: pytest.fail("predicted before the check"))
    assert _run("predict", features, "--model", model, "--out", tmp_path / "notes.txt" / "p.csv") == 1
    assert "notes.txt is a file, not a folder" in capsys.readouterr().err


def test_help_is_plain_text_with_the_examples(capsys):
    """``faast classify --help`` prints the module's description without reStructuredText markup
    (no ``code`` or :mod:`...` roles), its example commands kept on their own lines."""
    with pytest.raises(SystemExit) as done:
        main(["classify", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":mod:" not in out
    assert "the torchvision ImageFolder layout" in out and "see faast.data.features_file" in out
    assert "\n    faast classify predict photos/new --model my-model --out predictions.csv\n" in out


def test_plain_text_drops_roles_and_literals():
    from faast.cli import plain_text

    assert (
        plain_text("see :mod:`faast.x` and :class:`~faast.Y`, ``z = 1``") == "see faast.x and faast.Y, z = 1"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("comma", "id,f0,f1,label\r\na,1.5,0,x\r\nb,0,2,y\r\n"),
        ("byte-order mark", "\ufeffid,f0,f1,label\na,1.5,0,x\nb,0,2,y\n"),
        ("semicolons", "id;f0;f1;label\na;1.5;0;x\nb;0;2;y\n"),
        ("tabs", "id\tf0\tf1\tlabel\na\t1.5\t0\tx\nb\t0\t2\ty\n"),
    ],
)
def test_csv_as_spreadsheets_write_it_reads_the_same_table(tmp_path, name, text):
    """A byte-order mark, semicolons or tabs (as spreadsheet programs save) give the same table
    as the plain comma file: the same ids, features and labels."""
    from faast.data.features_file import read_features

    path = tmp_path / "f.csv"
    path.write_bytes(text.encode("utf-8"))
    table = read_features(path, id_column="id")
    assert table.ids == ["a", "b"]
    assert table.features.tolist() == [[1.5, 0.0], [0.0, 2.0]]
    assert table.labels.tolist() == ["x", "y"]


def test_csv_errors_say_what_is_wrong_with_the_cell(tmp_path, capsys):
    """An empty cell is named as a missing value; a column of names in the first data row hints
    at --id-column, and at the text files that hold texts to classify."""
    (tmp_path / "gap.csv").write_text("f0,f1,label\n1,,x\n2,3,y\n")
    assert _run("fit", tmp_path / "gap.csv", "--model", tmp_path / "m") == 1
    assert "row 2, column 'f1' is empty (missing values are not supported" in capsys.readouterr().err
    (tmp_path / "named.csv").write_text("name,f0,label\nalice,1,x\nbob,2,y\n")
    assert _run("fit", tmp_path / "named.csv", "--model", tmp_path / "m") == 1
    err = capsys.readouterr().err
    assert "column 'name': 'alice' is not a number (if the column names the rows" in err
    assert "texts to classify, name its column: --text-column" in err
    assert _run("fit", tmp_path / "named.csv", "--model", tmp_path / "m", "--id-column", "name") == 0
    (tmp_path / "twice.csv").write_text("f0,label,label\n1,x,y\n2,y,x\n")
    assert _run("fit", tmp_path / "twice.csv", "--model", tmp_path / "m") == 1
    assert "twice.csv: the header names ['label'] more than once" in capsys.readouterr().err
    for cell in ("1e400", "nan", "-inf"):  # named with its row and column, as a word is
        (tmp_path / "big.csv").write_text(f"f0,f1,label\n1,0,x\n2,{cell},y\n")
        assert _run("fit", tmp_path / "big.csv", "--model", tmp_path / "m") == 1
        assert f"big.csv: row 3, column 'f1': '{cell}' is not a finite number" in capsys.readouterr().err


def test_sixteen_bit_images_keep_their_picture_and_other_files_are_reported(tmp_path):
    """A 16-bit greyscale PNG reads as its 8-bit twin (Pillow's own conversion clips it at 255:
    nearly all white); float pixels, whose range is unknown, are refused by name; a file of
    another extension in a class folder is left out with a warning that names it."""
    from faast.data.image_folder import load_image_folder

    grey = np.random.default_rng(0).integers(0, 256, (10, 12), dtype=np.uint8)
    for name, image in (
        ("eight", Image.fromarray(grey)),
        ("sixteen", Image.fromarray(grey.astype(np.uint16) * 257)),
    ):
        (tmp_path / name / "a").mkdir(parents=True)
        image.save(tmp_path / name / "a" / "x.png")
    eight, _, _ = load_image_folder(tmp_path / "eight", 12)
    sixteen, _, _ = load_image_folder(tmp_path / "sixteen", 12)
    assert sixteen.images.mean() > 0 and np.array_equal(sixteen.images, eight.images)

    (tmp_path / "float" / "a").mkdir(parents=True)
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "float" / "a" / "x.tiff")
    with pytest.raises(ValueError, match=r"x.tiff: floating-point pixels have no known range"):
        load_image_folder(tmp_path / "float", 12)

    Image.fromarray(grey).save(tmp_path / "eight" / "a" / "y.gif")
    (tmp_path / "eight" / "a" / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(
        UserWarning, match=r"skipped 1 file\(s\) that are not read as images \(extensions \.gif;"
    ):
        again, _, _ = load_image_folder(tmp_path / "eight", 12)
    assert np.array_equal(again.images, eight.images)


def test_hidden_folders_and_macos_leftovers_are_not_classes_or_examples(tmp_path):
    """An archive unzipped from macOS adds __MACOSX/<class>/._x.png (once a class of its own,
    with no images); a Jupyter checkpoint folder inside a class held a second copy of an image."""
    from faast.data.image_folder import list_image_folder

    grey = Image.fromarray(np.zeros((4, 4), dtype=np.uint8))
    for cls in ("a", "b"):
        (tmp_path / cls / ".ipynb_checkpoints").mkdir(parents=True)
        grey.save(tmp_path / cls / "x.png")
        grey.save(tmp_path / cls / ".ipynb_checkpoints" / "x-checkpoint.png")
        (tmp_path / "__MACOSX" / cls).mkdir(parents=True)
        (tmp_path / "__MACOSX" / cls / "._x.png").write_bytes(b"\0\5\26\7")
    paths, classes, labels = list_image_folder(tmp_path)
    assert classes == ["a", "b"] and labels == [0, 1]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["a/x.png", "b/x.png"]


def test_photos_are_read_upright_by_their_exif_orientation(tmp_path):
    """A photo stored sideways with EXIF orientation 6 (as phones save them) reads as the upright
    picture viewers show, not as stored."""
    from faast.data.image_folder import load_image_folder

    upright = np.zeros((8, 4, 3), dtype=np.uint8)
    upright[:2] = 255  # a bright top edge
    for name, image, exif in (
        ("plain", Image.fromarray(upright), None),
        ("tagged", Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90), {0x0112: 6}),
    ):
        (tmp_path / name / "a").mkdir(parents=True)
        info = Image.Exif()
        info.update(exif or {})
        image.save(tmp_path / name / "a" / "x.png", exif=info)
    plain, _, _ = load_image_folder(tmp_path / "plain", 8)
    tagged, _, _ = load_image_folder(tmp_path / "tagged", 8)
    assert plain.images[0, 0].mean() > 200 and np.array_equal(tagged.images, plain.images)


def test_an_image_past_pillows_pixel_limit_is_named(tmp_path, monkeypatch):
    """Pillow refuses images over twice its pixel limit (a decompression bomb); the folder reader
    names the file like any unreadable image instead of letting Pillow's error through."""
    from PIL import Image as PILImage

    from faast.data.image_folder import load_image_folder

    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(tmp_path / "a" / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 50)  # 120 pixels > 2 × 50
    with pytest.raises(
        ValueError, match=r"cannot read image .*big.png: Image size \(120 pixels\) exceeds limit"
    ):
        load_image_folder(tmp_path, 8)


def test_csv_labels_keep_their_spelling(tmp_path, capsys):
    """Labels 01, 1 and 001 were read as one integer class; a later file of only "1" was read as
    integers and refused against the string classes of "1" and "x"."""
    from faast.data.features_file import read_features

    rows = ["f0,f1,label", "1,0,01", "0,1,1", "1,1,001", "0,0,1", "2,1,01", "1,2,001"]
    (tmp_path / "z.csv").write_text("\n".join(rows) + "\n")
    assert read_features(tmp_path / "z.csv").labels.tolist() == ["01", "1", "001", "1", "01", "001"]
    (tmp_path / "n.csv").write_text("f0,label\n1,7\n2,-1\n3,1_0\n")
    assert read_features(tmp_path / "n.csv").labels.tolist() == ["7", "-1", "1_0"]
    (tmp_path / "i.csv").write_text("f0,label\n1,7\n2,-1\n")
    assert read_features(tmp_path / "i.csv").labels.tolist() == [7, -1]

    rng = np.random.default_rng(4)
    X = rng.normal(size=(8, 2))
    first = ["x", "1", "x", "1", "x", "1"]
    for name, part, labels in (("first", X[:6], first), ("more", X[6:], ["1", "1"])):
        body = [f"{a:.17g},{b:.17g},{label}" for (a, b), label in zip(part, labels, strict=True)]
        (tmp_path / f"{name}.csv").write_text("\n".join(["f0,f1,label", *body]) + "\n")
    model = tmp_path / "m"
    assert _run("fit", tmp_path / "first.csv", "--model", model) == 0
    assert _run("partial-fit", tmp_path / "more.csv", "--model", model) == 0
    clf = load_classifier(model)[0]
    ref = FaastClassifier().fit(X, np.array([*first, "1", "1"]))
    assert clf.classes_.tolist() == ["1", "x"] and clf.class_count_.tolist() == [5, 3]
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-6, atol=1e-9)


def test_csv_labels_are_read_without_the_spaces_around_them(tmp_path):
    """A stray space after a label ("cat ", as spreadsheets leave them) or ", " between fields made
    a class of its own: 60 rows of three classes were fitted as six. Labels are read as a labels
    text file reads them, stripped (and the header's names: " label" is the label column); a space
    inside a label stays."""
    from faast.data.features_file import read_features

    rows = ["f0, f1, label", "1, 0, cat", "0,1,cat ", "1,1, dog", "0,0,big dog", '2,1," big dog "']
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    assert read_features(tmp_path / "s.csv").labels.tolist() == ["cat", "cat", "dog", "big dog", "big dog"]


def test_byte_string_labels_are_read_as_text(tmp_path):
    """NumPy byte strings (HDF5 tools write labels so) were refused by scikit-learn ("labels
    represented as bytes"); they are decoded from UTF-8, in .npz and .npy alike, and fit as the
    same labels written as text would."""
    from faast.data.features_file import read_features

    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 3))
    text = np.array(["cat", "dog", "café"] * 4)
    np.savez(tmp_path / "b.npz", features=X, labels=np.char.encode(text, "utf-8"))
    np.save(tmp_path / "y.npy", np.char.encode(text, "utf-8"))
    np.save(tmp_path / "X.npy", X)
    assert read_features(tmp_path / "b.npz").labels.tolist() == text.tolist()
    assert read_features(tmp_path / "X.npy", labels_path=tmp_path / "y.npy").labels.tolist() == text.tolist()
    assert _run("fit", tmp_path / "b.npz", "--model", tmp_path / "m") == 0
    assert load_classifier(tmp_path / "m")[0].classes_.tolist() == ["café", "cat", "dog"]
    np.save(tmp_path / "bad.npy", np.array([b"\xff", b"a"]))
    with pytest.raises(ValueError, match="byte-string labels that are not UTF-8"):
        read_features(tmp_path / "X.npy", labels_path=tmp_path / "bad.npy")


def test_object_arrays_and_files_that_are_not_numpy_are_named(tmp_path):
    """NumPy keeps an object array (labels with a None, say) pickled: faast never unpickles, and
    the error said only "Object arrays cannot be loaded when allow_pickle=False"."""
    from faast.data.features_file import read_features

    X = np.zeros((3, 2))
    labels = np.array(["a", None, "b"], dtype=object)
    np.savez(tmp_path / "obj.npz", features=X, labels=labels)
    with pytest.raises(ValueError, match=r"obj.npz: 'labels' holds Python objects \(stored pickled\)"):
        read_features(tmp_path / "obj.npz")
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", labels, allow_pickle=True)
    with pytest.raises(ValueError, match=r"y.npy: the labels array holds Python objects"):
        read_features(tmp_path / "x.npy", labels_path=tmp_path / "y.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"bad.npy: not a plain NumPy array file"):
        read_features(tmp_path / "bad.npy")


def test_threads_apply_for_the_command_only(tmp_path, capsys, monkeypatch):
    """``--threads`` sets torch's and BLAS's threads while the command runs, then restores them."""
    import threadpoolctl

    seen = []
    fit = FaastClassifier.fit

    def recording_fit(self, *args, **kwargs):
        blas = [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]
        seen.append((torch.get_num_threads(), blas))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(FaastClassifier, "fit", recording_fit)
    rng = np.random.default_rng(0)
    data, labels = _features_files(tmp_path, rng.normal(size=(12, 3)), np.array(["a", "b"] * 6))
    before = torch.get_num_threads()
    assert _run("fit", data, *labels, "--model", tmp_path / "m", "--threads", 1) == 0
    assert seen[0][0] == 1 and seen[0][1] and all(n == 1 for n in seen[0][1])
    assert torch.get_num_threads() == before
    assert _run("fit", data, *labels, "--model", tmp_path / "m", "--threads", 0) == 1
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_labels_of_a_later_file_name_the_classes_as_written(tmp_path, capsys):
    """partial-fit reads a later file's labels as the classes they name: boolean labels ("False"
    is the class False, not a non-empty string read as True) and numbers of another type ("1"
    names the class 1.0); a label naming no class is refused."""
    from faast.cli.classify_cmd import as_classes

    X = np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1]])
    x, labels = _features_files(tmp_path, X, np.array([True, False, True, False]))
    assert _run("fit", x, "--model", tmp_path / "m", *labels) == 0
    assert _run("partial-fit", x, "--model", tmp_path / "m", *labels) == 0
    clf = load_classifier(tmp_path / "m")[0]
    assert clf.classes_.tolist() == [False, True] and clf.class_count_.tolist() == [4, 4]
    assert _run("forget", x, "--model", tmp_path / "m", *labels) == 0
    assert load_classifier(tmp_path / "m")[0].class_count_.tolist() == [2, 2]
    np.save(tmp_path / "yf.npy", np.array([1.0, 0.0, 1.0, 0.0]))  # fitted on float labels,
    (tmp_path / "yi.txt").write_text("1\n0\n1\n0\n", encoding="utf-8")  # scored on integers
    assert _run("fit", x, "--model", tmp_path / "f", "--labels", tmp_path / "yf.npy") == 0
    capsys.readouterr()
    assert (
        _run(
            "predict",
            x,
            "--model",
            tmp_path / "f",
            "--out",
            tmp_path / "p.csv",
            "--labels",
            tmp_path / "yi.txt",
        )
        == 0
    )
    assert "accuracy 100.00 %" in capsys.readouterr().out
    floats = np.array([0.0, 1.0])
    assert as_classes(np.array([1, 0, 1]), floats).tolist() == [1.0, 0.0, 1.0]
    assert as_classes(np.array(["1", "x"]), np.array(["1", "x"])).tolist() == ["1", "x"]
    with pytest.raises(ValueError, match=r"label\(s\) \['2'\] are not among"):
        as_classes(np.array([1, 2]), floats)


def test_an_output_is_refused_where_it_would_overwrite_an_input(tmp_path, capsys):
    """A predictions file named like the features file, or put inside the saved classifier's
    folder, is refused before any work, and both stay as they were; so are solve's weights named
    like its pairs."""
    X = np.array([[1, 0], [0, 1], [1, 0.1], [0.1, 1]])
    x, labels = _features_files(tmp_path, X, np.array(["a", "b", "a", "b"]))
    assert _run("fit", x, "--model", tmp_path / "m", *labels) == 0
    saved = {p: p.read_bytes() for p in [x, *sorted((tmp_path / "m").iterdir())]}
    for out in (x, tmp_path / "m" / "classifier.json", tmp_path / "m" / "new.csv"):
        assert _run("predict", x, "--model", tmp_path / "m", "--out", out) == 1
        assert "would overwrite the input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in saved} == saved and not (tmp_path / "m" / "new.csv").exists()
    pairs = tmp_path / "pairs.safetensors"
    keys, values = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    save_file({"keys": keys, "values": values}, pairs)
    before = pairs.read_bytes()
    assert main(["solve", str(pairs), "--out", str(pairs)]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert pairs.read_bytes() == before


def test_empty_labels_are_refused_and_blank_lines_after_the_last_row_are_not(tmp_path, capsys):
    (tmp_path / "e.csv").write_text("f0,f1,label\n1,0,\n0,1,b\n1,0.1,a\n", encoding="utf-8")
    assert _run("fit", tmp_path / "e.csv", "--model", tmp_path / "m") == 1
    assert "example 1 has an empty label" in capsys.readouterr().err
    (tmp_path / "ok.csv").write_text("f0,f1,label\n1,0,a\n0,1,b\n1,0.1,a\n0.1,1,b\n\n\n", encoding="utf-8")
    assert _run("fit", tmp_path / "ok.csv", "--model", tmp_path / "m") == 0
    assert load_classifier(tmp_path / "m")[0].class_count_.tolist() == [2, 2]


def test_whole_number_and_boolean_features_are_read_and_no_columns_refused(tmp_path, capsys):
    from faast.data.features_file import read_features

    pixels = np.array([[255, 0], [0, 255], [250, 3], [2, 240]], dtype=np.uint8)
    for dtype in (np.uint8, np.int16, bool):
        np.save(tmp_path / "x.npy", pixels.astype(dtype))
        feats = read_features(tmp_path / "x.npy").features
        expected = pixels.astype(dtype).astype(np.float32)
        assert feats.dtype == torch.float32 and feats.tolist() == expected.tolist()
    np.save(tmp_path / "none.npy", np.zeros((4, 0)))
    with pytest.raises(ValueError, match="no column"):
        read_features(tmp_path / "none.npy")


def test_a_zero_resolution_is_refused_and_images_beside_the_class_folders_are_named(tmp_path, capsys):
    from faast.data.image_folder import list_image_folder

    root = _image_folder(tmp_path / "img", per_class=2, seed=0)
    assert _run("fit", root, "--model", tmp_path / "m", "--resolution", "0") == 1
    assert "resolution must be >= 32 pixels, got 0" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(root / "loose.png")
    with pytest.warns(UserWarning, match=r"skipped 1 image\(s\) beside the class folders.*loose.png"):
        paths, classes, _ = list_image_folder(root)
    assert classes == sorted(COLOURS) and len(paths) == 2 * len(COLOURS)


def test_a_csv_s_feature_columns_are_read_by_name(tmp_path, capsys):
    """The feature columns' names of a fitted CSV are saved: a later CSV with them in another order
    is reordered (the same predictions), one with other names is refused by name (it was read by
    position: swapped columns predicted every row wrong)."""
    (tmp_path / "fit.csv").write_text("f0,f1,label\n1,0,a\n0,1,b\n1,0.1,a\n0.1,1,b\n", encoding="utf-8")
    assert _run("fit", tmp_path / "fit.csv", "--model", tmp_path / "m") == 0
    assert load_classifier(tmp_path / "m")[1]["source"]["columns"] == ["f0", "f1"]
    (tmp_path / "swapped.csv").write_text("f1,f0,label\n0,1,a\n1,0,b\n0.9,0,b\n", encoding="utf-8")
    model = ["--model", tmp_path / "m"]
    assert _run("predict", tmp_path / "swapped.csv", *model, "--out", tmp_path / "p.csv") == 0
    assert [row["predicted"] for row in _read_csv(tmp_path / "p.csv")] == ["a", "b", "b"]
    assert _run("partial-fit", tmp_path / "swapped.csv", "--model", tmp_path / "m") == 0
    assert load_classifier(tmp_path / "m")[1]["source"]["columns"] == ["f0", "f1"]
    (tmp_path / "renamed.csv").write_text("g0,g1,label\n0,1,a\n", encoding="utf-8")
    assert _run("predict", tmp_path / "renamed.csv", *model, "--out", tmp_path / "q.csv") == 1
    assert "missing ['f0', 'f1'], unexpected ['g0', 'g1']" in capsys.readouterr().err


def _pngs(folder: Path, count: int, value: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((6, 6, 3), (value + i) % 256, dtype=np.uint8)).save(
            folder / f"{value}_{i}.png"
        )


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_image_folders_follow_linked_sub_folders_once_and_warn_about_dead_links(tmp_path):
    """A linked folder inside a class folder was left out without a word (torchvision's
    ImageFolder follows it); a link back up is walked once; a link to nothing is named."""
    from faast.data.image_folder import list_image_folder

    _pngs(tmp_path / "data" / "red", 3, 10)
    _pngs(tmp_path / "store" / "more_red", 3, 50)
    _pngs(tmp_path / "data" / "blue", 2, 90)
    os.symlink(tmp_path / "store" / "more_red", tmp_path / "data" / "red" / "more")
    os.symlink(tmp_path / "data" / "red", tmp_path / "data" / "red" / "loop")  # back up: no loop
    os.symlink(tmp_path / "gone.png", tmp_path / "data" / "blue" / "dead.png")
    with pytest.warns(UserWarning, match=r"skipped 1 link\(s\) to nothing, e.g. blue/dead.png"):
        paths, classes, labels = list_image_folder(tmp_path / "data")
    assert classes == ["blue", "red"] and labels.count(1) == 6 and labels.count(0) == 2
    assert len({os.path.realpath(p) for p in paths}) == len(paths) == 8


def test_undecodable_images_are_named_whatever_pillow_raises(tmp_path):
    """A broken PNG chunk (SyntaxError) or a bad PPM header (ValueError) came out of Pillow as
    a bare message, naming no file among thousands."""
    from faast.data.image_folder import load_image_folder

    _pngs(tmp_path / "a", 1, 10)
    (tmp_path / "a" / "bad.ppm").write_bytes(b"P6\n2x5\n255\n" + bytes(30))
    with pytest.raises(ValueError, match=r"cannot read image .*bad.ppm: ValueError: invalid literal"):
        load_image_folder(tmp_path, 8)


def test_a_long_folder_name_keeps_the_feature_cache_name_short(tmp_path, monkeypatch):
    """A legal 230-character folder name made the cache's file name too long for the file system
    ("File name too long"); the name is cut, and the path's hash keeps entries apart."""
    from faast.data.image_folder import load_image_folder

    long_a, long_b = tmp_path / ("x" * 229 + "a"), tmp_path / ("x" * 229 + "b")
    for folder in (long_a, long_b):
        _pngs(folder / "c", 1, 10)
    a, _, _ = load_image_folder(long_a, 4)
    b, _, _ = load_image_folder(long_b, 4)
    assert len(a.name.encode()) < 100 and a.name != b.name


def test_a_folder_one_level_above_the_classes_is_warned_about(tmp_path):
    """`fit photos` for photos/train/<class>/ learned every image as the one class 'train'."""
    from faast.data.image_folder import list_image_folder

    for colour, value in (("red", 10), ("blue", 90)):
        _pngs(tmp_path / "photos" / "train" / colour, 2, value)
    with pytest.warns(
        UserWarning, match=r"one class, 'train', whose images all lie in its sub-folders \(blue, red\)"
    ):
        list_image_folder(tmp_path / "photos")


def test_a_missing_data_path_is_named_as_missing(tmp_path, capsys):
    """A mistyped folder was reported as 'no such features file', or, for an image classifier,
    as data of the wrong kind."""
    assert main(["classify", "fit", str(tmp_path / "trian"), "--model", str(tmp_path / "m")]) != 0
    assert f"no such file or folder: {tmp_path / 'trian'}" in capsys.readouterr().err
