"""benchmarks/lm_domain.py: the learning-rate grids of its backprop rows."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_domain as bench


def test_learning_rates_read_a_comma_separated_grid():
    ap = argparse.ArgumentParser()
    assert bench.learning_rates(ap, "--linear-lrs", "3e-5, 1e-4,3e-4") == (3e-5, 1e-4, 3e-4)
    default = ",".join(f"{lr:g}" for lr in bench.LINEAR_LRS)
    assert bench.learning_rates(ap, "--linear-lrs", default) == bench.LINEAR_LRS


@pytest.mark.parametrize("text", ["", "0", "1e-4,-1e-3", "nan", "inf", "1e-4,fast"])
def test_learning_rates_refuse_what_is_not_a_positive_finite_number(text, capsys):
    with pytest.raises(SystemExit):
        bench.learning_rates(argparse.ArgumentParser(), "--lora-lrs", text)
    assert "--lora-lrs" in capsys.readouterr().err


def _fake_run(perplexities: dict[float, float]):
    """A backprop run whose held-out perplexity at each rate is given; (ppl, tok/s, s, bytes)."""
    return lambda lr, train, held: (perplexities[lr], 0.0, 0.0, 0)


@pytest.mark.parametrize(
    ("perplexities", "chosen"),
    [
        ({1e-4: 30.0, 1e-3: 20.0}, 1e-3),
        ({1e-4: 20.0, 1e-3: 30.0}, 1e-4),
        ({1e-2: float("nan"), 1e-4: 40.0, 1e-3: 35.0}, 1e-3),
        ({1e-4: 40.0, 1e-2: float("nan")}, 1e-4),
    ],
)
def test_choose_lr_takes_the_lowest_held_out_perplexity_and_never_a_diverged_run(perplexities, chosen):
    learn = torch.zeros(20, 4, dtype=torch.long)
    lr, tried, _ = bench.choose_lr(_fake_run(perplexities), learn, tuple(perplexities))
    assert lr == chosen
    assert list(tried) == [f"{r:g}" for r in perplexities]


def test_choose_lr_refuses_a_grid_where_every_run_diverged():
    learn = torch.zeros(20, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="diverged at every learning rate"):
        bench.choose_lr(_fake_run({1e-3: float("nan"), 1e-2: float("inf")}), learn, (1e-3, 1e-2))
