"""``faast classify`` on a user's own messy image folders and features files (hunt s82_images):
split folders learned as classes, names that are not UTF-8, (n, 1) labels inside a file,
transparent and 32-bit images, links back to the root, and errors that named no file."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from faast.cli import main
from faast.data.features_file import read_features
from faast.data.image_folder import list_image_folder, load_image_folder


def _pngs(folder: Path, count: int, value: int) -> None:
    """``count`` tiny grey PNGs of values ``value``, ``value + 1``, ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((6, 6, 3), (value + i) % 256, dtype=np.uint8)).save(
            folder / f"{value}_{i}.png"
        )


def _run(*argv: object) -> int:
    return main(["classify", *map(str, argv)])


def _bytes_name(folder: Path, old: str, new: bytes) -> Path:
    """Rename ``folder / old`` to the raw (not UTF-8) name ``new``; skip where the file system
    refuses such names (macOS, Windows)."""
    try:
        os.rename(os.fsencode(folder / old), os.fsencode(folder) + b"/" + new)
    except OSError as exc:
        pytest.skip(f"the file system refuses names that are not UTF-8 ({exc})")
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + new))


# -------------------------------------------------------------- 2: split folders as classes
def test_split_folders_holding_the_same_classes_are_warned_about(tmp_path):
    """`fit photos` with photos/train/<class>/ and photos/val/<class>/ learned the classes 'train'
    and 'val' without a word (only one such folder was warned about)."""
    for split, count in (("train", 3), ("val", 2)):
        for colour, value in (("red", 10), ("blue", 90)):
            _pngs(tmp_path / "photos" / split / colour, count, value)
    with pytest.warns(
        UserWarning,
        match=r"photos: the 2 classes \(train, val\) each hold their images only in sub-folders of the "
        r"same names \(blue, red\).*give one split as the folder \(e.g. .*photos/train\)",
    ):
        list_image_folder(tmp_path / "photos")


def test_class_folders_with_images_of_their_own_or_other_sub_folders_are_not_warned_about(tmp_path):
    """Classes holding images directly, or sub-folders of other names, are an ordinary layout."""
    _pngs(tmp_path / "a" / "cat" / "2019", 2, 10)
    _pngs(tmp_path / "a" / "cat" / "2020", 2, 20)
    _pngs(tmp_path / "a" / "dog", 2, 90)  # directly in the class folder
    _pngs(tmp_path / "a" / "dog" / "2019", 2, 95)
    _pngs(tmp_path / "b" / "cat" / "indoor", 2, 10)
    _pngs(tmp_path / "b" / "dog" / "park", 2, 90)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list_image_folder(tmp_path / "a")
        list_image_folder(tmp_path / "b")


# -------------------------------------------------------------- 4: names that are not UTF-8
def test_an_image_name_that_is_not_utf8_is_refused_when_listed(tmp_path):
    """A Latin-1 'caf\\xe9.png' crashed predict at the CSV write, after every image was encoded,
    naming nothing."""
    _pngs(tmp_path / "test" / "red", 2, 10)
    _pngs(tmp_path / "test" / "blue", 2, 90)
    _bytes_name(tmp_path / "test" / "red", "10_0.png", b"caf\xe9.png")
    with pytest.raises(ValueError, match=r"not UTF-8 text: red/caf\\xe9.png; rename them .*convmv -f latin1"):
        list_image_folder(tmp_path / "test", loose=True)
    flat = tmp_path / "flat"
    _pngs(flat, 2, 10)
    _bytes_name(flat, "10_1.png", b"\xff.png")
    with pytest.raises(
        ValueError, match=r"1 image\(s\) whose file or folder names are not UTF-8 text: \\xff"
    ):
        list_image_folder(flat)


def test_a_class_folder_name_that_is_not_utf8_is_refused_before_fit_saves_it(tmp_path, capsys):
    """fit saved the class 'rouge_\\udce9', and every later predict of it failed."""
    train = tmp_path / "train"
    _pngs(train / "red", 3, 10)
    _pngs(train / "blue", 3, 90)
    _bytes_name(train, "red", b"rouge_\xe9")
    model = tmp_path / "m"
    args = ("--model", model, "--encoder", "pixels", "--resolution", 4, "--cache-dir", tmp_path / "c")
    assert _run("fit", train, *args) == 1
    assert r"not UTF-8 text: rouge_\xe9/10_0.png" in capsys.readouterr().err
    assert not (model / "classifier.json").exists()


def test_an_image_folder_whose_own_name_is_not_utf8_is_read(tmp_path):
    """The folder given (not a name below it) only names the feature cache entry."""
    root = tmp_path / "x"
    _pngs(root / "red", 1, 10)
    root = _bytes_name(tmp_path, "x", b"ph\xe9")
    dataset, paths, _ = load_image_folder(root, 4)
    assert paths == ["red/10_0.png"] and dataset.name.startswith("folder-ph-")


# -------------------------------------------------------------- 5: (n, 1) labels inside a file
def test_labels_of_a_column_inside_npz_or_safetensors_are_refused_as_labels_files_are(tmp_path):
    """Labels (n, 1) were learned as classes '[0]', '[1]' that no later file named."""
    X = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.repeat([0, 1], 4)
    np.savez(tmp_path / "col.npz", features=X, labels=y[:, None])
    save_file({"features": torch.tensor(X), "labels": torch.tensor(y)[:, None]}, tmp_path / "col.safetensors")
    with pytest.raises(
        ValueError,
        match=r"col.npz: labels must be 1-D, got shape \(8, 1\) for its 'labels' array \(a column: save "
        r"labels.ravel\(\)\)",
    ):
        read_features(tmp_path / "col.npz")
    with pytest.raises(ValueError, match=r"col.safetensors: labels must be 1-D, got shape \(8, 1\)"):
        read_features(tmp_path / "col.safetensors")
    np.savez(tmp_path / "flat.npz", features=X, labels=y)
    assert read_features(tmp_path / "flat.npz").labels.shape == (8,)


# -------------------------------------------------------------- 6: transparency
def test_transparent_pixels_are_read_over_white_whatever_colour_they_hide(tmp_path):
    """Two logos alike on screen (alpha 0 outside a red disc) hiding black or white were read
    177/255 apart; a palette's transparency and LA too are laid over white."""
    yy, xx = np.mgrid[:16, :16]
    disc = (yy - 8) ** 2 + (xx - 8) ** 2 < 5**2
    for name, hidden in (("black", 0), ("white", 255)):
        rgba = np.zeros((16, 16, 4), np.uint8)
        rgba[..., :3] = hidden
        rgba[disc] = (200, 30, 30, 255)
        (tmp_path / "logos" / name).mkdir(parents=True)
        Image.fromarray(rgba, "RGBA").save(tmp_path / "logos" / name / "logo.png")
    la = np.zeros((16, 16, 2), np.uint8)
    la[disc] = (40, 255)
    (tmp_path / "logos" / "la").mkdir()
    Image.fromarray(la, "LA").save(tmp_path / "logos" / "la" / "logo.png")
    palette = Image.fromarray(disc.astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 200, 30, 30])
    (tmp_path / "logos" / "p").mkdir()
    palette.save(tmp_path / "logos" / "p" / "logo.png", transparency=0)
    dataset, paths, _ = load_image_folder(tmp_path / "logos", 16)
    images = dict(zip(paths, dataset.images, strict=True))
    black, white = images["black/logo.png"], images["white/logo.png"]
    assert np.array_equal(black, white)
    for image in images.values():
        assert (image[~disc] == 255).all()  # the page under the transparency
    assert (images["p/logo.png"][disc] == (200, 30, 30)).all()
    assert (images["la/logo.png"][disc] == 40).all()


# -------------------------------------------------------------- 7: 32-bit integer images
def test_a_32_bit_integer_image_of_8_bit_values_is_named_in_a_warning(tmp_path):
    """Read as 16-bit (nearly black) without a word; 16-bit images stay silent."""
    grey = np.full((8, 8), 200, np.int32)
    grey[:, :4] = 40
    (tmp_path / "a").mkdir()
    Image.fromarray(grey, "I").save(tmp_path / "a" / "i32.tif")
    Image.fromarray((grey * 250).astype(np.uint16)).save(tmp_path / "a" / "g16.png")
    with pytest.warns(UserWarning) as caught:
        dataset, paths, _ = load_image_folder(tmp_path, 8)
    named = [str(w.message) for w in caught if "32-bit integer pixels" in str(w.message)]
    assert len(named) == 1 and named[0].startswith(str(tmp_path / "a" / "i32.tif"))
    assert "within [0, 255]" in named[0] and "save the image as 8-bit" in named[0]
    assert dataset.images[paths.index("a/i32.tif")].max() <= 1  # still read as 16-bit: the fixed scale


# -------------------------------------------------------------- 8: a link back to the root
@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_link_back_to_the_root_inside_a_class_is_skipped_with_a_warning(tmp_path):
    """red/up -> .. made blue's images examples of red too."""
    root = tmp_path / "root"
    _pngs(root / "red", 2, 10)
    _pngs(root / "blue", 2, 90)
    os.symlink("..", root / "red" / "up")
    os.symlink("../blue", root / "red" / "other")  # another class folder
    os.symlink(tmp_path, root / "red" / "above")  # a folder above the root
    with pytest.warns(UserWarning, match=r"root: skipped 3 linked folder\(s\) that lead back .*e.g. red/"):
        paths, classes, labels = list_image_folder(root)
    assert classes == ["blue", "red"]
    assert [p.relative_to(root).as_posix() for p in paths] == [
        "blue/90_0.png",
        "blue/90_1.png",
        "red/10_0.png",
        "red/10_1.png",
    ]
    assert labels == [0, 0, 1, 1]


# -------------------------------------------------------------- 9: errors naming the file
def test_a_truncated_npz_and_a_text_file_named_npy_are_named(tmp_path):
    """'BadZipFile: File is not a zip file' named no file; a text .npy was advised allow_pickle."""
    X = np.ones((4, 3), np.float32)
    np.savez(tmp_path / "ok.npz", features=X, labels=np.arange(4))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:-60])
    with pytest.raises(ValueError, match=r"cut.npz: a damaged or truncated NumPy file \(BadZipFile"):
        read_features(tmp_path / "cut.npz")
    (tmp_path / "text.npy").write_text("1,2,3\n4,5,6\n", encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"text.npy: not a plain NumPy array file .*looks like text \('1,2,3'\).*\.csv"
    ) as e:
        read_features(tmp_path / "text.npy", labels_path=None)
    assert "allow_pickle" not in str(e.value)
    (tmp_path / "y.npy").write_text("a\nb\n", encoding="utf-8")
    np.save(tmp_path / "x.npy", X[:2])
    with pytest.raises(ValueError, match=r"y.npy: not a plain NumPy array file \(it does not begin"):
        read_features(tmp_path / "x.npy", labels_path=tmp_path / "y.npy")


def test_bfloat16_labels_of_a_safetensors_file_are_read(tmp_path):
    """'Got unsupported ScalarType BFloat16' named no file."""
    X = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2], dtype=torch.bfloat16)
    save_file({"features": X, "labels": y}, tmp_path / "f.safetensors")
    table = read_features(tmp_path / "f.safetensors")
    assert table.labels.dtype == np.float32 and table.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_features_of_another_width_are_named_with_the_width_expected(tmp_path, capsys):
    """'X has 5 features, but FaastClassifier is expecting 6 features as input' named neither."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 6)).astype(np.float32), np.repeat([0, 1], 6)
    np.savez(tmp_path / "six.npz", features=X, labels=y)
    np.savez(tmp_path / "five.npz", features=X[:, :5], labels=y)
    model = tmp_path / "m"
    assert _run("fit", tmp_path / "six.npz", "--model", model) == 0
    capsys.readouterr()
    for action in ("partial-fit", "forget"):
        assert _run(action, tmp_path / "five.npz", "--model", model) == 1
        err = capsys.readouterr().err
        assert "five.npz: 5 features per example, but the classifier at" in err
        assert "expects 6 (it was fitted on a features file); give the same 6 feature columns" in err
    assert _run("predict", tmp_path / "five.npz", "--model", model, "--out", tmp_path / "p.csv") == 1
    assert "five.npz: 5 features per example" in capsys.readouterr().err


def test_a_csv_given_to_a_classifier_fitted_on_an_array_is_warned_about(tmp_path, capsys):
    """Its named columns were taken in file order without a word (80 % fell to 33 %)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 3)).astype(np.float32), np.repeat([0, 1], 6)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    model = tmp_path / "m"
    assert _run("fit", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--model", model) == 0
    lines = ["f2,f0,f1,label", *(f"{r[2]},{r[0]},{r[1]},{c}" for r, c in zip(X, y, strict=True))]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert _run("predict", tmp_path / "t.csv", "--model", model, "--out", tmp_path / "p.csv") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "t.csv: its feature columns (f2, f0, f1) are taken in the file's order: the classifier at" in err
    assert "without column names (not a CSV), so they cannot be matched by name" in err


def test_encoder_help_of_the_later_commands_says_what_it_takes(capsys):
    """It said 'a moved encoder folder', and a folder is refused for images."""
    with pytest.raises(SystemExit):
        main(["classify", "predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "moved encoder folder" not in text
    assert (
        "images: its name as given to fit (efficientnet-lite0, pixels, clip:RN50/openai), not a folder"
        in text
    )


def test_a_premultiplied_grey_image_with_alpha_is_read():
    """Review: mode "La" (a TIFF's associated alpha) was listed as handled but Pillow cannot turn
    it into RGBA (nor into RGB, as before): it goes through LA."""
    from faast.data.image_folder import _to_rgb

    grey = Image.merge("LA", [Image.new("L", (4, 4), 120), Image.new("L", (4, 4), 255)]).convert("La")
    assert grey.mode == "La"
    assert np.asarray(_to_rgb(grey, Path("grey.tif")))[0, 0].tolist() == [120, 120, 120]
