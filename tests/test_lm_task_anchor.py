"""The guard's anchor: the memory-off read-out the chosen read-out is tested against and falls back
on (the zero-shot model as it is, the better of it and its calibrated twin, the calibrated twin
when a sign-flip test prefers it, or when its predicted labels come in shares closer to the right
ones), in the choice, the fit and on the command line."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.cli import main
from faast.lm import ReadConfig
from faast.lm.fastweights import read_task
from faast.lm.task_choice import (
    ANCHORS,
    DEFAULT_ANCHOR,
    FALLBACK_ONLY_ANCHORS,
    GUARDS,
    LABEL_MIX_ANCHORS,
    MEMORY_OFF,
    SIGN_FLIP_LEVEL,
    ReadCandidate,
    anchor_candidate,
    candidate_tested_against,
    choose_read_out,
    default_candidates,
    label_mix_distance,
    sign_flip_p_value,
    significant_or_off,
)
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import make_task, rule_examples
from tests.test_task_cli import parity_setup

CALIBRATED_OFF = MEMORY_OFF.calibrated()
MEMORY = ReadCandidate("logit", ReadConfig(weight=1.0))
#: The anchors that read only the log-likelihoods.
LIKELIHOOD_ANCHORS = ("zero-shot", "best", "tested")


def _scores(off: list[float], calibrated: list[float], memory: list[float] | None = None) -> dict:
    per_item = {MEMORY_OFF.name: torch.tensor(off, dtype=torch.float64)}
    per_item[CALIBRATED_OFF.name] = torch.tensor(calibrated, dtype=torch.float64)
    if memory is not None:
        per_item[MEMORY.name] = torch.tensor(memory, dtype=torch.float64)
    return per_item


def test_the_anchors_are_the_likelihood_ones_and_the_label_mix_ones():
    assert set(ANCHORS) == set(LIKELIHOOD_ANCHORS) | set(LABEL_MIX_ANCHORS)
    assert set(FALLBACK_ONLY_ANCHORS) <= set(ANCHORS) and set(FALLBACK_ONLY_ANCHORS.values()) <= set(ANCHORS)


def test_each_likelihood_anchor_on_scores_made_to_tell_them_apart():
    n = 12
    items = torch.ones(n, dtype=torch.float64)
    both = [MEMORY_OFF, CALIBRATED_OFF]
    # calibrated better on every example: "best" and "tested" (p = 2**-12) take it
    clear = _scores([-1.0] * n, [-0.5] * n)
    assert [anchor_candidate(both, clear, items, a) for a in LIKELIHOOD_ANCHORS] == [
        MEMORY_OFF,
        CALIBRATED_OFF,
        CALIBRATED_OFF,
    ]
    # better on the mean by one large gain on one example: "best" takes it, the test does not
    lucky = _scores([-1.0] * n, [-1.1] * (n - 1) + [2.0])
    assert sign_flip_p_value(both, lucky, MEMORY_OFF) >= SIGN_FLIP_LEVEL
    assert [anchor_candidate(both, lucky, items, a) for a in LIKELIHOOD_ANCHORS] == [
        MEMORY_OFF,
        CALIBRATED_OFF,
        MEMORY_OFF,
    ]
    # the plain one better, or tied: every anchor keeps it
    for worse in ([-1.5] * n, [-1.0] * n):
        assert [anchor_candidate(both, _scores([-1.0] * n, worse), items, a) for a in LIKELIHOOD_ANCHORS] == [
            MEMORY_OFF
        ] * 3
    # no calibrated memory-off candidate, or no plain one
    assert anchor_candidate([MEMORY_OFF, MEMORY.calibrated()], clear, items, "best") == MEMORY_OFF
    assert anchor_candidate([CALIBRATED_OFF, MEMORY], clear, items, "best") is None
    with pytest.raises(
        ValueError, match="unknown anchor 'loose'; use one of zero-shot, best, tested, balanced"
    ):
        anchor_candidate(both, clear, items, "loose")
    assert DEFAULT_ANCHOR in ANCHORS


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=40))
def test_label_mix_distance_against_a_plain_reference(pairs):
    predicted = torch.tensor([p for p, _ in pairs])
    targets = torch.tensor([t for _, t in pairs])
    got, want = Counter(p for p, _ in pairs), Counter(t for _, t in pairs)
    reference = sum(abs(got[label] - want[label]) for label in range(7)) / (2 * len(pairs))
    assert label_mix_distance(predicted, targets) == pytest.approx(reference, abs=1e-12)
    assert 0.0 <= label_mix_distance(predicted, targets) <= 1.0


def test_label_mix_distance_names_bad_shapes():
    with pytest.raises(ValueError, match=r"two \(n,\) label indices with n >= 1, got \(3,\) and \(2,\)"):
        label_mix_distance(torch.tensor([0, 1, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="n >= 1"):
        label_mix_distance(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))


def test_each_label_mix_anchor_on_predictions_made_to_tell_them_apart():
    n = 12
    items = torch.ones(n, dtype=torch.float64)
    both = [MEMORY_OFF, CALIBRATED_OFF]
    targets = torch.tensor([0, 1] * (n // 2))
    skewed, spread = torch.zeros(n, dtype=torch.long), torch.tensor([1, 0, 0, 1] * (n // 4))
    plain_skewed = {MEMORY_OFF.name: skewed, CALIBRATED_OFF.name: spread}
    assert label_mix_distance(skewed, targets) == 0.5 and label_mix_distance(spread, targets) == 0.0
    # the calibrated predictions match the label mix: "balanced" takes it whatever the likelihoods,
    # "balanced-best" only when it is also the better by log-likelihood
    worse, better = _scores([-1.0] * n, [-1.2] * n), _scores([-1.0] * n, [-0.9] * n)
    assert anchor_candidate(both, worse, items, "balanced", plain_skewed, targets) == CALIBRATED_OFF
    assert anchor_candidate(both, worse, items, "balanced-best", plain_skewed, targets) == MEMORY_OFF
    assert anchor_candidate(both, better, items, "balanced-best", plain_skewed, targets) == CALIBRATED_OFF
    # equally far from the label mix (here: both match it): the plain one stays
    level = {MEMORY_OFF.name: spread, CALIBRATED_OFF.name: targets}
    for anchor in LABEL_MIX_ANCHORS:
        assert anchor_candidate(both, better, items, anchor, level, targets) == MEMORY_OFF
        with pytest.raises(
            ValueError, match=f"the '{anchor}' anchor needs the predicted and the right labels"
        ):
            anchor_candidate(both, better, items, anchor)


@pytest.mark.parametrize("seed", range(6))
def test_the_choice_tests_against_the_anchor_and_falls_back_on_it(seed):
    """Against a plain reference: every guard's choice with each anchor is the guard's choice with
    the anchor passed as the memory off, and the p-value is the sign-flip test against it."""
    gen = torch.Generator().manual_seed(seed)
    n = 10 + seed
    off = torch.randn(n, generator=gen, dtype=torch.float64) - 1
    per_item = _scores(
        off.tolist(),
        (off + 0.4 * torch.randn(n, generator=gen, dtype=torch.float64) + 0.1 * seed).tolist(),
        (off + 0.5 * torch.randn(n, generator=gen, dtype=torch.float64) + 0.15).tolist(),
    )
    candidates = [MEMORY_OFF, MEMORY, CALIBRATED_OFF]
    predicted = {c.name: torch.randint(0, 3, (n,), generator=gen) for c in candidates}
    targets = torch.randint(0, 3, (n,), generator=gen)
    items = torch.ones(n, dtype=torch.float64)
    best = max(candidates, key=lambda c: float(per_item[c.name].sum()))
    for anchor in ANCHORS:
        want_off = anchor_candidate(candidates, per_item, items, anchor, predicted, targets)
        tested = MEMORY_OFF if anchor in FALLBACK_ONLY_ANCHORS else want_off
        assert candidate_tested_against(candidates, anchor, want_off) == tested
        chosen, outcomes, p, against = choose_read_out(
            candidates, per_item, items, "sign-flip", anchor, predicted, targets
        )
        assert against == want_off
        assert p == sign_flip_p_value(candidates, per_item, tested)
        for g in GUARDS:
            assert outcomes[g] == significant_or_off(
                best, candidates, per_item, items, g, None, tested, want_off
            )
        assert chosen == outcomes["sign-flip"][0] and chosen in (best, want_off)
        if chosen != best:
            assert "kept off" in outcomes["sign-flip"][1]
            assert ("(calibrated)" in outcomes["sign-flip"][1]) == tested.calibrate


def test_a_fallback_only_anchor_tests_against_the_plain_zero_shot_model_and_falls_back_on_its_anchor():
    n = 12
    items = torch.ones(n, dtype=torch.float64)
    candidates = [MEMORY_OFF, MEMORY, CALIBRATED_OFF]
    targets = torch.tensor([0, 1] * (n // 2))
    skewed, spread = torch.zeros(n, dtype=torch.long), torch.tensor([1, 0, 0, 1] * (n // 4))
    predicted = {MEMORY_OFF.name: skewed, CALIBRATED_OFF.name: spread, MEMORY.name: targets}
    # the memory beats the plain model on every example (p = 2**-12), the calibrated one only on
    # half of them and by as much as it loses on the others: against balanced-best's anchor (the
    # calibrated one: closer mix, better likelihood) it is kept off, against the plain model kept
    per_item = _scores([-1.0] * n, [-0.5] * n, [-0.39, -0.6] * (n // 2))
    assert (
        anchor_candidate(candidates, per_item, items, "balanced-best", predicted, targets) == CALIBRATED_OFF
    )
    strict = choose_read_out(candidates, per_item, items, "sign-flip", "balanced-best", predicted, targets)
    loose = choose_read_out(
        candidates, per_item, items, "sign-flip", "balanced-best-fallback", predicted, targets
    )
    assert strict[2] >= SIGN_FLIP_LEVEL and strict[0] == CALIBRATED_OFF and strict[3] == CALIBRATED_OFF
    assert loose[2] < SIGN_FLIP_LEVEL and loose[0] == MEMORY and loose[3] == CALIBRATED_OFF
    # nothing clearly better than the plain model: kept off, and the fallback is the anchor's
    # read-out (the calibrated one is still the better by log-likelihood, not significantly)
    per_item[CALIBRATED_OFF.name] = per_item[MEMORY_OFF.name] + torch.tensor([0.3, -0.25] * (n // 2))
    per_item[MEMORY.name] = per_item[MEMORY_OFF.name] + torch.tensor([0.05, -0.05] * (n // 2))
    chosen, outcomes, p, against = choose_read_out(
        candidates, per_item, items, "sign-flip", "balanced-best-fallback", predicted, targets
    )
    assert chosen == against == CALIBRATED_OFF and p >= SIGN_FLIP_LEVEL
    assert "fell back on " + CALIBRATED_OFF.name in outcomes["sign-flip"][1]
    assert outcomes["one-se"][0] == CALIBRATED_OFF
    assert FALLBACK_ONLY_ANCHORS == {"balanced-best-fallback": "balanced-best"}


def test_fit_follows_the_anchor_and_names_an_unknown_one():
    examples = rule_examples(24)
    candidates = default_candidates("prob", "zero-shot")
    for anchor in ANCHORS:
        task = make_task(labels=["w40", "w41"])
        report = task.fit(examples, candidates=candidates, anchor=anchor, folds=3, progress=False)
        predicted, targets = report.validation_predicted, report.validation_targets
        want = choose_read_out(
            candidates,
            report.validation_loglik,
            report.validation_items,
            anchor=anchor,
            predicted=predicted,
            targets=targets,
        )
        for c in candidates:  # the predicted labels are those behind the right answers
            assert torch.equal(predicted[c.name] == targets, report.validation_correct[c.name])
        assert report.n_validation == len(examples)  # every example held out once: its right label too
        assert sorted(targets.tolist()) == sorted(task.spec.labels.index(e.output) for e in examples)
        assert report.chosen == want[0] and report.sign_flip_p == want[2]
        assert report.anchor == want[3].name and report.to_dict()["anchor"] == want[3].name
        assert task.calibrated == report.chosen.calibrate
    task = make_task(labels=["w40", "w41"])
    with pytest.raises(ValueError, match="unknown anchor 'loose'"):
        task.fit(examples, anchor="loose", progress=False)
    assert task.spec.labels == ["w40", "w41"]


def test_cli_learn_follows_the_anchor(model_dir, tmp_path, capsys):  # noqa: F811
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    for anchor in ("best", "balanced"):
        assert main([*learn, "--task", anchor, "--folds", "2", "--anchor", anchor]) == 0
        fit = read_task(out, anchor)[2]["info"]["fit"]
        assert fit["chosen_name"] == fit["decisions"]["sign-flip"]
        assert fit["anchor"] in (MEMORY_OFF.name, CALIBRATED_OFF.name)  # the default candidates hold both
    with pytest.raises(SystemExit):
        main([*learn, "--task", "bad", "--anchor", "loose"])
    assert "invalid choice: 'loose'" in capsys.readouterr().err


def test_cli_lists_every_anchor_and_calibrated_set_of_the_library():
    """`faast task learn` writes its --anchor and --calibrated choices out (importing them would load
    torch at start-up): they must stay the library's."""
    import argparse

    from faast.cli import build_parser
    from faast.lm.task_choice import CALIBRATED_SETS

    def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return sub.choices[name]

    learn = subparser(subparser(build_parser(), "task"), "learn")
    choices = {a.dest: a.choices for a in learn._actions}
    assert tuple(choices["anchor"]) == ANCHORS
    assert tuple(choices["calibrated"]) == tuple(CALIBRATED_SETS)
