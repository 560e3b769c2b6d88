"""Calibrated read-outs in a task's fit: the candidate sets, the fold scores of a calibrated
candidate against the calibrated zero-shot model scored directly, the choice among some of the
candidates scored, the choice kept by the task (saved, loaded, on the command line), and free text."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from faast.cli import main
from faast.lm import ReadConfig
from faast.lm.calibration import LOG_PROB_FLOOR, calibrated_label_scores, contextually_calibrated
from faast.lm.examples import Example
from faast.lm.fastweights import read_task
from faast.lm.task import TaskModel
from faast.lm.task_choice import (
    CALIBRATED_SETS,
    MEMORY_OFF,
    ReadCandidate,
    choose_read_out,
    default_candidates,
    off_candidate,
)
from faast.lm.text import load_causal_lm
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import make_task, rule_examples
from tests.test_task_cli import parity_setup


@pytest.mark.parametrize("mix", ["prob", "correction"])
def test_each_candidate_set_is_the_first_candidates_of_the_next(mix):
    sets = [default_candidates(mix, name) for name in CALIBRATED_SETS]
    for smaller, larger in itertools.pairwise(sets):
        assert larger[: len(smaller)] == smaller and len(larger) > len(smaller)
    none, zero_shot, every = sets
    assert not any(c.calibrate for c in none)
    assert zero_shot[-1].calibrate and zero_shot[-1].read.weight == 0
    assert [c for c in every if c.calibrate] == [c.calibrated() for c in none]
    names = [c.name for c in every]
    assert len(set(names)) == len(names)  # a calibrated twin is told apart by its name
    # the memory off the guards compare with stays the plain zero-shot model
    assert all(off_candidate(s) == none[0] for s in sets)
    with pytest.raises(ValueError, match="unknown calibrated set 'some'"):
        default_candidates(mix, "some")


def test_a_calibrated_candidates_fold_scores_are_the_calibrated_zero_shot_models():
    """The memory off reads nothing learned, so in every fold its calibrated twin scores each
    held-out example as the calibrated zero-shot model does when asked directly."""
    task = make_task(labels=["w40", "w41"])
    examples = rule_examples(20)
    candidates = [MEMORY_OFF, MEMORY_OFF.calibrated()]
    report = task.fit(examples, labels=["w40", "w41"], candidates=candidates, folds=4, progress=False)
    assert report.n_validation == 20
    # every example held out once, in the order the folds scored them (copies of an input share a fold)
    in_order = [examples[i] for i in report.validation_index]
    held_inputs = [e.input for e in in_order]
    target = torch.tensor([["w40", "w41"].index(e.output) for e in in_order])
    task.use(MEMORY_OFF)
    for calibrate, cand in zip((False, True), candidates, strict=True):
        scores = task.label_scores(held_inputs, calibrate=calibrate)
        norm = scores - torch.logsumexp(scores, dim=1, keepdim=True)
        want = norm[torch.arange(len(target)), target]
        assert torch.allclose(report.validation_loglik[cand.name], want, atol=1e-10)
    assert not torch.allclose(
        report.validation_loglik[candidates[0].name], report.validation_loglik[candidates[1].name]
    )


@pytest.mark.parametrize("smaller", ["none", "zero-shot"])
def test_a_choice_among_some_scored_candidates_is_the_fit_with_only_them(smaller):
    task = make_task(labels=["w40", "w41"])
    examples = rule_examples(24, seed=3)
    alone = task.fit(examples, candidates=default_candidates("prob", smaller), progress=False)
    task.reset()
    every = task.fit(examples, candidates=default_candidates("prob", "all"), progress=False)
    choice, outcomes, p, anchor = choose_read_out(
        default_candidates("prob", smaller),
        every.validation_loglik,
        every.validation_items,
        predicted=every.validation_predicted,
        targets=every.validation_targets,
    )
    assert choice == alone.chosen and p == pytest.approx(alone.sign_flip_p, abs=0)
    assert anchor is not None and anchor.name == alone.anchor
    assert {g: c.name for g, (c, _) in outcomes.items()} == alone.decisions


def test_the_chosen_calibration_is_used_kept_and_saved(tmp_path):
    task = make_task(labels=["w40", "w41"])
    examples, inputs = rule_examples(20), ["w3", "w4", "w7"]
    report = task.fit(examples, candidates=[MEMORY_OFF.calibrated()], progress=False)
    assert report.chosen.calibrate and task.calibrated  # no memory off to guard: the one candidate
    assert torch.equal(task.label_scores(inputs), task.label_scores(inputs, calibrate=True))
    assert not torch.allclose(task.label_scores(inputs), task.label_scores(inputs, calibrate=False))
    labels = task.spec.labels
    assert task.classify(inputs) == [labels[int(i)] for i in task.label_scores(inputs).argmax(1)]
    path = task.save(tmp_path / "tasks.safetensors")
    scores = task.label_scores(inputs)
    base = task.model.unload()  # one FaastModel's hooks on a base model at a time
    loaded = TaskModel.load(base, task.tokenizer, path)
    assert loaded.calibrated and torch.allclose(loaded.label_scores(inputs), scores)
    loaded.model.unload()
    task.model.attach()
    task.use(ReadCandidate("logit", ReadConfig(weight=1.0)))  # another read-out: not calibrated
    assert not task.calibrated
    task.save(path)
    task.model.unload()
    assert not TaskModel.load(base, task.tokenizer, path).calibrated


def test_free_text_drops_the_calibrated_candidates_and_refuses_them_when_asked(monkeypatch):
    import faast.lm.task as task_module

    monkeypatch.setattr(task_module, "default_candidates", lambda mix: default_candidates(mix, "all"))
    task = make_task()
    examples = [Example(f"w{a}", f"w{a + 20} w{a + 21}") for a in range(3, 15)]
    report = task.fit(examples, labels=None, progress=False)
    assert report.scores and not any(name.endswith("+calibrated") for name in report.scores)
    with pytest.raises(ValueError, match="calibrated read-outs .* need labels; these outputs are free text"):
        task.fit(examples, labels=None, candidates=[MEMORY_OFF.calibrated()], progress=False)


def test_the_command_line_follows_the_tasks_calibration_unless_told(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, test, fw = parity_setup(model_dir, tmp_path)
    assert main(learn) == 0
    model, tok = load_causal_lm(str(model_dir))
    saved = TaskModel.load(model, tok, fw)
    assert not saved.calibrated
    saved.calibrated = True  # as a fit that chose a calibrated read-out leaves it
    saved.save(fw)
    capsys.readouterr()
    use = [*base, "--fast-weights", str(fw)]

    def classify(*flags: str):
        out = tmp_path / "pred.jsonl"
        assert main(["task", "classify", *use, *flags, "--inputs", str(test), "--out", str(out)]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return torch.tensor([[r["log_probs"][x] for x in ("w5", "w6")] for r in rows])

    default, calibrated, plain = classify(), classify("--calibrate"), classify("--no-calibrate")
    assert torch.equal(default, calibrated) and not torch.allclose(default, plain)
    assert torch.allclose(torch.logsumexp(default, dim=1), torch.zeros(len(default)), atol=1e-5)
    for flags, want in (((), True), (("--no-calibrate",), False)):
        assert main(["task", "evaluate", *use, *flags, "--examples", str(test)]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["calibrated"] is want


def test_learn_weighs_the_calibrated_read_outs_asked_for(model_dir, tmp_path, capsys):  # noqa: F811
    _, learn, _, fw = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--calibrated", "all"]) == 0
    scores = read_task(fw, None)[2]["info"]["fit"]["scores"]
    calibrated = [name for name in scores if name.endswith("+calibrated")]
    assert len(calibrated) == len(scores) // 2 == len(default_candidates("prob", "none"))
    assert main([*learn, "--calibrated", "none"]) == 0
    assert not any(n.endswith("+calibrated") for n in read_task(fw, None)[2]["info"]["fit"]["scores"])
    capsys.readouterr()
    assert main([*learn, "--labels", "none", "--calibrated", "zero-shot"]) == 1
    assert "need labels; these outputs are free text" in capsys.readouterr().err


def test_a_label_of_probability_zero_is_floored_before_calibration():
    """The "prob" mix at the memory's full weight can give a label probability 0 (log -inf); the
    task's calibration floors it (last, finite) where the plain formula refuses it."""
    inf = float("inf")
    scores = torch.tensor([[-0.1, -inf, -2.5], [-inf, -0.2, -1.7]], dtype=torch.float64)
    free = torch.tensor([[-0.4, -1.3, -inf]], dtype=torch.float64)
    got = calibrated_label_scores(scores, free)
    want = contextually_calibrated(scores.clamp_min(LOG_PROB_FLOOR), free.clamp_min(LOG_PROB_FLOOR))
    assert torch.isfinite(got).all() and torch.equal(got, want)
    assert got[0].argmin() == 1 and got[1].argmin() == 0
    with pytest.raises(ValueError, match="must be finite"):
        contextually_calibrated(scores, free)


def test_reset_drops_the_chosen_calibration():
    """After reset the task is the zero-shot model read as it is: a calibrated read-out chosen by an
    earlier fit does not leak into what is scored next (a LoRA baseline scored after a FAAST fit)."""
    task = make_task(labels=["w40", "w41"])
    inputs, labels = ["w3", "w4", "w7"], ["w40", "w41"]
    plain = task.label_scores(inputs, labels)
    task.fit(rule_examples(20), candidates=[MEMORY_OFF.calibrated()], progress=False)
    assert task.calibrated
    assert not torch.allclose(task.label_scores(inputs, labels), plain)
    task.reset()
    assert not task.calibrated
    torch.testing.assert_close(task.label_scores(inputs, labels), plain)
