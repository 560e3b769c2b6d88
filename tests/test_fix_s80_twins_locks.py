"""Session 80 fixes: the read of a task with its digest in one function, the read errors of
``faast.io`` named by one helper, a lock file that is a symbolic link (not followed), and
``path_lock`` on a folder replaced while the command waited (the new folder is locked)."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from faast import io as faast_io
from faast import locks
from faast.lm import fastweights as fw
from faast.locks import lock_file, path_identity, path_lock

needs_flock = pytest.mark.skipif(locks.fcntl is None, reason="needs flock (POSIX)")


# -- 1. read_task_and_digest ------------------------------------------------------------------


def test_read_task_and_digest_is_read_task_with_its_digest(tmp_path):
    path = tmp_path / "fw.safetensors"
    fw.write_task(path, "a", {"m/gram": torch.eye(2, dtype=torch.float64)}, {"n": 1})
    name, tensors, signature, digest = fw.read_task_and_digest(path, None)
    want_name, want_tensors, want_signature = fw.read_task(path, None)
    assert (name, signature) == (want_name, want_signature) == ("a", {"n": 1})
    assert tensors.keys() == want_tensors.keys() and torch.equal(tensors["m/gram"], want_tensors["m/gram"])
    assert digest == fw.task_digest(want_tensors, want_signature)
    with pytest.raises(ValueError, match="has no task 'b'"):
        fw.read_task_and_digest(path, "b")


# -- 2. faast.io: an OSError of a read names the path -----------------------------------------


def _eio(*args: Any, **kwargs: Any) -> bytes:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def test_load_json_with_sha256_names_the_file_of_a_read_error(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text("{}", encoding="utf-8")
    monkeypatch.setattr(Path, "read_bytes", _eio)
    with pytest.raises(OSError) as raised:
        faast_io.load_json_with_sha256(path)
    assert type(raised.value) is OSError and raised.value.errno == errno.EIO
    assert raised.value.filename == str(path) and raised.value.strerror == os.strerror(errno.EIO)
    assert isinstance(raised.value.__cause__, OSError) and raised.value.__cause__.filename is None


def test_a_read_error_that_names_a_file_goes_on_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text("{}", encoding="utf-8")
    error = PermissionError(errno.EACCES, "Permission denied", "/elsewhere")

    def refused(*args: Any, **kwargs: Any) -> bytes:
        raise error

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(PermissionError) as raised:
        faast_io.load_json_with_sha256(path)
    assert raised.value is error


# -- 3a. a lock file that is a symbolic link --------------------------------------------------


def _lock_with_link(tmp_path: Path, monkeypatch) -> tuple[Path, Path, list[str]]:
    """lock_file on a dangling link ``.asset.lock`` -> ``outside/made-by-lock``: (the link, its
    target, the warnings)."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "outside").mkdir()
    target = tmp_path / "outside" / "made-by-lock"
    link = tmp_path / "cache" / ".asset.lock"
    link.symlink_to(target)
    monkeypatch.setattr(locks, "_warned", set())
    held = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lock_file(link, purpose="fetching assets into", shown=tmp_path / "cache" / "asset"):
            held.append(dict(locks._held))
    assert not os.path.lexists(target), "the lock made the file the link names"
    assert held == [{}]  # the block ran, unlocked
    return link, target, [str(w.message) for w in caught]


@needs_flock
def test_a_dangling_link_at_the_lock_path_is_not_followed(tmp_path, monkeypatch):
    """It made the file the link names (possibly outside the cache), locked it and removed the
    link: now the block runs unlocked, one warning names the link, and the link is left."""
    link, target, messages = _lock_with_link(tmp_path, monkeypatch)
    assert not target.exists() and not os.path.lexists(target)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(messages) == 1, messages
    assert f"{link} is a symbolic link" in messages[0] and "not locked against other faast" in messages[0]
    assert str(tmp_path / "cache" / "asset") in messages[0]


@needs_flock
def test_a_link_made_after_the_check_is_refused_by_the_open(tmp_path, monkeypatch):
    """O_NOFOLLOW: a link that the check did not see (made in between) is not followed either."""
    real, calls = locks._is_link, []

    def late(p: Path) -> bool:
        calls.append(p)
        return False if len(calls) == 1 else real(p)

    monkeypatch.setattr(locks, "_is_link", late)
    link, target, messages = _lock_with_link(tmp_path, monkeypatch)
    assert len(calls) == 2 and not os.path.lexists(target) and link.is_symlink()
    assert len(messages) == 1 and "is a symbolic link" in messages[0]


@needs_flock
def test_a_lock_file_is_still_made_locked_and_removed(tmp_path):
    path = tmp_path / ".a.lock"
    with lock_file(path):
        assert path.is_file() and list(locks._held) == [path_identity(path)]
    assert not path.exists() and not locks._held


# -- 3b. path_lock on a folder replaced while waiting -----------------------------------------


def _replacing_flock(monkeypatch, folder: Path, action) -> list[tuple[int, int]]:
    """``_flock`` that runs ``action`` (another command replacing or removing ``folder``) before
    the first lock is taken, as if it happened while this command waited: the keys locked."""
    real, locked = locks._flock, []

    def flock(fd: int, exclusive: bool, path: Path, purpose: str) -> bool:
        if not locked:
            action()
        st = os.fstat(fd)
        locked.append((st.st_dev, st.st_ino))
        return real(fd, exclusive, path, purpose)

    monkeypatch.setattr(locks, "_flock", flock)
    return locked


@needs_flock
@pytest.mark.parametrize("shared", [False, True])
def test_path_lock_locks_the_folder_that_replaced_the_one_it_waited_for(tmp_path, monkeypatch, shared):
    folder = tmp_path / "model"
    folder.mkdir()
    old = path_identity(folder)

    def replace() -> None:
        folder.rename(tmp_path / "model.old")
        folder.mkdir()

    locked = _replacing_flock(monkeypatch, folder, replace)
    with path_lock(folder, shared=shared):
        new = path_identity(folder)
        assert new != old and list(locks._held) == [new]
        assert locked == [old, new]
        fd = os.open(folder, os.O_RDONLY)  # another open file (another command): refused
        try:
            with pytest.raises(BlockingIOError):
                locks.fcntl.flock(fd, locks.fcntl.LOCK_EX | locks.fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert not locks._held


@needs_flock
def test_path_lock_of_a_folder_removed_while_waiting_runs_the_block_for_the_caller_to_look(
    tmp_path, monkeypatch
):
    """Removed (not replaced) meanwhile: nothing to lock at the path; the block runs (the caller
    looks again: faast.classifier_io.locked_save_folder makes the folder again and locks it)."""
    folder = tmp_path / "model"
    folder.mkdir()
    old = path_identity(folder)
    locked = _replacing_flock(monkeypatch, folder, folder.rmdir)
    with path_lock(folder):
        assert path_identity(folder) is None and locked == [old] and list(locks._held) == [old]
    assert not locks._held


@needs_flock
def test_an_inner_path_lock_does_not_look_again(tmp_path, monkeypatch):
    """Re-entry shares the outer lock: no second open-and-lock, whatever the path names now."""
    folder = tmp_path / "model"
    folder.mkdir()
    with path_lock(folder):
        key = path_identity(folder)
        with path_lock(folder, shared=True):
            assert list(locks._held) == [key] and locks._held[key].count == 2
    assert not locks._held


# -- 4. review of the session's lock changes ----------------------------------------------------


@needs_flock
def test_unlocked_warnings_name_the_line_that_took_the_lock(tmp_path, monkeypatch):
    """Raised in the lock's helpers (an open that cannot make the lock file, a folder that cannot
    be opened, a link), each warning names this file, not faast/locks.py."""
    (tmp_path / "noperm").mkdir()
    (tmp_path / "dangling.lock").symlink_to(tmp_path / "nowhere")
    real_open = os.open

    def refusing_open(p, flags, *args):
        if str(p).endswith("ro.lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if str(p).endswith("noperm"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(p, flags, *args)

    monkeypatch.setattr(locks.os, "open", refusing_open)
    monkeypatch.setattr(locks, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with lock_file(tmp_path / "ro.lock"):
            pass
        with path_lock(tmp_path / "noperm"):
            pass
        with lock_file(tmp_path / "dangling.lock"):
            pass
    assert len(caught) == 3
    assert {Path(w.filename).name for w in caught} == {Path(__file__).name}


@needs_flock
def test_a_named_pipe_at_the_lock_path_is_not_waited_on(tmp_path, monkeypatch):
    """Opening a named pipe for reading waits for a writer: the lock opens it without waiting,
    and locks nothing (one warning) instead of hanging."""
    import signal

    fifo = tmp_path / "x.lock"
    os.mkfifo(fifo)
    monkeypatch.setattr(locks, "_warned", set())

    def hung(*_: Any) -> None:
        raise TimeoutError("the lock waited on the named pipe")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        with pytest.warns(UserWarning, match="neither a regular file nor a folder"), lock_file(fifo):
            pass
        monkeypatch.setattr(locks, "_warned", set())
        with pytest.warns(UserWarning, match="neither a regular file nor a folder"), path_lock(fifo):
            pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert fifo.exists()  # not ours to remove


@needs_flock
def test_a_path_whose_identity_never_settles_is_locked_once_with_a_warning(tmp_path, monkeypatch):
    folder = tmp_path / "d"
    folder.mkdir()
    monkeypatch.setattr(locks, "path_identity", lambda p: (-1, -1))  # never what fstat says
    monkeypatch.setattr(locks, "RELOCK_LIMIT", 5)
    with pytest.warns(UserWarning, match="changed each of the 5 times"), path_lock(folder):
        assert locks._held  # the last lock taken is held for the block
    assert not locks._held
