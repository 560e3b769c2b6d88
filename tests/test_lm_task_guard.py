"""The guard between the read-out ``TaskModel.fit`` chooses and the memory switched off:
:func:`faast.lm.task_choice.sign_flip_p_value` and :func:`~faast.lm.task_choice.selection_gains`
against plain loops, the guards on pure noise and on a real gain against the one-standard-error
guard, and ``fit``'s ``guard`` argument."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.cli import main
from faast.lm import ReadConfig
from faast.lm.examples import Example
from faast.lm.fastweights import read_task
from faast.lm.task_choice import (
    GAIN_ROUNDING,
    GUARDS,
    MEMORY_OFF,
    SIGN_FLIP_LEVEL,
    ReadCandidate,
    selection_gains,
    sign_flip_p_value,
    significant_or_off,
)
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import make_task
from tests.test_task_cli import parity_setup


def _candidates(c: int) -> list[ReadCandidate]:
    return [MEMORY_OFF] + [ReadCandidate("logit", ReadConfig(weight=float(j + 1))) for j in range(c)]


def _selection_gains_loop(cands, per_item, off):
    """Plain reference: for each example, sum every candidate over the others, keep the first best."""
    n = len(per_item[off.name])
    out = []
    for i in range(n):
        best, best_total = None, None
        for c in cands:
            total = sum(float(per_item[c.name][j]) for j in range(n) if j != i)
            if best_total is None or total > best_total:
                best, best_total = c, total
        out.append(float(per_item[best.name][i]) - float(per_item[off.name][i]))
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 12),
    c=st.integers(1, 7),
    seed=st.integers(0, 2**31 - 1),
    ties=st.booleans(),
)
def test_selection_gains_match_a_plain_loop(n, c, seed, ties):
    gen = torch.Generator().manual_seed(seed)
    cands = _candidates(c)
    values = torch.randn(n, len(cands), generator=gen, dtype=torch.float64)
    if ties:  # rounded values make tied totals, which must go to the earlier candidate
        values = values.round()
    per_item = {cand.name: values[:, j] for j, cand in enumerate(cands)}
    got = selection_gains(cands, per_item, MEMORY_OFF)
    assert got.dtype == torch.float64 and got.shape == (n,)
    torch.testing.assert_close(got, _selection_gains_loop(cands, per_item, MEMORY_OFF), rtol=0, atol=1e-12)


def _sign_flip_p_loop(cands, per_item, off, studentize):
    """Plain reference: every sign vector, the best candidate's signed gain sum (over the gains'
    Euclidean norm when studentized) against the observed."""
    names = [c.name for c in cands if c != off]
    n = len(per_item[off.name])
    gains = {name: [float(per_item[name][i] - per_item[off.name][i]) for i in range(n)] for name in names}
    size = {name: sum(float(x) ** 2 for x in per_item[name]) ** 0.5 for name in [*names, off.name]}
    for name, g in gains.items():  # equal to off up to rounding: no gain
        if sum(x * x for x in g) ** 0.5 <= GAIN_ROUNDING * max(size[name], size[off.name]):
            gains[name] = [0.0] * n
    if studentize:
        norms = {name: sum(x * x for x in g) ** 0.5 for name, g in gains.items()}
        gains = {name: [x / norms[name] if norms[name] > 0 else 0.0 for x in g] for name, g in gains.items()}
    observed = max(sum(g) for g in gains.values())
    hits = 0
    for signs in itertools.product((1.0, -1.0), repeat=n):
        best = max(sum(s * x for s, x in zip(signs, g, strict=True)) for g in gains.values())
        hits += best >= observed - 1e-12 * max(1.0, abs(observed))
    return hits / 2**n


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 9),
    c=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    studentize=st.booleans(),
    copy_off=st.sampled_from([None, 0.0, 1e-16, 1e-9]),
)
def test_sign_flip_p_value_matches_every_sign_vector(n, c, seed, studentize, copy_off):
    gen = torch.Generator().manual_seed(seed)
    cands = _candidates(c)
    values = torch.randn(n, len(cands), generator=gen, dtype=torch.float64)
    if copy_off is not None:  # a candidate equal to the memory off (up to rounding): no gain
        values[:, 1] = values[:, 0] * (1 + copy_off * torch.randn(n, generator=gen, dtype=torch.float64))
    per_item = {cand.name: values[:, j] for j, cand in enumerate(cands)}
    got = sign_flip_p_value(cands, per_item, MEMORY_OFF, studentize=studentize)
    assert got == pytest.approx(_sign_flip_p_loop(cands, per_item, MEMORY_OFF, studentize), abs=1e-15)


def test_a_candidate_equal_to_off_up_to_rounding_changes_no_p_value():
    """A read-out equal to the memory off up to the rounding of its log-likelihoods (a calibrated
    zero-shot twin; 1e-15 apart, by the thread count) was studentised into a full-size random
    column: p rose by up to P(N(0, 1) ≥ t), here from 0.05 to above SIGN_FLIP_LEVEL."""
    gen = torch.Generator().manual_seed(10)
    cands = _candidates(2)
    n = 40
    base = -1.0 - torch.rand(n, generator=gen, dtype=torch.float64)
    real = base + 0.3 + torch.randn(n, generator=gen, dtype=torch.float64)  # a real, marginal gain
    alone = {MEMORY_OFF.name: base, cands[1].name: real, cands[2].name: base}
    twin = alone | {cands[2].name: base * (1 + 1e-16 * torch.randn(n, generator=gen, dtype=torch.float64))}
    assert not torch.equal(twin[cands[2].name], base)
    p_alone = sign_flip_p_value(cands, alone, MEMORY_OFF)
    assert sign_flip_p_value(cands, twin, MEMORY_OFF) == p_alone
    without = sign_flip_p_value(cands[:2], {k: v for k, v in alone.items() if k != cands[2].name}, MEMORY_OFF)
    assert p_alone == without


def test_sign_flip_p_value_by_random_signs():
    """With more examples than sign vectors to try, seeded random signs (and the identity): the
    same p for the same seed, near the exact share, and 1/(flips + 1) for a gain no flip reaches."""
    gen = torch.Generator().manual_seed(5)
    cands = _candidates(3)
    values = torch.randn(14, 4, generator=gen, dtype=torch.float64)
    per_item = {cand.name: values[:, j] for j, cand in enumerate(cands)}
    exact = sign_flip_p_value(cands, per_item, MEMORY_OFF, flips=2**14)
    sampled = sign_flip_p_value(cands, per_item, MEMORY_OFF, flips=2000, seed=1)
    assert sampled == sign_flip_p_value(cands, per_item, MEMORY_OFF, flips=2000, seed=1)
    assert abs(sampled - exact) < 4 * (exact * (1 - exact) / 2000) ** 0.5 + 1e-3
    # one candidate 1 better on every example, the others equal to the memory off: only the
    # identity reaches its gain (30 examples: a random draw of all + signs is out of reach)
    base = torch.randn(30, generator=gen, dtype=torch.float64)
    clear = {c.name: base for c in cands} | {cands[1].name: base + 1.0}
    assert sign_flip_p_value(cands, clear, MEMORY_OFF, flips=2000) == 1 / 2001
    few = {name: v[:12] for name, v in clear.items()}
    assert sign_flip_p_value(cands, few, MEMORY_OFF, flips=2**12) == 1 / 2**12  # every sign vector
    assert sign_flip_p_value([MEMORY_OFF], per_item, MEMORY_OFF) == 1.0


def _on_rate(guard: str, *, gain: float, n: int = 6, c: int = 60, trials: int = 300) -> float:
    """Share of trials in which ``guard`` keeps the best of ``c`` candidates on ``n`` examples;
    every candidate's per-example log-likelihood is the memory off's plus ``gain`` (the first
    candidate only) plus unit noise."""
    gen = torch.Generator().manual_seed(11)
    cands = _candidates(c)
    sizes = torch.ones(n, dtype=torch.float64)
    on = 0
    for _ in range(trials):
        base = -torch.rand(n, generator=gen, dtype=torch.float64)
        per_item = {MEMORY_OFF.name: base}
        for j, cand in enumerate(cands[1:]):
            per_item[cand.name] = base + (gain if j == 0 else 0.0) + torch.randn(n, generator=gen).double()
        best = max(cands, key=lambda x: float(per_item[x.name].sum()))
        on += significant_or_off(best, cands, per_item, sizes, guard)[0] != MEMORY_OFF
    return on / trials


def test_on_noise_the_selection_guard_keeps_the_memory_off_where_one_se_does_not():
    """60 candidates that are the memory off plus noise, 6 held-out examples: the best of them
    passes its own one-standard-error test nearly always; scored by choices made without each
    example, it passes about as often as one noisy candidate would (one-sided 1 s.e.: ~1 in 6)."""
    assert _on_rate("one-se", gain=0.0) > 0.8
    assert _on_rate("selection", gain=0.0) < 0.4
    assert _on_rate("sign-flip", gain=0.0) < SIGN_FLIP_LEVEL + 0.05
    assert _on_rate("none", gain=0.0) == 1.0


@pytest.mark.parametrize("guard", ["sign-flip", "selection", "one-se"])
def test_every_guard_keeps_a_clear_gain(guard):
    """One candidate two noise units better than the memory off on every example is kept."""
    assert _on_rate(guard, gain=2.0, n=12, trials=100) > 0.9


def test_significant_or_off_names_an_unknown_guard():
    per_item = {MEMORY_OFF.name: torch.zeros(3, dtype=torch.float64)}
    with pytest.raises(ValueError, match="unknown guard 'loose'"):
        significant_or_off(MEMORY_OFF, [MEMORY_OFF], per_item, torch.ones(3), "loose")


def _random_label_examples() -> list[Example]:
    gen = torch.Generator().manual_seed(3)
    a, b, c = (torch.randint(3, 30, (40,), generator=gen).tolist() for _ in range(3))
    return [Example(f"w{x} w{y}", "w40" if z % 2 else "w41") for x, y, z in zip(a, b, c, strict=True)]


def test_fit_reports_every_guards_choice_and_follows_the_one_asked():
    task = make_task()
    examples = _random_label_examples()
    reports = {g: task.fit(examples, guard=g, progress=False) for g in GUARDS}
    decisions = reports["none"].decisions
    assert set(decisions) == set(GUARDS)
    for g, report in reports.items():
        assert report.decisions == decisions  # the same scores, whichever guard is followed
        assert report.chosen.name == decisions[g]
        assert report.to_dict()["decisions"] == decisions
    best = max(reports["none"].criterion, key=reports["none"].criterion.get)
    assert decisions["none"] == best


def test_fit_names_an_unknown_guard():
    with pytest.raises(ValueError, match="unknown guard 'strict'"):
        make_task().fit(_random_label_examples(), guard="strict", progress=False)


def test_cli_learn_follows_the_guard_and_names_an_unknown_one(model_dir, tmp_path, capsys):  # noqa: F811
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "loose", "--folds", "2", "--guard", "none"]) == 0
    capsys.readouterr()
    fit = read_task(out, "loose")[2]["info"]["fit"]
    assert fit["chosen_name"] == fit["decisions"]["none"] and set(fit["decisions"]) == set(GUARDS)
    assert 0 < fit["sign_flip_p"] <= 1
    assert main([*learn, "--task", "bad", "--guard", "strict"]) == 1
    assert "unknown guard 'strict'" in capsys.readouterr().err


def test_studentized_sign_flips_are_not_set_by_the_widest_swinging_candidate():
    """A candidate 0.3 better on each of 12 examples beside one whose gains swing by ±3 on 11: on raw
    sums the swinging one's flips reach the steady gain often; studentized, the steady gain is
    the most extreme t there is (only the identity reaches it)."""
    cands = _candidates(2)
    base = torch.zeros(12, dtype=torch.float64)
    swing = 3.0 * torch.tensor([1.0, -1.0] * 5 + [1.0, 0.0], dtype=torch.float64)  # its best t: √11
    per_item = {MEMORY_OFF.name: base, cands[1].name: base + 0.3, cands[2].name: swing}
    assert sign_flip_p_value(cands, per_item, MEMORY_OFF, studentize=False) > 0.2
    assert sign_flip_p_value(cands, per_item, MEMORY_OFF) == 1 / 2**12
