"""`faast task`, `faast classify fit/partial-fit` and `faast lm stream` run unchanged under
``torchrun`` and give what one process gives.

Two groups start at once (the machine runs them side by side while the test process computes the
single-process references): ``torchrun --nproc_per_node 2`` runs the task and stream commands on a
tiny float64 word-level model, and 3 processes started the way torchrun starts them run the
classify commands (a features file of 2 rows: a process with no data; 12 images: an uneven split;
10 texts in batches of 3: four batches on three processes).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from faast.classifier_io import load_classifier
from faast.cli import main
from faast.lm.fastweights import read_file
from tests.test_distributed_learning import PIPES, ROOT, _env, _free_port, _stop, _wait

TEMPLATE = "{input} w90"


@dataclass
class Runs:
    """The fixtures, the command lines (with ``{out}`` for the output folder) and the processes."""

    tmp: Path
    lm_cmds: list[list[str]]
    clf_cmds: list[list[str]]
    torchrun: subprocess.Popen
    three: list[subprocess.Popen]
    started: float


def _fill(cmds: list[list[str]], out: Path) -> list[list[str]]:
    return [[arg.replace("{out}", str(out)) for arg in cmd] for cmd in cmds]


def _lm_commands(tmp: Path) -> list[list[str]]:
    """task learn of labels (20 examples, 2 folds of 5 held out: 3 + 2 per process), classify and
    evaluate (5 inputs: 3 + 2); task learn of free-form outputs into the same file (13 examples:
    7 + 6) and evaluate (3 examples, generated 2 + 1); lm stream (the last chunk has one pair: a
    process learns nothing from it)."""
    from tests.lm_wordlevel import WORDS, save_tiny_model

    model = save_tiny_model(tmp / "model")
    rows = []
    for i in range(25):
        words = [WORDS[10 + (i * 7 + j) % 60] for j in range(3)]
        rows.append(" ".join(words) + ("\tw5" if (10 + i * 7) % 2 == 0 else "\tw6"))
    (tmp / "train.tsv").write_text("\n".join(rows[:20]) + "\n")
    (tmp / "test.tsv").write_text("\n".join(rows[20:]) + "\n")
    shift = [
        {"input": f"{WORDS[i]} {WORDS[i + 1]}", "output": f"{WORDS[i + 2]} {WORDS[i + 3]}"} for i in range(13)
    ]
    (tmp / "shift.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shift))
    (tmp / "shift_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shift[:3]))
    (tmp / "book.txt").write_text(" ".join(WORDS[(i * 3) % 30] for i in range(202)))
    base = ["--model", str(model), "--dtype", "float64", "--threads", "1"]
    fw = ["--fast-weights", "{out}/task.safetensors", "--task", "parity"]
    train, test = ["--examples", str(tmp / "train.tsv")], ["--inputs", str(tmp / "test.tsv")]
    learn = ["--out", "{out}/task.safetensors", "--task", "parity", "--template", TEMPLATE, "--folds", "2"]
    evaluate = ["--examples", str(tmp / "test.tsv"), "--json", "{out}/eval.json"]
    free = ["--out", "{out}/task.safetensors", "--task", "shift", "--template", TEMPLATE, "--labels", "none"]
    free_eval = ["--fast-weights", "{out}/task.safetensors", "--task", "shift", "--max-new-tokens", "3"]
    free_eval += ["--examples", str(tmp / "shift_test.jsonl"), "--json", "{out}/eval_shift.json"]
    free_eval += ["--predictions", "{out}/gen.tsv"]  # greedy outputs, generated in blocks
    stream = ["--text", str(tmp / "book.txt"), "--chunk", "40", "--context", "40", "--weight", "0.8"]
    return [
        ["task", "learn", *base, *train, *learn, "--batch-size", "4"],
        ["task", "classify", *base, *fw, *test, "--out", "{out}/pred.jsonl"],
        ["task", "evaluate", *base, *fw, *evaluate, "--predictions", "{out}/eval.tsv"],
        ["task", "learn", *base, "--examples", str(tmp / "shift.jsonl"), *free, "--folds", "3"],
        ["task", "evaluate", *base, *free_eval],
        ["lm", "stream", *base, *stream, "--csv", "{out}/stream.csv", "--out", "{out}/stream.safetensors"],
    ]


def _classify_commands(tmp: Path) -> list[list[str]]:
    """fit on 10 rows of 2 features (sharded 4 + 3 + 3; rank 0 then cross-validates them),
    partial-fit 2 more (one process has none); fit 12 images (48 features: the rows are kept and
    gathered by the all-reduce) through the feature cache and partial-fit 6 more; predict; fit 10
    texts of a TSV file (a tiny sentence encoder, batches of 3) through the feature cache and
    partial-fit 5 more. The default cut (auto) throughout."""
    from tests.test_classify_cli import _image_folder
    from tests.test_classify_text_cli import sentences, tiny_text_encoder, write_tsv

    rng = np.random.default_rng(4)
    for name, n in (("first", 10), ("more", 2)):
        feats = rng.normal(size=(n, 2))
        labels = ["ab"[i % 2] for i in range(n)]
        lines = ["f0,f1,label"] + [
            ",".join(f"{x:.6f}" for x in row) + f",{y}" for row, y in zip(feats, labels, strict=True)
        ]
        (tmp / f"{name}.csv").write_text("\n".join(lines) + "\n")
    _image_folder(tmp / "images", 4, 0)
    _image_folder(tmp / "more_images", 2, 1)
    cache = ["--cache-dir", "{out}/cache"]
    pixels = ["--encoder", "pixels", "--resolution", "4"]
    more = [str(tmp / "more_images"), "--model", "{out}/img", *cache]
    text = ["--encoder", str(tiny_text_encoder(tmp / "tiny-bert")), "--batch-size", "3", *cache]
    write_tsv(tmp / "texts.tsv", sentences(10, 0))
    write_tsv(tmp / "more_texts.tsv", sentences(5, 1))
    return [
        ["classify", "fit", str(tmp / "first.csv"), "--model", "{out}/feat", "--cv", "2"],
        ["classify", "partial-fit", str(tmp / "more.csv"), "--model", "{out}/feat"],
        ["classify", "fit", str(tmp / "images"), "--model", "{out}/img", *pixels, *cache],
        ["classify", "partial-fit", *more],
        ["classify", "predict", *more, "--out", "{out}/pred.csv", "--proba"],
        ["classify", "fit", str(tmp / "texts.tsv"), "--model", "{out}/txt", *text],
        ["classify", "partial-fit", str(tmp / "more_texts.tsv"), "--model", "{out}/txt", *text],
    ]


def _scenario(world: int, out: Path, cmds: list[list[str]], port: str) -> list[subprocess.Popen]:
    """``world`` processes of the commands scenario, with the environment torchrun would give them."""
    procs = []
    for rank in range(world):
        env = _env(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=port, FAAST_DIST_TIMEOUT="120",
        )  # fmt: skip
        cmd = [sys.executable, "-m", "tests.dist_scenarios", "commands", str(out), "0", json.dumps(cmds)]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, **PIPES))
    return procs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Iterator[Runs]:
    tmp = tmp_path_factory.mktemp("commands")
    lm_cmds, clf_cmds = _lm_commands(tmp), _classify_commands(tmp)
    for name in ("two", "three"):
        (tmp / name).mkdir()
    two = _fill(lm_cmds, tmp / "two")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "--log-dir", str(tmp / "logs"),
        "--redirects", "3", "-m", "tests.dist_scenarios",
        "commands", str(tmp / "two"), "0", json.dumps(two),
    ]  # fmt: skip
    started = time.perf_counter()
    torchrun = subprocess.Popen(cmd, cwd=ROOT, env=_env(FAAST_DIST_TIMEOUT="120"), **PIPES)
    three = _scenario(3, tmp / "three", _fill(clf_cmds, tmp / "three"), str(_free_port()))
    yield Runs(tmp, lm_cmds, clf_cmds, torchrun, three, started)
    _stop([torchrun, *three])


def _close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tol: float = 1e-10) -> None:
    """Same keys; float tensors equal to ``tol`` relative to the largest entry, others exactly."""
    assert sorted(got) == sorted(want)
    for key, w in want.items():
        g = got[key]
        assert g.shape == w.shape and g.dtype == w.dtype, key
        if w.is_floating_point():
            diff = (g.double() - w.double()).abs().max().item() if w.numel() else 0.0
            assert diff <= tol * max(1.0, w.double().abs().max().item()), (key, diff)
        else:
            assert torch.equal(g, w), key


def _log(logs: dict[str, Path], name: str) -> str:
    """What every rank wrote to ``name`` (stdout or stderr; torchrun ``--redirects``), in rank order."""
    return "".join((logs[rank] / f"{name}.log").read_text() for rank in sorted(logs))


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.safetensors"))


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))


def test_task_and_stream_commands_under_torchrun_equal_one_process(runs, tmp_path):
    """Under ``torchrun --nproc_per_node 2``: ``faast task learn`` (cross-validation folds learned
    and scored in blocks) saves the fast weights of one process (1e-10) with the same chosen
    read-out and scores, for labels and free-form outputs; ``task classify`` and ``evaluate``
    write the same predictions, greedy outputs and scores (answer NLL to 1e-9); ``faast
    lm stream`` writes the same per-chunk perplexities (1e-6) and final fast weights (1e-10).
    Rank 0 alone prints and shows progress."""
    for argv in _fill(runs.lm_cmds, tmp_path):  # the references, while the processes run
        assert main(argv) == 0, argv
    code, _, err = _wait([runs.torchrun], timeout=300)[0]
    logs = {p.parent.name: p.parent for p in (runs.tmp / "logs").rglob("stderr.log")}  # rank → folder
    assert code == 0 and sorted(logs) == ["0", "1"], err[-3000:] + _log(logs, "stderr")
    printed = _log(logs, "stdout")
    two = runs.tmp / "two"
    _close(load_file(two / "task.safetensors"), load_file(tmp_path / "task.safetensors"))
    for task in ("parity", "shift"):  # labels; free-form outputs (scores: NLL per answer token)
        fit2 = read_file(two / "task.safetensors")[1][task]["info"]["fit"]
        fit1 = read_file(tmp_path / "task.safetensors")[1][task]["info"]["fit"]
        assert fit2["chosen_name"] == fit1["chosen_name"] and fit2["pairs"] == fit1["pairs"]
        for part in ("scores", "criterion"):  # None: a score that is not finite (JSON has no inf)
            nones = {name for name, value in fit1[part].items() if value is None}
            assert {name for name, value in fit2[part].items() if value is None} == nones
            finite = {name: value for name, value in fit1[part].items() if name not in nones}
            assert {name: fit2[part][name] for name in finite} == pytest.approx(finite, rel=1e-9, abs=1e-12)
    assert printed.count("wrote task 'parity'") == 1 and "on 2 processes" in printed
    assert (logs["1"] / "stdout.log").read_text() == ""  # rank 1 prints nothing, shows no progress
    progress = ("cross-validate read-outs", "learn examples", "score labels", "generate:")
    assert not any(bar in (logs["1"] / "stderr.log").read_text() for bar in (*progress, "stream:"))
    assert all(bar in (logs["0"] / "stderr.log").read_text() for bar in progress)
    assert "stream:" not in (logs["0"] / "stderr.log").read_text()  # lm stream: bars on a terminal only

    pred1 = [json.loads(x) for x in (tmp_path / "pred.jsonl").read_text().splitlines()]
    pred2 = [json.loads(x) for x in (two / "pred.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in pred2] == [r["prediction"] for r in pred1] and len(pred1) == 5
    for a, b in zip(pred1, pred2, strict=True):
        assert b["log_probs"] == pytest.approx(a["log_probs"], rel=1e-9)
    assert json.loads((two / "eval.json").read_text()) == json.loads((tmp_path / "eval.json").read_text())
    assert _csv(two / "eval.tsv") == _csv(tmp_path / "eval.tsv")
    assert _csv(two / "gen.tsv") == _csv(tmp_path / "gen.tsv")
    shift1 = json.loads((tmp_path / "eval_shift.json").read_text())
    shift2 = json.loads((two / "eval_shift.json").read_text())
    for exact in ("exact_match_ci95_wilson", "bleu", "bleu_defined"):  # counts, or None where undefined
        assert shift2.pop(exact) == shift1.pop(exact), exact
    assert shift2 == pytest.approx(shift1, rel=1e-9)

    rows1, rows2 = _csv(tmp_path / "stream.csv"), _csv(two / "stream.csv")
    assert len(rows1) == 6 and [r["pairs_learned"] for r in rows2] == [r["pairs_learned"] for r in rows1]
    for a, b in zip(rows1, rows2, strict=True):
        for col in ("ppl", "base_ppl", "context_ppl"):
            assert np.log(float(b[col])) == pytest.approx(np.log(float(a[col])), abs=1e-6), col
    _close(load_file(two / "stream.safetensors"), load_file(tmp_path / "stream.safetensors"))
    assert printed.count('"chunks": 6') == 1  # the stream summary


def test_classify_fit_and_partial_fit_on_three_processes_equal_one_process(runs, tmp_path, capsys):
    """3 processes: ``faast classify fit`` on 10 feature rows (an uneven split) and ``partial-fit``
    of 2 more (one process has none); ``fit`` of 12 images (encoded 4 per process) through the
    feature cache, which rank 0 alone writes, and ``partial-fit`` of 6 more (kept rows: not
    sharded, so that the default cut scores leave-one-out as one process does); the same for 10
    and then 5 texts (the encoder's batches shared out: the cached features equal one process's
    exactly): the saved classifiers equal one process's (coefficients to 1e-10, cut, counts and
    classes exactly); rank 0 alone prints and writes the predictions."""
    for argv in _fill(runs.clf_cmds, tmp_path):
        assert main(argv) == 0, argv
    reference = capsys.readouterr().out
    results = _wait(runs.three, timeout=300)
    for rank, (code, _, err) in enumerate(results):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"
    three = runs.tmp / "three"
    for name in ("feat", "img", "txt"):
        got, want = load_classifier(three / name)[0], load_classifier(tmp_path / name)[0]
        assert np.array_equal(got.classes_, want.classes_)
        assert np.array_equal(got.class_count_, want.class_count_)
        np.testing.assert_allclose(got.coef_, want.coef_, rtol=0, atol=1e-10 * np.abs(want.coef_).max())
        assert got.rank_ == want.rank_ and got.ridge_ == pytest.approx(want.ridge_, rel=1e-12)
    assert _csv(three / "pred.csv") == _csv(tmp_path / "pred.csv")
    cached = _files(three / "cache")
    assert cached == _files(tmp_path / "cache") and cached
    for rel in cached:  # the features rank 0 wrote are one process's
        _close(load_file(three / "cache" / rel), load_file(tmp_path / "cache" / rel), tol=0.0)
    printed = "".join(out for _, out, _ in results)
    assert printed.count("[faast] fitted on") == 3 and printed.count("[faast] added") == 3
    assert "fitted on 10 examples on 3 processes" in printed and "fitted on 12 examples on 3" in printed
    assert printed.count("fitted on 10 examples on 3 processes") == 2  # the features file and the texts
    assert printed.count("2-fold cross-validation") == 1  # rank 0, after the others are done
    folds = [line for line in reference.splitlines() if "cross-validation" in line]
    assert len(folds) == 1 and folds[0] in printed  # the same folds, the same accuracies
    assert printed.count("[faast] predicted") == 1
