"""Fixes from a bug hunt on ``faast.distributed``: each test failed before its fix.

Two groups of two gloo processes (``torch.multiprocessing.spawn``, as ``tests/test_distributed.py``)
run every multi-process scenario once, one after the other, and write what each rank saw as JSON;
the tests read those files. Group A joins through :func:`faast.distributed.init` (the classifier,
``Dist``); group B initialises a raw process group and calls ``GramStats.all_reduce`` itself.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from faast import FaastClassifier, distributed
from faast.distributed import Dist, DistributedError
from faast.solver import GramStats

WORLD = 2
#: Collectives give up after this many seconds (a hang before the fixes ends here, not in 30 minutes).
TIMEOUT_S = "30"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _temperature_data(n: int = 3001) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, 7) float64, y (n,) of 3 classes): more rows than CALIBRATION_ROWS, uneven shards."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 7))
    return x, np.argmax(x[:, :3] + 0.3 * rng.normal(size=(n, 3)), axis=1)


def _small_data() -> tuple[np.ndarray, np.ndarray]:
    """(X (40, 5) float32, y (40,) int32 of 3 classes)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    return x, np.argmax(x[:, :3], axis=1).astype(np.int32)


def _pairs(dtype: torch.dtype = torch.float64, d: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys (40, d) and values (40, 3) of ``dtype``, the same in every process."""
    keys = torch.randn(40, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    values = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return keys[:, :d].to(dtype), values.to(dtype)


def _record(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What ``run()`` returned, or the error it raised; with the seconds it took."""
    start = time.perf_counter()
    try:
        out = {"error": None, **run()}
    except Exception as exc:  # recorded for the test to judge
        out = {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()[-2000:]}
    return {**out, "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------- group A: faast.distributed
def _fit_temperature(d: Dist) -> dict[str, Any]:
    x, y = _temperature_data()
    part = d.shard_range(len(y))
    clf = FaastClassifier(distributed=True).fit(x[part.start : part.stop], y[part.start : part.stop])
    return {"logit_scale": clf.logit_scale_, "proba": clf.predict_proba(x[:50]).tolist()}


def _partial_fit_other_classes(d: Dist) -> dict[str, Any]:
    x, _ = _small_data()
    mine = [0, 1] if d.rank == 0 else [1, 2]
    clf = FaastClassifier(distributed=True)
    try:
        clf.partial_fit(x[:4], np.asarray(mine * 2, dtype=np.int32), classes=mine)
    except ValueError as exc:
        return {"refused": str(exc), "fitted": hasattr(clf, "classes_")}
    return {"refused": None, "fitted": hasattr(clf, "classes_")}


def _label_dtypes(d: Dist) -> dict[str, Any]:
    x, y = _small_data()
    part = d.shard_range(len(y))
    clf = FaastClassifier(distributed=True).fit(x[part.start : part.stop], y[part.start : part.stop])
    words = np.asarray(["a", "b"] * 10 if d.rank == 0 else ["ccc", "a"] * 10)
    named = FaastClassifier(distributed=True).fit(x[:20], words)
    return {
        "classes": clf.classes_.dtype.str,
        "predict": clf.predict(x[:3]).dtype.str,
        "named": [named.classes_.dtype.str, named.classes_.tolist()],
    }


def _empty_float64_shard(d: Dist) -> dict[str, Any]:
    x, y = _small_data()
    shard = (x, y) if d.rank == 0 else (np.empty((0, x.shape[1])), y[:0])
    clf = FaastClassifier(distributed=True).fit(*shard)
    return {"coef": clf.coef_.tolist(), "input_dtype": str(clf.memory_.stats.input_dtype)}


def _dual_max_pairs_differ(d: Dist) -> dict[str, Any]:
    keys, values = _pairs()
    # 12 pairs in all: above rank 0's limit, within rank 1's (which then gathered the rows alone)
    stats = GramStats(6, 3, dual_max_pairs=10 if d.rank == 0 else 100).add(keys[:6], values[:6])
    d.all_reduce_stats(stats)
    return {}


class _Readout:
    """A read-out as ``reduce_learning`` sees one: statistics and an int64 count (extra state)."""

    def __init__(self) -> None:
        self.stats = GramStats(6, 3)
        self.counts = torch.zeros(3, dtype=torch.int64)

    def learn(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.stats.add(keys, values)
        self.counts += keys.shape[0]

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_extra_state(self, state: dict[str, torch.Tensor], what: str) -> None:
        del what
        self.counts = state["counts"].clone()


class _Model:
    def __init__(self) -> None:
        self.readouts = [_Readout()]


def _reduction_fails(d: Dist, out: Path) -> None:
    """Both ranks held 5 pairs before the block; rank 1 raises in its block and leaves, so rank 0
    fails in the reduction. Both must end with their 5 pairs (last scenario: the group is gone)."""
    keys, values = _pairs()
    model = _Model()
    readout = model.readouts[0]
    readout.learn(keys[:5], values[:5])
    before = readout.stats.gram.clone()

    def run() -> dict[str, Any]:
        try:
            with d.reduce_learning(model):
                readout.learn(keys[10:13], values[10:13])
                if d.rank == 1:
                    raise RuntimeError("rank 1 fails in its block")
        finally:
            state = {"count": readout.stats.count, "counts": readout.counts.tolist()}
            state["same_gram"] = bool(torch.equal(readout.stats.gram, before))
            (out / f"reduction_fails.rank{d.rank}.json").write_text(json.dumps(state))
        return {}

    result = _record(run)
    (out / f"reduction_fails.error.rank{d.rank}.json").write_text(json.dumps(result))


GROUP_A: dict[str, Callable[[Dist], dict[str, Any]]] = {
    "temperature": _fit_temperature,
    "partial_fit_classes": _partial_fit_other_classes,
    "label_dtypes": _label_dtypes,
    "empty_float64_shard": _empty_float64_shard,
    "dual_max_pairs": _dual_max_pairs_differ,  # hung until the timeout before the fix: near the end
}


def _group_a(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port), FAAST_DIST_TIMEOUT=TIMEOUT_S, FAAST_DIST_BACKEND="gloo",
    )  # fmt: skip
    d = distributed.init()
    for name, scenario in GROUP_A.items():
        result = _record(lambda scenario=scenario: scenario(d))
        (Path(out) / f"{name}.rank{rank}.json").write_text(json.dumps(result))
    _reduction_fails(d, Path(out))
    os._exit(0)  # the group is broken (rank 1 left): no teardown


# ----------------------------------------------------------------- group B: a raw process group
def _raw_empty_rank() -> dict[str, Any]:
    keys, values = _pairs()
    stats = GramStats(6, 3).add(keys, values) if tdist.get_rank() == 0 else GramStats(6, 3)
    stats.all_reduce()
    return {"input_dtype": str(stats.input_dtype), "w": stats.solve(0.01).tolist(), "count": stats.count}


def _raw_empty_float64_beside_float32() -> dict[str, Any]:
    keys, values = _pairs(torch.float32)
    stats = GramStats(6, 3)
    if tdist.get_rank() == 0:
        stats.add(keys, values)
    else:
        stats.input_dtype = torch.float64  # what the classifier sets on an empty float64 shard
    stats.all_reduce()
    return {"input_dtype": str(stats.input_dtype), "w_dtype": str(stats.solve(0.01).dtype)}


def _raw_dtypes_differ() -> dict[str, Any]:
    keys, values = _pairs(torch.float32 if tdist.get_rank() == 0 else torch.float64)
    GramStats(6, 3).add(keys, values).all_reduce()
    return {}


def _raw_shapes_differ() -> dict[str, Any]:
    d = 6 if tdist.get_rank() == 0 else 5
    keys, values = _pairs(d=d)
    GramStats(d, 3).add(keys, values).all_reduce()
    return {}


GROUP_B: dict[str, Callable[[], dict[str, Any]]] = {
    "raw_empty": _raw_empty_rank,
    "raw_empty_float64": _raw_empty_float64_beside_float32,
    "raw_dtypes": _raw_dtypes_differ,
    "raw_shapes": _raw_shapes_differ,  # aborted the processes in gloo before the fix: last
}


def _group_b(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    for name, scenario in GROUP_B.items():
        (Path(out) / f"{name}.rank{rank}.json").write_text(json.dumps(_record(scenario)))
    tdist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Run both groups once; a group that dies leaves the files it wrote (the tests that lack
    theirs fail)."""
    out = tmp_path_factory.mktemp("dist_hunt")
    for group in (_group_a, _group_b):
        try:
            mp.spawn(group, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
        except Exception as exc:  # the tests name what is missing
            (out / f"{group.__name__}.failed").write_text(repr(exc))
    return out


def _results(out: Path, name: str) -> list[dict[str, Any]]:
    """Each rank's record of scenario ``name``."""
    found = []
    for rank in range(WORLD):
        path = out / f"{name}.rank{rank}.json"
        assert path.exists(), (
            f"rank {rank} wrote no result for {name}: {sorted(p.name for p in out.iterdir())}"
        )
        found.append(json.loads(path.read_text()))
    return found


def _succeeded(out: Path, name: str) -> list[dict[str, Any]]:
    results = _results(out, name)
    for rank, got in enumerate(results):
        assert got["error"] is None, f"rank {rank}: {got.get('trace')}"
    return results


# ----------------------------------------------------------------- the tests
def test_predict_proba_temperature_does_not_depend_on_the_number_of_processes(runs):
    """Finding 1: beyond CALIBRATION_ROWS examples each process sampled its own shard, so
    ``logit_scale_`` and ``predict_proba`` changed with the number of processes; the sample is
    now the global evenly spaced rows, as one process takes them."""
    x, y = _temperature_data()
    one = FaastClassifier().fit(x, y)
    want_scale, want_proba = one.logit_scale_, one.predict_proba(x[:50])
    for got in _succeeded(runs, "temperature"):
        assert abs(got["logit_scale"] - want_scale) <= 1e-10 * want_scale, (got["logit_scale"], want_scale)
        np.testing.assert_allclose(np.asarray(got["proba"]), want_proba, rtol=0, atol=1e-10)


def test_first_distributed_partial_fit_refuses_different_classes(runs):
    """Finding 2: processes passing other ``classes`` were summed column by column."""
    for got in _succeeded(runs, "partial_fit_classes"):
        message = got["refused"]
        assert message is not None, "not refused"
        assert "same classes" in message and "rank 0: [0, 1]; rank 1: [1, 2]" in message
        assert not got["fitted"]  # the refused call left the classifier unfitted


def test_reduce_learning_restores_the_earlier_statistics_when_the_reduction_fails(runs):
    """Finding 3: rank 1 raises in its block, so rank 0 fails in the all-reduce: both keep the 5
    pairs (and counts) they held before the block; rank 0 lost them before the fix."""
    for rank in range(WORLD):
        path = runs / f"reduction_fails.rank{rank}.json"
        assert path.exists(), f"rank {rank} wrote no result"
        state = json.loads(path.read_text())
        assert state == {"count": 5, "counts": [5, 5, 5], "same_gram": True}, (rank, state)
    errors = [json.loads((runs / f"reduction_fails.error.rank{r}.json").read_text()) for r in range(WORLD)]
    assert errors[0]["error"] == "DistributedError" and errors[1]["error"] == "RuntimeError"


def test_statistics_with_different_dual_max_pairs_fail_at_once(runs):
    """Finding 4: ranks whose statistics differ only in ``dual_max_pairs`` took different
    collectives (the kept rows' gather) and hung until the timeout."""
    for got in _results(runs, "dual_max_pairs"):
        assert got["error"] == "DistributedError", got
        assert "dual_max_pairs" in got["message"] and "rank 0: 10, rank 1: 100" in got["message"]
        assert got["seconds"] < float(TIMEOUT_S) / 2, got["seconds"]


def test_raw_all_reduce_agrees_on_dtypes_and_shapes(runs):
    """Finding 5: ``GramStats.all_reduce`` summed float32 and float64 keys silently, left an empty
    rank without a dtype (its W in another dtype) and aborted in gloo on other shapes."""
    empty = _succeeded(runs, "raw_empty")
    assert [got["input_dtype"] for got in empty] == ["torch.float64"] * WORLD
    assert empty[0]["w"] == empty[1]["w"] and empty[0]["count"] == empty[1]["count"] == 40
    for got in _results(runs, "raw_dtypes"):
        assert got["error"] == "StatsMismatchError", got
        assert "different dtypes" in got["message"] and "torch.float32" in got["message"]
    for got in _results(runs, "raw_shapes"):
        assert got["error"] == "StatsMismatchError", got
        assert "rank 0: (6, 3), rank 1: (5, 3)" in got["message"]


def test_an_empty_shard_takes_no_part_in_the_dtype_agreement(runs):
    """Finding 6: an empty float64 shard (``np.empty((0, d))``) beside float32 shards was refused
    as "different dtypes"; it now adopts the others' dtype (raw statistics and the classifier)."""
    for got in _succeeded(runs, "raw_empty_float64"):
        assert (got["input_dtype"], got["w_dtype"]) == ("torch.float32", "torch.float32")
    x, y = _small_data()
    want = FaastClassifier().fit(x, y).coef_
    for got in _succeeded(runs, "empty_float64_shard"):
        assert got["input_dtype"] == "torch.float32"
        np.testing.assert_allclose(np.asarray(got["coef"]), want, rtol=0, atol=1e-10 * np.abs(want).max())


def test_distributed_fit_keeps_the_labels_dtype(runs):
    """Finding 8: int32 labels came back as int64 ``classes_`` under ``distributed=True``; the
    classes now have the dtype one process gives (strings widened to the longest)."""
    for got in _succeeded(runs, "label_dtypes"):
        assert got["classes"] == got["predict"] == np.dtype(np.int32).str
        assert got["named"] == [np.dtype("<U3").str, ["a", "b", "ccc"]]


@pytest.fixture
def plain_env(monkeypatch):
    """No launch environment and no context; the collectives time out after 3 s (a refusal
    that does not come would otherwise wait for the default 30 minutes)."""
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "FAAST_DIST_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FAAST_DIST_TIMEOUT", "3")
    distributed.shutdown()
    yield monkeypatch
    distributed.shutdown()


def test_init_refuses_a_partial_or_inconsistent_launch_environment(plain_env):
    """Finding 7: RANK/WORLD_SIZE without MASTER_PORT ran as a lone rank 0; a RANK outside the
    world tried to join until the timeout; nccl without CUDA failed deep inside torch."""
    plain_env.setenv("RANK", "1")
    plain_env.setenv("WORLD_SIZE", "2")
    plain_env.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.raises(ValueError, match="MASTER_PORT is not set"):
        distributed.init()
    plain_env.setenv("MASTER_PORT", str(_free_port()))
    for rank in ("2", "-1"):
        plain_env.setenv("RANK", rank)
        with pytest.raises(ValueError, match=f"RANK={rank} is not in a world of WORLD_SIZE=2"):
            distributed.init()
    if not torch.cuda.is_available():
        plain_env.setenv("RANK", "0")
        plain_env.setenv("FAAST_DIST_BACKEND", "nccl")
        with pytest.raises(ValueError, match="nccl backend .* needs CUDA"):
            distributed.init()
    assert not tdist.is_initialized()


def test_a_world_without_a_process_group_is_named_as_such():
    """Finding 7: a ``Dist`` of 2 processes used without an initialised group said that another
    process "probably failed"."""
    assert not tdist.is_initialized()
    with pytest.raises(DistributedError, match="process group is not initialised") as info:
        Dist(rank=0, world_size=2).all_true(True)
    assert "probably failed" not in str(info.value)


def test_classify_fit_names_torchrun_for_options_it_cannot_divide():
    """Finding 9: ``classify fit --loss logistic`` / ``--class-weight balanced`` under torchrun
    said ``distributed=True``, a Python parameter the command line user never set."""
    from faast.cli.classify_cmd import _check_torchrun_options

    two = Dist(rank=0, world_size=2)
    for loss, weight, flag in (
        ("logistic", None, "--loss logistic"),
        ("squared", "balanced", "--class-weight"),
    ):
        args = argparse.Namespace(loss=loss, class_weight=weight)
        with pytest.raises(ValueError, match=f"{flag}.* not supported under torchrun \\(distributed"):
            _check_torchrun_options(args, two)
        _check_torchrun_options(args, Dist())  # one process: allowed
