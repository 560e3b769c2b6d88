"""benchmarks/lm_gate_narrow.py: each rule of the context check holds inside its block and the
library's returns after, and the table names every row's setting (the benchmark itself needs the
offline models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_gate_narrow
from faast.lm import FaastConfig, get_faast_model
from faast.lm import output_readouts as readouts
from faast.lm.output_readouts import ProbReadOut
from tests.lm_tiny import tiny_model


def test_each_rule_holds_inside_its_block_and_the_library_rule_returns_after():
    fm = get_faast_model(tiny_model("llama", dtype=torch.float64), FaastConfig(num_memories=0))
    fm.learn(torch.tensor([[5, 6] * 30 + [9, 10, 11]]))  # narrow, with a rare tail
    out: ProbReadOut = fm.output_memory
    check = out._context_check()
    assert check is not None
    tail = fm.head_inputs(torch.tensor([[5, 6] * 30 + [9, 10, 11]]))[0, -3:-1].double()
    library = readouts.context_share(tail, check)
    with lm_gate_narrow.context_check("off"):
        assert out._context_check() is None
    with lm_gate_narrow.context_check("dominant"):
        dominant = readouts.context_share(tail, check)
        assert bool((dominant <= library + 1e-12).all())  # the library's is the larger of two shares
    assert bool((dominant < library - 1e-3).any())  # the rare tail: only the leverage admits it
    assert torch.equal(readouts.context_share(tail, check), library)
    assert out._context_check() is not None
    with pytest.raises(ValueError, match="rule must be one of"):
        with lm_gate_narrow.context_check("both"):
            pass


def test_the_table_names_each_rows_setting():
    row = {
        "model": "M",
        "text": "a word",
        "set": "dev",
        "pairs": 1,
        "effective_tokens": 1.0,
        "context_check": "on",
        "unseen_es_change_pct": 0.4,
        "unseen_en_change_pct": -0.25,
        "recall_ppl": 1.11,
        "recall_base_ppl": 9.3e7,
        "new_context_ppl": 1.39,
        "new_context_base_ppl": 1.39,
    }
    rows = [row, {**row, "context_check": "dominant"}, {**row, "context_check": "off"}]
    md = lm_gate_narrow.markdown(rows, {"data": "d", "machine": "m"})
    lines = md.splitlines()
    assert lines[-3] == "| M | a word | dev | 1 | 1.0 | on | +0.4 % | -0.2 % | 1.11 (9.3e+07) | 1.39 (1.39) |"
    assert "| dominant |" in lines[-2] and "| off |" in lines[-1]
