"""Fixes from the s83 hunt on faast under ``torchrun``: each test failed before its fix.

One group of two processes, started the way ``torchrun`` starts them (as
``tests/test_distributed_commands.py``), runs every scenario once, one after the other: ``faast``
command lines (an argument may differ between the ranks, as on two nodes whose copies differ) and a
few calls of the Python API. Each rank writes what each scenario printed (or raised) as JSON; the
tests read those files and compare with one process. Scenarios that hung or aborted the processes
before their fix run last.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from faast import distributed
from faast.cli import main
from tests.test_distributed_learning import _free_port, _stop, _wait
from tests.torchrun_runs import (
    TEMPLATE,
    launch_group,
    rank_results,
    record,
    refused_everywhere,
    write_record,
)


def _files(tmp: Path) -> dict[str, Any]:
    """The tiny word-level model, a text, examples (a copy whose last label differs), inputs (a copy
    whose third input differs) and feature CSVs (a copy whose values differ)."""
    from tests.lm_wordlevel import WORDS, save_tiny_model

    model = save_tiny_model(tmp / "model")
    (tmp / "book.txt").write_text(" ".join(WORDS[(i * 3) % 30] for i in range(202)))
    (tmp / "short.txt").write_text(" ".join(WORDS[(i * 7) % 40] for i in range(26)))  # rows kept
    rows = [
        " ".join(WORDS[10 + (i * 7 + j) % 60] for j in range(3)) + ("\tw5" if i % 2 else "\tw6")
        for i in range(12)
    ]
    (tmp / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp / "train_b.tsv").write_text("\n".join([*rows[:-1], rows[-1][:-2] + "w6"]) + "\n")
    inputs = [" ".join(WORDS[20 + i + j] for j in range(3)) for i in range(4)]
    (tmp / "test.tsv").write_text("\n".join(inputs) + "\n")
    (tmp / "test_copy.tsv").write_text("\n".join(inputs) + "\n")  # another node's copy: the same
    (tmp / "test_b.tsv").write_text("\n".join([*inputs[:2], "w40 w41 w42", inputs[3]]) + "\n")
    rng = np.random.default_rng(0)
    for name in ("first", "first_b"):
        feats = rng.normal(size=(8, 2))
        lines = ["f0,f1,label"] + [f"{a:.6f},{b:.6f},{'ab'[i % 2]}" for i, (a, b) in enumerate(feats)]
        (tmp / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return {"model": ["--model", str(model), "--dtype", "float64", "--threads", "1"], "tmp": tmp}


def _steps(f: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """The scenarios: ``argv`` per rank (a command line), or ``py`` (a function of this module)."""
    tmp, base = f["tmp"], f["model"]
    fw = str(out / "learned.safetensors")

    def both(*argv: str, **kw: Any) -> dict[str, Any]:
        return {"argv": [list(argv), list(argv)], **kw}

    def differ(argv: list[str], rank1: dict[str, str]) -> dict[str, Any]:
        return {"argv": [argv, [rank1.get(a, a) for a in argv]]}

    text = ["--text", str(tmp / "book.txt")]
    task = ["--template", TEMPLATE, "--folds", "2", "--task", "parity"]
    forget = ["lm", "forget", *base, *text, "--fast-weights", str(out / "forget.safetensors")]
    forget_streamed = ["lm", "forget", *base, *text, "--fast-weights", str(out / "streamed.safetensors")]
    forget_streamed += ["--window", "16", "--batch-size", "1"]
    generate = ["lm", "generate", *base, "--fast-weights", fw, "--prompt", "w3 w6", "--max-new-tokens", "3"]
    window = ["lm", "learn", *base, *text, "--out", str(out / "win.safetensors"), "--window", "16"]
    train, test, first = str(tmp / "train.tsv"), str(tmp / "test.tsv"), str(tmp / "first.csv")
    learn = ["task", "learn", *base, "--examples", train, "--out", str(out / "tl.safetensors"), *task]
    classify = [
        "task",
        "classify",
        *base,
        "--fast-weights",
        str(out / "task.safetensors"),
        "--task",
        "parity",
    ]
    copy = [*classify, "--inputs", test, "--out", str(out / "pred_copy.tsv")]
    classify += ["--inputs", test, "--out", str(out / "pred.tsv")]
    stream = ["lm", "stream", *base, "--text", str(tmp / "short.txt"), "--chunk", "8", "--context", "8"]
    stream += ["--no-base"]
    stream += ["--out", str(out / "stream.safetensors")]
    return [
        {"name": "forget", **both(*forget, delay1=4)},  # rank 1 reads the file 4 s later
        {"name": "forget_streamed", **both(*forget_streamed)},
        {"name": "perplexity", **both("lm", "perplexity", *base, *text, "--fast-weights", fw)},
        {"name": "generate", **both(*generate)},
        {"name": "learn_window", **differ(window, {"16": "20"})},
        {"name": "task_learn", **differ(learn, {train: str(tmp / "train_b.tsv")})},
        {"name": "task_classify", **differ(classify, {test: str(tmp / "test_b.tsv")})},
        {"name": "task_classify_copy", **differ(copy, {test: str(tmp / "test_copy.tsv")})},
        {
            "name": "classify_fit",
            **differ(
                ["classify", "fit", first, "--model", str(out / "clf")], {first: str(tmp / "first_b.csv")}
            ),
        },
        {"name": "stream", **both(*stream)},
        {"name": "fit_vs_partial_fit", "py": "_fit_vs_partial_fit"},
        {"name": "gather_totals", "py": "_gather_other_totals"},  # aborted in gloo before the fix: last
    ]


# ----------------------------------------------------------------- what each rank runs
def _fit_vs_partial_fit(d: distributed.Dist) -> dict[str, Any]:
    from faast import FaastClassifier

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 3)), np.arange(12) % 3
    clf = FaastClassifier(distributed=True)
    if d.rank == 0:
        clf.fit(x[:6], y[:6])
    else:
        clf.partial_fit(x[6:], y[6:], classes=[0, 1, 2])
    return {}


def _gather_other_totals(d: distributed.Dist) -> dict[str, Any]:
    total = (3, 5)[d.rank]
    got = d.gather_rows(torch.zeros(len(d.shard_range(total)), 2), total)
    return {"shape": list(got.shape)}


def _worker(out: Path, steps: list[dict[str, Any]]) -> None:
    torch.set_num_threads(1)
    d = distributed.init()
    for step in steps:
        if d.rank == 1 and step.get("delay1"):
            time.sleep(step["delay1"])  # a slower node: rank 1 reads its inputs later
        if "argv" in step:
            result = record(lambda step=step: main(step["argv"][d.rank]))
        else:
            result = record(lambda step=step: globals()[step["py"]](d))
        write_record(out, step["name"], d.rank, result)
    os._exit(0)


# ----------------------------------------------------------------- the group, and one process
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    """The files, one process's references (computed while the group runs) and the group's results."""
    tmp = tmp_path_factory.mktemp("s83")
    f = _files(tmp)
    out, ref = tmp / "out", tmp / "ref"
    out.mkdir()
    ref.mkdir()
    base, text = f["model"], ["--text", str(tmp / "book.txt")]
    for where in (out, ref):  # a text learned twice (forget it once), fast weights, a learned task
        assert main(["lm", "learn", *base, *text, "--out", str(where / "forget.safetensors")]) == 0
        assert (
            main(["lm", "learn", *base, *text, "--out", str(where / "forget.safetensors"), "--append"]) == 0
        )
        streamed = ["--out", str(where / "streamed.safetensors")]  # a text streamed in part, then another
        assert main(["lm", "stream", *base, *text, *streamed, "--chunk", "16", "--max-chunks", "2"]) == 0
        other = ["--text", str(tmp / "short.txt"), "--window", "16", "--append"]
        assert main(["lm", "learn", *base, *other, *streamed]) == 0
    assert main(["lm", "learn", *base, *text, "--out", str(out / "learned.safetensors")]) == 0
    learn = ["--examples", str(tmp / "train.tsv"), "--template", TEMPLATE, "--folds", "2", "--task", "parity"]
    assert main(["task", "learn", *base, *learn, "--out", str(out / "task.safetensors")]) == 0
    steps = _steps(f, out)
    procs = launch_group("tests.test_fix_s83_distributed", out, steps)
    try:
        assert main(["lm", "forget", *base, *text, "--fast-weights", str(ref / "forget.safetensors")]) == 0
        streamed = [
            "--fast-weights",
            str(ref / "streamed.safetensors"),
            "--window",
            "16",
            "--batch-size",
            "1",
        ]
        assert main(["lm", "forget", *base, *text, *streamed]) == 0
        stream = ["--chunk", "8", "--context", "8", "--no-base", "--out", str(ref / "stream.safetensors")]
        assert main(["lm", "stream", *base, "--text", str(tmp / "short.txt"), *stream]) == 0
        waited = _wait(procs, timeout=300)
    finally:
        _stop(procs)
    return {"out": out, "ref": ref, "procs": waited}


# ----------------------------------------------------------------- 1. lm forget
def test_lm_forget_under_torchrun_forgets_once_and_rank_0_writes(runs):
    """Every rank forgot the text and wrote the file: rank 1, starting later, read the file rank 0
    had rewritten and forgot the text again (or failed saying "nothing was written"). Now the
    ranks agree on what they read, rank 0 alone writes and prints, and the file is one process's."""
    results = rank_results(runs, "forget")
    for rank, got in enumerate(results):
        assert got["error"] is None and got["rc"] == 0, f"rank {rank}: {got}"
    assert results[0]["out"].count("[faast] forgot") == 1
    assert "forgot" not in results[1]["out"]
    got, want = (
        load_file(str(runs["out"] / "forget.safetensors")),
        load_file(str(runs["ref"] / "forget.safetensors")),
    )
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_lm_forget_of_a_text_streamed_in_part_cuts_its_windows_on_every_rank(runs):
    """A text learned by `lm stream --max-chunks` is forgotten in as many windows as were learned;
    under torchrun only rank 0 cut them (the cut sat under its print), so the other ranks tried to
    forget the whole text and failed after rank 0 had rewritten the file."""
    results = rank_results(runs, "forget_streamed")
    for rank, got in enumerate(results):
        assert got["error"] is None and got["rc"] == 0, f"rank {rank}: {got}"
    got, want = (
        load_file(str(runs["out"] / "streamed.safetensors")),
        load_file(str(runs["ref"] / "streamed.safetensors")),
    )
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


# ----------------------------------------------------------------- 2. inputs that differ between ranks
def test_lm_learn_refuses_options_that_differ_between_ranks(runs):
    """--window 16 on rank 0 and 20 on rank 1 learned a mixture of both windowings, rc 0."""
    refused_everywhere(runs, "learn_window", "--window (rank 0: 16, rank 1: 20)")
    assert not (runs["out"] / "win.safetensors").exists()


def test_task_learn_refuses_examples_that_differ_between_ranks(runs):
    refused_everywhere(
        runs, "task_learn", "--examples (rank 0: ", "train.tsv (digest ", "train_b.tsv (digest "
    )
    assert not (runs["out"] / "tl.safetensors").exists()


def test_task_classify_refuses_inputs_that_differ_between_ranks(runs):
    """Rank 0 wrote its inputs beside rank 1's inputs' scores."""
    refused_everywhere(runs, "task_classify", "--inputs (rank 0: ", "test_b.tsv (digest ")
    assert not (runs["out"] / "pred.tsv").exists()


def test_the_same_inputs_at_other_paths_are_not_refused(runs):
    """A node whose copy of the inputs is elsewhere (another path, the same contents) runs."""
    for rank, got in enumerate(rank_results(runs, "task_classify_copy")):
        assert got["error"] is None and got["rc"] == 0, f"rank {rank}: {got}"
    assert len((runs["out"] / "pred_copy.tsv").read_text().splitlines()) == 5


def test_classify_fit_refuses_data_that_differs_between_ranks(runs):
    refused_everywhere(runs, "classify_fit", "DATA (rank 0: ", "first_b.csv (digest ")
    assert not (runs["out"] / "clf").exists()


# ----------------------------------------------------------------- 3. gather_rows of other totals
def test_gather_rows_of_other_totals_is_a_distributed_error_naming_them(runs):
    """Rank 0 aborted in gloo ("collective mismatch") and rank 1 took padding for rows."""
    for rank, got in enumerate(rank_results(runs, "gather_totals")):
        assert got["error"] == "DistributedError", f"rank {rank}: {got}"
        assert "rank 0: 3, rank 1: 5" in got["message"]


# ----------------------------------------------------------------- 4. perplexity and generate print once
def test_lm_perplexity_and_generate_print_on_rank_0_only(runs):
    """Both ranks printed: the perplexity JSON twice (``}{``), the continuation twice."""
    for name in ("perplexity", "generate"):
        results = rank_results(runs, name)
        for rank, got in enumerate(results):
            assert got["error"] is None and got["rc"] == 0, f"{name} rank {rank}: {got}"
        assert results[0]["out"].strip(), name
        assert results[1]["out"] == "", name
    assert "fast_weights" in json.loads(rank_results(runs, "perplexity")[0]["out"])


# ----------------------------------------------------------------- 5. fit beside partial_fit
def test_fit_beside_partial_fit_is_a_value_error_on_every_rank(runs):
    """Rank 1 (partial_fit) raised a bare KeyError 'classes'; rank 0 (fit) waited for the timeout."""
    for rank, got in enumerate(rank_results(runs, "fit_vs_partial_fit")):
        assert got["error"] == "ValueError", f"rank {rank}: {got}"
        assert "rank 0: fit; rank 1: partial_fit" in got["message"]
        assert got["seconds"] < 20  # not the 30 s timeout


# ----------------------------------------------------------------- 7. lm stream --out row order
def test_lm_stream_out_keeps_rows_in_one_process_order(runs):
    """Earlier statistics were merged after each chunk's rows: the kept rows came out chunk-reversed."""
    for rank, got in enumerate(rank_results(runs, "stream")):
        assert got["error"] is None and got["rc"] == 0, f"rank {rank}: {got}"
    got, want = (
        load_file(str(runs["out"] / "stream.safetensors")),
        load_file(str(runs["ref"] / "stream.safetensors")),
    )
    kept = [k for k in want if k.endswith("kept_keys") or k.endswith("kept_values")]
    assert kept
    for key in kept:
        assert got[key].shape == want[key].shape, key
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-12, msg=key)


# ----------------------------------------------------------------- 6. LOCAL_RANK
def test_a_local_rank_that_is_not_an_integer_is_named(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_CURRENT", None)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ValueError, match="LOCAL_RANK must be .*integer.*'x'"):
        distributed.init(backend="gloo")


def test_check_same_with_one_process_sends_nothing():
    distributed.Dist().check_same({"--window": 16})  # no process group: nothing is gathered


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), json.loads(sys.argv[2]))
