"""A hostile environment around the process (hunt s81, findings 2, 3, 5, 6): an atomic save gave
the file it replaced the umask's mode (a private 0600 file became 0644; a write-protected 0444
``--out`` was silently replaced); the umask was read by setting it to 0 and back, so a save from
another thread could come out 0666 under umask 077; a stdout encoding without "→" failed a command
after it had written its file, or before it learned; a closed stdout pipe (``| head -1``) gave
"error: Broken pipe", exit 1, and stopped the command before it saved.

These tests run as root here: the permission checks that only bind another user run a child as
``nobody`` (``setpriv``); the refusal of root for a file no one may write needs no child."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

import faast.io
from faast.classifier import FaastClassifier
from faast.classifier_io import JSON_NAME, TENSORS_NAME, save_classifier
from faast.cli import classify_data, main
from faast.io import atomic_write, check_writable, load_json, save_json, save_tensors

FEATURES = "f0,f1,label\n1.5,0,a\n0,1,b\n1,1,a\n0,0.5,b\n"
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
NOBODY = 65534
SETPRIV = shutil.which("setpriv")
FAAST = Path(sys.executable).with_name("faast")
REPO = Path(__file__).resolve().parents[1]


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """The process umask set to ``mask`` within the block."""
    before = os.umask(mask)
    try:
        yield
    finally:
        os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _classifier(tmp_path: Path) -> tuple[Path, Path]:
    """A features CSV and a classifier fitted on it (``faast classify fit``): (csv, model folder)."""
    data, model = tmp_path / "f.csv", tmp_path / "m"
    data.write_text(FEATURES, encoding="utf-8")
    assert main(["classify", "fit", str(data), "--model", str(model)]) == 0
    return data, model


def _child_env() -> dict[str, str]:
    """The environment of a ``faast`` child: this checkout's sources first, one thread."""
    paths = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}


# ----------------------------------------------------------------- 2: the mode of a replaced file
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604, 0o664])
def test_a_replaced_file_keeps_its_mode(tmp_path, mode):
    """Every save set the umask's 0644: a file kept private (0600) became world-readable. A JSON or
    safetensors file replaced keeps the permission bits it had."""
    with _umask(0o022):
        for name, save in (
            ("a.json", lambda p: save_json(p, {"n": 1})),
            ("w.safetensors", lambda p: save_tensors(p, {"w": torch.ones(2)}, kind="weights")),
        ):
            path = save(tmp_path / name)
            path.chmod(mode)
            save(path)
            assert _mode(path) == mode, (name, oct(_mode(path)))


def test_a_new_file_gets_the_mode_the_umask_leaves(tmp_path):
    """A file saved where there was none gets 0666 less the umask, as any file the user makes."""
    for mask in (0o022, 0o027, 0o077, 0o002):
        with _umask(mask):
            path = save_json(tmp_path / f"new{mask:o}.json", {"n": 1})
        assert _mode(path) == 0o666 & ~mask, (oct(mask), oct(_mode(path)))


def test_a_classifier_save_keeps_the_modes_of_both_its_files(tmp_path):
    """The tensors go through a pending file moved over ``classifier.safetensors``
    (``move_into_place``): both files keep the modes they had."""
    rng = np.random.default_rng(0)
    clf = FaastClassifier().fit(rng.normal(size=(12, 3)), np.arange(12) % 2)
    model = save_classifier(clf, tmp_path / "m")
    (model / JSON_NAME).chmod(0o600)
    (model / TENSORS_NAME).chmod(0o640)
    with _umask(0o022):
        save_classifier(clf, model)
    assert (_mode(model / JSON_NAME), _mode(model / TENSORS_NAME)) == (0o600, 0o640)


@pytest.mark.skipif(not ROOT, reason="only root may give a file to another user")
def test_as_root_a_replaced_file_keeps_its_owner_and_group(tmp_path):
    """Root saving a user's file (a cron job, a container run as root) made it root's: the user
    could no longer change their own file. It keeps its owner and group now."""
    path = save_json(tmp_path / "a.json", {"n": 1})
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o640)
    save_json(path, {"n": 2})
    info = path.stat()
    assert (info.st_uid, info.st_gid, _mode(path)) == (NOBODY, NOBODY, 0o640)
    assert load_json(path) == {"n": 2}


@pytest.mark.parametrize("mode", [0o444, 0o400, 0o000])
def test_a_file_no_one_may_write_is_not_replaced_even_by_root(tmp_path, mode):
    """``chmod a-w`` said "do not overwrite"; a save moved a new file over it all the same (only
    the folder's permissions govern a rename). Refused now, as a classifier's files were, by
    ``atomic_write`` and by ``check_writable`` (the check the commands make before their work),
    with a ``PermissionError`` naming the file; the file is unchanged. Root too: ``os.access``
    answers yes to root, so for root the mode decides (no write bit for anyone)."""
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    path.chmod(mode)
    try:
        assert faast.io.write_protected(path)
        for write in (check_writable, lambda p: atomic_write(p, lambda tmp: Path(tmp).write_text("new\n"))):
            with pytest.raises(PermissionError, match=r"out\.csv is write-protected") as info:
                write(path)
            assert info.value.filename == str(path)
        assert path.read_text() == "old\n" and _mode(path) == mode
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left
    finally:
        path.chmod(0o644)


def test_a_file_someone_may_write_is_replaced_by_root_keeping_its_mode(tmp_path):
    """Root is refused only a file writable to no one: a group-writable file root does not own
    (0464) is replaced, and keeps 0464."""
    path = tmp_path / "out.json"
    path.write_text("{}")
    path.chmod(0o464)
    assert not faast.io.write_protected(path)
    save_json(path, {"n": 1})
    assert load_json(path) == {"n": 1} and _mode(path) == 0o464


def test_a_link_to_a_write_protected_file_is_refused(tmp_path):
    """A link is written through, so the file it names is the one checked."""
    real = tmp_path / "real.json"
    real.write_text("{}")
    real.chmod(0o444)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    try:
        with pytest.raises(PermissionError, match=r"real\.json is write-protected"):
            save_json(link, {"n": 1})
        assert real.read_text() == "{}"
    finally:
        real.chmod(0o644)


@pytest.mark.skipif(not (ROOT and SETPRIV), reason="needs root and setpriv to run a child as nobody")
def test_an_unprivileged_user_is_refused_a_file_they_may_not_write_and_keeps_modes(request):
    """As ``nobody``, where permission bits bind: their own 0444 file and root's 0644 file in a
    folder they may write are refused (before, both were replaced: the folder allows the rename);
    their own 0600 file stays 0600 after a save."""
    folder = Path(tempfile.mkdtemp(prefix="faast-s81-"))  # pytest's own folders are root's alone (0700)
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    folder.chmod(0o777)
    own_protected, roots, private = folder / "own.json", folder / "roots.json", folder / "private.json"
    for path, mode in ((own_protected, 0o444), (roots, 0o644), (private, 0o600)):
        path.write_text('{"old": 1}\n')
        if path is not roots:
            os.chown(path, NOBODY, NOBODY)
        path.chmod(mode)
    script = (
        "import sys\n"
        "from faast.io import save_json\n"
        "for name in sys.argv[1:3]:\n"
        "    try:\n"
        "        save_json(name, {'new': 1})\n"
        "    except PermissionError as exc:\n"
        "        print('refused', exc.filename, 'write-protected' in str(exc))\n"
        "save_json(sys.argv[3], {'new': 1})\n"
    )
    as_nobody = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = {**_child_env(), "PYTHONPATH": str(REPO / "src")}
    reach = subprocess.run(
        [*as_nobody, sys.executable, "-c", "import faast.io"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if reach.returncode != 0:  # a checkout in a folder only root may read (a clone in `mktemp -d`)
        pytest.skip(f"nobody cannot import faast from {REPO}: {reach.stderr.strip().splitlines()[-1:]}")
    result = subprocess.run(
        [*as_nobody, sys.executable, "-c", script, str(own_protected), str(roots), str(private)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"refused {own_protected} True", f"refused {roots} True"]
    assert own_protected.read_text() == roots.read_text() == '{"old": 1}\n'
    assert load_json(private) == {"new": 1}
    assert _mode(private) == 0o600 and private.stat().st_uid == NOBODY


def test_a_write_protected_predictions_file_is_refused_before_the_data_is_read(tmp_path, monkeypatch, capsys):
    """``classify predict --out`` over a 0444 file wrote it; refused now by the check before the
    work, in one line naming the file; the file is unchanged."""
    data, model = _classifier(tmp_path)
    out = tmp_path / "preds.csv"
    out.write_text("old\n")
    out.chmod(0o444)
    monkeypatch.setattr(classify_data, "read_data", lambda *a, **k: pytest.fail("the data was read"))
    capsys.readouterr()
    assert main(["classify", "predict", str(data), "--model", str(model), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "preds.csv is write-protected" in err[0] and str(out) in err[0], err
    assert out.read_text() == "old\n" and _mode(out) == 0o444


def test_a_write_protected_fast_weights_file_is_refused_before_the_model_loads(tmp_path, capsys):
    """``lm learn --out`` over a 0444 file: refused by the output check before the model loads (the
    model path here does not exist, so only a check before loading can answer)."""
    text, out = tmp_path / "notes.txt", tmp_path / "fw.safetensors"
    text.write_text("w1 w2 w3 w4\n")
    save_tensors(out, {"x": torch.zeros(1)}, {"tasks": "{}"}, kind="fast_weights")  # a file of no task
    before = out.read_bytes()
    out.chmod(0o444)
    argv = ["lm", "learn", "--model", str(tmp_path / "no-model"), "--text", str(text), "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "fw.safetensors is write-protected" in err and "no-model" not in err, err
    assert out.read_bytes() == before


# ----------------------------------------------------------------- 3: the umask, read by no one
def test_a_save_never_touches_the_process_umask(tmp_path, monkeypatch):
    """The umask was read by setting it to 0 and back: another thread's save in between read 0 and
    made its file 0666 under umask 077. Here the first thread is held right after it set the umask
    (as a thread switch would), while a second thread saves: that file must still get what the
    umask allows. A save now never sets the umask (the system applies it to the new file)."""
    real_umask = os.umask
    held, other_saved = threading.Event(), threading.Event()

    def umask(mask: int) -> int:  # the first call to set 0 waits for the other thread's save
        previous = real_umask(mask)
        if mask == 0 and threading.current_thread().name == "first" and not held.is_set():
            held.set()
            other_saved.wait(10)
        return previous

    monkeypatch.setattr(os, "umask", umask)
    paths: dict[str, Path] = {}

    def save(name: str) -> None:
        paths[name] = save_json(tmp_path / f"{name}.json", {"name": name})

    with _umask(0o077):
        first = threading.Thread(target=save, args=("first",), name="first")
        first.start()
        held.wait(1)  # never set where no save touches the umask
        second = threading.Thread(target=save, args=("second",), name="second")
        second.start()
        second.join(10)
        other_saved.set()
        first.join(10)
        after = real_umask(0o077)
    assert after == 0o077
    assert {name: oct(_mode(path)) for name, path in paths.items()} == {"first": "0o600", "second": "0o600"}


def test_saves_from_many_threads_get_no_bit_the_umask_forbids(tmp_path):
    """The race itself: 8 threads saving at once, thread switches forced often, under umask 077:
    every file saved is 0600 (a new one) and the process umask is 077 after."""
    seen: set[int] = set()
    interval = sys.getswitchinterval()

    def saver(i: int) -> None:
        for n in range(60):
            path = save_json(tmp_path / f"t{i}-{n % 3}.json", {"n": n})
            seen.add(_mode(path))
            if n % 3 == 2:
                for old in tmp_path.glob(f"t{i}-*.json"):  # new files again, not only replaced ones
                    old.unlink()

    sys.setswitchinterval(1e-6)
    try:
        with _umask(0o077):
            threads = [threading.Thread(target=saver, args=(i,)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            after = os.umask(0o077)
    finally:
        sys.setswitchinterval(interval)
    assert after == 0o077 and seen == {0o600}, sorted(oct(m) for m in seen)


def test_a_writer_that_makes_the_file_anew_still_gets_the_usual_mode(tmp_path):
    """A writer may replace the temporary file with its own (mode 0600): the new file still gets
    the mode the system gave the temporary file (0666 less the umask)."""

    def write(tmp: str) -> None:
        os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x")
        os.close(fd)

    with _umask(0o022):
        path = atomic_write(tmp_path / "x.bin", write)
    assert path.read_bytes() == b"x" and _mode(path) == 0o644


# ----------------------------------------------------------------- 5: strict stdout encodings
def _strict_stream(encoding: str = "ascii") -> io.TextIOWrapper:
    """A text stream that, like ``PYTHONIOENCODING=ascii`` or a cp1252 console, raises for a
    character its encoding lacks."""
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="strict", write_through=True)


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
def test_a_strict_stdout_encoding_escapes_the_arrow_and_the_command_succeeds(tmp_path, monkeypatch, encoding):
    """``classify predict`` wrote its predictions, then failed on the "→" of its summary line
    (exit 1). The line is printed with the arrow escaped, exit 0; the stream is put back strict."""
    data, model = _classifier(tmp_path)
    out = tmp_path / "preds.csv"
    stdout = _strict_stream(encoding)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["classify", "predict", str(data), "--model", str(model), "--out", str(out)]) == 0
    assert out.is_file()
    printed = stdout.buffer.getvalue().decode(encoding)  # type: ignore[attr-defined]
    assert "\\u2192 " in printed and str(out) in printed, printed
    assert sys.stdout is stdout and stdout.errors == "strict"


def test_a_non_ascii_file_name_on_an_ascii_stdout_does_not_stop_the_command(tmp_path):
    """``PYTHONIOENCODING=ascii`` in a real ``faast`` process, a features file named ``ñ.csv``:
    ``classify fit`` and ``predict`` write their files and exit 0 (before: the first line naming
    the file, or the "→", failed the command)."""
    data = tmp_path / "ñ.csv"
    data.write_text(FEATURES, encoding="utf-8")
    env = {**_child_env(), "PYTHONIOENCODING": "ascii"}
    for argv in (
        ["classify", "fit", str(data), "--model", str(tmp_path / "m")],
        ["classify", "predict", str(data), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "p.csv")],
    ):
        result = subprocess.run([str(FAAST), *argv], capture_output=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr.decode()
        assert b"error" not in result.stderr
    assert (tmp_path / "p.csv").is_file()
    assert b"\\u2192" in result.stdout


# ----------------------------------------------------------------- 6: a closed stdout pipe
class _ClosedPipe(io.TextIOBase):
    """A stdout whose reader has gone: every write and flush raises ``BrokenPipeError``."""

    def __init__(self) -> None:
        self.tries = 0

    def write(self, text: str) -> int:
        self.tries += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_in_process_is_not_an_error_and_the_file_is_written(tmp_path, monkeypatch, capsys):
    """``classify predict ... | true`` wrote its predictions, then "error: Broken pipe", exit 1.
    The command finishes quietly, exit 0; what it prints is discarded after the first failure;
    ``sys.stdout`` is put back after."""
    data, model = _classifier(tmp_path)
    out = tmp_path / "preds.csv"
    stdout = _ClosedPipe()
    monkeypatch.setattr(sys, "stdout", stdout)
    capsys.readouterr()
    assert main(["classify", "predict", str(data), "--model", str(model), "--out", str(out)]) == 0
    assert out.is_file() and stdout.tries == 1
    assert sys.stdout is stdout
    assert "Broken pipe" not in capsys.readouterr().err


def test_a_stdout_closed_before_the_first_line_does_not_stop_the_work(tmp_path, monkeypatch):
    """Printing from deep inside a command (``fit``'s own lines, before it saves) with the reader
    gone from the start: the classifier is saved all the same."""
    data = tmp_path / "f.csv"
    data.write_text(FEATURES, encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["classify", "fit", str(data), "--model", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / JSON_NAME).is_file()


def _closed_pipe_run(argv: list[str]) -> tuple[int, str]:
    """Run ``faast ARGV`` with its stdout a pipe whose read end is closed at once (as ``| true``
    does): (exit status, stderr)."""
    child = subprocess.Popen(
        [str(FAAST), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env()
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    err = child.stderr.read().decode()
    return child.wait(timeout=300), err


def test_a_real_pipe_closed_by_its_reader_ends_the_command_quietly(tmp_path):
    """``faast assets list | true`` and ``faast classify predict ... | true`` in real processes:
    exit 0, nothing on stderr about the pipe (no "error: Broken pipe", no "Exception ignored" from
    Python's flush at exit), and the predictions are written."""
    code, err = _closed_pipe_run(["assets", "list"])
    assert code == 0 and "Broken pipe" not in err and "Exception ignored" not in err, err
    data = tmp_path / "f.csv"
    data.write_text(FEATURES, encoding="utf-8")
    assert main(["classify", "fit", str(data), "--model", str(tmp_path / "m")]) == 0
    out = tmp_path / "preds.csv"
    code, err = _closed_pipe_run(
        ["classify", "predict", str(data), "--model", str(tmp_path / "m"), "--out", str(out)]
    )
    assert code == 0 and "Broken pipe" not in err and "Exception ignored" not in err, err
    assert out.is_file()
