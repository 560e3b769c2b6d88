"""Atomic, pickle-free persistence: safetensors for tensors, JSON for configuration.

Files are written to a temporary file in the destination directory, flushed and fsynced, then
moved over the destination with ``os.replace``, so an interrupted save never leaves a truncated
file behind and never destroys the previous version.

Every safetensors file faast writes belongs to one layout family: its metadata holds
``format = "faast.<kind>"`` and ``format_version``, and one loader (:func:`load_tensors` with
``kind=``) checks both, so a file of another kind, of a newer version or not written by faast
fails with a message that says which. The kinds and their current versions are in ``KINDS``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[str], None],
    *,
    on_written: Callable[[str], None] | None = None,
) -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path`` (a folder, a device or
    a pipe there is refused: :func:`check_output_target`); ``on_written(tmp_path)``, when given, is
    called once the file is complete and synced, before it is moved (e.g. to hash the very bytes
    written). A link at ``path`` is written through: its target file is replaced, the link kept.
    An ``OSError`` of the write (a full disk, an I/O error, also one the safetensors writer
    reports) is raised as one naming ``path`` and the cause; the previous file is unchanged.

    A file replaced passes on its mode (and, where this user may set them, its owner and group:
    :func:`move_into_place`); a write-protected one is refused (``PermissionError``,
    :func:`check_not_write_protected`). A new file gets the mode the system gives a new file
    there (``0o666`` less the umask, or a folder's default ACL)."""
    dest = check_output_target(path)
    target = _through_link(dest)
    check_not_write_protected(target)
    make_parent(target)
    existed = target.exists()
    try:
        fd, tmp = _create_temp(target, private=existed)
    except OSError as exc:  # the folder takes no new file (full, read-only, not writable)
        error = _write_error(exc, dest, (os.fspath(exc.filename or ""),), existed)
        raise error or exc from None
    new_mode = None if existed else stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        write(tmp)
        if new_mode is not None:  # a writer may have made the file anew (0600)
            os.chmod(tmp, new_mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if on_written is not None:
            on_written(tmp)
        move_into_place(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        error = _write_error(exc, dest, (tmp, str(target)), existed)
        if error is not None:
            raise error from exc
        raise
    return dest


def _create_temp(target: Path, *, private: bool) -> tuple[int, str]:
    """Create the temporary file a write of ``target`` fills, beside it, named
    ``.NAME.XXXXXXXX.tmp`` (:func:`_temp_prefix`): an open descriptor and its path. ``private``
    (a file is replaced): mode ``0o600`` while it is written, until it takes the replaced file's
    mode; else ``0o666``, which the system narrows as for any new file (the umask, read by no one:
    reading it means setting it, which races with other threads)."""
    prefix = os.path.join(target.parent, _temp_prefix(target.name))
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o600 if private else 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", prefix)


def write_protected(file: str | os.PathLike[str]) -> bool:
    """Whether the existing regular file ``file`` is write-protected, so that no save should
    replace it: not writable to this user (as ``rm`` judges it), or, for root (whom ``os.access``
    always answers yes), writable to no one by its mode (``chmod a-w`` keeps a file from being
    overwritten in a container run as root too). A save moves a new file over the old one, which
    only the folder's permissions govern, so such a file would be silently replaced."""
    if not os.access(file, os.W_OK):
        return True
    return _is_root() and not os.stat(file).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def check_not_write_protected(
    file: Path, *, context: str = "", elsewhere: str = "write to another file"
) -> None:
    """Refuse, with a ``PermissionError`` naming ``file``, to replace it when it is a regular file
    that is write-protected (:func:`write_protected`); nothing there, or a file that may be
    replaced, passes. ``context`` opens the message, ``elsewhere`` is the other way out."""
    if file.is_file() and write_protected(file):
        raise PermissionError(
            errno.EACCES,
            f"{context}{file.name} is write-protected (read-only to you), so it is not replaced: make it "
            f"writable (chmod u+w) to replace it, or {elsewhere}",
            str(file),
        )


def _is_root() -> bool:
    """Whether this process runs as root (whom permission bits do not bind); False where the
    system has no user ids (Windows)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


#: How many bytes of the destination's name a temporary file's name keeps: ``.NAME.XXXXXXXX.tmp``
#: stays far below the 255 bytes a file name may have, whatever the destination's length.
_TEMP_NAME_BYTES = 64


def _temp_prefix(name: str) -> str:
    """The prefix of a temporary file written for the file ``name``: ``.`` + the longest start of
    the name of at most :data:`_TEMP_NAME_BYTES` bytes that ends between two characters + ``.``
    (a legal name of 255 bytes has a legal temporary name; a cut inside a character of several
    bytes would make a name that is not UTF-8, which some file systems refuse)."""
    kept, size = 0, 0
    for char in name:  # a byte of an undecodable name is one character (surrogateescape)
        size += len(os.fsencode(char))
        if size > _TEMP_NAME_BYTES:
            break
        kept += 1
    return "." + name[:kept] + "."


def _through_link(dest: Path) -> Path:
    """The file a write to ``dest`` replaces: ``dest``, or the file a link there points to (a link
    is written through, not replaced by a file; :func:`check_output_target` refused a link to
    nothing)."""
    return Path(os.path.realpath(dest)) if dest.is_symlink() else dest


def _write_error(exc: BaseException, dest: Path, ours: tuple[str, ...], existed: bool) -> OSError | None:
    """The error to raise for ``exc`` raised while writing ``dest`` (``ours``: the temporary file
    and the file replaced): an ``OSError`` about one of them or about no file (a full disk, an I/O
    error), or the safetensors writer's "I/O error", as one ``OSError`` of the same errno naming
    ``dest`` and the cause (the temporary name means nothing to the reader); None for another."""
    if isinstance(exc, OSError):
        names = {_name(n) for n in (exc.filename, exc.filename2) if n is not None}
        if names - set(ours) or not exc.errno:
            return None  # about another file (one the writer read), or not of the system
        code, cause = exc.errno, exc.strerror or os.strerror(exc.errno)
    elif isinstance(exc, SafetensorError):
        found = re.search(r"I/O error: (.*?) \(os error (\d+)\)", str(exc))
        if found is None:
            return None
        code, cause = int(found.group(2)), found.group(1)
    else:
        return None
    after = "the previous file is unchanged" if existed else "nothing was written"
    return OSError(code, f"could not write {dest} ({cause}); {after}")


def _name(path: Any) -> str:
    """A file name an ``OSError`` carries (a path, bytes or a descriptor) as text."""
    return os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else str(path)


def check_output_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path when a file may be written there: nothing yet, or a regular file (which
    the write replaces), or a link to one (written through). ``IsADirectoryError`` for a folder;
    ``ValueError`` for a device, a pipe or a socket (``/dev/null``, a FIFO): moving a file over one
    would replace the node itself — as root, ``--out /dev/null`` destroyed ``/dev/null`` —, for a
    link to nothing, and for a path that ends in a separator (``preds/``: a folder is meant, and a
    file ``preds`` would be written)."""
    text = os.fsdecode(os.fspath(path))
    dest = Path(text)
    if dest.is_dir():
        raise IsADirectoryError(errno.EISDIR, "the output path is a folder", str(dest))
    if text.endswith(os.sep) or (os.altsep is not None and text.endswith(os.altsep)):
        raise ValueError(
            f"the output {text} ends in {text[-1]!r}, which names a folder, not a file: give the file's name "
            f"(e.g. {text}predictions.csv)"
        )
    if dest.is_symlink() and not dest.exists():
        raise ValueError(
            f"the output {dest} is a link to nothing ({os.readlink(dest)}): faast writes through a link "
            "to its file; remove the link, or make the file it names"
        )
    if dest.exists() and not dest.is_file():
        raise ValueError(
            f"{dest} is not a regular file (a device or a pipe): faast writes its output to a file, "
            "give a file path"
        )
    return dest


def file_in_the_way(folder: Path) -> Path | None:
    """The file that stops ``folder`` from being a folder: ``folder`` itself or the nearest
    existing path above it, when that is a file, or a link to nothing (``mkdir`` says only "File
    exists", and only once the work to save is done); else None."""
    for path in (folder, *folder.parents):
        if path.is_symlink() and not path.exists():
            return path
        if path.exists():
            return None if path.is_dir() else path
    return None


def blocker_kind(path: Path) -> str:
    """What the path :func:`file_in_the_way` found is: "a link to nothing" or "a file"."""
    return "a link to nothing" if path.is_symlink() and not path.exists() else "a file"


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a Path when it is a regular file; else ``FileNotFoundError`` "no such {what}"
    when nothing is there, ``IsADirectoryError`` for a folder, ``ValueError`` for a device or pipe
    (``/dev/null``): each error names the path and what was expected."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise FileNotFoundError(f"no such {what}: {p}")
    if p.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"a folder, not a {what}", str(p))
    raise ValueError(f"{p} is not a regular file (a device or a pipe); expected a {what}")


def make_parent(dest: Path) -> None:
    """Create the folder of ``dest``; a ``NotADirectoryError`` naming the file in the way when a
    folder above it is a file."""
    blocker = file_in_the_way(dest.parent)
    if blocker is not None:
        what = blocker_kind(blocker)
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is {what}, not a folder", str(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)


def move_into_place(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Move the finished file ``source`` over ``dest`` (same folder) atomically and durably: the
    last step of a save written in two files (:func:`faast.classifier_io.save_classifier`). A
    regular file at ``dest`` passes on its mode, and its owner and group where this user may
    set them (:func:`_take_mode`)."""
    dest = Path(dest)
    _take_mode(source, dest)
    os.replace(source, dest)
    _fsync_dir(dest.parent)
    return dest


def _take_mode(source: str | os.PathLike[str], dest: Path) -> None:
    """Give the file ``source`` the permission bits of the regular file ``dest`` it is to replace
    (a private file stays private, a shared one shared) and, where this user may, its owner and
    group (root: both; another user: the group, if a group of theirs); nothing when ``dest`` is
    not a regular file. A refused owner or group is left as it is."""
    try:
        old = os.stat(dest)
    except OSError:  # nothing there (a new file), or not to be looked at
        return
    if not stat.S_ISREG(old.st_mode):
        return
    new = os.stat(source)
    owner = old.st_uid if _is_root() else -1
    if (owner != -1 and owner != new.st_uid) or old.st_gid != new.st_gid:
        try:
            os.chown(source, owner, old.st_gid)
        except (OSError, AttributeError):  # not this user's to give (or no owners: Windows)
            pass
    os.chmod(source, stat.S_IMODE(old.st_mode) & 0o777)  # after chown; the permission bits, no set-id bits


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(
    path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str] | None] = ()
) -> Path:
    """Fail now, with an ``OSError`` naming the path, if a file cannot be written at ``path``
    (its folder cannot be made, is not writable, or ``path`` is a folder; ``ValueError`` for a
    device or a pipe, :func:`check_output_target`; ``PermissionError`` for a write-protected file,
    :func:`check_not_write_protected`); creates the folder.
    ``inputs``: files or folders the job reads (None skipped), which ``path`` must neither be nor
    lie inside (``ValueError``): a predictions file written over its features file or into a saved
    classifier's folder would destroy them.

    Long jobs call this before the work, so a bad output path costs nothing.
    """
    dest = Path(path)
    where = dest.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if where == source or source in where.parents:
            raise ValueError(f"the output {dest} would overwrite the input {given}: write it elsewhere")
    target = _through_link(check_output_target(path))
    check_not_write_protected(target)  # a save would refuse it (atomic_write)
    try:
        make_parent(target)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=".tmp", dir=target.parent)
    except NotADirectoryError:  # already names the file in the way
        raise
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write there ({exc.strerror})", str(dest)) from None
    os.close(fd)
    os.unlink(tmp)
    return dest


#: The kinds of safetensors file faast writes → the layout version this faast writes and reads.
KINDS = {
    "stats": "1",  # GramStats: float64 G, B and counts
    "fast_weights": "1",  # an LM's fast weights: the statistics of every memory, per named task
    "readout": "1",  # an LM's trained readout parameters (save_pretrained)
    "features": "1",  # encoded image features (the feature cache)
    "weights": "1",  # a compiled fast-weight matrix W (faast solve)
    "classifier": "1",  # a fitted FaastClassifier
    "encoder_weights": "1",  # a frozen encoder's weights converted from a registry package
    "train_state": "1",  # a readout-training checkpoint (resumable)
}
#: How errors name each kind.
KIND_NAMES = {
    "stats": "statistics (GramStats)",
    "fast_weights": "LM fast weights",
    "readout": "an LM readout",
    "features": "encoded features",
    "weights": "a fast-weight matrix",
    "classifier": "a FaastClassifier",
    "encoder_weights": "encoder weights",
    "train_state": "a readout-training checkpoint",
}
FORMAT_KEY, VERSION_KEY = "format", "format_version"
#: Tags of files written before the layout family (same layouts, version 1).
_LEGACY_TAGS = {
    "faast.GramStats": "stats",
    "faast.lm.fast_weights": "fast_weights",
    "faast.lm.readout": "readout",
    "faast.features/1": "features",
    "faast.FastWeights": "weights",
}


def save_tensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
    *,
    kind: str,
    on_written: Callable[[str], None] | None = None,
) -> Path:
    """Write tensors (made contiguous, moved to CPU) and string metadata to a safetensors file of
    ``kind`` (one of ``KINDS``), atomically (``on_written``: as :func:`atomic_write`'s)."""
    if kind not in KINDS:
        raise ValueError(f"unknown file kind {kind!r}; known: {sorted(KINDS)}")
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update({FORMAT_KEY: f"faast.{kind}", VERSION_KEY: KINDS[kind]})

    def write(tmp: str) -> None:
        save_file(cpu, tmp, metadata=meta)
        canonical_header(tmp)

    return atomic_write(path, write, on_written=on_written)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of the bytes of ``path`` (read in 1 MiB blocks); an ``OSError`` of
    the read (an I/O error) names ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh, _read_errors_name(path):
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _read_errors_name(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block that names no file (a read's I/O error: ``EIO`` with no
    filename) as the same ``OSError`` (subclass chosen by its errno) naming ``path``, chained to
    it; one that names a file already, or has no errno, goes on as it is."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or not exc.errno:
            raise
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path)) from exc


def canonical_header(path: str | os.PathLike[str]) -> bool:
    """Rewrite, in place, the JSON header of a safetensors file with its keys sorted, so the same
    tensors and metadata always give the same bytes (the writer orders metadata keys by a hash
    seeded per process). Only the header changes; it keeps its length, so tensor offsets hold.
    Returns False (file unchanged) if the sorted header would not have the same length."""
    with open(path, "rb+") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        header = json.loads(raw)
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > size:
            return False
        fh.seek(8)
        fh.write(text + b" " * (size - len(text)))  # safetensors pads its header with spaces
    return True


def file_kind(meta: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(kind, version) that a file's metadata declares; (None, None) if it is not a faast file."""
    tag = meta.get(FORMAT_KEY, "")
    if tag in _LEGACY_TAGS:
        return _LEGACY_TAGS[tag], "1"
    if tag.startswith("faast.") and tag[len("faast.") :] in KINDS:
        return tag[len("faast.") :], meta.get(VERSION_KEY)
    return None, None


def load_tensors(
    path: str | os.PathLike[str], *, kind: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor (on the CPU) and the metadata of a safetensors file.

    kind: the kind of faast file expected (see ``KINDS``); its tag and version are checked and a
    clear ``ValueError`` names what the file is instead. ``None`` reads any safetensors file.
    """
    p = existing_file(path, "file")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except Exception as exc:
        raise ValueError(f"{p} is not a readable safetensors file ({first_line(exc)})") from exc
    if kind is not None:
        found, version = file_kind(meta)
        want = KIND_NAMES[kind]
        if found is None:
            raise ValueError(f"{p} is not a faast file of {want} (format={meta.get(FORMAT_KEY)!r})")
        if found != kind:
            raise ValueError(f"{p} holds {KIND_NAMES[found]}, not {want}")
        if version != KINDS[kind]:
            raise ValueError(
                f"{p}: {want} in layout version {version!r}; this faast reads version "
                f"{KINDS[kind]} (was it written by another faast release?)"
            )
    return tensors, meta


def os_error_cause(exc: OSError) -> str:
    """What went wrong in ``exc``, without the file it names: the system's words for its errno
    (``str(exc)`` for an error without one)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name when
    it has none: the cause of a library error, short enough to end one of ours."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def check_json_dict(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a dict that standard JSON holds as :func:`save_json` writes it: string
    keys, finite numbers (NaN and Infinity are not JSON), strings, booleans, None, lists and dicts;
    else a ``TypeError`` (not a dict) or ``ValueError`` naming ``what`` (e.g. "info", "metadata")."""
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict of JSON values, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} must hold only standard JSON (string keys, finite numbers, strings, lists, dicts): {exc}"
        ) from None
    return value


def save_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented UTF-8 JSON (text as written, not ``\\u`` escapes), atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form: escape everything, as JSON may
        text = json.dumps(obj, indent=2, sort_keys=True) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def load_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value of a UTF-8 file; a clear error for a missing path, a folder or other bytes."""
    return load_json_with_sha256(path)[0]


def load_json_with_sha256(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """:func:`load_json` and the :func:`file_sha256` of the very bytes parsed, the file read once
    (read twice, a save between the reads would pair one save's value with another's digest); an
    ``OSError`` of the read names ``path``."""
    p = existing_file(path, "file")
    with _read_errors_name(p):
        data = p.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{p} is not valid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        return json.loads(text), digest
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not valid JSON: {exc}") from None
