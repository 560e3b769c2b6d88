"""benchmarks/lm_head_or_memory.py: the rule that reads with the label head only when its held-out
gain over the memory is significant, and the study's rows on a tiny model (each variant scored on
the development examples as the task reads them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import dev_tasks
import lm_guard
import lm_head_or_memory as study
from faast.lm.task_choice import SIGN_FLIP_LEVEL, max_gain_p_value
from tests.lm_wordlevel import tiny_causal_lm
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled, on_tiny_model

LABELS = ["w40", "w41"]


def test_the_head_needs_a_significant_held_out_gain():
    memory = torch.tensor([True, False] * 20)
    assert study.head_or_memory(memory, None) == ("memory", None)  # the head was not cross-validated
    assert study.head_or_memory(memory, memory.clone()) == ("memory", None)  # no gain: no test
    worse = memory.clone()
    worse[0] = False
    assert study.head_or_memory(memory, worse) == ("memory", None)
    better = torch.ones(40, dtype=torch.bool)  # right on 20 more examples, wrong on none
    choice, p = study.head_or_memory(memory, better)
    assert choice == "head" and p == max_gain_p_value((better.double() - memory.double())[:, None])
    assert p < SIGN_FLIP_LEVEL
    slightly = memory.clone()
    slightly[[1, 3]] = True  # two more right, two fewer: a gain of one example
    slightly[0] = False
    slightly[5] = True
    choice, p = study.head_or_memory(memory, slightly)
    assert choice == "memory" and p is not None and p >= SIGN_FLIP_LEVEL
    with pytest.raises(ValueError, match="held-out scores"):
        study.head_or_memory(memory, better[:10])


def test_log_likelihoods_weigh_how_sure_each_read_out_was():
    """On log-probabilities the test sees a gain that right/wrong counts miss: the head gives
    every right label more probability, with the same examples predicted right."""
    memory = torch.log(torch.tensor([0.55, 0.45] * 20, dtype=torch.float64))
    head = torch.log(torch.tensor([0.9, 0.48] * 20, dtype=torch.float64))
    right = torch.tensor([True, False] * 20)
    assert study.head_or_memory(right, right.clone()) == ("memory", None)
    choice, p = study.head_or_memory(memory, head)
    assert choice == "head" and p == max_gain_p_value((head - memory)[:, None]) and p < SIGN_FLIP_LEVEL
    assert study.head_or_memory(head, memory) == ("memory", None)


def test_rows_score_each_variant_and_publish(monkeypatch, tmp_path):
    on_tiny_model(monkeypatch, (lm_guard,), LABELS)
    monkeypatch.setattr(study, "load_causal_lm", tiny_causal_lm)
    support, dev = _labelled(40), _labelled(12, offset=5)
    data = SimpleNamespace(
        template=TEMPLATE, labels=LABELS, support=support, dev=dev, data="tiny words", title="tiny"
    )
    monkeypatch.setattr(dev_tasks, "dev_task", lambda *a: data)
    out = tmp_path / "study"
    study.main(["--models", "tiny", "--sizes", "30", "--draws", "2", "--dev", "12", "--out", str(out)])
    saved = json.loads((out / "results.json").read_text())
    rows = saved["rows"]
    assert [(r["k"], r["draw"]) for r in rows] == [(30, 0), (30, 1)]
    for r in rows:
        for name in study.RULES:
            assert r[f"{name}_choice"] in ("head", "memory")
            assert r[f"{name}_accuracy"] == r[f"{r[f'{name}_choice']}_accuracy"]
        assert 0 <= r["memory_accuracy"] <= 1 and 0 <= r["head_accuracy"] <= 1
    for name in study.RULES:  # each test weighed the head against the memory
        assert any(r[f"{name}_p"] is not None for r in rows), name
    lines = saved["summary"]
    assert [line["model"] for line in lines] == ["tiny", "all draws"]
    assert lines[-1]["head"] == pytest.approx(100 * sum(r["head_accuracy"] for r in rows) / 2)
    change = sum(100 * (r["head_accuracy"] - r["memory_accuracy"]) for r in rows) / 2
    assert lines[-1]["head − memory"] == pytest.approx(change)
    for name in study.RULES:
        assert lines[-1][f"{name}: head chosen"] == sum(r[f"{name}_choice"] == "head" for r in rows)
    ahead = [r for r in rows if r["head_accuracy"] > r["memory_accuracy"]]
    assert lines[-1]["head ahead"] == len(ahead)
    assert lines[-1]["head ahead, no likelihood test"] == sum(
        r["head if more likely_p"] is None for r in ahead
    )
    centring = sum(100 * (r["head (centred)_accuracy"] - r["head_accuracy"]) for r in rows) / 2
    assert lines[-1]["head (centred) − head"] == pytest.approx(centring)
    assert all(0 <= r["head (centred)_accuracy"] <= 1 and r["head (centred)_layer"] for r in rows)
    table = (out / "table.md").read_text()
    assert table.startswith("Command: `python benchmarks/lm_head_or_memory.py --models tiny")
    assert (out / "table.png").is_file() and (out / "draws.csv").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--draws", "0"], "--draws >= 1"),
        (["--dev", "5"], "--dev >= 10"),
        (["--sizes", "16,0"], "sizes >= 1"),
        (["--task", "bible-books", "--dev", "100000"], "--task bible-books: .*usable verses"),
    ],
)
def test_bad_study_options_exit_with_a_clear_message(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        study.main([*argv, "--out", str(tmp_path)])
