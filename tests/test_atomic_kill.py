"""No lost data: a process killed (SIGKILL) in the middle of a save leaves the previous file intact
and loadable, and adding a task to a fast-weight file keeps the other tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from faast.io import load_tensors, save_tensors
from faast.lm import fastweights as fw

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

#: A child that writes a fast-weight task through faast's own writer, but with the bytes going out
#: slowly: half the file, then a line "mid" on stdout, then a long sleep (killed there).
SLOW_CHILD = r"""
import sys, time
import torch
import safetensors.torch as st
from faast.lm import fastweights as fw

real = st.save_file

def slow_save_file(tensors, filename, metadata=None):
    data = st.save(tensors, metadata=metadata)
    with open(filename, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        print("mid", flush=True)
        time.sleep(120)
        fh.write(data[len(data) // 2 :])

st.save_file = slow_save_file
import faast.io
faast.io.save_file = slow_save_file
fw.write_task(sys.argv[1], "new", {"x/gram": torch.full((64, 64), 7.0, dtype=torch.float64)}, {"n": 2})
print("done", flush=True)
"""

#: A child that saves large tensors in a loop, version after version, as fast as it can.
LOOP_CHILD = r"""
import sys
import torch
from faast.io import save_tensors
i = 1
while True:
    save_tensors(sys.argv[1], {"v": torch.full((1 << 20,), float(i))}, {"version": str(i)}, kind="weights")
    if i == 1:
        print("saved", flush=True)
    i += 1
"""


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == word:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"the child exited before {word!r}: {proc.stderr.read()}")
    raise AssertionError(f"the child did not print {word!r} in {timeout} s")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_save_keeps_the_previous_file(tmp_path):
    """Two children killed mid-save (both started at once, to share the start-up time):

    * one adding a task to a fast-weight file, killed with half of the new file written: the
      previous file is intact byte for byte, with both of its tasks;
    * one rewriting a 4 MB file in a loop, killed at an arbitrary moment: the file is one whole
      version (never a mix of two, never truncated).
    """
    path = tmp_path / "fw.safetensors"
    old = {"x/gram": torch.eye(3, dtype=torch.float64), "x/count": torch.tensor(4)}
    fw.write_task(path, "a", old, {"n": 1})
    fw.write_task(path, "b", {"x/gram": 2 * torch.eye(3, dtype=torch.float64)}, {"n": 1})
    before = path.read_bytes()
    loop_path = tmp_path / "w.safetensors"
    save_tensors(loop_path, {"v": torch.zeros(1 << 20)}, {"version": "0"}, kind="weights")
    slow, loop = _child(SLOW_CHILD, str(path)), _child(LOOP_CHILD, str(loop_path))

    _wait_for(slow, "mid")  # half of the new file is on disk, in a temporary file
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".fw.safetensors.")], "no temporary file"
    _kill(slow)
    assert path.read_bytes() == before  # the previous file, byte for byte
    assert fw.list_tasks(path) == ["a", "b"]
    _, tensors, _ = fw.read_task(path, "a")
    assert torch.equal(tensors["x/gram"], old["x/gram"]) and int(tensors["x/count"]) == 4
    # The next save succeeds and keeps both tasks (the dead process's temporary file is ignored).
    fw.write_task(path, "c", {"x/gram": torch.zeros(2, 2, dtype=torch.float64)}, {"n": 3})
    assert fw.list_tasks(path) == ["a", "b", "c"]

    _wait_for(loop, "saved")  # version 1 is complete; later versions are being written
    time.sleep(0.3)
    _kill(loop)
    tensors, meta = load_tensors(loop_path, kind="weights")
    version = int(meta["version"])
    assert version >= 1
    assert torch.equal(tensors["v"], torch.full((1 << 20,), float(version)))


def test_adding_tasks_never_loses_the_others(tmp_path):
    path = tmp_path / "fw.safetensors"
    tasks = {f"t{i}": torch.full((4, 4), float(i), dtype=torch.float64) for i in range(5)}
    for name, gram in tasks.items():
        fw.write_task(path, name, {"m/gram": gram}, {"n": name})
    fw.write_task(path, "t2", {"m/gram": torch.zeros(4, 4, dtype=torch.float64)}, {"n": "again"})  # replace
    assert fw.list_tasks(path) == sorted(tasks)
    for name, gram in tasks.items():
        _, got, sig = fw.read_task(path, name)
        want = torch.zeros(4, 4, dtype=torch.float64) if name == "t2" else gram
        assert torch.equal(got["m/gram"], want)
        assert sig["n"] == ("again" if name == "t2" else name)
    with pytest.raises(ValueError, match="task names"):
        fw.write_task(path, "bad/name", {"m/gram": torch.zeros(1, 1)}, {})
    assert fw.list_tasks(path) == sorted(tasks)
