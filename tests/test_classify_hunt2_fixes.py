"""``faast classify`` on inputs a second bug hunt found mishandled: a CSV without a header line
that lost its first row, options accepted and ignored with an image folder, errors that named
neither the file nor the flag, class folders named in Unicode's decomposed form (a macOS zip) and
a fit of one class."""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from faast.classifier_io import load_classifier
from faast.cli import main
from faast.cli.classify_cmd import named_classes
from faast.data.image_folder import list_image_folder
from tests.test_classify_cli import _image_folder

#: One class name with letters that Unicode writes composed (NFC) or decomposed (NFD).
ACCENTED = "ünï cödé"
NFC, NFD = unicodedata.normalize("NFC", ACCENTED), unicodedata.normalize("NFD", ACCENTED)
COLOURS = {"red": (220, 30, 30), NFC: (30, 200, 40), "blue": (20, 40, 230)}
PIXELS = ["--encoder", "pixels", "--resolution", 2]


def _run(*argv) -> int:
    return main(["classify", *map(str, argv)])


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _blobs(n: int = 30, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, d) float32 of three separable classes and their labels (n,) a, b, c."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.normal(size=(n, d)) + 3 * np.eye(3, d)[y]).astype(np.float32), np.array(["a", "b", "c"])[y]


def _fitted_on_npy(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """(a classifier fitted on an .npy features file and --labels, its features (n, d), labels (n,))."""
    X, y = _blobs()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    model = tmp_path / "m"
    assert _run("fit", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--model", model) == 0
    return model, X, y


# ---------------------------------------------------------------- 1. a CSV without a header line
@pytest.mark.parametrize("action", ["fit", "partial-fit", "forget", "predict"])
def test_a_csv_without_a_header_line_is_refused_not_read_a_row_short(tmp_path, capsys, action):
    """np.savetxt writes no header line: its first example was taken for the columns' names, so
    predict wrote 29 predictions of 30 rows, their ids one off. A first line of numbers only is
    refused in every action, naming the file and saying how to add the header line."""
    model, X, _ = _fitted_on_npy(tmp_path)
    headerless = tmp_path / "nohdr.csv"
    np.savetxt(headerless, X, delimiter=",")
    capsys.readouterr()
    extra = ["--out", tmp_path / "p.csv"] if action == "predict" else ["--labels", tmp_path / "y.npy"]
    target = tmp_path / "new" if action == "fit" else model
    assert _run(action, headerless, "--model", target, *extra) == 1
    err = capsys.readouterr().err
    assert "nohdr.csv: the first line holds only numbers" in err
    assert "the file seems to have no header line" in err and "add a first line naming the columns" in err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "new").exists()


def test_whole_numbers_counting_up_are_column_names_as_pandas_writes_them(tmp_path, capsys):
    """pandas' DataFrame(X).to_csv(index=False) names the columns 0, 1, ..., d-1: a header still,
    every row predicted."""
    model, X, _ = _fitted_on_npy(tmp_path)
    named = tmp_path / "named.csv"
    np.savetxt(named, X, delimiter=",", header=",".join(map(str, range(X.shape[1]))), comments="")
    assert _run("predict", named, "--model", model, "--out", tmp_path / "p.csv") == 0
    rows = _read_csv(tmp_path / "p.csv")
    assert [r["id"] for r in rows] == [str(i) for i in range(len(X))]
    assert "predicted 30 examples" in capsys.readouterr().out


# ---------------------------------------------------------------- 2. options an image folder ignored
@pytest.fixture(scope="module")
def image_model(tmp_path_factory) -> tuple[Path, Path]:
    """(an image folder of three classes, a classifier fitted on it with the pixels encoder)."""
    root = tmp_path_factory.mktemp("images")
    folder = _image_folder(root / "train", 3, 0, COLOURS)
    assert _run("fit", folder, "--model", root / "m", *PIXELS, "--no-feature-cache") == 0
    return folder, root / "m"


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--labels", "y.npy", "whose classes are its sub-folders"),
        ("--label-column", "label", "whose classes are its sub-folders"),
        ("--id-column", "id", "whose rows are named by the images' paths"),
    ],
)
@pytest.mark.parametrize("action", ["fit", "predict"])
def test_label_and_id_options_are_refused_for_an_image_folder(
    tmp_path, capsys, image_model, action, flag, value, why
):
    """--labels, --label-column and --id-column did nothing with an image folder, and exit 0: they
    are refused as --text-column is, naming the option and why."""
    folder, model = image_model
    np.save(tmp_path / "y.npy", np.zeros(9, dtype=np.int64))
    if action == "fit":
        argv = ["fit", folder, "--model", tmp_path / "new", *PIXELS]
    else:
        argv = ["predict", folder, "--model", model, "--out", tmp_path / "p.csv"]
    given = tmp_path / value if flag == "--labels" else value
    assert _run(*argv, "--no-feature-cache", flag, given) == 1
    err = capsys.readouterr().err
    assert f"{flag} is for features" in err and f"{folder} is an image folder, {why}" in err
    assert not (tmp_path / "new").exists() and not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("suffix", [".npy", ".safetensors", ".npz"])
def test_a_label_column_is_refused_for_a_features_file_without_columns(tmp_path, capsys, suffix):
    """--label-column with an .npy (and --labels) or a .safetensors file was ignored: refused,
    naming the file, as --id-column is."""
    X, y = _blobs()
    np.save(tmp_path / "y.npy", y)
    data = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(data, X)
    elif suffix == ".npz":
        np.savez(data, features=X, labels=np.arange(len(X)) % 3)
    else:
        save_file({"features": torch.from_numpy(X), "labels": torch.arange(len(X)) % 3}, str(data))
    argv = ["fit", data, "--model", tmp_path / "m", "--label-column", "y", "--labels", tmp_path / "y.npy"]
    assert _run(*argv) == 1
    err = capsys.readouterr().err
    assert f"x{suffix}: --label-column names a CSV column, and a {suffix} file has none" in err
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- 3. errors naming the file or flag
@pytest.mark.parametrize("suffix", [".npy", ".safetensors"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_features_name_the_file_and_the_row(tmp_path, capsys, suffix, bad):
    """A NaN in a .npy or .safetensors said "X: contains 1 NaN or Inf value(s)", naming neither."""
    X, y = _blobs()
    X[7, 2] = bad
    data = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(data, X)
    else:
        save_file({"features": torch.from_numpy(X)}, str(data))
    np.save(tmp_path / "y.npy", y)
    assert _run("fit", data, "--labels", tmp_path / "y.npy", "--model", tmp_path / "m") == 1
    err = capsys.readouterr().err
    assert f"x{suffix}: feature row 7, column 2 (counting from 0): {bad} is not a finite number" in err
    assert "1 NaN or infinite value(s) in all" in err


def test_nan_labels_name_the_labels_file_and_the_row(tmp_path, capsys):
    """A NaN in a float --labels array gave scikit-learn's "Input y contains NaN."; a .npz's own
    labels array likewise."""
    X, _ = _blobs()
    labels = (np.arange(len(X)) % 3).astype(np.float64)
    labels[4] = np.nan
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "ynan.npy", labels)
    assert _run("fit", tmp_path / "x.npy", "--labels", tmp_path / "ynan.npy", "--model", tmp_path / "m") == 1
    err = capsys.readouterr().err
    assert "ynan.npy: label 4 (counting from 0) is nan, not a class" in err
    np.savez(tmp_path / "own.npz", features=X, labels=labels)
    assert _run("fit", tmp_path / "own.npz", "--model", tmp_path / "m") == 1
    assert "own.npz: label 4 (counting from 0) is nan, not a class" in capsys.readouterr().err


def test_a_batch_size_below_one_is_refused_before_any_image_is_read(tmp_path, capsys):
    """--batch-size 0 was refused only once every image had been decoded: here a damaged image
    would have been named first."""
    folder = _image_folder(tmp_path / "imgs", 2, 0)
    (folder / "red" / "broken.png").write_bytes(b"not a png")
    for size in (0, -3):
        argv = ["fit", folder, "--model", tmp_path / "m", *PIXELS, "--no-feature-cache"]
        assert _run(*argv, "--batch-size", size) == 1
        err = capsys.readouterr().err
        assert f"--batch-size: expected a positive whole number, got {size}" in err
        assert "cannot read image" not in err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--intercept-scaling", "0", "expected a positive finite number, got 0.0"),
        ("--intercept-scaling", "nan", "expected a positive finite number, got nan"),
        ("--intercept-scaling", "inf", "expected a positive finite number, got inf"),
        ("--random-features", "0", "expected a positive whole number of dimensions, got 0"),
    ],
)
def test_fit_options_out_of_range_name_the_flag(tmp_path, capsys, flag, value, message):
    """--intercept-scaling 0 and --random-features 0 gave scikit-learn's message naming the
    parameter 'intercept_scaling', not the flag (and nan, inf passed the CLI)."""
    X, y = _blobs()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    argv = ["fit", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--model", tmp_path / "m", flag, value]
    assert _run(*argv) == 1
    err = capsys.readouterr().err
    assert f"error: {flag} (the classifier's {flag[2:].replace('-', '_')}): {message}" in err
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- 4. Unicode NFC and NFD folder names
def _nfd_copy(folder: Path, to: Path) -> Path:
    """A copy of the image ``folder`` whose class folder names are decomposed (NFD), as a zip made
    on macOS unpacks them."""
    for sub in sorted(folder.iterdir()):
        (to / unicodedata.normalize("NFD", sub.name)).mkdir(parents=True)
        for image in sub.iterdir():
            (to / unicodedata.normalize("NFD", sub.name) / image.name).write_bytes(image.read_bytes())
    return to


def test_class_folders_named_in_nfd_are_the_classes_of_their_nfc_names(tmp_path):
    """The folders' class names are composed (NFC): an NFD folder and an NFC folder give the same
    classes, and two folders of one name written both ways are refused, naming the cause."""
    nfc = _image_folder(tmp_path / "nfc", 1, 0, COLOURS)
    nfd = _nfd_copy(nfc, tmp_path / "nfd")
    assert NFD in {p.name for p in nfd.iterdir()}  # the file system keeps the decomposed name
    assert list_image_folder(nfd)[1] == list_image_folder(nfc)[1]
    assert NFC in list_image_folder(nfd)[1]
    (nfd / NFC).mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(nfd / NFC / "x.png")
    with pytest.raises(ValueError, match="differ only in Unicode normalisation .NFC vs NFD") as err:
        list_image_folder(nfd)
    assert str(nfd) in str(err.value)


def test_partial_fit_and_predict_on_nfd_folders_find_the_nfc_classes(tmp_path, capsys, image_model):
    """partial-fit on the NFD copy of a folder failed ("not among the classifier's classes" naming
    the same text twice), and predict left its images out of the accuracy."""
    folder, fitted = image_model
    nfd = _nfd_copy(folder, tmp_path / "nfd")
    model = tmp_path / "m"
    model.mkdir()
    for part in fitted.iterdir():
        (model / part.name).write_bytes(part.read_bytes())
    assert _run("predict", nfd, "--model", model, "--out", tmp_path / "p.csv", "--no-feature-cache") == 0
    assert "on the 9 with a known class" in capsys.readouterr().out
    assert _run("partial-fit", nfd, "--model", model, "--no-feature-cache") == 0
    clf = load_classifier(model)[0]
    assert sorted(clf.classes_.tolist()) == sorted(COLOURS) and clf.class_count_.tolist() == [6, 6, 6]


def test_a_label_names_a_class_written_in_the_other_normal_form():
    """A classifier fitted on NFD names (before folder names were composed, or from texts) takes
    NFC labels, and the other way round; classes of one name in both forms are named as written."""
    assert named_classes(np.array([NFC, "x"]), np.array([NFD, "y"])) == [NFD, None]
    assert named_classes(np.array([NFD]), np.array([NFC])) == [NFC]
    both = np.array([NFC, NFD])
    assert named_classes(np.array([NFD, NFC]), both) == [NFD, NFC]


# ---------------------------------------------------------------- 5. a fit of one class
def test_a_fit_of_one_class_is_refused(tmp_path, capsys):
    """A fit on one class folder, or labels of one class, passed ("1 classes"): the classifier
    predicts that class whatever it is given, and partial-fit can never add another."""
    one = _image_folder(tmp_path / "one", 3, 0, {"red": (220, 30, 30)})
    assert _run("fit", one, "--model", tmp_path / "m", *PIXELS, "--no-feature-cache") == 1
    err = capsys.readouterr().err
    assert f"{one}: all 3 examples are of one class, 'red': a classifier needs examples of at least" in err
    X, _ = _blobs()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", np.full(len(X), 7))
    assert _run("fit", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--model", tmp_path / "m") == 1
    assert "x.npy: all 30 examples are of one class, 7" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_fit_of_one_class_is_refused_before_anything_is_encoded(tmp_path, capsys):
    """The refusal came after every image had been decoded and every text encoded: here a damaged
    image, and an encoder that does not exist, would have been named first."""
    one = _image_folder(tmp_path / "one", 3, 0, {"red": (220, 30, 30)})
    (one / "red" / "broken.png").write_bytes(b"not a png")
    assert _run("fit", one, "--model", tmp_path / "m", *PIXELS, "--no-feature-cache") == 1
    err = capsys.readouterr().err
    assert f"{one}: all 4 examples are of one class, 'red'" in err
    assert "cannot read image" not in err
    texts = tmp_path / "t.tsv"
    texts.write_text("good film\tpos\nfine acting\tpos\n", encoding="utf-8")
    missing = tmp_path / "no-such-encoder"
    assert _run("fit", texts, "--model", tmp_path / "m", "--encoder", missing) == 1
    err = capsys.readouterr().err
    assert f"{texts}: all 2 examples are of one class, 'pos'" in err
    assert "no-such-encoder" not in err
    assert not (tmp_path / "m").exists()


def test_the_label_column_a_classifier_was_fitted_with_is_read_by_later_commands(tmp_path):
    """A CSV fitted with --label-column y: predict, partial-fit and forget on files of the same
    layout read y as the labels without the flag (it was read as a feature column: "unexpected
    ['y']")."""
    X, y = _blobs()
    data = tmp_path / "d.csv"
    with open(data, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "b", "c", "d", "e", "y"])
        writer.writerows([[*row, label] for row, label in zip(X.tolist(), y.tolist(), strict=True)])
    model, out = tmp_path / "m", tmp_path / "p.csv"
    assert _run("fit", str(data), "--label-column", "y", "--model", str(model)) == 0
    assert _run("predict", str(data), "--model", str(model), "--out", str(out)) == 0
    rows = _read_csv(out)
    assert len(rows) == 30 and [r["label"] for r in rows] == list(y)
    assert _run("forget", str(data), "--model", str(model)) == 1  # everything: refused
    assert _run("partial-fit", str(data), "--model", str(model)) == 0
    assert load_classifier(model)[0].class_count_.sum() == 60
