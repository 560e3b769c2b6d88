"""Fixes from bug hunts of the solver: fast weights beyond a narrow dtype's range, power-law
parameters given beside another cut; statistics files that keep the rows, solve's dtype and device,
subtract's bookkeeping from the matched rows, empty reads of the stored-pairs memories, and
damaged statistics files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from faast.cli import main
from faast.io import save_tensors
from faast.memory import InverseMemory, KNNMemory, SoftmaxMemory
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


# --------------------------------------------------------------------------- statistics files keep the rows
def few_shot_stats(weights: torch.Tensor | None = None) -> tuple[GramStats, torch.Tensor, torch.Tensor]:
    """12 pairs of 30-d keys → 3 one-hot values (n < d: the dual route and exact leave-one-out)."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 12)
    values = np.eye(3)[labels]
    keys = rng.standard_normal((12, 30)) + 2 * values @ rng.standard_normal((3, 30))
    k, v = torch.tensor(keys), torch.tensor(values)
    return GramStats(30, 3).add(k, v, weights), k, v


@pytest.mark.parametrize("weighted", [False, True])
def test_saved_statistics_keep_the_rows(tmp_path, weighted):
    """``auto`` scores exact leave-one-out on the kept rows: without them in the file it chose
    truncation by GCV after a round trip (ρ 16.46 became τ 0.55)."""
    weights = torch.linspace(0.5, 2.0, 12, dtype=torch.float64) if weighted else None
    stats, _, _ = few_shot_stats(weights)
    stats.save(tmp_path / "s.safetensors")
    loaded = GramStats.load(tmp_path / "s.safetensors")
    assert loaded.kept_row_count == 12
    for cut in ["auto", "ridge=auto", "gcv", 0.1]:
        w0, info0 = stats.solve_with_info(cut)
        w1, info1 = loaded.solve_with_info(cut)
        assert info1 == info0, cut
        torch.testing.assert_close(w1, w0, rtol=0, atol=0)


def test_loaded_statistics_refuse_a_pair_never_added(tmp_path):
    stats, keys, values = few_shot_stats()
    stats.save(tmp_path / "s.safetensors")
    loaded = GramStats.load(tmp_path / "s.safetensors")
    with pytest.raises(ValueError, match="never added"):
        loaded.subtract(torch.randn(1, 30, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64))
    assert loaded.count == 12
    loaded.subtract(keys[3:5], values[3:5])
    rebuilt = GramStats(30, 3).add(torch.cat([keys[:3], keys[5:]]), torch.cat([values[:3], values[5:]]))
    torch.testing.assert_close(loaded.solve("auto"), rebuilt.solve("auto"))


def test_statistics_files_of_every_row_format_load(tmp_path):
    """Files saved before (no rows) load as they did; rows scaled by √w (FaastClassifier's names)
    load too and keep the dual route."""
    stats, keys, values = few_shot_stats()
    meta = {"key_dim": "30", "value_dim": "3", "input_dtype": "float64"}
    save_tensors(tmp_path / "old.safetensors", stats.state_dict(), meta, kind="stats")
    old = GramStats.load(tmp_path / "old.safetensors")
    assert old.kept_row_count == 0 and old.count == 12
    torch.testing.assert_close(old.solve(0.1), stats.solve(0.1))
    scaled = dict(stats.state_dict(), rows_keys=keys, rows_values=values)
    save_tensors(tmp_path / "scaled.safetensors", scaled, meta, kind="stats")
    again = GramStats.load(tmp_path / "scaled.safetensors")
    assert again.kept_row_count == 12
    assert again.solve_with_info("auto")[1] == stats.solve_with_info("auto")[1]
    with pytest.raises(ValueError, match="never added"):
        again.subtract(keys[:1] + 1, values[:1])


def test_a_refused_state_changes_nothing():
    stats, keys, values = few_shot_stats()
    before = stats.solve("auto").clone()
    with pytest.raises(ValueError, match="malformed state: kept rows"):
        stats.load_state_dict(stats.state_dict(), rows=(keys[:5], values[:5]))
    assert stats.count == 12 and stats.kept_row_count == 12
    torch.testing.assert_close(stats.solve("auto"), before, rtol=0, atol=0)


# --------------------------------------------------------------------------- solve's dtype and device
BAD_DTYPES = [torch.int64, torch.bool, torch.complex64, torch.uint8, torch.float8_e4m3fn]


@pytest.mark.parametrize("dtype", BAD_DTYPES)
def test_solve_refuses_a_dtype_that_is_not_real_floating(dtype):
    """solve(dtype=torch.int64) returned zeros, bool all True, complex a complex W."""
    stats = GramStats(5, 2).add(
        torch.randn(40, 5, dtype=torch.float64), torch.randn(40, 2, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match=rf"dtype={dtype} cannot hold fast weights"):
        stats.solve(0.01, dtype=dtype)
    with pytest.raises(ValueError, match=rf"dtype={dtype} cannot hold fast weights"):
        InverseMemory(0.01).add(torch.randn(40, 5), torch.randn(40, 2)).weight(dtype)


@pytest.mark.parametrize("dtype", ["bool", "int64", "complex64", "float8_e4m3fn"])
def test_a_statistics_file_of_a_non_floating_input_dtype_is_refused(tmp_path, dtype):
    stats = GramStats(5, 2).add(torch.randn(40, 5), torch.randn(40, 2))
    meta = {"key_dim": "5", "value_dim": "2", "input_dtype": dtype}
    path = tmp_path / "s.safetensors"
    save_tensors(path, stats.state_dict(), meta, kind="stats")
    with pytest.raises(ValueError, match=rf"s.safetensors: input_dtype=torch.{dtype} cannot hold"):
        GramStats.load(path)


@pytest.mark.parametrize(
    ("device", "message"),
    [("nonsense", "'nonsense' is not a device")]
    + ([] if torch.cuda.is_available() else [("cuda", "no CUDA device is available")]),
)
def test_solve_names_a_device_it_cannot_use(device, message):
    """torch's AssertionError ("Torch not compiled with CUDA enabled") or RuntimeError came out."""
    mem = InverseMemory(0.01).add(torch.randn(40, 5), torch.randn(40, 2))
    with pytest.raises(ValueError, match=message):
        mem.stats.solve(device=device)
    with pytest.raises(ValueError, match=message):
        mem.weight(device=device)


# --------------------------------------------------------------------------- empty reads
@pytest.mark.parametrize("memory", [KNNMemory, SoftmaxMemory, InverseMemory])
def test_reading_no_queries_gives_an_empty_result(memory):
    """KNNMemory and SoftmaxMemory raised torch.cat's error for 0 queries."""
    mem = memory().add(torch.randn(5, 3), torch.randn(5, 2))
    out = mem.read(torch.zeros(0, 3, dtype=torch.float64))
    assert out.shape == (0, 2) and out.dtype == torch.float64


# --------------------------------------------------------------------------- damaged files
def rewritten(path, out, tensors=None, meta=None):
    """A copy of the safetensors file ``path`` at ``out`` with some tensors or metadata replaced."""
    with safe_open(str(path), "pt") as fh:
        old_meta, old = dict(fh.metadata()), {name: fh.get_tensor(name) for name in fh.keys()}
    save_file({**old, **(tensors or {})}, str(out), metadata={**old_meta, **(meta or {})})
    return out


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({"value_sq_sum": torch.tensor(1 + 1j)}, "value_sq_sum must be a real floating number"),
        ({"count": torch.tensor(1e30, dtype=torch.float64)}, r"the pair count 1e\+30 is beyond int64"),
        ({"count": torch.tensor(-3)}, "negative count"),
        ({"weight_sum": torch.tensor(0.0, dtype=torch.float64)}, "weight_sum is 0 for 40 pairs"),
        ({"gram": None}, "the Gram matrix .* has a negative diagonal entry"),
        ({"weight_sum": torch.tensor(3)}, "weight_sum must be a real floating number"),
    ],
)
def test_damaged_statistics_files_are_refused_by_name(tmp_path, tensors, message):
    """A complex sum raised RuntimeError; a count of 1e30, a zero weight sum beside a non-zero
    Gram and a negated Gram loaded silently."""
    stats = GramStats(5, 2).add(
        torch.randn(40, 5, dtype=torch.float64), torch.randn(40, 2, dtype=torch.float64)
    )
    stats.save(tmp_path / "s.safetensors")
    if "gram" in tensors:
        tensors = {"gram": -stats.gram}
    out = rewritten(tmp_path / "s.safetensors", tmp_path / "bad.safetensors", tensors)
    with pytest.raises(ValueError, match=rf"bad.safetensors: .*{message}"):
        GramStats.load(out)


def test_damaged_kept_rows_are_refused(tmp_path):
    stats, _, _ = few_shot_stats()
    stats.save(tmp_path / "s.safetensors")
    keys = torch.full((12, 30), float("nan"), dtype=torch.float64)
    bad = rewritten(tmp_path / "s.safetensors", tmp_path / "bad.safetensors", {"rows_keys": keys})
    with pytest.raises(ValueError, match="bad.safetensors: .*kept rows' keys must be finite real numbers"):
        GramStats.load(bad)


def test_statistics_of_zero_weight_pairs_still_load(tmp_path):
    """Pairs that all have weight 0: the weight sum and the Gram are both 0, a state add makes."""
    stats = GramStats(5, 2, dual_max_pairs=0).add(torch.randn(8, 5), torch.randn(8, 2), torch.zeros(8))
    stats.save(tmp_path / "s.safetensors")
    loaded = GramStats.load(tmp_path / "s.safetensors")
    assert loaded.count == 8 and loaded.weight_sum == 0.0
