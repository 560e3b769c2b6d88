"""Helpers of the tests that run ``faast`` command lines in a group of processes started the way
``torchrun`` starts them (``tests/test_fix_s83_distributed.py``, ``tests/test_fix_s84_distributed.py``):
each rank records what each scenario printed and returned as JSON, and the tests read those records."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from faast import distributed
from tests.test_distributed_learning import PIPES, ROOT, _env, _free_port

WORLD = 2
SRC = str(Path(distributed.__file__).resolve().parents[1])  # the faast imported here, for the group too
TEMPLATE = "{input} w90"


def launch_group(module: str, out: Path, steps: list[dict[str, Any]]) -> list[subprocess.Popen]:
    """Start :data:`WORLD` processes of ``python -m module out steps`` with the environment
    ``torchrun`` gives its processes (a fresh port, gloo, a 30 s timeout) and the faast imported
    here first on their path; the module's ``__main__`` runs ``steps`` (JSON) and writes records."""
    port = str(_free_port())
    procs = []
    for rank in range(WORLD):
        env = _env(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=port, FAAST_DIST_TIMEOUT="30", FAAST_DIST_BACKEND="gloo",
        )  # fmt: skip
        env["PYTHONPATH"] = os.pathsep.join([SRC, env["PYTHONPATH"]])  # the faast this process tests
        cmd = [sys.executable, "-m", module, str(out), json.dumps(steps)]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, **PIPES))
    return procs


def record(run: Any) -> dict[str, Any]:
    """What ``run()`` printed and returned (an exit status, or a dict), or the error it raised."""
    out, err, start = io.StringIO(), io.StringIO(), time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            got = run()
        result = {"error": None, **(got if isinstance(got, dict) else {"rc": got})}
    except Exception as exc:  # recorded for the test to judge
        result = {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()[-2000:]}
    return {**result, "out": out.getvalue(), "err": err.getvalue(), "seconds": time.perf_counter() - start}


def write_record(out: Path, name: str, rank: int, result: dict[str, Any]) -> None:
    """A rank's record of scenario ``name``, where :func:`rank_results` reads it."""
    (out / f"{name}.rank{rank}.json").write_text(json.dumps(result))


def rank_results(runs: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Every rank's record of scenario ``name``; a missing one fails naming the processes' stderr
    (``runs["procs"]``: (process, stdout, stderr) of every process launched)."""
    found = []
    for rank in range(WORLD):
        path = runs["out"] / f"{name}.rank{rank}.json"
        tails = [err[-1500:] for _, _, err in runs["procs"]]
        assert path.exists(), f"rank {rank} wrote no result for {name}: {tails}"
        found.append(json.loads(path.read_text()))
    return found


def refused_everywhere(runs: dict[str, Any], name: str, *named: str) -> list[dict[str, Any]]:
    """Each rank's failed command line, whose error names ``named`` (the processes' inputs differ)."""
    found = rank_results(runs, name)
    for rank, got in enumerate(found):
        assert got["error"] is None and got["rc"] == 1, f"rank {rank}: {got}"
        assert "read different inputs or were given different options" in got["err"], (
            f"rank {rank}: {got['err']}"
        )
        for text in named:
            assert text in got["err"], f"rank {rank}: {got['err']}"
    return found


def ran_everywhere(runs: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Each rank's record of scenario ``name``, which ran and exited 0."""
    found = rank_results(runs, name)
    for rank, got in enumerate(found):
        assert got["error"] is None and got["rc"] == 0, f"rank {rank}: {got}"
    return found
