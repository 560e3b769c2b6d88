"""Bounded fuzz of the loaders (hypothesis): saved statistics, fast weights, readouts and configs
with random byte flips, truncations and garbage either load or fail with a clean ValueError,
never another exception, a crash or a hang; a refused load leaves the target unchanged."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import FaastConfig, FaastModel, ReadConfig, get_faast_model
from faast.lm import fastweights as fw
from faast.solver import GramStats
from tests.bad_inputs_catalogue import fm_state, same_state, stats_state
from tests.lm_tiny import tiny_model

#: Seconds one load may take before it counts as a hang.
HANG_S = 10
#: Examples per loader (FAAST_FUZZ_EXAMPLES=1000 for a longer hunt).
SETTINGS = settings(max_examples=int(os.environ.get("FAAST_FUZZ_EXAMPLES", "40")))


@contextmanager
def no_hang(seconds: int = HANG_S):
    """Fail (TimeoutError) if the block runs longer than ``seconds`` (SIGALRM; POSIX main thread)."""

    def alarm(signum, frame):
        raise TimeoutError(f"a load took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Valid files of each kind: statistics, fast weights (two tasks), a readout, a config."""
    root = tmp_path_factory.mktemp("fuzz")
    gen = torch.Generator().manual_seed(0)
    GramStats(4, 2).add(torch.randn(6, 4, generator=gen), torch.randn(6, 2, generator=gen)).save(
        root / "stats.safetensors"
    )
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    fm.learn(input_ids=torch.arange(3, 23).reshape(2, 10))
    fm.save_fast_weights(root / "fw.safetensors", "a")
    fm.save_fast_weights(root / "fw.safetensors", "b")
    fm.save_pretrained(root / "readout")
    return {
        "stats": (root / "stats.safetensors").read_bytes(),
        "fast_weights": (root / "fw.safetensors").read_bytes(),
        "readout": (root / "readout" / "faast_readout.safetensors").read_bytes(),
        "config": (root / "readout" / "faast_config.json").read_bytes(),
    }


@pytest.fixture(scope="module")
def fm():
    model = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    model.learn(input_ids=torch.arange(40, 60).reshape(2, 10))
    return model


def damaged(data: bytes, draw) -> bytes:
    """``data`` truncated, with bytes flipped, with garbage appended, or replaced by garbage."""
    how = draw(st.sampled_from(["truncate", "flip", "flip-header", "append", "garbage"]))
    buf = bytearray(data)
    if how == "truncate":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1))])
    if how in ("flip", "flip-header"):
        hi = min(len(buf), 8 + int.from_bytes(buf[:8], "little")) if how == "flip-header" else len(buf)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, max(0, hi - 1)))
            buf[i] ^= draw(st.integers(1, 255))
        return bytes(buf)
    if how == "append":
        return bytes(buf) + draw(st.binary(min_size=1, max_size=64))
    return draw(st.binary(max_size=256))


REFUSED = object()


def load_cleanly(data: bytes, name: str, load: Callable[[Path], object]) -> object:
    """Write ``data`` to a scratch file and load it: the result, or REFUSED after a ValueError
    (any other exception fails the test)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            with no_hang():
                return load(path)
        except ValueError:
            return REFUSED


@SETTINGS
@given(data=st.data())
def test_statistics_loader(files, data):
    target = GramStats(4, 2).add(torch.ones(2, 4), torch.ones(2, 2))
    before = stats_state(target)
    result = load_cleanly(damaged(files["stats"], data.draw), "s.safetensors", target.load_file)
    if result is REFUSED:
        assert same_state(before, stats_state(target)), "a refused load changed the statistics"
    loaded = load_cleanly(damaged(files["stats"], data.draw), "s.safetensors", GramStats.load)
    if loaded is not REFUSED:  # flips inside the tensor data: still well-formed statistics
        assert isinstance(loaded, GramStats) and bool(torch.isfinite(loaded.gram).all())


@SETTINGS
@given(data=st.data())
def test_fast_weight_loader(files, fm, data):
    before = fm_state(fm)
    blob = damaged(files["fast_weights"], data.draw)
    result = load_cleanly(blob, "fw.safetensors", lambda p: fm.load_fast_weights(p, "a", read=False))
    if result is REFUSED:
        assert same_state(before, fm_state(fm)), "a refused load changed the fast weights"
    else:  # loaded (flips inside the tensor data): restore the fixture's statistics
        for name, readout in fm.memories.items():
            readout.stats.load_state_dict(
                {k: v for k, v in before[name].items() if k != "dtype"}, input_dtype=before[name]["dtype"]
            )
    load_cleanly(blob, "fw.safetensors", fw.list_tasks)


@SETTINGS
@given(data=st.data())
def test_readout_loader(files, fm, data):
    params = {k: v.clone() for k, v in fm.state_dict().items()}
    result = load_cleanly(damaged(files["readout"], data.draw), "r.safetensors", fm.load_readout)
    if result is REFUSED:
        assert same_state(params, {k: v.clone() for k, v in fm.state_dict().items()})


@SETTINGS
@given(data=st.data())
def test_config_loaders(files, data):
    blob = damaged(files["config"], data.draw)
    config = load_cleanly(blob, "c.json", FaastConfig.from_json)
    assert config is REFUSED or isinstance(config, FaastConfig)

    def read_config(path: Path) -> ReadConfig:
        return ReadConfig.from_dict(json.loads(path.read_bytes().decode("utf-8")))

    read_blob = damaged(json.dumps(ReadConfig(weight=0.5, gate=0.3).to_dict()).encode(), data.draw)
    got = load_cleanly(read_blob, "read.json", read_config)
    assert got is REFUSED or isinstance(got, ReadConfig)


def test_fuzz_finds_the_valid_files_valid(files, fm):
    """The undamaged files load (so the fuzz tests exercise real loaders, not a broken fixture)."""
    assert isinstance(load_cleanly(files["stats"], "s.safetensors", GramStats.load), GramStats)
    assert load_cleanly(files["fast_weights"], "f.safetensors", fw.list_tasks) == ["a", "b"]
    assert isinstance(load_cleanly(files["config"], "c.json", FaastConfig.from_json), FaastConfig)
    assert isinstance(
        load_cleanly(files["fast_weights"], "f.safetensors", lambda p: fm.load_fast_weights(p, "a")),
        FaastModel,
    )
