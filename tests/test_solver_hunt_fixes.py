"""Fixes from a bug hunt of the solver: fast weights beyond a narrow dtype's range, and power-law
parameters given beside another cut."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from faast.cli import main
from faast.memory import InverseMemory
from faast.solver import GramStats


def small_half_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """float16 keys of scale 1e-4 and values of scale 100: every entry fits float16, W (≈ 10⁵)
    does not."""
    gen = torch.Generator().manual_seed(0)
    keys = (torch.randn(50, 4, generator=gen, dtype=torch.float64) * 1e-4).half()
    values = (torch.randn(50, 2, generator=gen, dtype=torch.float64) * 100).half()
    return keys, values


def test_weights_beyond_float16_are_refused_not_inf():
    keys, values = small_half_pairs()
    stats = GramStats(4, 2).add(keys, values)
    with pytest.raises(ValueError, match=r"the fast weights reach .* beyond what torch.float16 holds"):
        stats.solve()  # the keys' dtype: it was inf, and reads inf and NaN
    assert bool(torch.isfinite(stats.solve(dtype=torch.float32)).all())


def test_inverse_memory_reads_float16_queries_through_float32():
    keys, values = small_half_pairs()
    mem = InverseMemory().add(keys, values)
    got = mem.read(keys[:3])
    assert got.dtype == torch.float16
    expected = keys[:3].double() @ mem.weight(torch.float64).T
    torch.testing.assert_close(got.double(), expected, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(
    "params", [{"tau": 0.1, "alpha": 0.5}, {"ridge": 1.0, "c": 2.0}, {"ridge": "gcv", "alpha": 3.0}]
)
def test_power_law_parameters_beside_another_cut_are_refused(params):
    keys, values = small_half_pairs()
    with pytest.raises(ValueError, match=r"alpha and c shape the power-law cut .* would be ignored"):
        InverseMemory(**params)
    with pytest.raises(ValueError, match=r"alpha and c shape the power-law cut .* would be ignored"):
        GramStats(4, 2).add(keys.float(), values.float()).solve(**params)
    assert InverseMemory(alpha=0.5, c=2.0).cut == InverseMemory(cut="alpha=0.5,c=2").cut


def test_solve_command_refuses_alpha_beside_tau(tmp_path, capsys):
    keys, values = small_half_pairs()
    save_file({"keys": keys.float(), "values": values.float()}, str(tmp_path / "pairs.safetensors"))
    out = tmp_path / "w.safetensors"
    assert (
        main(
            ["solve", str(tmp_path / "pairs.safetensors"), "--out", str(out), "--tau", "0.5", "--alpha", "2"]
        )
        != 0
    )
    assert "with tau they would be ignored" in capsys.readouterr().err
    assert not out.exists()
    assert main(["solve", str(tmp_path / "pairs.safetensors"), "--out", str(out), "--alpha", "0.5"]) == 0


def test_classifier_warns_that_alpha_beside_tau_is_ignored():
    """The estimator warns, as scikit-learn's do for a parameter the others switch off (a grid
    search may set both), and solves with tau alone."""
    import numpy as np

    from faast import FaastClassifier

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), np.arange(30) % 3
    with pytest.warns(UserWarning, match=r"alpha and c shape the power-law cut .* with tau they are ignored"):
        clf = FaastClassifier(tau=0.1, alpha=0.5).fit(X, y)
    np.testing.assert_array_equal(clf.coef_, FaastClassifier(tau=0.1).fit(X, y).coef_)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("count", torch.tensor(20.7, dtype=torch.float64), "the pair count 20.7 is not a whole number"),
        ("count", torch.tensor([20, 3]), "count must be one number"),
        ("count", torch.tensor(True), "count must be one number"),
        ("weight_sum", torch.tensor(-5.0, dtype=torch.float64), "negative weight_sum"),
        ("value_sq_sum", torch.tensor(-5.0, dtype=torch.float64), "negative value_sq_sum"),
        ("gram", None, "the Gram matrix .* is not symmetric"),
    ],
)
def test_damaged_statistics_are_refused_on_load(tmp_path, name, value, message):
    """A hand-made or damaged statistics file loaded with a count of 20.7 read as 20, a bool as
    1, a negative weight sum that later said "no examples", a one-sided Gram read from its lower
    triangle."""
    stats = GramStats(4, 2).add(
        torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    )
    state = dict(stats.state_dict())
    state[name] = (
        value if value is not None else state["gram"] + torch.triu(torch.ones(4, 4, dtype=torch.float64), 1)
    )
    with pytest.raises(ValueError, match=message):
        GramStats(4, 2).load_state_dict(state)


def test_float8_keys_are_refused_by_name():
    keys = torch.randn(5, 3).to(torch.float8_e4m3fn)
    with pytest.raises(
        TypeError, match=r"keys: torch.float8_e4m3fn holds too few digits .* cast it to float32"
    ):
        GramStats(3, 1).add(keys, torch.ones(5, 1))


def test_a_refused_first_batch_leaves_the_device_unset():
    """The device was taken from the first batch before its checks: a refused first add on a GPU
    pinned statistics made without a device there, and a later CPU batch was refused."""
    stats = GramStats(4, 2)
    with pytest.raises(ValueError, match="non-negative"):
        stats.add(torch.randn(3, 4), torch.randn(3, 2), torch.tensor([1.0, -1.0, 1.0]))
    assert stats._device is None
    stats.add(torch.randn(3, 4), torch.randn(3, 2))
    assert stats.device == torch.device("cpu") and stats.count == 3
