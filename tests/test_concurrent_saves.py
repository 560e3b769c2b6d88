"""Several faast commands on one classifier at once, and failing disks (hunt: concurrency).

* Two saves of one ``--model`` never mix (a folder of one save's JSON and the other's tensors
  loaded silently): a save holds the folder's exclusive lock, and the digest its JSON records is
  that of the bytes it wrote.
* ``partial-fit`` and ``forget`` load under the shared lock, work unlocked and save under the
  exclusive one, refused when another command saved the folder since their load: of two at once
  one succeeds and the other says so and writes nothing (one batch was lost, both commands
  reporting success); a ``predict`` meanwhile does not wait for their work.
* A load (``predict``) holds the shared lock: it never reads half of a save.
* A save whose last move fails while its JSON is in place says that it saved (warning).
* A full disk or an I/O error names the file written; an unwritable feature cache is skipped with
  a warning; ``--out`` through a link, with a long name or ending in ``/``.

The races are forced, not timed: a child command stops at a chosen step (a line "@@paused" on its
stdout) until the test tells it to go on, and the other command is checked to wait for it (the
line it prints while waiting) before it is let go.
"""

from __future__ import annotations

import csv
import errno
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import faast.classifier_io as classifier_io
import faast.io as faast_io
from faast import FaastClassifier
from faast.classifier_io import (
    JSON_NAME,
    PENDING_TENSORS_NAME,
    TENSORS_NAME,
    load_classifier,
    save_classifier,
)
from faast.cli import main
from faast.encoders.cache import through_cache
from faast.io import atomic_write, check_writable, file_sha256, save_json, save_tensors
from tests.test_locks import WAITING, Child

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs flock (POSIX)")

#: ``python -c`` of the faast CLI that stops once, before or after ``GATE=module:function:when``
#: (a line "@@paused" on stdout), until a line comes on its stdin.
GATED_CLI = r"""
import importlib, os, sys
module_name, name, when = os.environ["GATE"].split(":") if os.environ.get("GATE") else (None,) * 3
if module_name:
    module = importlib.import_module(module_name)
    real, done = getattr(module, name), []

    def gated(*args, **kwargs):
        stop = not done
        done.append(1)
        if stop and when == "before":
            print("@@paused", flush=True); sys.stdin.readline()
        out = real(*args, **kwargs)
        if stop and when == "after":
            print("@@paused", flush=True); sys.stdin.readline()
        return out

    setattr(module, name, gated)
from faast.cli import main
sys.exit(main(sys.argv[1:]))
"""
PAUSED = "@@paused"


def _data(folder: Path, name: str, seed: int, n: int = 40, d: int = 8) -> list[str]:
    """A features file of ``n`` rows (two classes) and its ``--labels`` arguments."""
    rng = np.random.default_rng(seed)
    np.save(folder / f"{name}.npy", rng.standard_normal((n, d)).astype(np.float32) + seed)
    np.save(folder / f"{name}_y.npy", np.arange(n) % 2)
    return [str(folder / f"{name}.npy"), "--labels", str(folder / f"{name}_y.npy")]


def _classify(*argv: Any) -> int:
    return main(["classify", *map(str, argv), "--threads", "1"])


def _command(tmp_path: Path, *argv: Any, gate: str | None = None) -> Child:
    """``faast classify ARGV`` in a child process, stopped at ``gate`` when given."""
    args = [sys.executable, "-c", GATED_CLI, "classify", *map(str, argv), "--threads", "1"]
    return Child(args, cwd=tmp_path, env={"GATE": gate or ""})


def _finish(*children: Child) -> None:
    for child in children:
        code = child.finish()
        assert code == 0, child.lines["err"]


def _same(folder: Path, reference: Path, X: np.ndarray) -> None:
    """The classifier in ``folder`` is the one in ``reference`` (counts and scores)."""
    got, want = load_classifier(folder)[0], load_classifier(reference)[0]
    np.testing.assert_array_equal(got.class_count_, want.class_count_)
    np.testing.assert_allclose(got.decision_function(X), want.decision_function(X), rtol=1e-6, atol=1e-9)


@pytest.fixture
def started():
    """Children to kill should a test fail while they wait."""
    children: list[Child] = []
    yield children
    for child in children:
        child.kill()


# ----------------------------------------------------------------- several commands at once
def test_two_fits_of_one_model_at_once_do_not_mix(tmp_path, started):
    """The first fit stops between writing its tensors and its JSON; the second waits for it (it
    wrote its tensors over the first's pending file, and the first failed with "No such file …
    .next" or recorded the digest of the second's tensors: a silent mix) and its save wins whole."""
    a, b = _data(tmp_path, "a", 0), _data(tmp_path, "b", 1)
    model = tmp_path / "m"
    gate = "faast.classifier_io:save_tensors:after"
    first = _command(tmp_path, "fit", *a, "--model", model, "--cut", "ridge=1e-3", "--normalize", gate=gate)
    started.append(first)
    assert first.expect("out", PAUSED)
    second = _command(tmp_path, "fit", *b, "--model", model)
    started.append(second)
    waited = second.expect("err", WAITING)
    first.send()
    _finish(first, second)
    assert waited, second.lines["err"]
    assert _classify("fit", *b, "--model", tmp_path / "ref") == 0
    _same(model, tmp_path / "ref", np.load(a[0]))
    assert sorted(p.name for p in model.iterdir()) == [JSON_NAME, TENSORS_NAME]


#: The line a change refused at its save prints (after the folder's name).
CHANGED = (
    ": the classifier changed while this command ran (another faast command saved it); nothing was "
    "written: run again"
)


@pytest.mark.parametrize("action", ["partial-fit", "forget"])
def test_two_changes_of_one_model_at_once_lose_neither(tmp_path, started, action):
    """The first ``partial-fit`` (``forget``) stops before its save, its batch applied; the second
    runs meanwhile, without waiting (no lock is held while a command works), and saves. The first
    then refuses to save over it, in one line, and writes nothing (it saved the classifier as it
    loaded it plus its batch: the second's batch was lost, both exit 0); run again, it applies its
    batch to the second's result."""
    a, b, c = _data(tmp_path, "a", 0), _data(tmp_path, "b", 1), _data(tmp_path, "c", 2)
    model, ref = tmp_path / "m", tmp_path / "ref"
    for folder in (model, ref):
        assert _classify("fit", *a, "--model", folder) == 0
        if action == "forget":
            assert _classify("partial-fit", *b, "--model", folder) == 0
            assert _classify("partial-fit", *c, "--model", folder) == 0
    first = _command(
        tmp_path, action, *b, "--model", model, gate="faast.classifier_io:save_classifier:before"
    )
    started.append(first)
    assert first.expect("out", PAUSED)
    second = _command(tmp_path, action, *c, "--model", model)
    started.append(second)
    assert second.finish() == 0, second.lines["err"]
    assert not second.says("err", WAITING)
    after_second = (model / JSON_NAME).read_bytes(), (model / TENSORS_NAME).read_bytes()
    first.send()
    assert first.finish() == 1
    assert first.lines["err"] == [f"faast classify: error: {model}{CHANGED}"], first.lines["err"]
    assert not first.says("out", "saved to")
    assert ((model / JSON_NAME).read_bytes(), (model / TENSORS_NAME).read_bytes()) == after_second
    assert sorted(p.name for p in model.iterdir()) == [JSON_NAME, TENSORS_NAME]
    assert _classify(action, *b, "--model", model) == 0  # run again: both batches applied
    assert _classify(action, *c, "--model", ref) == 0 and _classify(action, *b, "--model", ref) == 0
    _same(model, ref, np.load(a[0]))
    assert int(load_classifier(model)[0].class_count_.sum()) == (120 if action == "partial-fit" else 40)


def test_fit_cv_holds_no_lock_through_its_cross_validation(tmp_path, started):
    """``fit --cv`` stops before its cross-validation (its first save done): a ``partial-fit`` of
    the folder runs meanwhile without waiting (the lock was held from the first save to the
    second), and the second save, which would lose it, is refused in one line; the folder keeps
    the partial-fit's save."""
    a, b = _data(tmp_path, "a", 0), _data(tmp_path, "b", 1)
    model = tmp_path / "m"
    gate = "faast.eval.cross_validation:cross_validate:before"
    fit = _command(tmp_path, "fit", *a, "--model", model, "--cv", 2, gate=gate)
    started.append(fit)
    assert fit.expect("out", PAUSED)
    assert fit.says("out", "saved to")  # its first save
    change = _command(tmp_path, "partial-fit", *b, "--model", model)
    started.append(change)
    assert change.finish() == 0, change.lines["err"]
    assert not change.says("err", WAITING)
    fit.send()
    assert fit.finish() == 1
    said = (
        f"faast classify: error: {model}: the classifier changed while this command ran (another faast "
        "command saved it); the cross-validation printed above was not saved (the folder keeps that "
        "command's save)"
    )
    assert fit.lines["err"] == [said], fit.lines["err"]
    clf, meta = load_classifier(model)
    assert int(clf.class_count_.sum()) == 80 and "cross_validation" not in meta
    # alone, its second save goes through
    assert _classify("fit", *a, "--model", tmp_path / "alone", "--cv", 2) == 0
    assert "cross_validation" in load_classifier(tmp_path / "alone")[1]


def test_predict_does_not_wait_for_a_partial_fit_at_work(tmp_path, started):
    """A ``partial-fit`` stopped while it reads (encodes) its data holds no lock: a ``predict`` of
    the same folder runs at once, with the classifier as saved before (it waited for the whole
    partial-fit, which held the exclusive lock from its load to its save); the partial-fit then
    saves."""
    a, b = _data(tmp_path, "a", 0), _data(tmp_path, "b", 1)
    model = tmp_path / "m"
    assert _classify("fit", *a, "--model", model) == 0
    expected = load_classifier(model)[0].predict(np.load(a[0]))
    gate = "faast.cli.classify_data:read_data:before"
    changer = _command(tmp_path, "partial-fit", *b, "--model", model, gate=gate)
    started.append(changer)
    assert changer.expect("out", PAUSED)
    reader = _command(tmp_path, "predict", a[0], "--model", model, "--out", tmp_path / "p.csv")
    started.append(reader)
    assert reader.finish() == 0, reader.lines["err"]  # while the partial-fit is stopped
    assert not reader.says("err", WAITING), reader.lines["err"]
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as fh:
        assert [int(row["predicted"]) for row in csv.DictReader(fh)] == expected.tolist()
    changer.send()
    _finish(changer)
    assert int(load_classifier(model)[0].class_count_.sum()) == 80


def test_predict_reads_a_model_whole_while_another_command_saves_it(tmp_path, started):
    """``predict`` stops between reading the JSON and the tensors; a fit of the same folder waits
    for it to finish reading (it saved at once, and predict refused the healthy model as "written by
    different saves … fit anew", or predicted from a mix), and predict predicts with the model it
    read."""
    a, b, c = _data(tmp_path, "a", 0), _data(tmp_path, "b", 1), _data(tmp_path, "c", 2)
    model = tmp_path / "m"
    assert _classify("fit", *a, "--model", model) == 0
    expected = load_classifier(model)[0].predict(np.load(c[0]))
    gate = "faast.classifier_io:load_json_with_sha256:after"
    reader = _command(tmp_path, "predict", c[0], "--model", model, "--out", tmp_path / "p.csv", gate=gate)
    started.append(reader)
    assert reader.expect("out", PAUSED)
    writer = _command(tmp_path, "fit", *b, "--model", model, "--cut", "ridge=1e-3", "--normalize")
    started.append(writer)
    waited = writer.expect("err", WAITING)
    reader.send()
    _finish(reader, writer)
    assert waited, writer.lines["err"]
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as fh:
        predicted = [int(row["predicted"]) for row in csv.DictReader(fh)]
    assert predicted == expected.tolist()
    assert _classify("fit", *b, "--model", tmp_path / "ref", "--cut", "ridge=1e-3", "--normalize") == 0
    _same(model, tmp_path / "ref", np.load(c[0]))


# ----------------------------------------------------------------- failing disks
def _fitted(seed: int) -> FaastClassifier:
    rng = np.random.default_rng(seed)
    n = 20 + 4 * seed
    return FaastClassifier().fit(rng.standard_normal((n, 5)).astype(np.float32), np.arange(n) % 3)


def test_a_failed_last_move_of_a_save_says_the_save_is_in_effect(tmp_path, monkeypatch, capsys):
    """The JSON is in place and names the pending tensors: the folder loads the new classifier. A
    failure of the move that follows was an error (exit 1: a re-run counted the batch twice); it is
    a warning saying so, and the next save finishes the move."""
    folder = tmp_path / "m"
    save_classifier(_fitted(0), folder, {"save": 0})
    real = classifier_io.move_into_place

    def failing(source: Any, dest: Any) -> Any:
        if Path(source).name == PENDING_TENSORS_NAME:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(source), None, str(dest))
        return real(source, dest)

    monkeypatch.setattr(classifier_io, "move_into_place", failing)
    with pytest.warns(UserWarning, match="the classifier is saved, but moving") as caught:
        save_classifier(_fitted(1), folder, {"save": 1})
    assert "the folder loads the new classifier" in str(caught[0].message)
    assert load_classifier(folder)[1]["save"] == 1 and (folder / PENDING_TENSORS_NAME).exists()
    monkeypatch.setattr(classifier_io, "move_into_place", real)
    save_classifier(_fitted(2), folder, {"save": 2})
    assert load_classifier(folder)[1]["save"] == 2
    assert sorted(p.name for p in folder.iterdir()) == [JSON_NAME, TENSORS_NAME]
    # at the command line: exit 0, the summary printed, one warning line
    a, b = _data(tmp_path, "a", 0), _data(tmp_path, "b", 1)
    assert _classify("fit", *a, "--model", tmp_path / "cli") == 0
    monkeypatch.setattr(classifier_io, "move_into_place", failing)
    capsys.readouterr()
    assert _classify("partial-fit", *b, "--model", tmp_path / "cli") == 0
    out, err = capsys.readouterr()
    assert "saved to" in out and err.count("\n") == 1 and "warning:" in err and "Input/output error" in err
    assert int(load_classifier(tmp_path / "cli")[0].class_count_.sum()) == 80


def _disk_full(*args: Any, **kwargs: Any) -> None:
    """The safetensors writer on a full disk (its own words)."""
    from safetensors import SafetensorError

    raise SafetensorError(
        'Error while serializing: I/O error: No space left on device (os error 28) at path "x"'
    )


def test_a_full_disk_or_an_io_error_names_the_file_written(tmp_path, monkeypatch):
    """Each error names the file being written and the cause (they said "No space left on device",
    "Input/output error" or the safetensors writer's message, no path); the previous file stays."""
    path = tmp_path / "a.json"
    save_json(path, {"v": 1})

    def full(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write("x")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(
        OSError, match=rf"could not write {path} \(No space left on device\); the previous file is"
    ):
        atomic_write(path, full)
    with pytest.raises(
        OSError, match=rf"could not write {tmp_path / 'new.txt'} \(No space .*nothing was written"
    ):
        atomic_write(tmp_path / "new.txt", full)
    real_replace = os.replace

    def eio(source: Any, dest: Any) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), source, None, dest)

    monkeypatch.setattr(faast_io.os, "replace", eio)
    with pytest.raises(OSError, match=rf"could not write {path} \(Input/output error\)") as raised:
        save_json(path, {"v": 2})
    assert raised.value.errno == errno.EIO
    monkeypatch.setattr(faast_io.os, "replace", real_replace)
    monkeypatch.setattr(faast_io, "save_file", _disk_full)
    target = tmp_path / "t.safetensors"
    with pytest.raises(OSError, match=rf"could not write {target} \(No space left on device\)") as raised:
        save_tensors(target, {"x": torch.zeros(2)}, kind="weights")
    assert raised.value.errno == errno.ENOSPC
    assert faast_io.load_json(path) == {"v": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    # a classifier's save says which save failed and what the folder holds; so does the command
    monkeypatch.undo()
    a, b = _data(tmp_path, "a", 0), _data(tmp_path, "b", 1)
    model = tmp_path / "m"
    assert _classify("fit", *a, "--model", model) == 0
    monkeypatch.setattr(faast_io, "save_file", _disk_full)
    said = (
        "could not save the classifier to .*m .No space left on device, writing "
        "classifier.safetensors.next.; the folder still holds the classifier saved before"
    )
    with pytest.raises(OSError, match=said):
        save_classifier(_fitted(0), model)
    assert _classify("partial-fit", *b, "--model", model) == 1
    assert int(load_classifier(model)[0].class_count_.sum()) == 40


def test_a_read_error_while_hashing_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    real_open = open

    class Broken:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> Broken:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.fh.close()

        def read(self, size: int) -> bytes:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr("builtins.open", lambda *a, **k: Broken(real_open(*a, **k)))
    with pytest.raises(OSError) as raised:
        file_sha256(path)
    assert raised.value.errno == errno.EIO and raised.value.filename == str(path)


def test_an_unwritable_feature_cache_is_skipped_with_one_warning(tmp_path, monkeypatch, capsys):
    """The features were computed: a cache that cannot be written (disk full, read-only) costs
    them no more (the fit failed after encoding every image); one warning names it and the cause."""
    from faast.distributed import Dist

    monkeypatch.setattr(faast_io, "save_file", _disk_full)
    path = tmp_path / "cache" / "e" / "x.safetensors"
    feats = torch.ones(3, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            got = through_cache(path, {"num_images": "3"}, Dist(), lambda: {"features": feats})
            assert torch.equal(got, feats)
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert f"feature cache {path} not written (No space left on device); continuing without it" in str(
        caught[0].message
    )
    assert not path.exists()
    # at the command line: the fit is saved, one warning line
    from tests.test_classify_cli import _image_folder

    monkeypatch.undo()

    def read_only(path: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr("faast.encoders.cache.save_tensors", read_only)
    images = _image_folder(tmp_path / "images", 2, 0)
    common = ["--encoder", "pixels", "--resolution", 4, "--cache-dir", tmp_path / "other-cache"]
    capsys.readouterr()
    assert _classify("fit", images, "--model", tmp_path / "m", *common) == 0
    out, err = capsys.readouterr()
    assert "saved to" in out and err.count("\n") == 1, err
    assert "feature cache" in err and "not written (Read-only file system)" in err


# ----------------------------------------------------------------- where --out points
def test_an_output_through_a_link_replaces_the_file_it_names(tmp_path):
    """The link is kept and the file it names is replaced, atomically, in its own folder (the link
    was replaced by a file, the target left unchanged); a link to nothing is refused."""
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "t.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert check_writable(link) == link
    assert atomic_write(link, lambda tmp: Path(tmp).write_text("new\n")) == link
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["link.csv", "shared", "t.csv"]
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    for write in (check_writable, lambda p: atomic_write(p, lambda tmp: None)):
        with pytest.raises(ValueError, match=r"dangling.csv is a link to nothing \(.*nowhere.csv\)"):
            write(dangling)
    assert dangling.is_symlink() and not (tmp_path / "nowhere.csv").exists()


def test_a_long_legal_file_name_is_written(tmp_path):
    """A name of 250 bytes is legal (255); the temporary name keeps 64 bytes of it (it added 14
    bytes to the whole name: "File name too long")."""
    path = tmp_path / ("p" * 246 + ".csv")
    assert check_writable(path) == path
    atomic_write(path, lambda tmp: Path(tmp).write_text("x\n"))
    assert path.read_text() == "x\n" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_an_output_ending_in_a_slash_is_refused(tmp_path, capsys):
    """``--out preds/`` means a folder: refused, naming it (a file ``preds`` was written)."""
    a = _data(tmp_path, "a", 0)
    assert _classify("fit", *a, "--model", tmp_path / "m") == 0
    capsys.readouterr()
    out = f"{tmp_path / 'preds'}{os.sep}"
    assert _classify("predict", a[0], "--model", tmp_path / "m", "--out", out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the output {out} ends in '/', which names a folder, not a file" in err[0], err
    assert not (tmp_path / "preds").exists()
    with pytest.raises(ValueError, match="names a folder"):
        atomic_write(out, lambda tmp: None)
