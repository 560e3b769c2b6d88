"""``TaskModel.fit(hold_out=)`` and ``faast task learn --hold-out``: the share of the examples the
read-out's cross-validation holds out, each in one fold, with the memory holding the others."""

from __future__ import annotations

import math

import pytest

from faast.cli import main
from faast.lm import ReadConfig
from faast.lm.fastweights import read_task
from faast.lm.task import DEFAULT_HOLD_OUT, TaskModel
from faast.lm.task_choice import MEMORY_OFF, ReadCandidate
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import make_task, rule_examples
from tests.test_task_cli import parity_setup

ONE_CANDIDATE = [MEMORY_OFF, ReadCandidate("logit", ReadConfig(weight=1.0))]


def _scored_folds(monkeypatch) -> list[tuple[list[int], int]]:
    """Record, for every fold scored, the ids of its examples and the pairs the memory holds."""
    seen: list[tuple[list[int], int]] = []
    real = TaskModel._label_fold_scores

    def spy(self, part, target, lp, calibrate):
        seen.append(([id(e) for e in part], self.model.output_memory.memory.num_pairs))
        return real(self, part, target, lp, calibrate)

    monkeypatch.setattr(TaskModel, "_label_fold_scores", spy)
    return seen


@pytest.mark.parametrize(("share", "held"), [(0.25, 5), (0.5, 10), (0.7, 14), (1.0, 20)])
def test_the_share_held_out_is_scored_once_each_with_the_others_learned(monkeypatch, share, held):
    seen = _scored_folds(monkeypatch)
    examples = rule_examples(20)
    report = make_task().fit(examples, candidates=ONE_CANDIDATE, hold_out=share, progress=False)
    assert report.n_validation == held and len(report.validation_items) == held
    # every fold is scored by each candidate in turn: one candidate's folds are the held-out examples
    folds = seen[:: len(ONE_CANDIDATE)]
    ids = [i for part, _ in folds for i in part]
    assert len(ids) == len(set(ids)) == held
    if share == 1.0:
        assert set(ids) == {id(e) for e in examples}
    # label + end marker of every example whose input the fold does not hold: copies of a held-out
    # input (the rule's 12 inputs repeat) are left out of the memory too, held out or not
    by_id = {id(e): e for e in examples}
    for part, learned in seen:
        inputs = {by_id[i].input for i in part}
        assert learned == 2 * sum(e.input not in inputs for e in examples)


def test_the_default_holds_out_every_example():
    report = make_task().fit(rule_examples(20), candidates=ONE_CANDIDATE, progress=False)
    assert report.n_validation == 20


def test_max_validation_caps_the_share_held_out():
    report = make_task().fit(
        rule_examples(30), candidates=ONE_CANDIDATE, hold_out=1.0, max_validation=7, progress=False
    )
    assert report.n_validation == 7


def test_a_share_that_holds_none_out_keeps_the_memory_off_and_says_why():
    report = make_task().fit(rule_examples(20), hold_out=0.04, progress=False)
    assert report.chosen == MEMORY_OFF and report.n_validation == 0
    assert "none held out (hold_out 0.04" in report.metric


@pytest.mark.parametrize("share", [0, -0.5, 1.5, math.nan, "all", True])
def test_fit_names_a_hold_out_that_is_not_a_share(share):
    with pytest.raises(ValueError, match="hold_out must be a share of the examples in"):
        make_task().fit(rule_examples(20), hold_out=share, progress=False)


def test_cli_learn_holds_out_the_share_asked_and_names_a_bad_one(model_dir, tmp_path, capsys):  # noqa: F811
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "all", "--folds", "2", "--hold-out", "1"]) == 0
    capsys.readouterr()
    assert read_task(out, "all")[2]["info"]["fit"]["n_validation"] == 40
    assert main([*learn, "--task", "default", "--folds", "2"]) == 0
    assert read_task(out, "default")[2]["info"]["fit"]["n_validation"] == int(DEFAULT_HOLD_OUT * 40)
    capsys.readouterr()
    assert main([*learn, "--task", "bad", "--hold-out", "2"]) == 1
    assert "hold_out must be a share of the examples in (0, 1], got 2.0" in capsys.readouterr().err
