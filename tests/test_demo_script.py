"""``scripts/demo.sh`` passes its arguments to ``faast demo`` and fetches the assets where the
demo will look for them (a stub ``faast`` in a stub environment records each call)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stub_venv(tmp_path: Path) -> tuple[Path, Path]:
    """A FAAST_VENV whose install stamp is current (bootstrap installs nothing) and whose ``faast``
    appends ``FAAST_CACHE|arguments`` to a log; returns (venv, log)."""
    venv, log = tmp_path / "venv", tmp_path / "calls.log"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    spec = os.environ.get("FAAST_TORCH_SPEC", "torch==2.13.0")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    (venv / ".faast-install-stamp").write_text(f"{digest} {spec}\n")
    faast = venv / "bin" / "faast"
    faast.write_text(f'#!/usr/bin/env bash\necho "${{FAAST_CACHE:-}}|$*" >> {log}\n')
    faast.chmod(0o755)
    return venv, log


@pytest.mark.parametrize("given", [["--cache-dir", "CACHE"], ["--cache-dir=CACHE"], []])
def test_demo_script_fetches_into_the_cache_the_demo_reads(tmp_path, given):
    """`bash scripts/demo.sh --cache-dir X` fetched into the default cache and the demo then
    stopped: "asset … is not in X" (assets hunt). The fetch now uses X as FAAST_CACHE."""
    venv, log = _stub_venv(tmp_path)
    cache = str(tmp_path / "cache")
    argv = [a.replace("CACHE", cache) for a in given]
    env = {**os.environ, "FAAST_VENV": str(venv)}
    env.pop("FAAST_CACHE", None)
    subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), *argv, "--threads", "1"], env=env, check=True)
    fetch, demo = log.read_text().splitlines()
    assert fetch == f"{cache if given else ''}|assets fetch --group demo"
    assert demo == f"|demo {' '.join(argv)} --threads 1".replace("demo  --", "demo --")
