"""Two faast commands writing one fast-weights file at once: neither loses the other's task or text.
A command in a process of its own (a tiny model) pauses between reading the file and writing it
until the test, which writes the file meanwhile, lets it go (deterministic, not timing luck); the
commands that extend a task are checked with the other command's save made just before theirs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import faast
from faast.cli import main
from faast.lm import fastweights as fw
from tests.test_lm_cli import WORDS, model_dir  # noqa: F401 - the tiny model folder fixture

#: A child process: with ATTR not "-", ``faast.lm.fastweights.ATTR`` first makes the file PAUSED and
#: waits for the file GO (``save_tensors``: inside ``write_task``, the file read, not yet written;
#: ``write_task``: the task loaded and learned, not yet saved); then runs the faast command line.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import faast.lm.fastweights as fw
    from faast.cli import main

    attr, paused, go = sys.argv[1:4]
    if attr != "-":
        original = getattr(fw, attr)

        def pausing(*args, **kwargs):
            Path(paused).touch()
            deadline = time.time() + 60
            while not os.path.exists(go) and time.time() < deadline:
                time.sleep(0.01)
            return original(*args, **kwargs)

        setattr(fw, attr, pausing)
    sys.exit(main(sys.argv[4:]))
    """
)


class Run:
    """A faast command line in a process of its own (stderr to a file, read while it runs)."""

    def __init__(self, tmp_path: Path, tag: str, argv: list[str], pause: str = "-") -> None:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        self.err = tmp_path / f"{tag}.err"
        self.paused, self.go = tmp_path / f"{tag}.paused", tmp_path / f"{tag}.go"
        env = {**os.environ, "PYTHONPATH": str(Path(faast.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(script), pause, str(self.paused), str(self.go), *argv]
        with open(self.err, "w") as stderr:
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_until(self, condition, what: str) -> None:
        deadline = time.time() + 90
        while not condition():
            if time.time() > deadline:
                self.proc.kill()
                raise AssertionError(f"timed out waiting for {what}: {self.stderr()}")
            time.sleep(0.02)

    def wait_paused(self) -> None:
        self.wait_until(lambda: self.paused.exists() or self.proc.poll() is not None, "the pause")
        assert self.proc.poll() is None, self.stderr()

    def finish(self) -> int:
        self.go.touch()
        self.proc.communicate(timeout=90)
        return self.proc.returncode


def _text(path: Path, step: int) -> Path:
    path.write_text(" ".join(WORDS[(i * step) % 40] for i in range(120)))
    return path


@pytest.fixture
def files(model_dir, tmp_path):  # noqa: F811
    base = ["--model", str(model_dir), "--threads", "1", "--window", "16"]
    texts = {n: _text(tmp_path / f"t{n}.txt", step) for n, step in ((1, 1), (2, 3), (3, 7))}
    return base, texts, tmp_path / "fw.safetensors"


def _learned(path: Path, task: str) -> list[str]:
    _, _, signature = fw.read_task(path, task)
    return [r["text"] for r in signature["info"]["learned"]]


def test_two_tasks_learned_into_one_file_at_once_are_both_kept(files, tmp_path, capsys):
    """`lm learn --task x` (a process of its own) reads the file (holding z) and pauses before
    writing it; task y is written into the file meanwhile (this process, as `lm learn --task y`
    writes it). Before the lock, y was written, then x wrote its copy of the old file: y was lost
    while both reported "wrote task". Now y waits for x, then adds to x's file."""
    import threading

    base, texts, out = files
    assert main(["lm", "learn", *base, "--text", str(texts[3]), "--out", str(out), "--task", "z"]) == 0
    learned_y = tmp_path / "y.safetensors"
    assert main(["lm", "learn", *base, "--text", str(texts[2]), "--out", str(learned_y), "--task", "y"]) == 0
    _, y_tensors, y_signature = fw.read_task(learned_y, "y")
    capsys.readouterr()
    x_argv = ["lm", "learn", *base, "--text", str(texts[1]), "--out", str(out), "--task", "x"]
    x = Run(tmp_path, "x", x_argv, pause="save_tensors")
    x.wait_paused()
    y = threading.Thread(target=fw.write_task, args=(out, "y", y_tensors, y_signature))
    y.start()
    printed: list[str] = []

    def y_waits_or_is_done() -> bool:  # waits for x's lock (fixed), or wrote at once (before the fix)
        printed.append(capsys.readouterr().err)
        return "waiting" in "".join(printed) or not y.is_alive()

    x.wait_until(y_waits_or_is_done, "y")
    assert x.finish() == 0, x.stderr()
    y.join(timeout=90)
    assert fw.list_tasks(out) == ["x", "y", "z"]
    assert [_learned(out, t) for t in ("x", "y", "z")] == [["t1.txt"], ["t2.txt"], ["t3.txt"]]
    assert "waiting for another faast command writing a file in" in "".join(printed)


def test_a_task_appended_to_while_another_append_runs_is_not_overwritten(files, tmp_path, capsys):
    """A (`lm learn --append t2`, a process of its own) loads task x and pauses before saving it; B
    (`lm learn --append t3`, this process) adds to the task meanwhile. Before the check, A then
    saved its copy: t3 was lost though B said "wrote task". Now A refuses in one line, the file
    holds B's task, and the file's other task is untouched."""
    base, texts, out = files
    for text, task in ((texts[1], "x"), (texts[3], "other")):
        assert main(["lm", "learn", *base, "--text", str(text), "--out", str(out), "--task", task]) == 0
    _, other, _ = fw.read_task(out, "other")
    a_argv = ["lm", "learn", *base, "--text", str(texts[2]), "--out", str(out), "--task", "x", "--append"]
    a = Run(tmp_path, "a", a_argv, pause="write_task")
    a.wait_paused()
    b_argv = ["lm", "learn", *base, "--text", str(texts[3]), "--out", str(out), "--task", "x", "--append"]
    assert main(b_argv) == 0
    assert a.finish() == 1, a.stderr()
    said = a.stderr().strip().splitlines()[-1]
    assert said == (
        f"faast lm: error: {out}: task 'x' changed while this command ran (another faast command wrote it); "
        "nothing was written: run again"
    )
    assert _learned(out, "x") == ["t1.txt", "t3.txt"]
    _, still, _ = fw.read_task(out, "other")
    assert still.keys() == other.keys() and all(still[k].equal(other[k]) for k in other)


def _another_command_writes_first(monkeypatch) -> None:
    """Make every task save first save the task as another command would (the same statistics,
    a note more): what a command that ran while this one worked leaves in the file."""
    original = fw.write_task

    def another_command_first(path, task, tensors, signature, *, expect=None):
        _, theirs, their_signature = fw.read_task(path, task)
        original(path, task, theirs, {**their_signature, "info": {**their_signature["info"], "by": "other"}})
        return original(path, task, tensors, signature, expect=expect)

    monkeypatch.setattr(fw, "write_task", another_command_first)


def test_lm_forget_refuses_a_task_rewritten_meanwhile(files, monkeypatch, capsys):
    base, texts, out = files
    for text, extra in ((texts[1], []), (texts[2], ["--append"])):
        assert (
            main(["lm", "learn", *base, "--text", str(text), "--out", str(out), "--task", "x", *extra]) == 0
        )
    _another_command_writes_first(monkeypatch)
    argv = ["lm", "forget", *base, "--text", str(texts[2]), "--fast-weights", str(out), "--task", "x"]
    assert main(argv) == 1
    assert "task 'x' changed while this command ran" in capsys.readouterr().err
    info = fw.read_task(out, "x")[2]["info"]
    assert info["by"] == "other" and "forgotten" not in info and len(info["learned"]) == 2


def test_write_task_refuses_a_task_changed_since_it_was_read(tmp_path):
    """The check itself: the digest of the task as read; a rewrite of the task (not of another) or
    its removal refuses, and nothing is written."""
    import torch

    path = tmp_path / "fw.safetensors"
    fw.write_task(path, "a", {"m/gram": torch.eye(2, dtype=torch.float64)}, {"n": 1})
    fw.write_task(path, "b", {"m/gram": torch.eye(3, dtype=torch.float64)}, {"n": 1})
    _, tensors, signature = fw.read_task(path, "a")
    loaded = fw.task_digest(tensors, signature)
    fw.write_task(path, "b", {"m/gram": torch.zeros(3, 3, dtype=torch.float64)}, {"n": 2})  # another task
    fw.write_task(path, "a", {"m/gram": 2 * torch.eye(2, dtype=torch.float64)}, {"n": 2}, expect=loaded)
    _, tensors, signature = fw.read_task(path, "a")
    assert signature == {"n": 2} and fw.task_digest(tensors, signature) != loaded
    data = path.read_bytes()
    with pytest.raises(fw.TaskChangedError, match="task 'a' changed while this command ran"):
        fw.write_task(path, "a", {"m/gram": torch.eye(2, dtype=torch.float64)}, {"n": 3}, expect=loaded)
    assert path.read_bytes() == data
    with pytest.raises(fw.TaskChangedError, match="task 'c' was removed"):
        fw.write_task(path, "c", {"m/gram": torch.eye(2, dtype=torch.float64)}, {"n": 3}, expect=loaded)
    assert path.read_bytes() == data


def test_task_forget_refuses_a_task_rewritten_meanwhile(model_dir, tmp_path, monkeypatch, capsys):  # noqa: F811
    """`faast task forget` saves only the task it loaded: another command's save of the task while
    it ran (made here just before its save) makes it refuse, the file as that command left it."""
    from tests.test_task_cli import parity_setup

    base, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "p", "--folds", "2"]) == 0
    forget = tmp_path / "forget.tsv"
    forget.write_text("\n".join((tmp_path / "train.tsv").read_text().splitlines()[:5]) + "\n")
    _another_command_writes_first(monkeypatch)
    argv = ["task", "forget", *base, "--examples", str(forget), "--fast-weights", str(out), "--task", "p"]
    assert main(argv) == 1
    assert "task 'p' changed while this command ran" in capsys.readouterr().err
    assert (
        fw.read_task(out, "p")[2]["info"]["by"] == "other"
        and "forgotten" not in fw.read_task(out, "p")[2]["info"]
    )
