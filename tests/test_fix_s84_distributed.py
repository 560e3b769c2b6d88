"""Fixes of what the s83 note left uncompared across the processes of a ``torchrun`` launch: each test
failed before its fix.

One group of two processes, started the way ``torchrun`` starts them (as
``tests/test_fix_s83_distributed.py``), runs every scenario once, one after the other: ``faast``
command lines whose arguments may differ between the ranks (two nodes whose copies differ). Each rank
writes what each scenario printed as JSON; the tests read those files. Scenarios that put the ranks
out of step before their fix (one rank failing, or waiting in another collective) run last.

1. the fast-weight file of ``task classify``/``generate``/``evaluate`` and ``lm perplexity``/``generate``;
2. ``--demonstrations`` and ``--lora``;
3. the model (another snapshot under the same name): :func:`faast.distributed.model_fingerprint`;
4. ``classify fit`` on one rank and ``classify partial-fit`` on another;
5. ``task forget`` checked that every rank's copy of the file was writable (rank 0 alone writes).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from faast import distributed
from faast.cli import main
from tests.test_distributed_learning import _stop, _wait
from tests.torchrun_runs import (
    TEMPLATE,
    launch_group,
    ran_everywhere,
    record,
    refused_everywhere,
    write_record,
)


def _save_nudged(model: Path, out: Path) -> Path:
    """A copy of the saved tiny model with one weight tensor moved by 0.05: another snapshot under
    the same configuration and shapes (a fine-tune, say)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        lm.model.layers[0].mlp.down_proj.weight.add_(0.05)
    lm.save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    return out


def _files(tmp: Path) -> dict[str, Any]:
    """The tiny word-level model (a copy elsewhere, and another snapshot), examples and a copy whose
    last label differs, inputs, a text and another, demonstrations and a copy that differs, a
    features CSV."""
    from tests.lm_wordlevel import WORDS, save_tiny_model

    model = save_tiny_model(tmp / "model")
    shutil.copytree(model, tmp / "model_copy")
    _save_nudged(model, tmp / "model_b")
    rows = [
        " ".join(WORDS[10 + (i * 7 + j) % 60] for j in range(3)) + ("\tw5" if i % 2 else "\tw6")
        for i in range(12)
    ]
    (tmp / "train.tsv").write_text("\n".join(rows) + "\n")
    (tmp / "train_b.tsv").write_text("\n".join([*rows[:-1], rows[-1][:-2] + "w6"]) + "\n")
    (tmp / "forget.tsv").write_text("\n".join(rows[:2]) + "\n")
    (tmp / "demos.tsv").write_text("\n".join(rows[:6]) + "\n")
    (tmp / "demos_b.tsv").write_text("\n".join([*rows[:5], rows[5][:-2] + "w6"]) + "\n")
    (tmp / "eval.tsv").write_text("\n".join(rows[6:10]) + "\n")
    inputs = [" ".join(WORDS[20 + i + j] for j in range(3)) for i in range(4)]
    (tmp / "test.tsv").write_text("\n".join(inputs) + "\n")
    (tmp / "book.txt").write_text(" ".join(WORDS[(i * 3) % 30] for i in range(120)))
    (tmp / "book_b.txt").write_text(" ".join(WORDS[(i * 5) % 30] for i in range(120)))
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(8, 2))
    lines = ["f0,f1,label"] + [f"{a:.6f},{b:.6f},{'ab'[i % 2]}" for i, (a, b) in enumerate(feats)]
    (tmp / "first.csv").write_text("\n".join(lines) + "\n")
    return {"model": ["--model", str(model), "--dtype", "float64", "--threads", "1"], "tmp": tmp}


def _steps(f: dict[str, Any], out: Path) -> list[list[dict[str, Any]]]:
    """The scenarios, in groups of their own processes: ``argv`` per rank (a command line; an argument
    in ``rank1`` replaced on rank 1). A scenario that put the ranks out of step before its fix
    (one failing while the other waits in a collective, or both in different ones) ends its group,
    so that before the fix each test fails for its own reason."""
    tmp, base = f["tmp"], f["model"]
    model, task = str(tmp / "model"), str(out / "task.safetensors")
    fw, fw_b = str(out / "lm.safetensors"), str(out / "lm_b.safetensors")
    written, forget = str(out / "learned.safetensors"), str(out / "forget.safetensors")
    demos = ["--demonstrations", str(tmp / "demos.tsv")]

    def differ(name: str, argv: list[str], rank1: dict[str, str]) -> dict[str, Any]:
        return {"name": name, "argv": [argv, [rank1.get(a, a) for a in argv]]}

    def use(action: str, *more: str) -> list[str]:
        return ["task", action, *base, *more]

    inputs = ["--inputs", str(tmp / "test.tsv")]
    learned = ["--fast-weights", task, "--task", "parity"]
    zero_shot = ["--template", TEMPLATE, "--labels", "w5,w6"]
    return [
        [
            # 1. the fast-weight file
            differ(
                "classify_fast_weights",
                use("classify", *learned, *inputs, "--out", str(out / "p_fw.tsv")),
                {task: str(out / "task_b.safetensors")},
            ),
            differ(
                "generate_fast_weights",
                use("generate", *learned, *inputs, "--out", str(out / "g_fw.tsv"), "--max-new-tokens", "2"),
                {task: str(out / "task_b.safetensors")},
            ),
            differ(
                "perplexity_fast_weights",
                ["lm", "perplexity", *base, "--text", str(tmp / "book.txt"), "--fast-weights", fw],
                {fw: fw_b},
            ),
            differ(
                "perplexity_text",
                ["lm", "perplexity", *base, "--text", str(tmp / "book.txt")],
                {str(tmp / "book.txt"): str(tmp / "book_b.txt")},
            ),
            differ(
                "perplexity_copy",  # the same task at another path: not refused
                ["lm", "perplexity", *base, "--text", str(tmp / "book.txt"), "--fast-weights", fw],
                {fw: str(out / "lm_copy.safetensors")},
            ),
            # 2. --demonstrations
            differ(
                "evaluate_demonstrations",
                use("evaluate", "--examples", str(tmp / "eval.tsv"), *["--max-new-tokens", "2"], *demos),
                {str(tmp / "demos.tsv"): str(tmp / "demos_b.tsv")},
            ),
            # 3. the model
            differ(
                "classify_model",
                use("classify", *zero_shot, *inputs, "--out", str(out / "p_model.tsv")),
                {model: str(tmp / "model_b")},
            ),
            differ(
                "classify_model_copy",  # the same model at another path: not refused
                use("classify", *zero_shot, *inputs, "--out", str(out / "p_copy.tsv")),
                {model: str(tmp / "model_copy")},
            ),
            differ(  # zero-shot with --labels auto: its note, once
                "evaluate_zero_shot_note",
                use("evaluate", "--examples", str(tmp / "eval.tsv"), "--template", TEMPLATE),
                {},
            ),
            differ(
                "lm_generate_model",
                ["lm", "generate", *base, "--prompt", "w3 w6", "--max-new-tokens", "2"],
                {model: str(tmp / "model_b")},
            ),
            differ(
                "lm_learn_model",
                [
                    "lm",
                    "learn",
                    *base,
                    "--text",
                    str(tmp / "book.txt"),
                    *["--window", "16", "--out", written],
                ],
                {model: str(tmp / "model_b")},
            ),
            differ(  # 5. rank 1's copy of the file is read-only: rank 0 alone writes
                "task_forget",
                use(
                    "forget",
                    "--examples",
                    str(tmp / "forget.tsv"),
                    "--task",
                    "parity",
                    "--fast-weights",
                    forget,
                ),
                {forget: str(out / "forget_ro.safetensors")},
            ),
        ],
        [
            differ(  # 2. --lora on rank 0 only (--labels given twice on rank 1: the same option)
                "classify_lora_one_rank",
                use(
                    "classify",
                    *zero_shot,
                    *inputs,
                    "--out",
                    str(out / "p_lora.tsv"),
                    "--lora",
                    str(tmp / "train.tsv"),
                ),
                {"--lora": "--labels", str(tmp / "train.tsv"): "w5,w6"},
            ),
        ],
        [
            differ(  # 3. the same with a learned task: task classify loaded it before comparing the model
                "classify_model_with_fast_weights",
                use("classify", *learned, *inputs, "--out", str(out / "p_model_fw.tsv")),
                {model: str(tmp / "model_b")},
            ),
        ],
        [
            differ(  # 3. task forget did not compare the model: rank 1's load failed there alone
                "task_forget_model",
                use(
                    "forget",
                    *["--examples", str(tmp / "forget.tsv"), "--task", "parity"],
                    *["--fast-weights", str(out / "forget_model.safetensors")],
                ),
                {model: str(tmp / "model_b")},
            ),
        ],
        [
            differ(  # 3. another model on rank 1, whose load of the fast weights failed there alone
                "perplexity_model_with_fast_weights",
                ["lm", "perplexity", *base, "--text", str(tmp / "book.txt"), "--fast-weights", fw],
                {model: str(tmp / "model_b")},
            ),
        ],
        [
            differ(  # 4. fit on rank 0, partial-fit on rank 1: waited for the timeout
                "fit_vs_partial_fit",
                ["classify", "fit", str(tmp / "first.csv"), "--model", str(out / "clf")],
                {"fit": "partial-fit"},
            ),
        ],
    ]


# ----------------------------------------------------------------- what each rank runs


def _worker(out: Path, steps: list[dict[str, Any]]) -> None:
    torch.set_num_threads(1)
    d = distributed.init()
    for step in steps:
        result = record(lambda step=step: main(step["argv"][d.rank]))
        write_record(out, step["name"], d.rank, result)
    os._exit(0)


# ----------------------------------------------------------------- the group, and one process
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Any]:
    """The files, one process's reference (computed while the groups run) and the groups' results."""
    tmp = tmp_path_factory.mktemp("s84")
    f = _files(tmp)
    out, ref = tmp / "out", tmp / "ref"
    out.mkdir()
    ref.mkdir()
    base = f["model"]
    learn = ["--template", TEMPLATE, "--folds", "2", "--task", "parity", "--guard", "none"]
    for examples, name in (("train.tsv", "task"), ("train_b.tsv", "task_b")):
        argv = ["task", "learn", *base, "--examples", str(tmp / examples), *learn]
        assert main([*argv, "--out", str(out / f"{name}.safetensors")]) == 0
    for text, name in (("book.txt", "lm"), ("book_b.txt", "lm_b")):
        argv = ["lm", "learn", *base, "--text", str(tmp / text), "--window", "16"]
        assert main([*argv, "--out", str(out / f"{name}.safetensors")]) == 0
    shutil.copy(out / "lm.safetensors", out / "lm_copy.safetensors")
    copies = ("forget.safetensors", "forget_ro.safetensors", "forget_model.safetensors")
    for copy in (*(out / name for name in copies), ref / "forget.safetensors"):
        shutil.copy(out / "task.safetensors", copy)
    (out / "forget_ro.safetensors").chmod(0o444)  # another node's copy, which it cannot write
    assert main(["classify", "fit", str(tmp / "first.csv"), "--model", str(out / "clf")]) == 0
    procs = []
    procs = []
    for steps in _steps(f, out):  # the groups at once
        procs += launch_group("tests.test_fix_s84_distributed", out, steps)
    try:
        forget = ["--examples", str(tmp / "forget.tsv"), "--task", "parity"]
        forget += ["--fast-weights", str(ref / "forget.safetensors")]
        assert main(["task", "forget", *base, *forget]) == 0
        waited = _wait(procs, timeout=300)
    finally:
        _stop(procs)
        (out / "forget_ro.safetensors").chmod(0o644)  # so that the temporary folder can be removed
    return {"out": out, "ref": ref, "tmp": tmp, "procs": waited}


# ----------------------------------------------------------------- 1. the fast-weight file
def test_task_classify_refuses_fast_weights_that_differ_between_ranks(runs):
    """Rank 1 scored its share of the inputs with its own task: rank 0 wrote a mixture, rc 0."""
    refused_everywhere(
        runs, "classify_fast_weights", "--fast-weights (rank 0: ", "task_b.safetensors (digest "
    )
    assert not (runs["out"] / "p_fw.tsv").exists()


def test_task_generate_refuses_fast_weights_that_differ_between_ranks(runs):
    refused_everywhere(
        runs, "generate_fast_weights", "--fast-weights (rank 0: ", "task_b.safetensors (digest "
    )
    assert not (runs["out"] / "g_fw.tsv").exists()


def test_lm_perplexity_refuses_fast_weights_that_differ_between_ranks(runs):
    """Each rank scores the whole text and rank 0 printed its own result: rank 1's other file went
    unnoticed, rc 0."""
    results = refused_everywhere(
        runs, "perplexity_fast_weights", "--fast-weights (rank 0: ", "lm_b.safetensors (digest "
    )
    assert results[0]["out"] == ""


def test_lm_perplexity_refuses_texts_that_differ_between_ranks(runs):
    """Each rank scored its own text and rank 0 printed its own perplexity, rc 0."""
    results = refused_everywhere(runs, "perplexity_text", "--text (rank 0: ", "book_b.txt (digest ")
    assert results[0]["out"] == ""


def test_the_same_fast_weights_at_another_path_are_not_refused(runs):
    results = ran_everywhere(runs, "perplexity_copy")
    assert "fast_weights" in json.loads(results[0]["out"])


# ----------------------------------------------------------------- 2. --demonstrations and --lora
def test_task_evaluate_refuses_demonstrations_that_differ_between_ranks(runs):
    """Rank 1 read its share of the examples after other demonstrations: a mixed score, rc 0."""
    results = refused_everywhere(
        runs, "evaluate_demonstrations", "--demonstrations (rank 0: ", "demos_b.tsv (digest "
    )
    assert "accuracy" not in results[0]["out"]


def test_lora_given_on_one_rank_only_is_named_on_every_rank(runs):
    """Rank 0 refused --lora under torchrun; rank 1, without it, went on to score alone."""
    refused_everywhere(runs, "classify_lora_one_rank", "--lora (rank 0: ", "rank 1: not given")
    assert not (runs["out"] / "p_lora.tsv").exists()


# ----------------------------------------------------------------- 3. the model
def test_task_classify_refuses_another_snapshot_of_the_model_on_one_rank(runs):
    """Same configuration and shapes, one weight tensor moved: rank 1 scored with it, rc 0."""
    refused_everywhere(runs, "classify_model", "--model (rank 0: ", "model_b (fingerprint ")
    assert not (runs["out"] / "p_model.tsv").exists()


def test_the_zero_shot_labels_note_is_printed_by_rank_0_alone(runs):
    results = ran_everywhere(runs, "evaluate_zero_shot_note")
    note = "zero-shot --labels auto takes its"
    assert note in results[0]["err"] and note not in results[1]["err"]


def test_lm_generate_refuses_another_snapshot_of_the_model_on_one_rank(runs):
    results = refused_everywhere(runs, "lm_generate_model", "--model (rank 0: ", "model_b (fingerprint ")
    assert results[0]["out"] == ""


def test_lm_perplexity_with_fast_weights_names_another_model_on_every_rank(runs):
    """Rank 1's load of fast weights learned on the other model failed there alone; rank 0 saw only
    its peer closing the connection. The model is now compared before the fast weights load."""
    results = refused_everywhere(
        runs, "perplexity_model_with_fast_weights", "--model (rank 0: ", "model_b (fingerprint "
    )
    assert results[0]["out"] == ""


def test_task_classify_with_fast_weights_names_another_model_on_every_rank(runs):
    """The task's fast weights loaded into rank 1's other model before the models were compared:
    rank 1 failed alone, rank 0 saw only a closed connection (review s84, finding 1)."""
    refused_everywhere(runs, "classify_model_with_fast_weights", "--model (rank 0: ", "model_b (fingerprint ")
    assert not (runs["out"] / "p_model_fw.tsv").exists()


def test_task_forget_names_another_model_on_every_rank(runs):
    refused_everywhere(runs, "task_forget_model", "--model (rank 0: ", "model_b (fingerprint ")


def test_lm_learn_refuses_another_snapshot_of_the_model_on_one_rank(runs):
    """The statistics of two models were summed and written, rc 0."""
    refused_everywhere(runs, "lm_learn_model", "the model (rank 0: weights and configuration ")
    assert not (runs["out"] / "learned.safetensors").exists()


def test_the_same_model_at_another_path_is_not_refused(runs):
    ran_everywhere(runs, "classify_model_copy")
    assert len((runs["out"] / "p_copy.tsv").read_text().splitlines()) == 5


def test_model_fingerprint_sees_the_weights_and_tokenizer_not_the_path(tmp_path):
    """A copy elsewhere fingerprints alike; a moved weight tensor or another tokenizer does not."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from faast.distributed import model_fingerprint
    from tests.lm_wordlevel import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    shutil.copytree(model, tmp_path / "copy")
    _save_nudged(model, tmp_path / "nudged")

    def fingerprint(path: Path, extra_token: bool = False) -> str:
        tok = AutoTokenizer.from_pretrained(path)
        if extra_token:
            tok.add_tokens(["w999"])
        return model_fingerprint(AutoModelForCausalLM.from_pretrained(path), tok)

    first = fingerprint(model)
    assert fingerprint(tmp_path / "copy") == first
    assert fingerprint(tmp_path / "nudged") != first
    assert fingerprint(model, extra_token=True) != first


def test_reduce_learning_takes_the_fingerprint_again_after_a_change_in_place():
    """Kept while the parameters are unchanged (a stream learns chunk after chunk), not after."""
    from faast.distributed import _learning_fingerprint
    from faast.lm import FaastConfig, get_faast_model
    from tests.lm_tiny import tiny_model

    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0))
    first = _learning_fingerprint(fm)
    assert _learning_fingerprint(fm) == first
    with torch.no_grad():
        fm.base_model.model.layers[1].self_attn.q_proj.weight.mul_(1.5)
    assert _learning_fingerprint(fm) != first


# ----------------------------------------------------------------- 4. fit beside partial-fit
def test_classify_fit_beside_partial_fit_is_refused_at_once_naming_the_actions(runs):
    """Rank 0 (fit) and rank 1 (partial-fit) waited in different collectives until the timeout."""
    named = 'command (rank 0: "faast classify fit", rank 1: "faast classify partial-fit")'
    results = refused_everywhere(runs, "fit_vs_partial_fit", named)
    for rank, got in enumerate(results):
        assert got["seconds"] < 20, f"rank {rank}: {got['seconds']:.1f} s (the timeout is 30 s)"


# ----------------------------------------------------------------- 5. task forget writes on rank 0
def test_task_forget_needs_a_writable_file_on_rank_0_only(runs):
    """Rank 1's copy is read-only: it failed check_writable although rank 0 alone writes."""
    results = ran_everywhere(runs, "task_forget")
    assert "[faast] forgot 2 examples" in results[0]["out"]
    assert "forgot" not in results[1]["out"]
    got = load_file(str(runs["out"] / "forget.safetensors"))
    want = load_file(str(runs["ref"] / "forget.safetensors"))
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    untouched = load_file(str(runs["out"] / "forget_ro.safetensors"))
    for key, value in load_file(str(runs["out"] / "task.safetensors")).items():
        assert torch.equal(untouched[key], value), key


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), json.loads(sys.argv[2]))
