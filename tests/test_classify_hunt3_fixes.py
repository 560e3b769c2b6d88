"""``faast classify`` on users' own data, as a third bug hunt found it mishandled: images beside the
class folders left out of ``predict``, a ``--model`` saved inside its image folder, ``--baselines``
crashing on a class of one example, a features CSV with an ``input`` column encoded as texts,
parse errors of a features CSV whose hint did not fit the cause, unsigned integer ``.npy``
features refused, warnings of an image folder printed twice, only the first unreadable image
named, and ``forget`` beyond 2·D examples accepting what it cannot check without a word."""

from __future__ import annotations

import argparse
import csv
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faast.classifier_io import load_classifier
from faast.cli import main

COLOURS = {"blue": (20, 40, 230), "red": (220, 30, 30)}


def _run(*argv: object) -> int:
    return main(["classify", *map(str, argv)])


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _image_folder(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """``root`` with one sub-folder of ``per_class`` small noisy PNGs per colour of COLOURS."""
    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _fit_pixels(data: Path, model: Path, *more: object) -> int:
    return _run("fit", data, "--model", model, "--encoder", "pixels", "--resolution", 4, *more)


# ----------------------------------------------------------------- finding 3 and 9 (warnings once)
def test_predict_reads_the_images_beside_class_folders_unlabelled(tmp_path, capsys):
    """``predict`` on a folder of class folders and loose images skipped the loose ones with a
    warning; they are predicted with an empty label, the others labelled by their folder. ``fit``
    still skips them, warning once (the folder was listed, and warned about, twice)."""
    data = _image_folder(tmp_path / "data")
    Image.fromarray(np.full((8, 8, 3), (220, 30, 30), np.uint8)).save(data / "loose.png")
    cache = ["--cache-dir", tmp_path / "cache"]
    assert _fit_pixels(data, tmp_path / "m", *cache) == 0
    err = capsys.readouterr().err
    assert err.count("beside the class folders") == 1, err
    assert _run("predict", data, "--model", tmp_path / "m", "--out", tmp_path / "p.csv", *cache) == 0
    err = capsys.readouterr().err
    assert "beside the class folders" not in err
    assert "stale" not in err  # the class folders' features are cached apart from those with the loose images
    rows = _read_csv(tmp_path / "p.csv")
    assert len(rows) == 7 and rows[0]["id"] == "loose.png" and rows[0]["label"] == ""
    assert rows[0]["predicted"] == "red"
    assert {r["label"] for r in rows[1:]} == set(COLOURS)
    assert all(r["label"] == r["id"].split("/")[0] for r in rows[1:])
    assert _fit_pixels(data, tmp_path / "m", *cache) == 0  # fit and predict do not re-encode each other's
    assert "stale" not in capsys.readouterr().err
    assert _run("predict", data, "--model", tmp_path / "m", "--out", tmp_path / "q.csv", *cache) == 0
    assert "stale" not in capsys.readouterr().err
    assert _read_csv(tmp_path / "q.csv") == rows


def test_list_image_folder_lists_loose_images_only_when_asked(tmp_path):
    from faast.data.image_folder import NO_CLASS, list_image_folder

    data = _image_folder(tmp_path / "data", per_class=1)
    Image.new("RGB", (4, 4)).save(data / "loose.png")
    with pytest.warns(UserWarning, match="beside the class folders"):
        paths, classes, labels = list_image_folder(data)
    assert len(paths) == 2 and labels == [0, 1]
    paths, classes, labels = list_image_folder(data, loose=True)
    assert paths[0].name == "loose.png" and labels == [NO_CLASS, 0, 1] and classes == sorted(COLOURS)


def test_predict_skips_a_folder_without_images_where_fit_refuses_it(tmp_path, capsys):
    """An empty sub-folder (thumbnails, an output folder) beside images to predict made ``predict``
    refuse the folder as a class without images; predict needs no classes, so it is skipped with a
    warning naming it (loose images alone, and beside class folders). ``fit`` still refuses it."""
    from faast.data.image_folder import NO_CLASS, list_image_folder

    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(flat / name)
    (flat / "thumbs").mkdir()
    with pytest.warns(UserWarning, match=r"skipped 1 folder\(s\) without images \(thumbs\)"):
        paths, classes, labels = list_image_folder(flat, loose=True)
    assert [p.name for p in paths] == ["a.png", "b.png"] and classes is None and labels == [0, 0]
    data = _image_folder(tmp_path / "data", per_class=1)
    Image.new("RGB", (4, 4)).save(data / "loose.png")
    (data / "thumbs").mkdir()
    with pytest.warns(UserWarning, match="without images"):
        paths, classes, labels = list_image_folder(data, loose=True)
    assert classes == sorted(COLOURS) and labels == [NO_CLASS, 0, 1]
    with pytest.raises(ValueError, match="class folder\\(s\\) without images: thumbs"):
        list_image_folder(data)
    (data / "thumbs").rmdir()
    assert _fit_pixels(data, tmp_path / "m", "--no-feature-cache") == 0
    (data / "thumbs").mkdir()
    capsys.readouterr()
    assert (
        _run("predict", data, "--model", tmp_path / "m", "--out", tmp_path / "p.csv", "--no-feature-cache")
        == 0
    )
    assert "without images (thumbs)" in capsys.readouterr().err
    assert len(_read_csv(tmp_path / "p.csv")) == 3


# ----------------------------------------------------------------- finding 4
def test_a_model_inside_the_image_folder_is_refused_before_anything_is_encoded(tmp_path, capsys):
    """``fit --model DATA/model`` was saved, and every later command on DATA then failed ('class
    folder(s) without images: model'); it is refused before the folder is encoded, and so is a
    saved classifier moved there, for each command."""
    data = _image_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    for inside in (data / "model", data / "red" / "model", data):
        assert _fit_pixels(data, inside, "--cache-dir", cache) == 1
        err = capsys.readouterr().err
        assert f"--model {inside} lies inside the image folder {data}" in err
        assert "save the classifier outside the image folder" in err
    assert not (data / "model").exists() and not (data / "red" / "model").exists()
    assert not (cache / "features").exists()  # nothing was encoded
    assert _fit_pixels(data, tmp_path / "m", "--no-feature-cache") == 0
    shutil.copytree(tmp_path / "m", data / "model")
    for action in (["predict", "--out", tmp_path / "p.csv"], ["partial-fit"], ["forget"]):
        assert _run(action[0], data, "--model", data / "model", *action[1:], "--cache-dir", cache) == 1
        err = capsys.readouterr().err
        assert "lies inside the image folder" in err and "move the classifier's folder outside" in err
        assert "without images: model" not in err
    assert not (cache / "features").exists() and not (tmp_path / "p.csv").exists()


# ----------------------------------------------------------------- finding 5
def test_cv_baselines_with_a_class_of_one_example_skip_logistic_regression(tmp_path, capsys):
    """``fit --cv --baselines`` crashed in LogisticRegression (a training fold of one class) after
    the classifier was saved, and the cross-validation was not recorded; the baseline that cannot
    be fitted is skipped, saying why, and the result is recorded."""
    (tmp_path / "odd.csv").write_text("f0,label\n1,a\n2,b\n3,b\n4,b\n5,b\n6,b\n7,b\n", encoding="utf-8")
    assert _run("fit", tmp_path / "odd.csv", "--model", tmp_path / "m", "--cv", "--baselines") == 0
    out = capsys.readouterr().out
    assert "5-fold cross-validation" in out
    assert "RidgeClassifier on the same folds: accuracy" in out
    assert "LogisticRegression on the same folds: skipped, cannot fit a fold's examples" in out
    assert "only one class" in out
    result = load_classifier(tmp_path / "m")[1]["cross_validation"]
    assert result["folds"] == 5 and 0 <= result["accuracy"] <= 1
    assert "accuracy" in result["baselines"]["RidgeClassifier"]
    assert "only one class" in result["baselines"]["LogisticRegression"]["skipped"]


# ----------------------------------------------------------------- finding 6
def test_a_csv_whose_input_column_holds_numbers_is_not_read_as_texts(tmp_path, capsys):
    """A features CSV with a column named 'input' was encoded by the sentence encoder as texts
    (``--label-column label``); it is refused before any encoder loads, saying how to read it as
    features, which renaming the column does."""
    body = "".join(f"{i * 0.1:.2f},{i % 3},{i % 2}\n" for i in range(12))
    (tmp_path / "sensor.csv").write_text("input,f1,label\n" + body, encoding="utf-8")
    for more in ([], ["--label-column", "label"]):
        assert _run("fit", tmp_path / "sensor.csv", "--model", tmp_path / "m", *more) == 1
        err = capsys.readouterr().err
        assert "its 'input' column holds only numbers" in err and "['input', 'f1', 'label']" in err
        assert "rename the 'input' column" in err and "--text-column input" in err
    assert not (tmp_path / "m").exists()
    (tmp_path / "renamed.csv").write_text("f_input,f1,label\n" + body, encoding="utf-8")
    assert _run("fit", tmp_path / "renamed.csv", "--model", tmp_path / "m") == 0
    assert load_classifier(tmp_path / "m")[1]["source"]["columns"] == ["f_input", "f1"]


def test_a_csv_of_texts_names_its_numeric_columns_that_are_not_read(tmp_path):
    from faast.cli.classify_data import _csv_of_texts

    args = argparse.Namespace(text_column=None, label_column=None, id_column=None)
    texts = tmp_path / "t.csv"
    texts.write_text(
        "input,score,output,source\ngood film,1,pos,web\nbad film,2.5,neg,web\n", encoding="utf-8"
    )
    with pytest.warns(UserWarning, match=r"column\(s\) of numbers \['score'\] are not read"):
        assert _csv_of_texts(texts, args)
    plain = tmp_path / "plain.csv"
    plain.write_text("input,output\ngood film,pos\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no columns besides input and output: no warning
        assert _csv_of_texts(plain, args)
        assert _csv_of_texts(texts, argparse.Namespace(**{**vars(args), "text_column": "input"}))  # asked


# ----------------------------------------------------------------- finding 7
@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (
            "f0,f1,class\n1,2,a\n2,3,b\n3,4,a\n4,5,b\n",
            "if the column holds the labels, name it: --label-column class",
        ),
        (
            "f0,colour,label\n1,red,0\n2,blue,1\n3,red,0\n4,blue,1\n",
            "--label-column colour; if it is a category",
        ),
        ("f0;f1;label\n0,1257;1;a\n0,5;2;b\n", "decimal comma, and numbers need a decimal point"),
        ("f0,f1,label\n1,NA,a\n2,3,b\n", "'NA' is not a number: it marks a missing value"),
        ("f0,f1,label\n1,2,a\n2,NaN,b\n", "missing values are not supported: fill or drop them"),
        ("f0,f1,label\n1,,a\n2,3,b\n", "is empty (missing values are not supported"),
        ("f0,f1,label\n1.3%,1,a\n2%,3,b\n", "write plain numbers, without percent or currency signs"),
        ('f0,f1,label\n"1,234.5",1,a\n2,3,b\n', "without thousands separators"),
        ("name,f0,label\nalice,1,x\nbob,2,y\n", "if the column names the rows, make it the id column"),
    ],
)
def test_features_csv_parse_errors_hint_at_their_cause(tmp_path, text, hint):
    """Every non-number in a features CSV suggested --id-column/--text-column; the hint now fits
    the cause: labels (by name or repeated words), a decimal comma, a missing value, a percent
    sign, thousands separators, and a column naming the rows as before."""
    from faast.data.features_file import read_features

    (tmp_path / "x.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        read_features(tmp_path / "x.csv")
    assert hint in str(info.value)
    if "--label-column" in hint or "decimal" in hint or "missing" in hint:
        assert "--id-column" not in str(info.value)


def test_a_labels_file_one_label_longer_mentions_a_header_line(tmp_path):
    from faast.data.features_file import read_features

    np.save(tmp_path / "x.npy", np.ones((3, 2), np.float32))
    (tmp_path / "y.txt").write_text("label\na\nb\na\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"3 feature rows but 4 labels \(one more: does .*y.txt start with a header"
    ):
        read_features(tmp_path / "x.npy", labels_path=tmp_path / "y.txt")


# ----------------------------------------------------------------- finding 8
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_unsigned_integer_npy_features_are_read_as_numbers(tmp_path, capsys, dtype):
    """uint16/32/64 .npy features were refused ('must be a 2-D array of real numbers, got
    torch.uint16'); they are read as float32, as the other integer dtypes are."""
    from faast.data.features_file import read_features

    values = np.array([[0, 65535], [1000, 3], [7, 40000], [65000, 2]])
    np.save(tmp_path / "x.npy", values.astype(dtype))
    feats = read_features(tmp_path / "x.npy").features
    assert feats.dtype == torch.float32 and feats.tolist() == values.astype(np.float32).tolist()
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
    assert _run("fit", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--model", tmp_path / "m") == 0


def test_a_complex_npy_is_refused_naming_its_dtype(tmp_path):
    from faast.data.features_file import read_features

    np.save(tmp_path / "x.npy", np.ones((2, 2), np.complex64))
    with pytest.raises(ValueError, match=r"the dtype torch.complex64 is not read as real numbers"):
        read_features(tmp_path / "x.npy")


# ----------------------------------------------------------------- finding 9 (every unreadable image)
def test_every_unreadable_image_is_named_in_one_error(tmp_path):
    """One bad image aborted the listing naming only the first; the error names each (the first
    five, then how many more)."""
    from faast.data.image_folder import load_image_folder

    data = _image_folder(tmp_path / "data", per_class=2)
    (data / "red" / "empty.png").write_bytes(b"")
    (data / "blue" / "page.jpg").write_text("<html>404 not found</html>")
    with pytest.raises(ValueError) as info:
        load_image_folder(data, 4)
    message = str(info.value)
    assert message.startswith("2 images cannot be read") and "empty.png" in message and "page.jpg" in message
    for i in range(5):
        (data / "red" / f"bad{i}.png").write_bytes(b"not a png")
    with pytest.raises(
        ValueError, match=r"^7 images cannot be read: .*; and 2 more \(remove or replace them"
    ):
        load_image_folder(data, 4)
    shutil.rmtree(data / "blue")
    for path in (data / "red").glob("bad*.png"):
        path.unlink()
    with pytest.raises(ValueError, match=r"^cannot read image .*empty.png"):  # one: as before
        load_image_folder(data, 4)


# ----------------------------------------------------------------- forget beyond 2·D examples
def _write_rows(path: Path, rows: list[tuple[float, str]]) -> Path:
    path.write_text("f0,label\n" + "".join(f"{x!r},{y}\n" for x, y in rows), encoding="utf-8")
    return path


def test_forget_warns_when_the_examples_cannot_be_verified(tmp_path, capsys):
    """Beyond 2·D examples (D = 1 feature + the intercept here) the classifier keeps no rows: its
    record of examples learned checks each one (tests/test_classifier_example_record.py); a
    classifier saved without that record (before 2026-12-06) can check the class counts only, and
    forget says so, on stderr; within 2·D it checks each example and does not warn."""
    from faast.classifier_io import load_classifier, save_classifier

    many = [(float(i), "a" if i % 2 else "b") for i in range(10)]
    assert _run("fit", _write_rows(tmp_path / "many.csv", many), "--model", tmp_path / "m") == 0
    clf, meta = load_classifier(tmp_path / "m")
    clf._record = None  # as saved before the record
    save_classifier(clf, tmp_path / "m", meta)
    capsys.readouterr()
    assert _run("forget", _write_rows(tmp_path / "one.csv", [(0.0, "a")]), "--model", tmp_path / "m") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning:" in err and "holds 10 examples" in err
    # once: FaastClassifier.forget warns, the CLI no longer adds its own (s84)
    assert err.count("cannot be verified (their features and labels), only their class counts") == 1
    few = many[:4]
    assert _run("fit", _write_rows(tmp_path / "few.csv", few), "--model", tmp_path / "f") == 0
    assert _run("forget", _write_rows(tmp_path / "ok.csv", few[:1]), "--model", tmp_path / "f") == 0
    assert "warning" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run("forget", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "bit for bit against its record of examples learned" in text and "only the class counts" in text


def test_a_features_csv_without_a_label_column_names_the_column_that_looks_like_labels(tmp_path, capsys):
    """A CSV whose labels are numbers in a column named ``y`` (not the default ``label``) had every
    column read as a feature and the fit refused for want of labels, without naming ``y``."""
    rows = "".join(f"{i * 0.5!r},{(i * 7) % 5 * 1.0!r},{i % 2}\n" for i in range(12))
    data = tmp_path / "y.csv"
    data.write_text("f0,f1,y\n" + rows, encoding="utf-8")
    assert _run("fit", data, "--model", tmp_path / "m") == 1
    assert "its column 'y' looks like the labels: --label-column y" in capsys.readouterr().err
    assert _run("fit", data, "--model", tmp_path / "m", "--label-column", "y") == 0


def test_a_pandas_series_of_weights_fits_without_torch_warning_of_a_read_only_array():
    import warnings

    import pandas as pd

    from faast.classifier import FaastClassifier

    rng = np.random.default_rng(0)
    X, y, w = rng.normal(size=(20, 3)), np.arange(20) % 2, rng.uniform(0.5, 2.0, size=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        series = FaastClassifier().fit(X, y, sample_weight=pd.Series(w))
    np.testing.assert_array_equal(series.coef_, FaastClassifier().fit(X, y, sample_weight=w).coef_)


def test_pil_warnings_while_decoding_name_the_image(tmp_path, monkeypatch):
    """PIL's decompression-bomb warning (an image of more pixels than Image.MAX_IMAGE_PIXELS, up to
    twice that) named no file; a folder of thousands could not tell which image it meant."""
    import warnings

    from PIL import Image

    from faast.data.image_folder import load_image_folder

    folder = tmp_path / "imgs"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (4, 4), (10, 20, 30)).save(folder / name / "small.png")
    Image.new("RGB", (12, 12), (200, 20, 30)).save(folder / "a" / "big.png")  # 144 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.warns(Image.DecompressionBombWarning, match=r"big\.png: Image size \(144 pixels\)"):
        load_image_folder(folder, 4)
    Image.new("RGB", (12, 12), (0, 20, 30)).save(folder / "b" / "big2.png")
    with warnings.catch_warnings(record=True) as caught:  # one warning per kind, the others counted
        warnings.simplefilter("always")
        load_image_folder(folder, 4)
    bombs = [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert len(bombs) == 1 and "(and 1 more images)" in str(bombs[0].message)
