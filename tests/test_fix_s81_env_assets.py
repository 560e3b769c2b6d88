"""Hunt s81 (a hostile environment), findings 1, 4, 7 and 8:

1. a text rewritten between the passes of `lm learn` / `lm stream --out` / `lm forget` is refused
   ("changed while it was read; nothing was saved") instead of being learned as its new content
   under the old content's digest;
4. no usable temporary folder no longer breaks every command at import (only an apt fetch needs it);
7. what a killed fetch left (`.NAME.fetching-*`) is removed under the asset's lock by the next
   fetch, or by `faast assets fetch` of the asset found ready, however young;
8. an asset cache that cannot be made is named with the setting that chose it and how to move it,
   and `faast assets list` does not make the cache.

Every test points the asset cache at a tmp folder and registers fake assets: the real cache is
never touched."""

from __future__ import annotations

import hashlib
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
from faast.cli import main
from tests.test_lm_cli import WORDS, model_dir  # noqa: F401 (the tiny model folder fixture)

CHANGED = "changed while it was read; nothing was saved: run again once it is stable"


# ----------------------------------------------------------------- 1. a text rewritten between passes
def _texts() -> tuple[str, str]:
    """Two texts of the same length and tokens: B is A with two words of its first window swapped
    (an edit that changes neither the windows nor the pair count)."""
    words = [WORDS[i % 40] for i in range(300)]
    a = " ".join(words)
    words[5], words[10] = words[10], words[5]
    return a, " ".join(words)


def _rewrite_after(monkeypatch, target: object, attr: str, path: Path, text: str) -> None:
    """Make ``target.attr`` (a function or method) rewrite ``path`` to ``text`` once it returns: a
    writer landing between the pass that counts the text and the one that learns it."""
    original = getattr(target, attr)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        path.write_text(text)
        return result

    monkeypatch.setattr(target, attr, wrapped)


def test_stable_text_refuses_a_later_pass_that_reads_another_text(tmp_path):
    """The first pass read to its end records the text; a later pass is checked piece by piece:
    an edit, a file that grew or shrank raise; an unchanged file, or a pass stopped early on an
    unchanged start, does not."""
    from faast.text_files import TEXT_BLOCK_CHARS, StableText, TextChangedError

    path = tmp_path / "t.txt"
    body = "a" * TEXT_BLOCK_CHARS + "b" * 10
    path.write_text(body)
    scan = StableText(path)
    assert "".join(scan.pieces()) == body and not scan.blank
    assert "".join(scan.pieces()) == body  # unchanged: fine
    path.write_text(body + "more")
    first = next(iter(scan.pieces()))  # a pass that stops early checks what it read
    assert first == "a" * TEXT_BLOCK_CHARS
    for changed in (body + "more", body[:-1], body.replace("b", "c")):
        path.write_text(changed)
        with pytest.raises(TextChangedError, match=CHANGED):
            "".join(scan.pieces())
    assert scan.digest == hashlib.sha256(body.encode()).hexdigest()[:16]  # the first pass's text


def test_lm_learn_refuses_a_text_rewritten_after_its_counting_pass(
    model_dir,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    """The repro: text A is counted (its digest taken), then the file is rewritten to B before the
    learning pass. Before, the task recorded A's digest and held B's statistics (exit 0)."""
    import faast.cli.lm_cmd as lm_cmd

    text_a, text_b = _texts()
    text = tmp_path / "notes.txt"
    out = tmp_path / "fw.safetensors"
    base = ["lm", "learn", "--model", str(model_dir), "--threads", "1", "--window", "64"]
    text.write_text(text_b)
    assert main([*base, "--text", str(text), "--out", str(out), "--task", "b"]) == 0
    before = out.read_bytes()
    text.write_text(text_a)
    _rewrite_after(monkeypatch, lm_cmd._TextScan, "check", text, text_b)
    capsys.readouterr()
    assert main([*base, "--text", str(text), "--out", str(out), "--task", "a"]) == 1
    assert f"{text} {CHANGED}" in capsys.readouterr().err
    assert out.read_bytes() == before  # task "a" was not written


def test_lm_stream_out_refuses_a_text_rewritten_after_its_counting_pass(
    model_dir,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    """`lm stream --out` records the text's digest as `learn` does: the same refusal."""
    import faast.cli.lm_cmd as lm_cmd

    text_a, text_b = _texts()
    text = tmp_path / "notes.txt"
    text.write_text(text_a)
    out = tmp_path / "stream.safetensors"
    _rewrite_after(monkeypatch, lm_cmd._TextScan, "check", text, text_b)
    argv = ["lm", "stream", "--model", str(model_dir), "--threads", "1", "--text", str(text), "--chunk", "64"]
    assert main([*argv, "--out", str(out), "--no-base"]) == 1
    assert CHANGED in capsys.readouterr().err
    assert not out.exists()


def test_lm_forget_refuses_a_text_rewritten_after_the_scan_that_chose_its_record(
    model_dir,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    """`lm forget` scans the text (its digest picks the learning record), then reads it again to
    forget its windows: a text rewritten in between is refused, the file left as it was."""
    import faast.cli.lm_cmd as lm_cmd

    text_a, text_b = _texts()
    text = tmp_path / "notes.txt"
    text.write_text(text_a)
    out = tmp_path / "fw.safetensors"
    common = ["--model", str(model_dir), "--threads", "1", "--window", "64", "--task", "a"]
    assert main(["lm", "learn", *common, "--text", str(text), "--out", str(out)]) == 0
    before = out.read_bytes()
    _rewrite_after(monkeypatch, lm_cmd, "_scan_text", text, text_b)
    capsys.readouterr()
    assert main(["lm", "forget", *common, "--text", str(text), "--fast-weights", str(out)]) == 1
    assert CHANGED in capsys.readouterr().err
    assert out.read_bytes() == before


def test_processes_that_counted_different_texts_refuse_on_every_rank(tmp_path):
    """Under torchrun each rank counts the text itself: ranks whose digests differ all refuse."""
    import faast.cli.lm_cmd as lm_cmd
    from faast.text_files import TextChangedError

    path = tmp_path / "t.txt"
    path.write_text("w1 w2 w3")
    scan = lm_cmd._TextScan(path)
    "".join(scan.pieces())

    class TwoRanks:
        def all_gather_json(self, obj):
            return [obj, "0" * 16]

    class OneRank:
        def all_gather_json(self, obj):
            return [obj]

    with pytest.raises(TextChangedError, match=CHANGED):
        lm_cmd._same_text_everywhere(TwoRanks(), scan)
    assert lm_cmd._same_text_everywhere(OneRank(), scan) == scan.digest


# ----------------------------------------------------------------- 4. no usable temporary folder
def test_commands_run_without_a_usable_temporary_folder(tmp_path):
    """`tempfile.gettempdir()` fails as in a read-only container: `faast --version` and `faast
    assets list` run (before, every command died at import with a traceback from tempfile)."""
    script = textwrap.dedent(
        """
        import sys, tempfile
        def none(*a, **k):
            raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp']")
        tempfile.gettempdir = tempfile.gettempdirb = none
        tempfile.tempdir = None
        from faast.cli import main
        print("list rc", main(["assets", "--cache-dir", sys.argv[1], "list"]), flush=True)
        main(["--version"])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(faast.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cache")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "list rc 0" in proc.stdout and "faast " in proc.stdout
    assert "Traceback" not in proc.stderr


def test_an_apt_fetch_without_a_temporary_folder_names_tmpdir(tmp_path, monkeypatch):
    """The one function that needs the temporary folder says so, naming $TMPDIR, before apt runs."""

    def none(*args, **kwargs):
        raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp']")

    def no_apt(*args, **kwargs):
        raise AssertionError("apt must not run")

    monkeypatch.setattr(core.tempfile, "gettempdir", none)
    monkeypatch.setattr(core.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(core.subprocess, "run", no_apt)
    monkeypatch.setattr(core, "_run", no_apt)
    if isinstance(getattr(core, "APT_LOCK", None), Path):  # the code before the fix: found on import
        monkeypatch.setattr(core, "APT_LOCK", tmp_path / "apt.lock")
    with pytest.raises(core.AssetError, match=r"pkg: no usable temporary folder.*set \$TMPDIR"):
        core.apt_download_extract("pkg", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# ----------------------------------------------------------------- 7. what killed fetches left
needs_flock = pytest.mark.skipif(locks.fcntl is None, reason="needs flock (POSIX)")


def _fake(monkeypatch, name: str = "s81-fake", fetch=None) -> core.Asset:
    """A fake asset (ready once ``data.txt`` is there) registered for the test."""

    def quick(root: Path) -> None:
        (root / "data.txt").write_text("ok")

    asset = core.Asset(name, "a test asset", fetch or quick, lambda r: (r / "data.txt").is_file(), ("x",), 1)
    monkeypatch.setitem(core._REGISTRY, name, asset)
    return asset


def _dead_fetch(folder: Path, name: str = "s81-fake") -> Path:
    """What a fetch killed a moment ago left: a young ``.NAME.fetching-*`` folder with a part file."""
    dead = folder / f".{name}.fetching-dead01"
    dead.mkdir(parents=True)
    (dead / "weights.part").write_bytes(b"\0" * 1024)
    return dead


@needs_flock
def test_a_fetch_removes_what_a_fetch_killed_a_moment_ago_left(tmp_path, monkeypatch):
    """The repro: killed, then fetched again at once. Before, the young folder stayed for good."""
    _fake(monkeypatch)
    dead = _dead_fetch(tmp_path)
    root = core.ensure("s81-fake", tmp_path)
    assert (root / "data.txt").read_text() == "ok"
    assert not dead.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s81-fake"]


@needs_flock
def test_fetch_of_a_ready_asset_and_a_refetch_remove_what_killed_fetches_left(tmp_path, monkeypatch, capsys):
    """A killed `fetch --force` leaves the old copy ready: `faast assets fetch NAME` then removes its
    folder; so does a `--force` refetch that completes."""
    _fake(monkeypatch)
    (tmp_path / "s81-fake").mkdir()
    (tmp_path / "s81-fake" / "data.txt").write_text("old")
    dead = _dead_fetch(tmp_path)
    assert main(["assets", "--cache-dir", str(tmp_path), "fetch", "s81-fake"]) == 0
    assert "ready" in capsys.readouterr().out
    assert not dead.exists() and (tmp_path / "s81-fake" / "data.txt").read_text() == "old"
    dead = _dead_fetch(tmp_path)
    core.refetch("s81-fake", tmp_path)
    assert not dead.exists() and (tmp_path / "s81-fake" / "data.txt").read_text() == "ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s81-fake"]


def test_where_the_lock_cannot_be_taken_a_young_folder_is_left(tmp_path, monkeypatch):
    """Without flock (Windows), no fetch holds a lock: a young folder may be a running fetch's,
    and only the age rule applies."""
    monkeypatch.setattr(locks, "fcntl", None)
    monkeypatch.setattr(locks, "_warned", set())
    _fake(monkeypatch)
    dead = _dead_fetch(tmp_path)
    with pytest.warns(UserWarning, match="cannot lock files"):
        core.ensure("s81-fake", tmp_path)
    assert dead.exists()
    old = time.time() - 2 * core.STALE_TEMPORARY_S
    os.utime(dead, (old, old))
    core.refetch("s81-fake", tmp_path)
    assert not dead.exists()


@needs_flock
def test_a_fetch_through_a_linked_cache_is_never_removed(tmp_path, monkeypatch):
    """Cache B links the asset to cache A's folder: B's fetch builds its folder in A. It holds the
    lock beside that folder too, so a removal through A waits for it rather than deleting a
    running fetch's folder."""
    _fake(monkeypatch)
    cache_a, cache_b = tmp_path / "a", tmp_path / "b"
    cache_a.mkdir()
    cache_b.mkdir()
    (cache_a / "s81-fake").mkdir()
    (cache_a / "s81-fake" / "data.txt").write_text("ok")
    os.symlink(cache_a / "s81-fake", cache_b / "s81-fake")
    env = {**os.environ, "PYTHONPATH": str(Path(faast.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    code = (
        "import sys; from pathlib import Path; from faast.assets import core\n"
        "with core._asset_lock(Path(sys.argv[1])):\n"
        "    (Path(sys.argv[2]) / '.s81-fake.fetching-live').mkdir()\n"
        "    print('held', flush=True); sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(cache_b / "s81-fake"), str(cache_a)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "held", child.stderr.read()
        live = cache_a / ".s81-fake.fetching-live"
        done: list = []
        thread = threading.Thread(target=lambda: done.append(core.remove_dead_fetches("s81-fake", cache_a)))
        thread.start()
        thread.join(timeout=2)
        assert thread.is_alive() and live.exists()  # it waits for the running fetch
    finally:
        child.communicate("\n", timeout=60)
    thread.join(timeout=30)
    assert [[p.name for p in removed] for removed in done] == [
        [live.name]
    ] and not live.exists()  # the fetch is gone: what it left is removed


# ----------------------------------------------------------------- 8. a cache that cannot be made
def test_a_cache_that_cannot_be_made_is_named_with_how_to_move_it(tmp_path, monkeypatch, capsys):
    """A cache under a folder one may not write (HOME=/ for an unprivileged user: "/.cache"). Before:
    "Permission denied: /.cache", naming neither the cache nor the setting."""
    real_mkdir = Path.mkdir
    locked = tmp_path / "home"

    def refusing(self, *args, **kwargs):
        if self == locked / ".cache":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refusing)
    for name in ("FAAST_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(locked))
    with pytest.raises(core.AssetError) as caught:
        core.cache_dir()
    assert str(caught.value) == (
        f"the asset cache {locked}/.cache/faast (the default cache, under $HOME) cannot be made "
        f"(Permission denied: {locked}/.cache); point $FAAST_CACHE (or --cache-dir, where the command "
        "has it) at a folder you may write"
    )
    _fake(monkeypatch)
    assert main(["assets", "fetch", "s81-fake"]) == 1
    assert "the asset cache" in capsys.readouterr().err
    monkeypatch.setenv("FAAST_CACHE", str(locked / ".cache" / "x"))
    with pytest.raises(core.AssetError, match=r"\(set by \$FAAST_CACHE\) cannot be made \(Permission denied"):
        core.cache_dir()
    with pytest.raises(core.AssetError, match=r"\(set by --cache-dir\).*point --cache-dir at a folder"):
        core.cache_dir(locked / ".cache" / "y")


def test_assets_list_does_not_make_the_cache(tmp_path, monkeypatch, capsys):
    """`faast assets list` only reads: a missing cache is listed as empty and not created (before,
    it was made, and one that could not be made was an error)."""
    cache = tmp_path / "nope" / "cache"
    monkeypatch.setenv("FAAST_CACHE", str(cache))
    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {cache}" in out and " ready " not in out
    assert not (tmp_path / "nope").exists()
    blocker = tmp_path / "afile"  # a setting that names a file is still an error, not an empty cache
    blocker.write_text("x")
    monkeypatch.setenv("FAAST_CACHE", str(blocker / "below"))
    assert main(["assets", "list"]) == 1
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err


def test_holds_lock_says_which_locks_this_process_holds(tmp_path):
    """faast.locks.holds_lock: true inside lock_file and path_lock (shared: only when asked for any
    lock), false outside them and for a path that does not exist."""
    from faast.locks import holds_lock, lock_file, path_lock

    lock, folder = tmp_path / ".x.lock", tmp_path / "data"
    folder.mkdir()
    assert not holds_lock(lock) and not holds_lock(folder)
    with lock_file(lock):
        assert holds_lock(lock)
    assert not holds_lock(lock)
    with path_lock(folder, shared=True):
        assert holds_lock(folder, exclusive=False) and not holds_lock(folder)
    with path_lock(folder):
        assert holds_lock(folder)
    assert not holds_lock(folder, exclusive=False)
