"""Test sets kept apart from the support pool a model may learn from.

* :func:`random_holdout`: a seeded random test set; support items equal to a test item (after
  :func:`normalize_text`) are dropped from the pool, so no test item is learned under another id.
* :func:`group_holdout`: whole groups (e.g. books of the Bible) held out for testing, so neither a
  test item nor any other item of its group is in the pool.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")


def normalize_text(text: str) -> str:
    """Case-folded, whitespace-collapsed text, for finding duplicates."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def random_holdout(
    items: Sequence[T], test_size: int, seed: int, *, key: Callable[[T], Hashable] | None = None
) -> tuple[list[int], list[int]]:
    """(pool indices, test indices): ``test_size`` items drawn at random with ``seed``; the pool is
    the rest without items whose ``key`` equals a test item's (both in the seeded order)."""
    if not 0 < test_size < len(items):
        raise ValueError(f"test_size must be in (0, {len(items)}), got {test_size}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    test = order[:test_size]
    keyed = key or (lambda x: x)
    test_keys = {keyed(items[i]) for i in test}  # type: ignore[arg-type]
    pool = [i for i in order[test_size:] if keyed(items[i]) not in test_keys]  # type: ignore[arg-type]
    return pool, test


def group_holdout(
    groups: Sequence[Hashable], test_groups: Collection[Hashable], seed: int
) -> tuple[list[int], list[int]]:
    """(pool indices, test indices): the items of ``test_groups`` form the test set (in order),
    the items of the other groups the pool (shuffled with ``seed``)."""
    test_groups = set(test_groups)
    unknown = test_groups - set(groups)
    if unknown:
        raise ValueError(f"test groups {sorted(map(str, unknown))} do not occur")
    test = [i for i, g in enumerate(groups) if g in test_groups]
    pool = [i for i, g in enumerate(groups) if g not in test_groups]
    if not pool:
        raise ValueError("every group is held out: the pool is empty")
    random.Random(seed).shuffle(pool)
    return pool, test
