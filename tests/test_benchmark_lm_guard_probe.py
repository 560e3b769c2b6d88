"""benchmarks/lm_guard_probe.py: one draw of a guard study fitted again and read on the development
sentences and on fresh samples from outside the draw, on a tiny random model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_guard
import lm_guard_probe
from faast.lm import FaastConfig, get_faast_model
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_choice import MEMORY_OFF
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled

LABELS = ["w40", "w41"]


def _load(name, device=None):
    torch.manual_seed(0)
    return tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True)


def test_the_probe_reads_the_draws_winner_on_development_and_fresh_sentences(monkeypatch, tmp_path):
    support, dev = _labelled(40), _labelled(12, offset=5)
    for name, value in [("load_causal_lm", _load), ("TEMPLATE", TEMPLATE), ("LABELS", LABELS)]:
        monkeypatch.setattr(lm_guard_probe, name, value)
    monkeypatch.setattr(lm_guard, "LABELS", LABELS)  # the development scores lm_guard_probe reads
    monkeypatch.setattr(lm_guard_probe, "development_split", lambda *a: (support, dev, "d"))
    out = tmp_path / "probe.md"
    lm_guard_probe.main(
        ["--seed", "3", "--k", "12", "--draw", "1", "--samples", "2", "--size", "10", "--out", str(out)]
    )
    md = out.read_text(encoding="utf-8")
    # the same draw fitted here: its winner, and the development accuracies with it and without memory
    model, tok = _load("tiny")
    task = TaskModel(
        get_faast_model(model, FaastConfig(num_memories=0)), tok, TaskSpec(TEMPLATE, "answer", LABELS)
    )
    drawn = lm_guard.draw_support(support, 3, 12, 1)
    report = task.fit(drawn, labels=LABELS, hold_out=1.0, seed=3, progress=False)
    winner = report.decisions["none"]
    rates = []
    for candidate in (MEMORY_OFF, lm_guard.CANDIDATES[winner]):
        task.use(candidate)
        scores = task.label_scores([e.input for e in dev])
        target = torch.tensor([LABELS.index(e.output) for e in dev])
        rates.append(100 * float((scores.argmax(1) == target).double().mean()))
    assert f"winner {winner}," in md
    assert f"| development | 12 | {rates[0]:.2f} | {rates[1]:.2f} | {rates[1] - rates[0]:+.2f} |" in md
    assert md.count("| fresh sample ") == 2 and "| fresh sample 1 (seed 101) | 10 |" in md
    assert str(tmp_path) not in md
    with pytest.raises(SystemExit, match="outside the draw"):
        too_many = dict(dev=12, split_seed=0, seed=3, k=12, draw=1, size=29, model="tiny", device=None)
        lm_guard_probe.probe(argparse.Namespace(**too_many, hold_out=1.0, folds=5, samples=1))
    with pytest.raises(SystemExit, match="--k >= 1"):
        lm_guard_probe.main(["--k", "0", "--draw", "1"])
