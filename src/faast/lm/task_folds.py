"""Cross-validation folds of :meth:`faast.lm.task.TaskModel.fit` when examples come in groups
(``groups=``: whole groups held out together, so that a fold is scored on groups it never learned;
without them, the copies of an input, :func:`copies_as_groups`), and the checks of its
cross-validation settings."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence

from faast._checks import caller_stacklevel, integer_at_least
from faast.lm.examples import Example


def groups_by_example(
    examples: Sequence[Example], groups: Sequence[Hashable] | None
) -> dict[int, Hashable] | None:
    """``id(example)`` → its group for :meth:`~faast.lm.task.TaskModel.fit`'s ``groups`` (None
    without them); a clear error for a length that is not the examples', an unhashable group or
    fewer than two."""
    if groups is None:
        return None
    groups = list(groups)
    if len(groups) != len(examples):
        raise ValueError(f"groups: {len(groups)} groups for {len(examples)} examples (one per example)")
    for i, g in enumerate(groups):
        if g is None or not isinstance(g, Hashable):
            raise ValueError(f"groups: example {i}'s group {g!r} is not a hashable value (None is no group)")
    if len(set(groups)) < 2:
        raise ValueError("groups: at least two groups are needed to hold one out")
    return {id(e): g for e, g in zip(examples, groups, strict=True)}


def copies_as_groups(examples: Sequence[Example]) -> tuple[dict[int, Hashable] | None, int]:
    """(``id(example)`` → its input text, how many examples repeat an earlier one's input) when
    some examples share an input, else (None, 0): without ``groups``, :meth:`~faast.lm.task.TaskModel.fit`
    holds the copies of an input out together (:func:`group_folds`), so that no fold is scored on
    an example whose copy it learned (a file holding each example twice scored memorised copies:
    random labels reached a cross-validated accuracy of 1.0). Without copies the folds are those
    of single examples, as before."""
    repeats = len(examples) - len({e.input for e in examples})
    if repeats == 0:
        return None, 0
    return {id(e): e.input for e in examples}, repeats


def copies_across_groups(examples: Sequence[Example], group_of: dict[int, Hashable]) -> int:
    """How many input texts have copies in more than one group of ``group_of``."""
    first: dict[str, Hashable] = {}
    spread = {e.input for e in examples if first.setdefault(e.input, group_of[id(e)]) != group_of[id(e)]}
    return len(spread)


def warn_copies_across_groups(examples: Sequence[Example], group_of: dict[int, Hashable]) -> None:
    """Warn when groups given split the copies of an input: a fold then learns the copy of an
    example it scores (random labels scored as memorised). Groups given decide the folds — where
    the inputs to come repeat the learned ones, recalling copies is the task (one group per example
    says so) — so this warns and does not join them."""
    spread = copies_across_groups(examples, group_of)
    if spread:
        warnings.warn(
            f"groups: {spread} input text(s) have copies in more than one group, so a fold can learn "
            "the copy of an example it scores and overrate the memory; give the copies of an input "
            "one group, unless the inputs to come repeat the learned ones",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )


def group_folds(
    examples: Sequence[Example], held: Sequence[Example], folds: int, group_of: dict[int, Hashable]
) -> tuple[list[list[Example]], list[set[int]]]:
    """Folds of whole groups: (the held-out examples of each fold, in ``held`` order; the ids of
    the examples not learned while it is scored: every example of its groups, held out or not).
    The groups of ``held`` (in order of first appearance) go, largest first, to the fold with the
    fewest held-out examples so far: min(folds, groups) folds of sizes as even as whole groups
    allow."""
    sizes: dict[Hashable, int] = {}
    for e in held:
        sizes[group_of[id(e)]] = sizes.get(group_of[id(e)], 0) + 1
    k = max(1, min(folds, len(sizes)))
    fold_of: dict[Hashable, int] = {}
    load = [0] * k
    for group in sorted(sizes, key=lambda g: -sizes[g]):  # stable: ties keep their first-seen order
        f = min(range(k), key=lambda j: load[j])
        fold_of[group] = f
        load[f] += sizes[group]
    parts = [[e for e in held if fold_of[group_of[id(e)]] == f] for f in range(k)]
    unlearned = [{id(e) for e in examples if fold_of.get(group_of[id(e)]) == f} for f in range(k)]
    return parts, unlearned


def check_validation(folds: int, max_validation: int, hold_out: float) -> None:
    """Clear errors for cross-validation settings that are not numbers of their kind, hold nothing
    out or learn nothing (one fold holding out every example leaves the memory of that fold empty:
    "no examples"); they need no model, so a command checks them before loading one."""
    if isinstance(hold_out, bool) or not isinstance(hold_out, (int, float)) or not 0 < hold_out <= 1:
        raise ValueError(f"hold_out must be a share of the examples in (0, 1], got {hold_out!r}")
    integer_at_least(folds, "folds", 1)
    integer_at_least(max_validation, "max_validation", 0)
    if folds == 1 and hold_out == 1:
        raise ValueError(
            "folds=1 with hold_out=1 holds out every example at once and leaves none to learn: "
            "use folds >= 2, or hold out a share (hold_out < 1) with one fold"
        )
