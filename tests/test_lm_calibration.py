"""Contextual calibration (faast.lm.calibration): the formula against a plain reference on random
scores of many shapes, its invariances, its errors, and in-context learning calibrated on a tiny
model (library and command line)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.cli import main
from faast.lm.calibration import CONTENT_FREE_INPUTS, contextually_calibrated
from faast.lm.examples import Example
from faast.lm.icl import InContextModel, InContextTask
from faast.lm.prompts import PromptCodec
from faast.lm.task import TaskModel, TaskSpec
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import TEMPLATE
from tests.test_task_cli import parity_setup


def _reference(scores: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Zhao et al.'s recipe written out: probabilities over the labels, their mean after the
    content-free inputs, divide, renormalise, log."""
    out = np.empty_like(scores)
    probs_free = [np.exp(row - row.max()) / np.exp(row - row.max()).sum() for row in free]
    p_cf = sum(probs_free) / len(probs_free)
    for i, row in enumerate(scores):
        p = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        q = p / p_cf
        out[i] = np.log(q / q.sum())
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 7),
    labels=st.integers(2, 6),
    c=st.integers(1, 4),
    scale=st.sampled_from([0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**16),
)
def test_calibration_equals_the_written_out_recipe(n, labels, c, scale, seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, labels)) * scale - 5.0
    free = rng.normal(size=(c, labels)) * scale - 3.0
    got = contextually_calibrated(torch.from_numpy(scores), torch.from_numpy(free))
    assert got.dtype == torch.float64 and got.shape == (n, labels)
    np.testing.assert_allclose(got.numpy(), _reference(scores, free), rtol=1e-10, atol=1e-10)
    assert torch.allclose(torch.logsumexp(got, dim=1), torch.zeros(n, dtype=torch.float64), atol=1e-12)
    # a constant added to any row of either (a log-probability over more than the labels) changes nothing
    shift = torch.from_numpy(rng.normal(size=(n, 1)) * 50)
    shift_free = torch.from_numpy(rng.normal(size=(c, 1)) * 50)
    again = contextually_calibrated(torch.from_numpy(scores) + shift, torch.from_numpy(free) + shift_free)
    assert torch.allclose(again, got, atol=1e-9)


def test_a_uniform_content_free_distribution_leaves_the_ranking_and_a_biased_one_is_removed():
    scores = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.4, -9.0]], dtype=torch.float64)
    flat = contextually_calibrated(scores, torch.zeros(2, 3, dtype=torch.float64))
    assert torch.allclose(flat, torch.log_softmax(scores, dim=1))
    # a model that prefers the first label by e^2 on content-free input: that preference is divided out
    biased = scores + torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    free = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(contextually_calibrated(biased, free), flat)


@pytest.mark.parametrize(
    ("scores", "free", "match"),
    [
        (torch.zeros(3), torch.zeros(1, 3), r"must be \(n, L\)"),
        (torch.zeros(2, 3), torch.zeros(1, 4), "needs at least one row of the 3 labels"),
        (torch.zeros(2, 3), torch.zeros(0, 3), "needs at least one row"),
        (torch.tensor([[0.0, -math.inf]]), torch.zeros(1, 2), "must be finite"),
        (torch.zeros(1, 2), torch.tensor([[math.nan, 0.0]]), "must be finite"),
    ],
)
def test_calibration_refuses_bad_scores(scores, free, match):
    with pytest.raises(ValueError, match=match):
        contextually_calibrated(scores, free)


def test_in_context_scores_calibrated_by_the_content_free_inputs_in_the_same_prompt():
    model = tiny_model("llama", dtype=torch.float64)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    demos = [("w10 w11", "w40"), ("w12", "w41"), ("w13 w14", "w40")]
    icl = InContextModel(model, codec, demos, reserve=12)
    inputs, labels = ["w5", "w6 w7", "w9"], ["w40", "w41 w42"]  # a two-token label: full sequences
    raw = icl.label_scores(inputs, labels)
    free = icl.content_free_scores(labels)
    assert free.shape == (len(CONTENT_FREE_INPUTS), 2)
    assert torch.allclose(free, icl.label_scores(list(CONTENT_FREE_INPUTS), labels))
    got = icl.label_scores(inputs, labels, calibrate=True)
    assert torch.allclose(got, contextually_calibrated(raw, free))
    assert not torch.allclose(got, torch.log_softmax(raw, dim=1))  # the tiny model has a label bias
    task = InContextTask(model, codec, [Example(x, y) for x, y in demos], reserve=12)
    assert task.spec.labels == ["w40", "w41"]
    assert torch.allclose(
        task.label_scores(inputs, calibrate=True), icl.label_scores(inputs, ["w40", "w41"], calibrate=True)
    )


def test_a_task_with_fast_weights_calibrated_by_the_content_free_inputs_through_the_same_model():
    torch.manual_seed(0)
    task = TaskModel.create(
        tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True), TaskSpec(TEMPLATE)
    )
    examples = [Example(f"w{5 + i % 7} w{20 + i % 3}", "w40" if i % 2 else "w41 w42") for i in range(12)]
    inputs, labels = ["w5", "w6 w7", "w9"], ["w40", "w41 w42"]
    for learned in (False, True):  # zero-shot, then with the fast weights
        if learned:
            task.fit(examples, labels=labels, progress=False)
        raw = task.label_scores(inputs, labels, calibrate=False)
        free = task.label_scores(list(CONTENT_FREE_INPUTS), labels, calibrate=False)
        got = task.label_scores(inputs, labels, calibrate=True)
        assert torch.allclose(got, contextually_calibrated(raw, free))
        assert torch.allclose(torch.logsumexp(got, dim=1), torch.zeros(3, dtype=torch.float64))


def test_calibrated_in_context_learning_from_the_command_line(model_dir, tmp_path, capsys):  # noqa: F811
    base, _, test, fw = parity_setup(model_dir, tmp_path)
    train, plain, calibrated = tmp_path / "train.tsv", tmp_path / "plain.jsonl", tmp_path / "cal.jsonl"
    icl = ["--demonstrations", str(train), "--shots", "5", "--template", "{input} w90"]
    assert main(["task", "classify", *base, *icl, "--inputs", str(test), "--out", str(plain)]) == 0
    cmd = ["task", "classify", *base, *icl, "--calibrate", "--inputs", str(test), "--out", str(calibrated)]
    assert main(cmd) == 0
    capsys.readouterr()

    def scores(path):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return torch.tensor([[r["log_probs"][x] for x in ("w5", "w6")] for r in rows])

    raw, got = scores(plain), scores(calibrated)
    # calibration moves the log-odds of the two labels by one amount, the same for every input
    shift = (got[:, 0] - got[:, 1]) - (raw[:, 0] - raw[:, 1])
    assert float(shift.abs().min()) > 1e-3 and torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-5)
    assert torch.allclose(torch.logsumexp(got, dim=1), torch.zeros(len(got)), atol=1e-5)
    assert main(["task", "evaluate", *base, *icl, "--calibrate", "--examples", str(test)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 12 and result["calibrated"] is True
    # zero-shot calibrated: no demonstration read (the labels still come from the file), the
    # content-free inputs still are
    zero = ["task", "evaluate", *base, *icl[:2], "--shots", "0", *icl[4:], "--calibrate"]
    zero += ["--examples", str(test)]
    assert main(zero) == 0
    assert "0 of 0 demonstrations fit" in capsys.readouterr().err

    # zero-shot and fast weights: the same option
    zero_shot = ["task", "classify", *base, "--template", "{input} w90", "--labels", "w5,w6", "--calibrate"]
    assert main([*zero_shot, "--inputs", str(test), "--out", str(plain)]) == 0
    learn = ["task", "learn", *base, "--examples", str(train), "--out", str(fw), "--template", "{input} w90"]
    assert main(learn) == 0
    assert (
        main(["task", "evaluate", *base, "--fast-weights", str(fw), "--calibrate", "--examples", str(test)])
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 12

    free_text = ["task", "evaluate", *base, *icl, "--labels", "none", "--calibrate", "--examples", str(test)]
    assert main(free_text) == 1
    assert "--calibrate needs labels (a classification task)" in capsys.readouterr().err
    assert main([*learn, "--head", "squared"]) == 0
    with_head = ["task", "classify", *base, "--fast-weights", str(fw), "--calibrate"]
    assert main([*with_head, "--inputs", str(test), "--out", str(plain)]) == 1
    assert "this task classifies with its label head" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # generate writes free text: no such option
        main(["task", "generate", *base, *icl, "--calibrate", "--inputs", str(test), "--out", str(plain)])
