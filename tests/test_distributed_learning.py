"""Data-parallel learning on localhost processes (gloo) equals one process seeing all the data.

Each process is started the way ``torchrun`` starts it (RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT in the environment) and runs :mod:`tests.dist_scenarios`; one test goes through the
real ``torchrun`` launcher with the ``faast lm learn`` command.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from faast import FaastClassifier, distributed
from faast.distributed import Dist, shard_range
from tests import dist_scenarios

ROOT = Path(__file__).resolve().parents[1]
PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    # PYTHONFAULTHANDLER: a process that aborts (SIGABRT) prints where its Python code stood
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONFAULTHANDLER="1", **extra)
    return env


def _launch(scenario: str, world: int, out: Path, n: int, timeout_s: float = 120.0) -> list[subprocess.Popen]:
    """Start ``world`` processes of a scenario with the environment torchrun would give them."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = _env(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=port, FAAST_DIST_TIMEOUT=str(timeout_s),
        )  # fmt: skip
        cmd = [sys.executable, "-m", "tests.dist_scenarios", scenario, str(out), str(n)]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, **PIPES))
    return procs


def _wait(procs: list[subprocess.Popen], timeout: float = 90.0) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process; any still running at the end is killed."""
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def _stop(procs: list[subprocess.Popen]) -> None:
    """Kill the processes still running and collect them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Equal to 1e-10 (relative to the largest entry); readout training to 1e-6, because
    transformers computes the loss in float32 even for a float64 model, so a batch's mean loss
    and the weighted mean of its blocks' losses agree to float32 rounding."""
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        tol = 1e-6 if key.startswith("train/") else 1e-10
        diff = (got[key].double() - want[key].double()).abs().max().item() if want[key].numel() else 0.0
        assert diff <= tol * max(1.0, want[key].double().abs().max().item()), (key, diff)


def _check_ranks(out: Path, world: int, want: dict[str, torch.Tensor]) -> None:
    for rank in range(world):
        _assert_same(load_file(out / f"rank{rank}.safetensors"), want)


@dataclass
class Groups:
    """The process groups of this module, all started at once (the machine runs them side by side)."""

    tmp: Path
    cli: list[str]
    torchrun: subprocess.Popen
    three: list[subprocess.Popen]
    failing: dict[str, list[subprocess.Popen]]
    started: float


@pytest.fixture(scope="module")
def groups(tmp_path_factory) -> Iterator[Groups]:
    """Start every multi-process run of the module once: ``torchrun`` with 2 ranks, 3 ranks on 2
    examples, and the two failure scenarios (a collective timeout of 8 s: long enough for both
    processes to start and join on a busy machine)."""
    from tests.lm_wordlevel import WORDS, save_tiny_model

    tmp = tmp_path_factory.mktemp("dist")
    model = save_tiny_model(tmp / "model")
    text = tmp / "notes.txt"
    text.write_text(" ".join(WORDS[(7 * i) % 50] for i in range(250)))
    cli = ["lm", "learn", "--model", str(model), "--text", str(text), "--window", "32", "--threads", "1"]
    cli += ["--batch-size", "3"]
    for name in ("two", "three", "fail", "stuck"):
        (tmp / name).mkdir()
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "tests.dist_scenarios",
        "learn", str(tmp / "two"), "11", *cli, "--out", str(tmp / "two" / "fw.safetensors"),
    ]  # fmt: skip
    started = time.perf_counter()
    torchrun = subprocess.Popen(cmd, cwd=ROOT, env=_env(FAAST_DIST_TIMEOUT="120"), **PIPES)
    three = _launch("light", 3, tmp / "three", 2)
    failing = {s: _launch(s, 2, tmp / s, 10, timeout_s=8.0) for s in ("fail", "stuck")}
    yield Groups(tmp, cli, torchrun, three, failing, started)
    _stop([torchrun, *three, *(p for ps in failing.values() for p in ps)])


def test_two_ranks_under_torchrun_equal_one_process(groups, tmp_path):
    """Under ``torchrun --nproc_per_node 2``:

    - feature extraction (each rank encodes its block, rank 0 writes the cache, both read it back),
      FaastClassifier fit and partial_fit (11 examples: an uneven split), FaastModel learn (one
      window learned by both ranks first, counted once; then one window: rank 1 has none) and
      TaskModel learn (3 examples) leave both ranks with the fast weights of one process on all
      the data (to 1e-10);
    - readout training under DistributedDataParallel gives the loss curve and readout of one
      process with the same batches (to float32 rounding; the last batch has one window);
    - then ``faast lm learn`` runs unchanged in the same processes: rank 0 alone prints and
      writes the fast weights one process writes."""
    from faast.cli import main

    want = dist_scenarios.learn_all(Dist(), 11, tmp_path)  # the references, while the processes run
    assert main([*groups.cli, "--out", str(tmp_path / "one.safetensors")]) == 0
    code, printed, err = _wait([groups.torchrun], timeout=240)[0]
    assert code == 0, err[-3000:]
    _check_ranks(groups.tmp / "two", 2, want)
    assert printed.count("wrote task 'default'") == 1 and "on 2 processes" in printed
    one = load_file(tmp_path / "one.safetensors")
    two = load_file(groups.tmp / "two" / "fw.safetensors")
    assert sorted(one) == sorted(two)
    for key in one:
        if one[key].dtype == torch.float64:  # statistics of a float32 model: rounding of the keys
            assert torch.allclose(two[key], one[key], rtol=1e-5, atol=1e-6 * one[key].abs().max()), key
        else:
            assert torch.equal(two[key], one[key]), key


def test_three_ranks_on_two_examples(groups, tmp_path):
    """More processes than examples (feature extraction, classifier fit and partial_fit): the rank
    with no data joins the reductions and every rank ends with the single-process fast weights.
    (The LM paths meet a process with no data in the 2-rank run.)"""
    want = dist_scenarios.learn_all(Dist(), 2, tmp_path, lm=False)
    for rank, (code, _, err) in enumerate(_wait(groups.three, timeout=240)):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"
    _check_ranks(groups.tmp / "three", 3, want)


@pytest.mark.parametrize("scenario", ["fail", "stuck"])
def test_a_failing_rank_stops_the_others_with_a_clear_error(groups, scenario):
    """Rank 1 raises (fail) or never reaches the all-reduce (stuck): rank 0 exits with an error
    naming the problem (within the 8 s collective timeout) instead of hanging."""
    procs = groups.failing[scenario]
    try:
        code, _, err = _wait(procs[:1], timeout=120.0)[0]
    finally:
        _stop(procs[1:])
    assert code != 0
    assert "DistributedError: rank 0/2: all_gather of rows failed" in err
    assert "another process probably failed or is stuck (collectives wait up to 8 s" in err
    assert ("Connection closed by peer" if scenario == "fail" else "Timed out") in err


# ----------------------------------------------------------------- single-process pieces
@pytest.mark.parametrize(("n", "world"), [(0, 1), (1, 3), (2, 3), (10, 3), (11, 2), (5, 5), (7, 1)])
def test_shard_range_splits_evenly_and_covers_everything(n, world):
    ranges = [shard_range(n, r, world) for r in range(world)]
    assert [i for r in ranges for i in r] == list(range(n))
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_range_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        shard_range(5, 2, 2)
    with pytest.raises(ValueError, match="negative"):
        shard_range(-1, 0, 1)


def test_single_process_context_is_a_no_op(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    distributed.shutdown()
    d = distributed.init()
    assert (d.rank, d.world_size, d.active, d.is_main) == (0, 1, False, True)
    assert d.shard([1, 2, 3]) == [1, 2, 3] and d.sum(2.5) == 2.5 and d.union([3, 1, 3]) == [1, 3]
    x, y = dist_scenarios.classifier_data(30)
    plain = FaastClassifier(tau=0.01).fit(x, y)
    flagged = FaastClassifier(tau=0.01, distributed=True).fit(x, y)  # a world of one
    assert (flagged.coef_ == plain.coef_).all()
    distributed.shutdown()


def test_bad_timeout_is_a_clear_error(monkeypatch):
    distributed.shutdown()
    monkeypatch.setenv("FAAST_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="FAAST_DIST_TIMEOUT must be a number"):
        distributed.current()
    monkeypatch.setenv("FAAST_DIST_TIMEOUT", "-3")
    with pytest.raises(ValueError, match="FAAST_DIST_TIMEOUT must be positive"):
        distributed.init()


def test_reduce_learning_keeps_earlier_statistics_and_restores_them_on_error():
    """In one process the block's statistics are set aside and added back: learning A, then B
    inside the block, equals learning A and B; an error inside the block restores A."""
    from faast.lm import FaastConfig, get_faast_model
    from tests.lm_tiny import tiny_model

    windows = dist_scenarios.lm_windows(4)
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    both = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    fm.learn(input_ids=windows[:2])
    both.learn(input_ids=windows)
    d = Dist()
    before = {name: r.stats.copy() for name, r in fm.memories.items()}
    counts_before = fm.output_memory.counts.clone()
    with pytest.raises(RuntimeError, match="boom"), d.reduce_learning(fm):
        fm.learn(input_ids=windows[2:])
        raise RuntimeError("boom")
    for name, r in fm.memories.items():
        assert r.stats.count == before[name].count and torch.equal(r.stats.gram, before[name].gram)
    assert torch.equal(fm.output_memory.counts, counts_before)  # the learned-token counts too
    assert d.learn_shard(fm, windows[2:], lambda w: fm.learn(input_ids=w)) == 2 * 11
    for name, r in fm.memories.items():
        want = both.memories[name]
        assert r.stats.count == want.stats.count
        assert torch.allclose(r.memory.weight(torch.float64), want.memory.weight(torch.float64), atol=1e-10)
    assert torch.equal(fm.output_memory.counts, both.output_memory.counts)  # earlier counts kept once
    with pytest.raises(TypeError, match="needs a FaastModel or TaskModel"):
        with d.reduce_learning(object()):
            pass


def test_a_group_initialised_by_the_caller_is_adopted_and_left_alone():
    import torch.distributed as tdist

    distributed.shutdown()
    tdist.init_process_group("gloo", rank=0, world_size=1, store=tdist.HashStore())
    try:
        d = distributed.init()
        assert (d.rank, d.world_size, d.backend) == (0, 1, "gloo")
        distributed.shutdown()
        assert tdist.is_initialized()  # not ours to destroy
    finally:
        tdist.destroy_process_group()
        distributed.shutdown()


def test_end_process_ends_a_launched_process_with_its_status_and_output(tmp_path):
    """``end_process(3)`` after a collective: each of 2 processes leaves the group and ends with
    status 3, its unterminated last line flushed (what ``faast`` does after a command)."""
    results = _wait(_launch("exit", 2, tmp_path, 0), timeout=120.0)
    assert [code for code, _, _ in results] == [3, 3], [err[-2000:] for _, _, err in results]
    assert [out for _, out, _ in results] == ["rank 0 done", "rank 1 done"]


def test_end_process_outside_a_group_returns(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    distributed.shutdown()
    distributed.init()
    assert distributed.end_process(3) is None  # a plain run: the caller exits as usual


def test_multi_node_torchrun_arguments(tmp_path):
    """Two torchrun agents, one per "node" (``--nnodes 2 --node-rank 0|1``, static rendezvous at
    the master address; both on localhost here), run ``faast lm learn`` unchanged: rank 0 of
    node 0 alone prints and writes, and the fast weights equal one process's to 1e-10."""
    from faast.cli import main
    from tests.lm_wordlevel import WORDS, save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[(7 * i) % 50] for i in range(250)))
    cli = ["lm", "learn", "--model", str(model), "--text", str(text), "--window", "32", "--threads", "1"]
    cli += ["--batch-size", "3"]
    port = str(_free_port())

    def agent(node: int) -> list[str]:
        return [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
            "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", port,
            "-m", "faast", *cli, "--out", str(tmp_path / "two.safetensors"),
        ]  # fmt: skip

    env = _env(FAAST_DIST_TIMEOUT="120")
    agents = [subprocess.Popen(agent(node), cwd=ROOT, env=env, **PIPES) for node in (0, 1)]
    assert main([*cli, "--out", str(tmp_path / "one.safetensors")]) == 0
    results = _wait(agents, timeout=240)
    for node, (code, _, err) in enumerate(results):
        assert code == 0, f"node {node} failed:\n{err[-3000:]}"
    assert "wrote task 'default'" in results[0][1] and "on 2 processes" in results[0][1]
    assert "wrote task" not in results[1][1]
    one, two = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert sorted(one) == sorted(two)
    for key in one:
        if one[key].dtype == torch.float64:
            assert torch.allclose(two[key], one[key], rtol=1e-10, atol=1e-10 * one[key].abs().max()), key
        else:
            assert torch.equal(two[key], one[key]), key


def test_reduce_learning_carries_the_correction_memorys_curvature_sums():
    """The correction read-out's float64 sums go through the block like the counts: learning A,
    then B inside the block, reads as learning A and B (to float64 rounding of the sums)."""
    from faast.lm import FaastConfig, get_faast_model
    from tests.lm_tiny import tiny_model

    windows = dist_scenarios.lm_windows(4)
    layout = FaastConfig(num_memories=0, output_mix="correction")
    fm, both = get_faast_model(tiny_model("llama"), layout), get_faast_model(tiny_model("llama"), layout)
    fm.learn(input_ids=windows[:2])
    both.learn(input_ids=windows)
    assert Dist().learn_shard(fm, windows[2:], lambda w: fm.learn(input_ids=w)) == 2 * 11
    mine, want = fm.output_memory, both.output_memory
    assert torch.allclose(mine.prob_sum, want.prob_sum, rtol=1e-12, atol=1e-12)
    assert torch.allclose(mine.outer_sum, want.outer_sum, rtol=1e-12, atol=1e-12)
    query = windows[:1]
    assert torch.allclose(fm(input_ids=query).logits, both(input_ids=query).logits, rtol=1e-8, atol=1e-8)
