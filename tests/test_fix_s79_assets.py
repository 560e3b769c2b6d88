"""One lock per asset, not one for the whole cache: a fetch of one missing asset no longer waits
behind a long fetch of another (threads of one process, and two processes), while two fetches of
the same asset still take turns (one fetch, the other finds it ready) and leave no lock file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import faast
from faast import locks
from faast.assets import core

pytestmark = pytest.mark.skipif(locks.fcntl is None, reason="needs flock (POSIX)")


def _fake(monkeypatch, name: str, fetch) -> None:
    asset = core.Asset(name, "a test asset", fetch, lambda r: (r / "data.txt").is_file(), ("x",), 1)
    monkeypatch.setitem(core._REGISTRY, name, asset)


def _quick(root: Path) -> None:
    (root / "data.txt").write_text("ok")


def _run(target, results: dict, key: str) -> threading.Thread:
    def body() -> None:
        try:
            results[key] = target()
        except BaseException as exc:  # reported by the test
            results[key] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def test_fetches_of_two_assets_in_one_process_go_on_at_once(tmp_path, monkeypatch):
    """A holds its lock while it fetches (paused until the test releases it); B, another asset,
    is fetched meanwhile. Before, B waited for the cache-wide lock until A was done."""
    entered, release = threading.Event(), threading.Event()

    def slow(root: Path) -> None:
        entered.set()
        assert release.wait(60)
        _quick(root)

    _fake(monkeypatch, "s79-slow", slow)
    _fake(monkeypatch, "s79-quick", _quick)
    results: dict = {}
    a = _run(lambda: core.ensure("s79-slow", tmp_path), results, "a")
    try:
        assert entered.wait(30)
        b = _run(lambda: core.ensure("s79-quick", tmp_path), results, "b")
        b.join(timeout=15)
        assert not b.is_alive(), "the fetch of s79-quick waited for the fetch of s79-slow"
        assert results["b"] == tmp_path / "s79-quick"
        assert (tmp_path / ".s79-slow.lock").is_file() and "a" not in results  # A still holds its lock
    finally:
        release.set()
        a.join(timeout=30)
    assert results["a"] == tmp_path / "s79-slow"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s79-quick", "s79-slow"]  # no lock file left


def test_two_fetches_of_one_asset_take_turns(tmp_path, monkeypatch):
    """The second fetch of the same asset waits for the first, then finds the asset ready: the
    asset is fetched once, and no lock file is left."""
    entered, release, calls = threading.Event(), threading.Event(), []

    def slow(root: Path) -> None:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            entered.set()
            assert release.wait(60)
        _quick(root)

    _fake(monkeypatch, "s79-one", slow)
    results: dict = {}
    a = _run(lambda: core.ensure("s79-one", tmp_path), results, "a")
    try:
        assert entered.wait(30)
        b = _run(lambda: core.ensure("s79-one", tmp_path), results, "b")
        b.join(timeout=0.5)
        assert b.is_alive() and len(calls) == 1  # B waits for A's lock, it does not fetch
    finally:
        release.set()
        a.join(timeout=30)
    b.join(timeout=30)
    assert results == {"a": tmp_path / "s79-one", "b": tmp_path / "s79-one"}
    assert len(calls) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s79-one"]


#: A child: registers `s79-slow` (its fetch makes PAUSED, then waits for GO) and fetches it.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from faast.assets import core

    cache, paused, go = sys.argv[1:4]

    def fetch(root):
        Path(paused).touch()
        deadline = time.time() + 60
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.01)
        (root / "data.txt").write_text("ok")

    core.register(core.Asset("s79-slow", "slow", fetch, lambda r: (r / "data.txt").is_file(), ("x",), 1))
    core.ensure("s79-slow", cache)
    """
)


def test_a_fetch_in_another_process_does_not_hold_up_another_asset(tmp_path, monkeypatch, capsys):
    """A child process fetches s79-slow and pauses mid-fetch; this process fetches s79-quick into
    the same cache meanwhile, without waiting (before: "waiting for another faast command fetching
    assets into CACHE" until the child was done)."""
    cache = tmp_path / "cache"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(faast.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(script), str(cache), str(tmp_path / "paused"), str(tmp_path / "go")]
    child = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    results: dict = {}
    try:
        deadline = time.time() + 60
        while not (tmp_path / "paused").exists():
            assert child.poll() is None, child.stderr.read()
            assert time.time() < deadline, "the child did not start its fetch"
            time.sleep(0.02)
        _fake(monkeypatch, "s79-quick", _quick)
        b = _run(lambda: core.ensure("s79-quick", cache), results, "b")
        b.join(timeout=15)
        assert not b.is_alive(), "the fetch of s79-quick waited for the other process's fetch"
        assert results["b"] == cache / "s79-quick"
        assert "waiting for another faast command" not in capsys.readouterr().err
    finally:
        (tmp_path / "go").touch()
        _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert sorted(p.name for p in cache.iterdir()) == ["s79-quick", "s79-slow"]


def test_a_waiting_fetch_names_the_asset_it_waits_for(tmp_path, capfd):
    """The line printed while waiting still reads "waiting for another faast command fetching
    assets into", now naming the asset's folder; the lock file goes once the holder is done."""
    root = tmp_path / "s79-x"
    env = {**os.environ, "PYTHONPATH": str(Path(faast.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    code = (
        "import sys; from pathlib import Path; from faast.assets import core\n"
        "with core._asset_lock(Path(sys.argv[1])): print('held', flush=True)\n"
    )
    with core._asset_lock(root):
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.time() + 60
        waited = b""
        while b"waiting" not in waited and time.time() < deadline and child.poll() is None:
            waited += child.stderr.read1(4096)
        assert child.poll() is None  # it waits
    out, err = child.communicate(timeout=60)
    text = (waited + err).decode()
    assert f"waiting for another faast command fetching assets into {root} ..." in text
    assert out.decode().strip() == "held"
    assert list(tmp_path.iterdir()) == []  # the lock file is removed


def test_fetches_of_two_debian_assets_run_apt_in_turn(tmp_path, monkeypatch):
    """Fetches of different assets go on at once; apt is the system's (two `apt-get update` at
    once fail on apt's own lock), so the apt steps of two fetches take turns on one lock."""
    import types

    monkeypatch.setattr(core, "APT_LOCK", tmp_path / "apt.lock")
    monkeypatch.setattr(core.shutil, "which", lambda name: f"/usr/bin/{name}")
    running, most, guard = [0], [0], threading.Lock()

    def fake_run(cmd, what, cwd=None):
        if cmd[:2] == ["apt-get", "download"]:
            with guard:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.3)
            (cwd / f"{cmd[-1]}_1.0_all.deb").write_bytes(b"deb")
            with guard:
                running[0] -= 1
        elif cmd[0] == "dpkg":
            Path(cmd[-1]).mkdir(parents=True)

    monkeypatch.setattr(core, "_run", fake_run)
    monkeypatch.setattr(core.subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=0))
    threads = [
        threading.Thread(target=core.apt_download_extract, args=(name, tmp_path / name))
        for name in ("p", "q")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert most[0] == 1  # never two apt-get downloads at once
    assert (tmp_path / "p" / "root").is_dir() and (tmp_path / "q" / "root").is_dir()
    assert not (tmp_path / "apt.lock").exists()


def test_a_lock_file_that_cannot_be_removed_is_left_without_failing_the_block(tmp_path, monkeypatch):
    """A lock file another user made in a shared (sticky) cache can be locked but not removed: the
    fetch that worked failed with PermissionError at the end, and one that failed showed that
    error instead of its own."""
    path = tmp_path / ".a.lock"
    real_unlink = os.unlink

    def refusing(p, *args, **kwargs):
        if Path(p) == path:
            raise PermissionError(13, "Operation not permitted", str(p))
        return real_unlink(p, *args, **kwargs)

    monkeypatch.setattr(locks.os, "unlink", refusing)
    with locks.lock_file(path):
        pass
    with pytest.raises(ValueError, match="the fetch's own error"):
        with locks.lock_file(path):
            raise ValueError("the fetch's own error")
    assert path.exists()  # left: a lock file locks nothing while no one holds it
    with locks.lock_file(path):  # and taken again
        pass
