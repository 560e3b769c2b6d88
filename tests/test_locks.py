"""``faast.locks``: advisory locks between faast commands, tested with real processes.

An exclusive lock excludes every other holder, shared locks admit one another but not an exclusive
one, a process re-enters its own lock freely, a command that waits says so on stderr, and where the
file system cannot lock the command goes on unlocked with one warning. The children hold a lock
until told to let it go (a line on their stdin), so each order is forced, not left to timing.
"""

from __future__ import annotations

import errno
import os
import queue
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from faast import locks
from faast.locks import parent_lock, path_lock

pytestmark = pytest.mark.skipif(locks.fcntl is None, reason="needs flock (POSIX)")

REPO = Path(__file__).resolve().parents[1]
WAITING = "[faast] waiting for another faast command"

#: A child holding ``path_lock(argv[1], shared=argv[2] == "shared")``: "got" once it holds it, then
#: it holds it until a line comes on its stdin.
HOLDER = r"""
import sys
from faast.locks import path_lock
with path_lock(sys.argv[1], shared=sys.argv[2] == "shared", purpose="testing"):
    print("got", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


class Child:
    """A child process whose stdout and stderr lines are read as they come (threads), so that a
    test can wait for a line, or for the child's exit, with a timeout."""

    def __init__(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        base = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**base, **(env or {})},
            text=True,
        )
        self.lines: dict[str, list[str]] = {"out": [], "err": []}
        self._closed: set[str] = set()
        self._events: queue.Queue[tuple[str, str | None]] = queue.Queue()
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self._events.put((name, line.rstrip("\n")))
        self._events.put((name, None))

    def expect(self, stream: str, text: str, timeout: float = 120) -> bool:
        """Wait until a line of ``stream`` ("out" or "err") holds ``text`` (True), or the child
        has closed both streams (False: it exited without saying it)."""
        if any(text in line for line in self.lines[stream]):
            return True
        while len(self._closed) < 2:
            try:
                name, line = self._events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {text!r} in {timeout} s; so far {self.lines}") from None
            if line is None:
                self._closed.add(name)
                continue
            self.lines[name].append(line)
            if name == stream and text in line:
                return True
        return False

    def says(self, stream: str, text: str) -> bool:
        """Whether a line read so far holds ``text`` (lines not yet taken from the queue included)."""
        while True:
            try:
                name, line = self._events.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._closed.add(name)
            else:
                self.lines[name].append(line)
        return any(text in line for line in self.lines[stream])

    def send(self, line: str = "go") -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 120) -> int:
        """Exit status (its streams read to the end)."""
        code = self.proc.wait(timeout=timeout)
        self.expect("out", "\0never\0", timeout=timeout)  # drain both streams
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _holder(path: Path, mode: str) -> Child:
    return Child([sys.executable, "-c", HOLDER, str(path), mode])


@pytest.fixture
def children():
    started: list[Child] = []
    yield lambda path, mode: started.append(_holder(path, mode)) or started[-1]
    for child in started:
        child.kill()


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_an_exclusive_lock_excludes_another_process_which_says_it_waits(tmp_path, children, kind):
    target = tmp_path / "m"
    target.mkdir() if kind == "folder" else target.write_text("x")
    a = children(target, "exclusive")
    assert a.expect("out", "got")
    b = children(target, "exclusive")
    assert b.expect("err", WAITING)  # printed before it blocks
    line = next(line for line in b.lines["err"] if WAITING in line)
    assert line == f"{WAITING} testing {target} ..."
    assert not b.says("out", "got")  # still waiting: a holds it
    a.send()
    assert b.expect("out", "got")  # a let go
    b.send()
    assert a.finish() == 0 and b.finish() == 0


def test_shared_locks_admit_each_other_but_not_an_exclusive_one(tmp_path, children):
    a = children(tmp_path, "shared")
    assert a.expect("out", "got")
    b = children(tmp_path, "shared")
    assert b.expect("out", "got") and not b.says("err", WAITING)  # at once
    c = children(tmp_path, "exclusive")
    assert c.expect("err", WAITING)
    a.send()
    assert a.finish() == 0
    assert not c.says("out", "got")  # b still reads
    b.send()
    assert c.expect("out", "got")
    d = children(tmp_path, "shared")  # a reader waits for the writer
    assert d.expect("err", WAITING)
    c.send()
    assert d.expect("out", "got")
    d.send()
    assert b.finish() == 0 and c.finish() == 0 and d.finish() == 0


def test_a_process_re_enters_its_own_lock(tmp_path, children):
    """Nested locks of one path in one process do not block on themselves (flock alone would: each
    open is a holder of its own); the lock is held until the outer block ends."""
    with path_lock(tmp_path):
        with path_lock(tmp_path, shared=True), path_lock(tmp_path):
            pass
        other = children(tmp_path, "shared")
        assert other.expect("err", WAITING)  # the outer block still holds it
    assert other.expect("out", "got")
    other.send()
    assert other.finish() == 0
    with path_lock(tmp_path, shared=True):
        with path_lock(tmp_path, shared=True):
            reader = children(tmp_path, "shared")
            assert reader.expect("out", "got")  # a shared lock admits it
            reader.send()
            assert reader.finish() == 0


def test_an_exclusive_lock_inside_a_shared_one_is_refused(tmp_path, children):
    """flock raises a shared lock to exclusive by letting it go first: two processes that read under
    the shared lock and then wrote under an inner exclusive one both took their turn, each writing
    over the other's update from what it had read (a silent lost update). It is refused, naming the
    path, before anything changes: the shared lock is still held, and left whole afterwards."""
    with path_lock(tmp_path, shared=True):
        with pytest.raises(
            RuntimeError, match=rf"^{tmp_path}: an exclusive lock was asked for inside a shared"
        ):
            with path_lock(tmp_path):
                raise AssertionError("entered")
        reader = children(tmp_path, "shared")
        assert reader.expect("out", "got")  # still shared
        reader.send()
        assert reader.finish() == 0
        writer = children(tmp_path, "exclusive")
        assert writer.expect("err", WAITING)  # still held
    assert writer.expect("out", "got")
    writer.send()
    assert writer.finish() == 0
    assert not locks._held
    with path_lock(tmp_path):  # the registry is sound: the lock is taken and let go as usual
        pass


def test_a_file_system_that_cannot_lock_is_warned_of_once_and_the_work_goes_on(tmp_path, monkeypatch):
    def refused(fd, mode):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(locks.fcntl, "flock", refused)
    monkeypatch.setattr(locks, "_warned", set())
    done = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with path_lock(tmp_path):
                done.append(1)
    assert done == [1, 1]
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert str(tmp_path) in message and "not locked against other faast commands" in message
    assert os.strerror(errno.ENOLCK) in message


def test_a_folder_that_cannot_be_opened_is_warned_of_not_failed(tmp_path, monkeypatch):
    """A folder one may enter but not list (mode 0311) cannot be opened to lock: the command goes on
    unlocked, with the warning (it failed with 'Permission denied')."""

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(locks.os, "open", refused)
    monkeypatch.setattr(locks, "_warned", set())
    with pytest.warns(UserWarning, match="not locked against other faast commands"), path_lock(tmp_path):
        pass


def test_an_interrupted_wait_leaves_no_descriptor_open(tmp_path, monkeypatch):
    """Ctrl-C while waiting for the lock closes the descriptor opened to take it."""
    opened: list[int] = []
    real_open = os.open

    def recording(*args, **kwargs):
        fd = real_open(*args, **kwargs)
        opened.append(fd)
        return fd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(locks.os, "open", recording)
    monkeypatch.setattr(locks, "_flock", interrupted)
    with pytest.raises(KeyboardInterrupt), path_lock(tmp_path):
        pass
    assert len(opened) == 1
    with pytest.raises(OSError):
        os.fstat(opened[0])  # closed
    assert not locks._held


def test_parent_lock_of_a_link_locks_the_folder_of_the_file_it_names(tmp_path, monkeypatch):
    """A write through a link replaces the file it names (faast.io.atomic_write), in that file's
    folder: that is the folder to lock."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f.bin").write_bytes(b"x")
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "f.bin").symlink_to(tmp_path / "real" / "f.bin")
    locked: list[Path] = []
    monkeypatch.setattr(locks, "path_lock", lambda folder, **kwargs: locked.append(Path(folder)))
    parent_lock(tmp_path / "links" / "f.bin")
    parent_lock(tmp_path / "new" / "g.bin")  # made, as a save would make it
    assert locked == [tmp_path / "real", tmp_path / "new"] and (tmp_path / "new").is_dir()


def test_threads_of_one_process_take_turns(tmp_path):
    """flock does not tell one process's threads apart: the lock's gate makes a second thread wait
    for the first to leave (and lets each thread re-enter its own lock)."""
    inside, leave, order = threading.Event(), threading.Event(), []

    def first() -> None:
        with path_lock(tmp_path):
            with path_lock(tmp_path, shared=True):  # re-entry in the same thread
                order.append("first in")
                inside.set()
                leave.wait(10)
            order.append("first out")

    def second() -> None:
        with path_lock(tmp_path):
            order.append("second in")

    one = threading.Thread(target=first)
    one.start()
    assert inside.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.3)
    assert two.is_alive(), "the second thread entered while the first held the lock"
    leave.set()
    one.join(10)
    two.join(10)
    assert order == ["first in", "first out", "second in"]


def test_a_system_without_flock_warns_once_not_once_per_path(tmp_path, monkeypatch):
    """Without flock (Windows) nothing is locked whatever the path: one warning per process said so
    (it was one per path locked: a warning for every folder and file a command touched)."""
    monkeypatch.setattr(locks, "fcntl", None)
    monkeypatch.setattr(locks, "_warned", set())
    folders = [tmp_path / name for name in ("a", "b", "c")]
    for folder in folders:
        folder.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for folder in folders:
            with path_lock(folder):
                pass
        with parent_lock(tmp_path / "a" / "file.txt"):
            pass
        with locks.lock_file(tmp_path / ".x.lock"):
            pass
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "cannot lock files on this system" in messages[0]
    assert not (tmp_path / ".x.lock").exists()
