"""Advisory locks between faast commands that read and write the same files at once.

Two commands that save one classifier folder, add to one fast-weights file or fetch one asset at
the same time must not interleave their writes (a folder holding the JSON of one save and the
tensors of the other) nor lose one's update (both load, both add, the last save wins). A command
holds :func:`path_lock` on the path it reads and rewrites: exclusive while it changes it, shared
while it only reads it. A command that finds the lock taken says so on stderr and waits.

The lock is ``flock(2)`` on the path itself, a folder or a file that is never replaced (a folder
whose files are replaced, the parent folder of a file that is): no lock file is left beside a
user's outputs. What has no such path (an asset in the cache, built in a folder of its own and
moved into place) is locked with :func:`lock_file`: a lock file of its own, made for the block and
removed after it, so that no lock file is left behind either. Locks are per process and
re-entrant within one: a function holding a folder's lock can call another that takes it again
(``flock`` would otherwise block on the process's own lock, every ``open`` being a lock holder of
its own), except for an exclusive lock inside a shared one,
which is refused (a reader that means to write takes the exclusive lock from the start), and the
threads of one process take turns (``flock`` does not tell them apart). Where ``flock`` is missing
(Windows) or the file system refuses it (some network file systems refuse a lock on a folder),
the command goes on unlocked, with one warning: locking is a guard against running two commands at once, not a
condition of working.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from faast.warning_location import caller_stacklevel

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: errno values of a file system that cannot lock (the command goes on unlocked, with a warning).
_UNLOCKABLE = {errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}


@dataclass
class _Held:
    """A lock this process holds: the open descriptor, whether exclusive, how many holders."""

    fd: int
    exclusive: bool
    count: int


_held: dict[tuple[int, int], _Held] = {}  # (st_dev, st_ino) of the locked path -> the lock
_registry_lock = threading.Lock()
_thread_gates: dict[tuple[int, int], threading.RLock] = {}  # one per path: a thread at a time
_warned: set[str] = set()
#: What the lock's warnings look past: this module and contextlib (the lock's context managers),
#: so that they name the line that took the lock.
_LOCK_MODULES = (__name__, "contextlib")


def _warn_unlocked(path: Path, reason: str) -> None:
    """One warning per path that could not be locked."""
    key = str(path)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            f"{path}: not locked against other faast commands ({reason}); do not run two commands that "
            "write it at once",
            UserWarning,
            stacklevel=caller_stacklevel(_LOCK_MODULES),
        )


def _warn_no_flock() -> None:
    """One warning per process where the system has no ``flock`` (Windows): nothing is locked,
    whatever the path, so one line says so instead of one per path."""
    if _NO_FLOCK not in _warned:
        _warned.add(_NO_FLOCK)
        warnings.warn(
            "faast cannot lock files on this system (it has no flock): do not run two faast commands "
            "that write the same files (a model, a fast-weight file, the asset cache) at once",
            UserWarning,
            stacklevel=caller_stacklevel(_LOCK_MODULES),
        )


_NO_FLOCK = "\0no flock"  # the key of that warning in _warned (no path is named so)


def _flock(fd: int, exclusive: bool, path: Path, purpose: str) -> bool:
    """Take the lock on ``fd``, waiting (with a line on stderr) while another process holds it;
    False when the file system cannot lock."""
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except OSError as exc:
        if exc.errno in _UNLOCKABLE:
            _warn_unlocked(path, os.strerror(exc.errno))
            return False
        raise
    print(f"[faast] waiting for another faast command {purpose} {path} ...", file=sys.stderr, flush=True)
    fcntl.flock(fd, mode)
    return True


@contextmanager
def path_lock(
    path: str | os.PathLike[str], *, shared: bool = False, purpose: str = "using"
) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (an existing folder, or a file that is not replaced while
    locked) for the ``with`` block: exclusive by default, ``shared`` for readers (many at once, none
    while a writer holds it). ``purpose`` completes the line printed while waiting: "waiting for
    another faast command {purpose} {path}". Re-entrant in one process: an inner lock on the same
    path is free; an exclusive one inside a shared one is refused (``RuntimeError``, a programming
    error: ``flock`` cannot raise a lock to exclusive without letting it go, so another command could
    write between the read and the write; take the exclusive lock from the start). A folder or file
    replaced at ``path`` while this command waited for the lock is locked in turn, once it has it
    (the lock of the old one would lock nothing); with one removed meanwhile, the block runs
    holding the lock of the removed one, for the caller to look again (as
    :func:`faast.classifier_io.locked_save_folder` does: it makes the folder again and locks it)."""
    p = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        _warn_no_flock()
        yield
        return
    with _lock_current(p, p, lambda: _open_path(p), shared, purpose, remade=False):
        yield


def _open_path(p: Path) -> int | None:
    """A read-only descriptor of the folder or file ``p`` to lock; None, after one warning, where
    it cannot be opened (a folder one may enter but not list) or is neither a folder nor a regular
    file (a named pipe, opened without waiting for a writer, or a device)."""
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if p.is_dir() else os.O_RDONLY | _NONBLOCK
    try:
        fd = os.open(p, flags)
    except PermissionError as exc:
        _warn_unlocked(p, exc.strerror or "permission denied")
        return None
    return _regular_or_folder(fd, p, p)


#: Opens a named pipe without waiting for a writer (where the system has the flag; it changes
#: nothing for a regular file, whose descriptor only ever holds the lock).
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _regular_or_folder(fd: int, p: Path, label: Path) -> int | None:
    """``fd`` (open on ``p``) where it is a regular file or a folder; otherwise it is closed and
    None returned after one warning naming ``label``: a lock of a pipe or a device would lock
    nothing that a command writes."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return fd
    os.close(fd)
    _warn_unlocked(label, f"{p} is neither a regular file nor a folder: remove it or use another path")
    return None


#: Times the lock is taken again on what the path names now (:func:`_lock_current`) before it
#: keeps the last one, with a warning: a file system whose stat and fstat never agree would
#: otherwise loop for ever.
RELOCK_LIMIT = 100


@contextmanager
def _lock_current(
    p: Path, label: Path, opener: Callable[[], int | None], shared: bool, purpose: str, *, remade: bool
) -> Iterator[bool]:
    """The lock of what ``p`` names once this process holds it: ``opener()`` opens ``p`` (None:
    it cannot, and the block runs unlocked), the descriptor is locked (:func:`_locked`, waiting
    while another command holds it; ``label``: the path the waiting line and warnings name), and
    the outermost holder then checks that ``p`` still names the file it locked: one replaced while
    this process waited (its lock locks nothing) is opened and locked again, and so is one removed
    where ``remade`` (``opener`` makes it again; otherwise the block runs with the lock of the
    removed one, for the caller to look again). Yields
    whether this block is the outermost holder of the lock (False where ``p`` could not be opened:
    nothing was made or locked)."""
    for tries in range(1, RELOCK_LIMIT + 1):
        fd = opener()
        if fd is None:
            yield False
            return
        key, gate = _gate_of(fd)
        try:
            with _registry_lock:
                outer = key not in _held
            with _locked(label, fd, key, shared, purpose):
                now = path_identity(p) if outer else key  # (an inner block shares the outer's lock)
                if now != key and (remade or now is not None):  # replaced (removed) while it waited
                    if tries < RELOCK_LIMIT:
                        continue  # the lock of a file no longer there locks nothing: lock the new one
                    warnings.warn(
                        f"{label}: what this path names changed each of the {RELOCK_LIMIT} times it was "
                        "locked (a file system whose stat and fstat disagree?); going on with the last "
                        "lock taken, which may lock nothing",
                        UserWarning,
                        stacklevel=caller_stacklevel(_LOCK_MODULES),
                    )
                yield outer
                return
        finally:
            gate.release()


@contextmanager
def _locked(p: Path, fd: int, key: tuple[int, int], shared: bool, purpose: str) -> Iterator[None]:
    """:func:`path_lock` once this thread holds the process's gate of ``key`` (``fd``: a new
    descriptor of ``p``, closed here)."""
    with _registry_lock:
        held = _held.get(key)
    if held is not None:  # this process holds it already: the inner block shares that lock
        os.close(fd)
        if not shared and not held.exclusive:
            # flock converts a shared lock by letting it go first: another command could take the
            # exclusive lock in between, write, and this one would then write over what it read
            raise RuntimeError(
                f"{p}: an exclusive lock was asked for inside a shared lock of the same path (this "
                "process reads it); a lock cannot be raised from shared to exclusive without letting "
                "another command in between: take the exclusive lock from the start"
            )
        held.count += 1
        try:
            yield
        finally:
            held.count -= 1
        return
    try:
        locked = _flock(fd, not shared, p, purpose)
    except BaseException:  # Ctrl-C while waiting: the descriptor is not left open
        os.close(fd)
        raise
    if not locked:
        os.close(fd)
        yield
        return
    entry = _Held(fd, not shared, 1)
    with _registry_lock:
        _held[key] = entry
    try:
        yield
    finally:
        with _registry_lock:
            _held.pop(key, None)
        os.close(fd)  # closing the last descriptor of the open file releases the flock


def holds_lock(path: str | os.PathLike[str], *, exclusive: bool = True) -> bool:
    """Whether this process holds a lock (an exclusive one, unless ``exclusive`` is false) on the
    file or folder ``path`` (not a link at it: :func:`lock_file` locks none), taken by
    :func:`path_lock` or :func:`lock_file` — rather than going on unlocked after a warning (no
    ``flock``, a lock file that could not be made)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    with _registry_lock:
        held = _held.get((st.st_dev, st.st_ino))
    return held is not None and (held.exclusive or not exclusive)


def parent_lock(path: str | os.PathLike[str], *, shared: bool = False, purpose: str = "using"):
    """:func:`path_lock` on the folder that holds ``path`` (a file that saves replace, so that its
    own inode changes): the folder is made if missing, as a save would make it (a file in the way
    is refused with the error of :func:`faast.io.make_parent`). A link is followed
    (:func:`faast.io.atomic_write` writes through it): the folder of the file it names is locked."""
    from faast.io import make_parent  # (torch: imported when a command needs it, not with this module)

    file = Path(path)
    target = Path(os.path.realpath(file)) if file.is_symlink() else file
    make_parent(target)  # a file in the way is named, as a save names it
    return path_lock(target.parent, shared=shared, purpose=purpose)


@contextmanager
def lock_file(
    path: str | os.PathLike[str], *, purpose: str = "using", shown: str | os.PathLike[str] | None = None
) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` for the ``with`` block: the file is made
    (empty) if missing and removed when the block ends, so that nothing is left behind. For what
    :func:`path_lock` cannot lock, a thing that is replaced rather than changed in place (an asset
    of the cache: one lock per asset, so that fetches of two assets go on at once). ``shown``: the
    path the line printed while waiting names ("waiting for another faast command {purpose}
    {shown}"; default ``path``). Re-entrant in one process, as :func:`path_lock` (the outer block
    removes the file). A lock file that cannot be made (a read-only cache) leaves the block
    unlocked, with one warning, as a file system that cannot lock does; so does a symbolic link at
    ``path`` (dangling or not), which is neither followed (that would make or lock the file it
    names, outside the lock's folder) nor removed, and a named pipe or device there (opened
    without waiting for a writer): the warning names it and says to remove it.

    Removing a lock file while another command waits for it is safe: a command that gets the lock
    checks that ``path`` still names the file it locked, and locks the new one otherwise (the
    holder removes the file before it lets the lock go)."""
    p = Path(path)
    label = p if shown is None else Path(shown)
    if fcntl is None:  # pragma: no cover - Windows
        _warn_no_flock()
        yield
        return
    with _lock_current(p, label, lambda: _open_lock_file(p, label), False, purpose, remade=True) as outer:
        try:
            yield
        finally:
            if outer:  # removed while locked: a command waiting for it then looks again
                try:
                    os.unlink(p)
                except OSError:  # gone, or not ours to remove (a shared cache's sticky folder):
                    pass  # left, a lock file that locks nothing while unheld


def _open_lock_file(p: Path, label: Path) -> int | None:
    """A descriptor of the lock file ``p``, made (empty) if missing; None, after one warning naming
    ``label``, where it cannot be made: a folder one may not write (a read-only cache), or a
    symbolic link at ``p``, which is not followed (opening it would make the file it names, outside
    the lock's folder; ``O_NOFOLLOW`` refuses a link made after the check, where the system has it)."""
    try:
        if not _is_link(p):
            fd = os.open(p, os.O_RDONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | _NONBLOCK, 0o666)
            return _regular_or_folder(fd, p, label)
    except OSError as exc:
        if not _is_link(p):
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            _warn_unlocked(label, exc.strerror or os.strerror(exc.errno))
            return None
    _warn_unlocked(label, f"{p} is a symbolic link, not followed to make a lock file: remove it")
    return None


def _is_link(p: Path) -> bool:
    """Whether ``p`` is a symbolic link (False where it cannot be looked at: the open then says why)."""
    try:
        return stat.S_ISLNK(os.lstat(p).st_mode)
    except OSError:
        return False


def _gate_of(fd: int) -> tuple[tuple[int, int], threading.RLock]:
    """(st_dev, st_ino) of the open descriptor ``fd`` and the gate of that file, acquired: the
    threads of this process take turns (``flock`` would let them all in). ``fd`` is closed when
    the wait is interrupted (Ctrl-C)."""
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _registry_lock:
        gate = _thread_gates.setdefault(key, threading.RLock())
    try:
        gate.acquire()
    except BaseException:
        os.close(fd)
        raise
    return key, gate


def path_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path``, None when nothing is there."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


__all__ = ["lock_file", "parent_lock", "path_identity", "path_lock"]
