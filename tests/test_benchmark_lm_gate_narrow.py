"""benchmarks/lm_gate_narrow.py: the context check is switched off and back on around a block, and
the table names every row's setting (the benchmark itself needs the offline models)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_gate_narrow
from faast.lm import FaastConfig, get_faast_model
from faast.lm.output_readouts import ProbReadOut
from tests.lm_tiny import tiny_model


def test_the_context_check_is_off_inside_the_block_and_back_after():
    fm = get_faast_model(tiny_model("llama", dtype=torch.float64), FaastConfig(num_memories=0))
    fm.learn(torch.tensor([[5, 6, 7]]))
    out: ProbReadOut = fm.output_memory
    assert out._context_basis() is not None
    with lm_gate_narrow.context_check(False):
        assert out._context_basis() is None
    assert out._context_basis() is not None
    with lm_gate_narrow.context_check(True):
        assert out._context_basis() is not None


def test_the_table_names_each_rows_setting():
    row = {
        "model": "M",
        "text": "a word",
        "pairs": 1,
        "effective_tokens": 1.0,
        "context_directions": 1,
        "context_check": True,
        "unseen_es_change_pct": 0.4,
        "unseen_en_change_pct": -0.25,
        "recall_ppl": 1.11,
        "recall_base_ppl": 9.3e7,
        "new_context_ppl": 1.39,
        "new_context_base_ppl": 1.39,
    }
    md = lm_gate_narrow.markdown([row, {**row, "context_check": False}], {"data": "d", "machine": "m"})
    lines = md.splitlines()
    assert lines[-2] == "| M | a word | 1 | 1.0 | 1 | on | +0.4 % | -0.2 % | 1.11 (9.3e+07) | 1.39 (1.39) |"
    assert "| off |" in lines[-1]
