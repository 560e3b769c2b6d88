"""Which read-out a task uses: the candidates :meth:`faast.lm.task.TaskModel.fit` compares on
validation data, the memory switched off (the zero-shot model), the one-standard-error guard that
keeps it off unless a read-out clearly beats it, and the seeded validation split of the examples."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from faast.lm.config import ReadConfig
from faast.lm.examples import Example


@dataclass(frozen=True)
class ReadCandidate:
    """One way to read a task's statistics: the output mix and the read knobs."""

    mix: str
    read: ReadConfig

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
        return f"{self.mix}({knobs};{'default' if r.cut is None else r.cut})"

    def to_dict(self) -> dict[str, Any]:
        return {"mix": self.mix, "read": self.read.to_dict()}


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


def default_candidates(mix: str = "prob") -> list[ReadCandidate]:
    """The read-outs :meth:`TaskModel.fit` compares on validation data for an output memory learned
    with ``mix``: the memory off (the zero-shot model) and

    * "prob"/"logit" statistics: the ungated "prob" mix over λ × T, the "logit" mix over β, each
      with the power-law cut α ∈ {0.5, 1} and GCV;
    * "correction": the step β ∈ {0.25, 0.5, 1} × damping c ∈ {0.1, 0.3, 1}, each with the
      read-out's default cut (a ridge worth 2·key_dim pseudo-pairs) and with the paper's α = 1.
    """
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


def significant_or_off(
    best: ReadCandidate,
    candidates: Sequence[ReadCandidate],
    per_item: dict[str, torch.Tensor],
    sizes: torch.Tensor,
) -> tuple[ReadCandidate, str]:
    """The one-standard-error guard against choosing on noise: keep ``best`` only if its gain in
    log-likelihood per item over the memory switched off (a candidate with weight 0, when there
    is one) exceeds one standard error of the paired per-example differences; else the memory
    stays off (the zero-shot model). Returns the choice and a note for the report."""
    off = next((c for c in candidates if c.read.weight == 0), None)
    if off is None or best == off:
        return best, ""
    diff = per_item[best.name] - per_item[off.name]  # per example, summed over its items
    n = len(diff)
    gain = float(diff.sum() / sizes.sum())
    se = float(diff.std(unbiased=True) * n**0.5 / sizes.sum()) if n > 1 else float("inf")
    if gain > se:
        return best, f"; gain over the memory off {gain:.4f} ± {se:.4f} (1 s.e.)"
    return off, f"; best {best.name} gained {gain:.4f} < 1 s.e. {se:.4f} over the memory off: kept off"


def split_examples(
    examples: Sequence[Example], n_val: int, labels: Sequence[str] | None, seed: int
) -> tuple[list[Example], list[Example]]:
    """(fit, validation) with ``n_val`` validation examples (seeded), stratified by label when there
    are labels: the split :meth:`TaskModel.fit` holds out, for baselines that must choose their
    settings on the same examples."""
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
        val_idx = []
        for idx in by_label.values():
            val_idx += idx[: max(1, round(share * len(idx)))] if len(idx) > 1 else []
        val = set(val_idx[:n_val])
    else:
        val = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val], [
        e for i, e in enumerate(examples) if i in val
    ]


__all__ = [
    "MEMORY_OFF",
    "TASK_DEFAULT_READ",
    "ReadCandidate",
    "default_candidates",
    "memory_off",
    "significant_or_off",
    "split_examples",
]
