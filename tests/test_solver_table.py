"""README's solver table is rendered from the published benchmarks/results/solver.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import solver  # noqa: E402


def test_the_readme_table_is_the_rendering_of_solver_json():
    expected = solver.markdown_table(solver.PUBLISHED)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"{expected}\n<!-- faast:solver:end -->" in readme, (
        "README.md's solver table is stale: python benchmarks/solver.py --table-only"
    )


def test_a_row_shows_the_figures_of_its_width(tmp_path):
    row = {
        "config": {"n": 1000, "d": 64, "m": 8},
        "seconds": {
            "ours": 0.5,
            "ours_add": 0.4,
            "ours_solve": 0.1,
            "floor_torch_mm": 0.3,
            "floor_dsyrk": 0.2,
            "svd_pinv_float32": 2.0,
        },
        "speedup_vs_svd": 4.0,
        "agreement_vs_float64_svd": 1.2e-13,
        "agreement_float32_svd_vs_float64_svd": 3.4e-6,
    }
    path = tmp_path / "solver.json"
    path.write_text(json.dumps({"m=8": row}), encoding="utf-8")
    table = solver.markdown_table(path).splitlines()
    assert table[0].startswith("| 1,000 × 64 keys |")
    assert table[2] == (
        "| m = 8 values | 0.50 s (0.40 + 0.10) | 2.00 s | 0.30 s / 0.20 s | 4.0× "
        "| 1.2e-13 (SVD route: 3.4e-06) |"
    )
