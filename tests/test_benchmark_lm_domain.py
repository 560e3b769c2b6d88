"""benchmarks/lm_domain.py: the learning-rate grids of its backprop rows."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

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
