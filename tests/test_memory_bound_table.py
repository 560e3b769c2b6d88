"""docs/reliability.md's bounded-memory table is rendered from the published results files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import memory_bound  # noqa: E402


def test_the_reliability_table_is_the_rendering_of_the_results_files():
    expected = memory_bound.markdown_table(memory_bound.PUBLISHED)
    page = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert f"{expected}\n<!-- faast:{memory_bound.BLOCK}:end -->" in page, (
        "docs/reliability.md is stale: rerun python benchmarks/memory_bound.py"
    )


def test_the_table_has_a_row_per_workload_with_its_figures(tmp_path):
    run = {"1x": {"baseline_mb": 100.0, "peak_mb": 110.0}, "10x": {"baseline_mb": 100.0, "peak_mb": 121.0}}
    results = {
        "command": "python benchmarks/memory_bound.py --model smollm2 --window 256",
        "learn_model": "smollm2",
        "learn": {
            **run,
            "1x": {**run["1x"], "words": 2000},
            "10x": {**run["10x"], "words": 20000},
            "peak_growth": 0.1,
        },
        "fit": {
            "1x": {**run["1x"], "input_mb": 19.5, "overhead_over_input": 0.0},
            "10x": {**run["10x"], "input_mb": 195.0, "overhead_over_input": 0.108},
            "peak_growth": 0.1,
        },
        "fit-logistic": {
            "1x": {**run["1x"], "input_mb": 19.5, "overhead_over_input": 0.5},
            "10x": {**run["10x"], "input_mb": 195.0, "overhead_over_input": 0.6},
            "peak_growth": 0.1,
        },
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    table = memory_bound.markdown_table([path, tmp_path / "missing.json"]).splitlines()
    assert len(table) == 5  # header, rule, learn, fit, fit-logistic (no stream; missing file skipped)
    assert table[2] == (
        "| `faast lm learn`, SmolLM2-135M-Instruct (float32), window 256 | 2,000 words | 20,000 words "
        "| 110.0 → 121.0 MB | +10.0 % | 10.0 → 21.0 MB |"
    )
    assert table[3].endswith("| 10.0 → 21.0 MB (11 % of the array) |")
    assert table[4].startswith('| `FaastClassifier.fit`, `loss="logistic"` on an in-memory array')
    assert table[4].endswith("| 10.0 → 21.0 MB (60 % of the array) |")
