"""benchmarks/blas_kernels.py: the child environments and the table (the runs themselves need the
demo's feature cache and minutes: not run here)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import blas_kernels as bench


def test_environment_sets_and_removes_variables(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
    forced, unset = (bench._environment(bench.ENVIRONMENTS[name]) for name in bench.ENVIRONMENTS)
    assert forced["OPENBLAS_CORETYPE"] == "Haswell" and forced["OPENBLAS_L2_SIZE"] == "512"
    assert "OPENBLAS_CORETYPE" not in unset and "OPENBLAS_L2_SIZE" not in unset
    assert unset["PATH"] == forced["PATH"]  # everything else is inherited


def test_markdown_gives_each_measurement_its_speed_up_and_the_ratios_per_environment():
    slow, fast = list(bench.ENVIRONMENTS)
    table = {
        slow: {label: 2.0 for label, _, _ in bench.ROWS},
        fast: {label: 1.0 for label, _, _ in bench.ROWS},
    }
    table[slow]["LogisticRegression(C=10) fit, full data"] = 20.0
    table[fast]["LogisticRegression(C=10) fit, full data"] = 18.0
    text = bench.markdown({"table": table, "kernels": {slow: ["OpenBLAS Haswell kernels"], fast: ["x"]}})
    lines = text.splitlines()
    assert lines[0].startswith("| measurement |") and "OpenBLAS Haswell kernels" in lines[0]
    assert "| float64 statistics (Gram), full data | 2.00 s | 1.00 s | 2.00× |" in lines
    assert "| LogisticRegression(C=10) fit, full data | 20.00 s | 18.00 s | 1.11× |" in lines
    assert "| LogisticRegression / FaastClassifier(loss='logistic'), full data | 10.00× | 18.00× | |" in lines
    assert len(lines) == 2 + len(bench.ROWS) + len(bench.RATIOS)
