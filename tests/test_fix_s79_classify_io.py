"""A failed first save of a classifier (a full disk) into a folder that did not exist removes the
folder it made, with and without ``classify fit --cv``, and leaves a folder that was there as it
was; ``load_classifier_version`` reads ``classifier.json`` once."""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import faast.io as faast_io
from faast import FaastClassifier
from faast.classifier_io import (
    JSON_NAME,
    TENSORS_NAME,
    load_classifier,
    load_classifier_version,
    save_classifier,
)
from faast.cli import main


def _fitted() -> FaastClassifier:
    rng = np.random.default_rng(0)
    return FaastClassifier().fit(rng.standard_normal((24, 5)).astype(np.float32), np.arange(24) % 3)


@pytest.fixture
def full_disk(monkeypatch):
    """The safetensors writer writes a little, then fails as a full disk does."""

    def failing(tensors: Any, filename: str, metadata: Any = None) -> None:
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(faast_io, "save_file", failing)


def test_a_failed_first_save_removes_the_folders_it_made(tmp_path, full_disk):
    model = tmp_path / "new" / "model"
    with pytest.raises(OSError, match=f"could not save the classifier to {model} ") as caught:
        save_classifier(_fitted(), model)
    assert caught.value.errno == errno.ENOSPC and "No space left on device" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # model/ and new/ are gone


def test_a_failed_save_leaves_a_folder_that_was_there(tmp_path, full_disk):
    empty, kept = tmp_path / "empty", tmp_path / "kept"
    empty.mkdir()
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    for folder in (empty, kept):
        with pytest.raises(OSError, match="No space left on device"):
            save_classifier(_fitted(), folder)
    assert list(empty.iterdir()) == [] and [p.name for p in kept.iterdir()] == ["notes.txt"]
    below = kept / "below"  # made by the save: removed; the folder above it, the user's, kept
    with pytest.raises(OSError, match="No space left on device"):
        save_classifier(_fitted(), below)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


def test_a_later_failed_save_keeps_the_folder_and_its_classifier(tmp_path, monkeypatch):
    model = tmp_path / "m"
    save_classifier(_fitted(), model, {"save": 0})

    def failing(tensors: Any, filename: str, metadata: Any = None) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(faast_io, "save_file", failing)
    with pytest.raises(OSError, match="still holds the classifier saved before"):
        save_classifier(_fitted(), model, {"save": 1})
    assert sorted(p.name for p in model.iterdir()) == [JSON_NAME, TENSORS_NAME]
    assert load_classifier(model)[1] == {"save": 0}


@pytest.mark.parametrize("cv", [False, True], ids=["fit", "fit-cv"])
def test_classify_fit_into_a_new_folder_on_a_full_disk_leaves_no_folder(tmp_path, full_disk, cv, capsys):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", rng.standard_normal((40, 6)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(40) % 2)
    model = tmp_path / "out" / "model"
    argv = ["classify", "fit", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    argv += ["--model", str(model), "--threads", "1", *(["--cv", "2"] if cv else [])]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert f"could not save the classifier to {model}" in err and "No space left on device" in err
    assert not (tmp_path / "out").exists()


def test_load_classifier_version_reads_the_json_once(tmp_path, monkeypatch):
    """It read classifier.json twice (load_json, then file_sha256 for the version)."""
    model = tmp_path / "m"
    save_classifier(_fitted(), model)
    real, opened = io.open, []

    def counting(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and Path(file).name == JSON_NAME:
            opened.append(file)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    monkeypatch.setattr(io, "open", counting)  # pathlib's Path.open
    clf, metadata, version = load_classifier_version(model)
    monkeypatch.undo()
    assert len(opened) == 1, opened
    assert version == faast_io.file_sha256(model / JSON_NAME) and metadata == {}
    assert clf.predict(np.zeros((2, 5), dtype=np.float32)).shape == (2,)


def test_load_classifier_version_keeps_its_errors(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    with pytest.raises(FileNotFoundError, match=f"no such file: {model / JSON_NAME}"):
        load_classifier_version(model)
    (model / JSON_NAME).write_bytes(b"\xff{}")
    with pytest.raises(ValueError, match="is not valid JSON: not UTF-8 text"):
        load_classifier_version(model)
    (model / JSON_NAME).write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid JSON: Expecting"):
        load_classifier_version(model)
    (model / JSON_NAME).write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match="is not a saved FaastClassifier"):
        load_classifier_version(model)
