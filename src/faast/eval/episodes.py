"""N-way K-shot episodes: support drawn from one pool of labelled examples, queries from another.

Episodes are index sets, so every method sees exactly the same support and queries (paired
comparison). The generator is seeded by (seed, shots), so the episodes of one shot count do not
depend on which other shot counts are run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episode:
    """support: (ways·shots,) indices into the support pool; query: (ways·queries,) indices into
    the query pool; classes: (ways,) the labels drawn."""

    support: np.ndarray
    query: np.ndarray
    classes: np.ndarray


def _by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}


def sample_episodes(
    support_labels: np.ndarray,
    query_labels: np.ndarray,
    *,
    ways: int | None,
    shots: int,
    queries: int,
    episodes: int,
    seed: int,
) -> list[Episode]:
    """Draw ``episodes`` N-way K-shot episodes (``ways=None``: every class).

    support_labels: (n_s,) labels of the support pool; query_labels: (n_q,) of the query pool.
    Within an episode, support and query indices are distinct and class-balanced.
    """
    if shots < 1 or queries < 1 or episodes < 1:
        raise ValueError(f"shots, queries and episodes must be >= 1, got {shots}, {queries}, {episodes}")
    s_by, q_by = _by_class(np.asarray(support_labels)), _by_class(np.asarray(query_labels))
    classes = np.array(sorted(set(s_by) & set(q_by)))
    ways = len(classes) if ways is None else int(ways)
    if not 2 <= ways <= len(classes):
        raise ValueError(f"ways must be in [2, {len(classes)}] (classes present in both pools), got {ways}")
    for c in classes:
        if len(s_by[c]) < shots:
            raise ValueError(f"class {c} has {len(s_by[c])} support examples, fewer than {shots} shots")
        if len(q_by[c]) < queries:
            raise ValueError(f"class {c} has {len(q_by[c])} query examples, fewer than {queries} queries")
    rng = np.random.default_rng([seed, shots])
    out = []
    for _ in range(episodes):
        drawn = np.sort(rng.choice(classes, size=ways, replace=False))
        support = np.concatenate([rng.choice(s_by[c], size=shots, replace=False) for c in drawn])
        query = np.concatenate([rng.choice(q_by[c], size=queries, replace=False) for c in drawn])
        out.append(Episode(support, query, drawn))
    return out
