"""``faast solve``: every cut form through ``--cut``, a ``weights`` tensor as the pairs' weights,
``--dtype``, and clear words for what it does not read."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from faast.cli import main
from faast.solver import GramStats


def _pairs(tmp_path, **extra: torch.Tensor):
    gen = torch.Generator().manual_seed(0)
    keys = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    values = torch.randn(12, 3, generator=gen, dtype=torch.float64)
    path = tmp_path / "pairs.safetensors"
    save_file({"keys": keys, "values": values, **extra}, str(path))
    return path, keys, values


def _solved(tmp_path, *options: str) -> torch.Tensor:
    path, _, _ = _pairs(tmp_path)
    out = tmp_path / "w.safetensors"
    assert main(["solve", str(path), "--out", str(out), *options]) == 0
    return load_file(str(out))["weight"]


@pytest.mark.parametrize("spec", ["prior=1024", "ridge=1e-2", "alpha=0.8", "tau=0.01", "ridge=gcv", "GCV"])
def test_cut_takes_every_text_form_of_the_library(tmp_path, spec):
    _, keys, values = _pairs(tmp_path)
    want = GramStats(5, 3).add(keys, values).solve(spec)
    torch.testing.assert_close(_solved(tmp_path, "--cut", spec), want, rtol=1e-12, atol=1e-12)


def test_tau_choices_are_read_in_any_case_and_other_forms_point_to_cut(tmp_path, capsys):
    _, keys, values = _pairs(tmp_path)
    torch.testing.assert_close(
        _solved(tmp_path, "--tau", "GCV"), GramStats(5, 3).add(keys, values).solve("gcv")
    )
    path, _, _ = _pairs(tmp_path)
    assert main(["solve", str(path), "--out", str(tmp_path / "x.safetensors"), "--tau", "prior=4"]) == 1
    assert "(other cuts: --cut SPEC)" in capsys.readouterr().err
    assert (
        main(["solve", str(path), "--out", str(tmp_path / "x.safetensors"), "--cut", "gcv", "--tau", "0.1"])
        == 1
    )
    assert "--cut says the whole cut; leave out --tau" in capsys.readouterr().err


def test_a_weights_tensor_weighs_the_pairs_and_other_tensors_are_named(tmp_path, capsys):
    weights = torch.linspace(0.0, 2.0, 12, dtype=torch.float64)
    path, keys, values = _pairs(tmp_path, weights=weights, notes=torch.zeros(1))
    out = tmp_path / "w.safetensors"
    assert main(["solve", str(path), "--out", str(out), "--ridge", "0.1"]) == 0
    want = GramStats(5, 3).add(keys, values, weights).solve(ridge=0.1)
    torch.testing.assert_close(load_file(str(out))["weight"], want, rtol=1e-12, atol=1e-12)
    captured = capsys.readouterr()
    assert "weighted" in captured.out and "tensors ['notes'] are not read" in captured.err
    bad, _, _ = _pairs(tmp_path, weights=torch.ones(3))
    assert main(["solve", str(bad), "--out", str(out)]) == 1
    assert "'weights' must have shape (12,)" in capsys.readouterr().err


def test_dtype_sets_the_weights_dtype_and_the_float16_overflow_hint_names_it(tmp_path, capsys):
    assert _solved(tmp_path, "--dtype", "float32").dtype == torch.float32
    gen = torch.Generator().manual_seed(1)
    keys = (1e-4 * torch.randn(8, 3, generator=gen)).half()
    values = (100 * torch.randn(8, 2, generator=gen)).half()
    path = tmp_path / "small.safetensors"
    save_file({"keys": keys, "values": values}, str(path))
    out = tmp_path / "w16.safetensors"
    assert main(["solve", str(path), "--out", str(out), "--ridge", "1e-12"]) == 1
    assert "on the command line: --dtype float32" in capsys.readouterr().err
    assert main(["solve", str(path), "--out", str(out), "--ridge", "1e-12", "--dtype", "float32"]) == 0
