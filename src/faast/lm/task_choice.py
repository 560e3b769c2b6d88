"""Which read-out a task uses: the candidates :meth:`faast.lm.task.TaskModel.fit` compares on
validation data, the memory switched off (the zero-shot model), the guard that keeps it off unless
a read-out clearly beats it (:func:`choose_read_out`), and the seeded validation split of the
examples."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from faast.lm.config import ReadConfig
from faast.lm.examples import Example


@dataclass(frozen=True)
class ReadCandidate:
    """One way to read a task's statistics: the output mix and the read knobs; ``calibrate``: the
    label scores so read are contextually calibrated (:mod:`faast.lm.calibration`: the labels'
    probabilities after content-free inputs, read the same way, divided out; labels only)."""

    mix: str
    read: ReadConfig
    calibrate: bool = False

    @property
    def name(self) -> str:
        r = self.read

        def fmt(x: Any) -> str:
            return "default" if x is None else (x if isinstance(x, str) else f"{x:g}")

        if self.mix == "logit":
            knobs = f"β={fmt(r.weight)}"
        elif self.mix == "correction":
            knobs = f"β={fmt(r.weight)},c={fmt(r.damping)}"
        else:
            knobs = f"λ={fmt(r.weight)},T={fmt(r.temperature)}" + (
                "" if r.gate is None else f",θ={fmt(r.gate)}"
            )
        name = f"{self.mix}({knobs};{'default' if r.cut is None else r.cut})"
        return name + ("+calibrated" if self.calibrate else "")

    def to_dict(self) -> dict[str, Any]:
        return {"mix": self.mix, "read": self.read.to_dict(), "calibrate": self.calibrate}

    def calibrated(self) -> ReadCandidate:
        """The same read-out with its label scores contextually calibrated."""
        return ReadCandidate(self.mix, self.read, calibrate=True)


#: The memory switched off (weight 0): the zero-shot model. :meth:`TaskModel.fit` keeps it when there
#: are too few examples to validate a read-out, or when no read-out beats it by more than one
#: standard error on validation data. (Reading an unvalidated share of a memory that holds one or
#: two examples pulls every answer towards theirs: measured on the sentiment benchmark, Gemma-3-270M
#: with one example fell from 53.6 % zero-shot to 47.6 %.) ``TaskModel.use`` reads it anyway.
MEMORY_OFF = ReadCandidate("prob", ReadConfig(weight=0.0, temperature=1.0, gate=None))
#: Kept for compatibility: the read-out of tasks too small to validate on (now the memory off).
TASK_DEFAULT_READ = MEMORY_OFF


def memory_off(mix: str = "prob") -> ReadCandidate:
    """The memory switched off for a model whose output memory has ``mix``: :data:`MEMORY_OFF`
    for the "prob"/"logit" statistics, the "correction" read with β = 0 for its own."""
    if mix == "correction":
        return ReadCandidate("correction", ReadConfig(weight=0.0))
    return MEMORY_OFF


#: Which contextually calibrated read-outs :func:`default_candidates` adds for a labelled task:
#: "none", "zero-shot" (the memory off, calibrated: the zero-shot model with its label preference
#: after content-free inputs divided out) or "all" (a calibrated twin of every candidate).
CALIBRATED_SETS = ("none", "zero-shot", "all")
#: What :func:`default_candidates` adds unless told (chosen on development sentences by a rule
#: fixed before the run: benchmarks/results/lm_calibrated_candidates/rule.md).
DEFAULT_CALIBRATED = "all"


def default_candidates(mix: str = "prob", calibrated: str = DEFAULT_CALIBRATED) -> list[ReadCandidate]:
    """The read-outs :meth:`TaskModel.fit` compares on validation data for an output memory learned
    with ``mix``: the memory off (the zero-shot model) and

    * "prob"/"logit" statistics: the ungated "prob" mix over λ × T, the "logit" mix over β, each
      with the power-law cut α ∈ {0.5, 1} and GCV;
    * "correction": the step β ∈ {0.25, 0.5, 1} × damping c ∈ {0.1, 0.3, 1}, each with the
      read-out's default cut (a ridge worth 2·key_dim pseudo-pairs) and with the paper's α = 1;

    then the calibrated read-outs of ``calibrated`` (:data:`CALIBRATED_SETS`; :meth:`TaskModel.fit`
    drops them for free-form outputs): none, the memory off calibrated, or a calibrated twin of
    every candidate, in that order after the plain ones (so each set's candidates come first in the
    next, and a choice among fewer is the choice among the first of them).
    """
    if calibrated not in CALIBRATED_SETS:
        raise ValueError(f"unknown calibrated set {calibrated!r}; use one of {', '.join(CALIBRATED_SETS)}")
    plain = _plain_candidates(mix)
    if calibrated == "zero-shot":
        return [*plain, memory_off(mix).calibrated()]
    if calibrated == "all":
        return plain + [c.calibrated() for c in plain]
    return plain


def _plain_candidates(mix: str) -> list[ReadCandidate]:
    """:func:`default_candidates` before the calibrated ones."""
    if mix == "correction":
        return [memory_off(mix)] + [
            ReadCandidate("correction", ReadConfig(cut=cut, weight=b, damping=c))
            for cut in (None, "alpha=1")
            for b in (0.25, 0.5, 1.0)
            for c in (0.1, 0.3, 1.0)
        ]
    if mix not in ("prob", "logit"):
        raise ValueError(f"no default read-out candidates for the {mix!r} mix; pass candidates=")
    cuts = ["alpha=1", "alpha=0.5", "gcv"]
    out = [MEMORY_OFF]
    for cut in cuts:
        out += [
            ReadCandidate("prob", ReadConfig(cut=cut, weight=lam, temperature=t, gate=None))
            for lam in (0.1, 0.3, 0.5, 0.8, 1.0)
            for t in (0.02, 0.05, 0.1, 0.3)
        ]
        out += [ReadCandidate("logit", ReadConfig(cut=cut, weight=b)) for b in (0.3, 1.0, 3.0, 10.0, 30.0)]
    return out


#: The guards :meth:`faast.lm.task.TaskModel.fit` can put between the best read-out and the memory
#: switched off: "sign-flip" compares the winner's gain with the best gain of any candidate when the
#: per-example gains get random signs (:func:`sign_flip_p_value`); "selection" tests the gain of the
#: choice made without each example (:func:`selection_gains`); "one-se" tests the winner's own
#: gain, which is biased upwards by having been chosen on the same examples; "none" keeps it.
GUARDS = ("sign-flip", "selection", "one-se", "none")
#: The guard :meth:`faast.lm.task.TaskModel.fit` uses unless told: chosen on development sentences
#: no test set contains (benchmarks/lm_guard.py, docs/tasks.md "When the memory stays off").
DEFAULT_GUARD = "sign-flip"
#: "sign-flip" keeps the memory on when its p-value is below this.
SIGN_FLIP_LEVEL = 0.1
#: Random sign vectors of the "sign-flip" guard when there are more than this many in all (else all).
SIGN_FLIPS = 4095


def sign_flip_p_value(
    candidates: Sequence[ReadCandidate],
    per_item: dict[str, torch.Tensor],
    off: ReadCandidate,
    flips: int = SIGN_FLIPS,
    seed: int = 0,
    studentize: bool = True,
) -> float:
    """How often some candidate gains this much over ``off`` by chance: the share of sign vectors
    s (every one of the 2^n when 2^n <= flips + 1, else ``flips`` seeded random ones and the
    identity) for which max over candidates of t_c(s) reaches its value at s = (1, ..., 1), where
    d_c[i] = ll_c[i] - ll_off[i] and t_c(s) = sum_i s_i d_c[i] / ||d_c|| (``studentize``: a
    t-like statistic, the same under every s, so that candidates whose gains swing widely do not
    set the bar for steady ones) or sum_i s_i d_c[i] (raw). Under the null that each example's
    gains are as likely negated (no candidate helps), this is a p-value for the best of all
    candidates, however many and however alike (the single-step max statistic of Westfall &
    Young's resampling tests).

    per_item: candidate name -> (n,) float64 log-likelihood per example. Returns p in (0, 1]."""
    others = [c for c in candidates if c != off]
    if not others:
        return 1.0
    base = per_item[off.name].to(torch.float64)
    lls = [per_item[c.name].to(torch.float64) for c in others]
    gains = torch.stack([ll - base for ll in lls], dim=1)  # (n, C)
    # a candidate equal to off up to the rounding of its log-likelihoods gains nothing (GAIN_ROUNDING)
    scale = torch.stack([torch.maximum(ll.norm(), base.norm()) for ll in lls])
    return max_gain_p_value(gains, flips, seed, studentize, rounding=GAIN_ROUNDING * scale)


#: A candidate whose gains over the memory off (a vector over the examples) are at most this
#: fraction of the larger of the two log-likelihood vectors' norms is taken as equal to off (gains
#: 0). Studentised, such rounding noise (1e-15 of the log-likelihoods: sums whose order changes with
#: the thread count) became a full-size random column, which raised the sign-flip p-value by up to
#: P(N(0, 1) ≥ t) — by thread count, and across SIGN_FLIP_LEVEL (tests/test_lm_task_guard.py). 1e-6
#: also holds the rounding of log-likelihoods computed in float32; a read-out that changes them
#: by so little changes no prediction.
GAIN_ROUNDING = 1e-6


def max_gain_p_value(
    gains: torch.Tensor,
    flips: int = SIGN_FLIPS,
    seed: int = 0,
    studentize: bool = True,
    rounding: torch.Tensor | None = None,
) -> float:
    """The sign-flip p-value of :func:`sign_flip_p_value` for gains (n, C): d_c[i], what candidate
    c gains over the reference on example i. ``rounding`` (C,): a candidate whose gains' norm is
    at most its entry is taken as equal to the reference (gains 0: studentised, rounding noise
    would be a full-size column). Returns p in (0, 1]."""
    gains = gains.to(torch.float64)
    n = gains.shape[0]
    if rounding is not None:
        gains = torch.where(gains.norm(dim=0) <= rounding.to(torch.float64), 0.0, gains)
    if studentize:  # a candidate equal to the memory off stays at 0
        gains = gains / gains.norm(dim=0).clamp_min(torch.finfo(torch.float64).tiny)
    observed = float(gains.sum(dim=0).max())
    if n <= 20 and 2**n <= flips + 1:  # every sign vector, the identity among them
        codes = torch.arange(2**n)[:, None]
        signs = 1.0 - 2.0 * ((codes >> torch.arange(n)) & 1).to(torch.float64)  # (2^n, n)
        extra = 0
    else:
        gen = torch.Generator().manual_seed(seed)
        signs = 1.0 - 2.0 * torch.randint(0, 2, (flips, n), generator=gen).to(torch.float64)
        extra = 1  # the identity, counted once
    maxima = (signs @ gains).max(dim=1).values  # (flips,)
    tol = 1e-12 * max(1.0, abs(observed))
    return (int((maxima >= observed - tol).sum()) + extra) / (len(maxima) + extra)


def selection_gains(
    candidates: Sequence[ReadCandidate], per_item: dict[str, torch.Tensor], off: ReadCandidate
) -> torch.Tensor:
    """The gain of choosing a read-out over the memory switched off, each example scored by a
    choice made without it: for example i, the candidate with the best summed log-likelihood over
    the other examples (ties: the earlier candidate) is compared with ``off`` on example i.

    per_item: candidate name -> (n,) float64 log-likelihood per example (summed over its items).
    Returns (n,) float64: per_item[choice without i][i] - per_item[off][i]. Choosing among many
    candidates on n examples finds one that looks better by chance; these gains do not see it, but
    they share their choices, so a standard error that takes them as independent is too small
    (tests/test_lm_task_guard.py: on pure noise the "selection" guard keeps the memory on about
    one time in three, "sign-flip" at about its level)."""
    ll = torch.stack([per_item[c.name] for c in candidates], dim=1).to(torch.float64)  # (n, C)
    without = ll.sum(dim=0, keepdim=True) - ll  # (n, C): each candidate's total over the others
    choice = without.argmax(dim=1)  # torch returns the first of tied maxima
    return ll.gather(1, choice[:, None]).squeeze(1) - per_item[off.name].to(torch.float64)


def checked_guard(guard: str) -> str:
    """``guard`` when it is one of :data:`GUARDS`; a clear error otherwise."""
    if guard not in GUARDS:
        raise ValueError(f"unknown guard {guard!r}; use one of {', '.join(GUARDS)}")
    return guard


def off_candidate(candidates: Sequence[ReadCandidate]) -> ReadCandidate | None:
    """The memory switched off among ``candidates`` (the first uncalibrated one with weight 0: the
    zero-shot model as it is), or None."""
    return next((c for c in candidates if c.read.weight == 0 and not c.calibrate), None)


#: What the guard falls back on, and tests the choice against, when ``candidates`` hold the memory
#: off both plain and calibrated: "zero-shot" the zero-shot model as it is (:func:`off_candidate`);
#: "best" the memory-off read-out with the better held-out log-likelihood per item (neither learned
#: the held-out examples, so their scores there are a fair comparison); "tested" the calibrated one
#: only when it beats the plain one by the sign-flip test between the two (:data:`SIGN_FLIP_LEVEL`);
#: "balanced" the calibrated one when its predicted labels on the held-out examples come in shares
#: closer to the examples' own labels than the plain one's (:func:`label_mix_distance`: a signal
#: from how the predictions spread over the labels, not from which examples each gets right);
#: "balanced-best" only when it is also the better by held-out log-likelihood;
#: "balanced-best-fallback" falls back on the read-out of "balanced-best" but tests the choice
#: against the zero-shot model as it is (:data:`FALLBACK_ONLY_ANCHORS`): a read-out that clearly
#: beats the uncalibrated model is kept even where it does not clearly beat the calibrated one.
ANCHORS = ("zero-shot", "best", "tested", "balanced", "balanced-best", "balanced-best-fallback")
#: The anchors that only say what the guard falls back on -> the anchor whose read-out that is; the
#: guard tests the choice against the zero-shot model as it is (:func:`candidate_tested_against`).
FALLBACK_ONLY_ANCHORS = {"balanced-best-fallback": "balanced-best"}
#: The anchor of :meth:`faast.lm.task.TaskModel.fit` unless told: "balanced-best" since 2026-12-03
#: night ("tested" that evening, "zero-shot" before), each chosen on development sentences by a rule
#: fixed before the run (benchmarks/results/lm_guard_label_mix/, lm_guard_anchor/).
DEFAULT_ANCHOR = "balanced-best"
#: The anchors that read the predicted labels (:func:`anchor_candidate`'s ``predicted``).
LABEL_MIX_ANCHORS = ("balanced", "balanced-best", "balanced-best-fallback")


def checked_anchor(anchor: str) -> str:
    """``anchor`` when it is one of :data:`ANCHORS`; a clear error otherwise."""
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}; use one of {', '.join(ANCHORS)}")
    return anchor


def label_mix_distance(predicted: torch.Tensor, targets: torch.Tensor) -> float:
    """How far the shares of the labels in ``predicted`` are from their shares in ``targets``: the
    total variation distance 1/2 sum_l |#{predicted = l} - #{targets = l}| / n, in [0, 1] (0: each
    label predicted as often as it is right, whichever examples get it).

    predicted, targets: (n,) label indices, n >= 1."""
    if predicted.shape != targets.shape or predicted.ndim != 1 or len(predicted) == 0:
        raise ValueError(
            f"predicted and targets must be two (n,) label indices with n >= 1, got "
            f"{tuple(predicted.shape)} and {tuple(targets.shape)}"
        )
    size = int(max(predicted.max(), targets.max())) + 1
    shares = [torch.bincount(t.long(), minlength=size).to(torch.float64) for t in (predicted, targets)]
    return 0.5 * float((shares[0] - shares[1]).abs().sum()) / len(predicted)


def anchor_candidate(
    candidates: Sequence[ReadCandidate],
    per_item: dict[str, torch.Tensor],
    items: torch.Tensor,
    anchor: str = DEFAULT_ANCHOR,
    predicted: dict[str, torch.Tensor] | None = None,
    targets: torch.Tensor | None = None,
) -> ReadCandidate | None:
    """The memory-off read-out of ``anchor`` (:data:`ANCHORS`) among ``candidates``: the plain one
    (:func:`off_candidate`) unless ``anchor`` prefers a calibrated one on the held-out scores; None
    without a plain memory-off candidate.

    per_item: candidate name -> (n,) float64 log-likelihood per example; items: (n,) items per
    example; predicted: candidate name -> (n,) index of its best-scored label per example and
    targets: (n,) index of the right label (both needed by :data:`LABEL_MIX_ANCHORS`)."""
    rule = FALLBACK_ONLY_ANCHORS.get(checked_anchor(anchor), anchor)
    off = off_candidate(candidates)
    calibrated = [c for c in candidates if c.read.weight == 0 and c.calibrate]
    if off is None or not calibrated or rule == "zero-shot":
        return off
    count = items.sum()

    def mean(c: ReadCandidate) -> float:
        return float(per_item[c.name].sum() / count)

    if rule in LABEL_MIX_ANCHORS:
        if predicted is None or targets is None:
            raise ValueError(f"the {anchor!r} anchor needs the predicted and the right labels")
        gap = {c.name: label_mix_distance(predicted[c.name], targets) for c in [off, *calibrated]}
        closer = [c for c in calibrated if gap[c.name] < gap[off.name]]
        if rule == "balanced-best":
            closer = [c for c in closer if mean(c) > mean(off)]
        return min(closer, key=lambda c: gap[c.name]) if closer else off  # ties: the earlier
    best = max([off, *calibrated], key=mean)  # ties: the plain one
    if rule == "best" or best == off:
        return best
    return best if sign_flip_p_value([off, *calibrated], per_item, off) < SIGN_FLIP_LEVEL else off


def candidate_tested_against(
    candidates: Sequence[ReadCandidate], anchor: str, anchor_read_out: ReadCandidate | None
) -> ReadCandidate | None:
    """What the guard tests the choice against: the zero-shot model as it is
    (:func:`off_candidate`) for :data:`FALLBACK_ONLY_ANCHORS`, else ``anchor_read_out`` (the
    read-out of :func:`anchor_candidate`, which it also falls back on)."""
    return off_candidate(candidates) if checked_anchor(anchor) in FALLBACK_ONLY_ANCHORS else anchor_read_out


def significant_or_off(
    best: ReadCandidate,
    candidates: Sequence[ReadCandidate],
    per_item: dict[str, torch.Tensor],
    sizes: torch.Tensor,
    guard: str = DEFAULT_GUARD,
    sign_flip_p: float | None = None,
    off: ReadCandidate | None = None,
    fallback: ReadCandidate | None = None,
) -> tuple[ReadCandidate, str]:
    """The guard against choosing on noise: keep ``best`` only if a gain in log-likelihood per item
    over the memory switched off (a candidate with weight 0, when there is one) exceeds one standard
    error of its per-example differences; else the memory stays off (the zero-shot model).

    guard: "sign-flip" keeps ``best`` when :func:`sign_flip_p_value` < :data:`SIGN_FLIP_LEVEL`
    (the selection among candidates accounted for), "selection" tests :func:`selection_gains`
    (each example scored by the choice made without it), "one-se" the gains of ``best`` itself
    (chosen on the same examples: a winner of many candidates on few examples passes by chance),
    "none" keeps ``best``.
    per_item: candidate name -> (n,) log-likelihood per example; sizes: (n,) items per example;
    sign_flip_p: :func:`sign_flip_p_value` of these scores when the caller has it already;
    off: the memory-off read-out to test against and fall back on (default :func:`off_candidate`;
    :func:`anchor_candidate` may give a calibrated one); fallback: what to fall back on instead
    when it is not ``off`` (:data:`FALLBACK_ONLY_ANCHORS`: ``off`` the zero-shot model as it is,
    ``fallback`` the read-out of their anchor).
    Returns the choice and a note for the report."""
    checked_guard(guard)
    off = off_candidate(candidates) if off is None else off
    if off is None or best == off or guard == "none":
        return best, ""
    what_off = "the memory off" + (" (calibrated)" if off.calibrate else "")
    fallback = off if fallback is None else fallback
    falls = "" if fallback == off else f", fell back on {fallback.name}"
    if guard == "sign-flip":
        p = sign_flip_p_value(candidates, per_item, off) if sign_flip_p is None else sign_flip_p
        if p < SIGN_FLIP_LEVEL:
            return best, f"; {best.name} over {what_off}: sign-flip p = {p:.4f} < {SIGN_FLIP_LEVEL}"
        return fallback, f"; best {best.name} over {what_off}: sign-flip p = {p:.4f}: kept off{falls}"
    if guard == "selection":
        diff, what = selection_gains(candidates, per_item, off), "choosing without each example"
    else:
        diff, what = per_item[best.name] - per_item[off.name], f"{best.name}"
    n = len(diff)
    gain = float(diff.sum() / sizes.sum())
    se = float(diff.std(unbiased=True) * n**0.5 / sizes.sum()) if n > 1 else float("inf")
    if gain > se:
        return best, f"; gain of {what} over {what_off} {gain:.4f} ± {se:.4f} (1 s.e.)"
    return fallback, (
        f"; gain of {what} over {what_off} {gain:.4f} < 1 s.e. {se:.4f}: kept off (best {best.name}){falls}"
    )


def choose_read_out(
    candidates: Sequence[ReadCandidate],
    per_item: dict[str, torch.Tensor],
    items: torch.Tensor,
    guard: str = DEFAULT_GUARD,
    anchor: str = DEFAULT_ANCHOR,
    predicted: dict[str, torch.Tensor] | None = None,
    targets: torch.Tensor | None = None,
) -> tuple[ReadCandidate, dict[str, tuple[ReadCandidate, str]], float | None, ReadCandidate | None]:
    """The choice among ``candidates`` from their held-out scores: the best mean log-likelihood per
    item (ties: the earlier candidate), then every guard of :data:`GUARDS` between it and the memory
    off of ``anchor`` (:func:`anchor_candidate`, :func:`significant_or_off`), all from the same
    scores.

    per_item: candidate name -> (n,) float64 log-likelihood per held-out example (any superset of
    ``candidates``: a choice among some of the candidates scored is the choice a fit with only
    them would make); items: (n,) items per example; predicted, targets: the labels each candidate
    predicts and the right ones, for the anchors that read them (:func:`anchor_candidate`).
    Returns (the choice of ``guard``, guard -> (choice, note), the sign-flip p-value against what
    the guard tests (:func:`candidate_tested_against`), the anchor's read-out, which it falls back on; both
    None without a memory-off candidate)."""
    checked_guard(guard)
    count = items.sum()
    mean = {c.name: float(per_item[c.name].sum() / count) for c in candidates}
    best = max(candidates, key=lambda c: mean[c.name])  # max keeps the first of tied maxima
    off = anchor_candidate(candidates, per_item, items, anchor, predicted, targets)
    tested = candidate_tested_against(candidates, anchor, off)
    p_value = None if tested is None else sign_flip_p_value(candidates, per_item, tested)
    outcomes = {
        g: significant_or_off(best, candidates, per_item, items, g, p_value, tested, off) for g in GUARDS
    }
    return outcomes[guard][0], outcomes, p_value, off


def split_examples(
    examples: Sequence[Example], n_val: int, labels: Sequence[str] | None, seed: int
) -> tuple[list[Example], list[Example]]:
    """(fit, validation) with at most ``n_val`` validation examples (seeded), stratified by label
    when there are labels: the split :meth:`TaskModel.fit` holds out, for baselines that must
    choose their settings on the same examples.

    With labels, each label with at least two examples gives its share ``n_val / len(examples)`` of
    them (at least one); a label with a single example gives none (holding out its only example
    would leave the label unseen by the memory), so fewer than ``n_val`` may be held out, and none
    when every label has a single example. When the shares, rounded, come to more than ``n_val``,
    the labels are taken in turn (round-robin: each label's first, then each label's second, ...)
    up to ``n_val``, so that the cap trims the labels with the most examples held out, never a
    whole label by its position."""
    if n_val == 0:
        return list(examples), []
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    if labels is not None:  # round-robin over labels so the split keeps the label mix
        by_label: dict[str, list[int]] = {}
        for i in order:
            by_label.setdefault(examples[i].output, []).append(i)  # type: ignore[arg-type]
        share = n_val / len(examples)
        quotas = [idx[: max(1, round(share * len(idx)))] if len(idx) > 1 else [] for idx in by_label.values()]
        turns = itertools.zip_longest(*quotas)  # each label's first, then each label's second, ...
        val = set([i for turn in turns for i in turn if i is not None][:n_val])
    else:
        val = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val], [
        e for i, e in enumerate(examples) if i in val
    ]


__all__ = [
    "ANCHORS",
    "CALIBRATED_SETS",
    "DEFAULT_ANCHOR",
    "DEFAULT_CALIBRATED",
    "DEFAULT_GUARD",
    "FALLBACK_ONLY_ANCHORS",
    "GAIN_ROUNDING",
    "GUARDS",
    "LABEL_MIX_ANCHORS",
    "MEMORY_OFF",
    "SIGN_FLIPS",
    "SIGN_FLIP_LEVEL",
    "TASK_DEFAULT_READ",
    "ReadCandidate",
    "anchor_candidate",
    "candidate_tested_against",
    "checked_anchor",
    "checked_guard",
    "choose_read_out",
    "default_candidates",
    "label_mix_distance",
    "max_gain_p_value",
    "memory_off",
    "off_candidate",
    "selection_gains",
    "sign_flip_p_value",
    "significant_or_off",
    "split_examples",
]
