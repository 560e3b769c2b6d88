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


#: A child saving a classifier to argv[1]. As "A" its write waits for the file argv[2] to exist,
#: then fails as a full disk does; as "B" its write reports whether this process holds the lock
#: of the folder it writes into (the one at the path now), then writes.
SAVER = r"""
import errno, os, sys, time
import numpy as np
import faast.classifier_io as cio
from faast import FaastClassifier, locks
role, target, go = sys.argv[1], sys.argv[2], sys.argv[3]
clf = FaastClassifier().fit(np.random.default_rng(0).standard_normal((20, 4)), np.arange(20) % 2)
real = cio._write_locked
def write(out, *args, **kwargs):
    if role == "A":
        print("A writing", flush=True)
        while not os.path.exists(go):
            time.sleep(0.01)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))
    print("B holds the lock of the folder it writes:", locks.path_identity(out) in locks._held, flush=True)
    return real(out, *args, **kwargs)
cio._write_locked = write
try:
    cio.save_classifier(clf, target)
    print(role, "saved", flush=True)
except OSError as exc:
    print(role, "failed:", exc, flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork") or os.name != "posix", reason="needs flock (POSIX)")
def test_a_save_waiting_on_a_failed_first_save_locks_the_folder_it_writes(tmp_path):
    """A first save into a new folder fails (a full disk) while another save of the same folder
    waits for its lock. The failed save removes the folder it made; it did so after letting the lock
    go, so the waiting save got the lock of the removed folder, made the folder again and wrote into
    it holding no lock of it (a third command could write at once). Now the folder is removed under
    the lock, and the waiting save makes it again and locks that one."""
    import subprocess
    import sys

    target, go = tmp_path / "model", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")

    def child(role: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", SAVER, role, str(target), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    a = child("A")
    try:
        assert a.stdout.readline().strip() == "A writing"  # A holds the folder's lock
        b = child("B")
        try:
            line = b.stderr.readline()
            while line and "waiting for another faast command" not in line:
                line = b.stderr.readline()
            assert "waiting for another faast command" in line  # B waits for A's lock
            go.touch()
            a_out, _ = a.communicate(timeout=120)
            b_out, b_err = b.communicate(timeout=120)
        finally:
            b.kill()
    finally:
        a.kill()
    assert "A failed:" in a_out and "No space left on device" in a_out, a_out
    assert "B holds the lock of the folder it writes: True" in b_out, (b_out, b_err)
    assert "B saved" in b_out, (b_out, b_err)
    assert load_classifier(target)[0].predict(np.zeros((1, 4))).shape == (1,)
