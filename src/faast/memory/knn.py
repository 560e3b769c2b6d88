"""k-nearest-neighbour memory: majority vote of the values of the k closest stored keys."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from faast._checks import integer_at_least
from faast.memory.stored import StoredPairsMemory
from faast.unit_rows import unit_rows

_SCORE_BLOCK = 1 << 24


class KNNMemory(StoredPairsMemory):
    """Reads the value most common among the k nearest stored keys.

    k: neighbours; ``None`` uses the paper's rule k = min(10, size of the largest group of
    identical values), i.e. 1-NN at 1 shot, 5-NN at 5 shots, 10-NN beyond.
    metric: ``"cosine"`` or ``"l2"``.
    aggregate: ``"vote"`` returns the winning value row (ties go to the class whose nearest
    member is closest), which is a majority vote of labels when values are label embeddings;
    ``"mean"`` returns the mean of the k values (vote fractions for one-hot values).
    """

    def __init__(
        self,
        k: int | None = None,
        *,
        metric: Literal["cosine", "l2"] = "cosine",
        aggregate: Literal["vote", "mean"] = "vote",
    ) -> None:
        if k is not None:  # 2.5 or "3" were taken (int() of them) and read as another k
            k = integer_at_least(k, "k", 1)
        if metric not in ("cosine", "l2"):
            raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")
        if aggregate not in ("vote", "mean"):
            raise ValueError(f"aggregate must be 'vote' or 'mean', got {aggregate!r}")
        self.k, self.metric, self.aggregate = k, metric, aggregate
        self._groups: tuple[int, torch.Tensor, torch.Tensor] | None = None
        super().__init__()

    def _normalizes_keys(self) -> bool:
        return self.metric == "cosine"

    def _changed(self) -> None:
        self._groups = None

    def add(self, keys: Any, values: Any) -> KNNMemory:
        self._store(keys, values)
        return self

    def _value_groups(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Distinct value rows (g, m) and each stored pair's group index (n,)."""
        if self._groups is None or self._groups[0] != self.store.count:
            _, values = self.store.tensors()
            uniq, inverse = torch.unique(values, dim=0, return_inverse=True)
            self._groups = (self.store.count, uniq, inverse)
        return self._groups[1], self._groups[2]

    def effective_k(self) -> int:
        """The k used by ``read`` (resolves the paper's rule when k is None)."""
        n = self.store.count
        if self.k is not None:
            return min(int(self.k), n)
        _, inverse = self._value_groups()
        largest = int(torch.bincount(inverse).max())
        return max(1, min(10, largest, n))

    def read(self, queries: Any) -> torch.Tensor:
        """The vote (or mean) of the values of the k nearest stored keys for queries (q, d) →
        values (q, m): distances in the wider of the queries' and keys' dtypes (at least float32),
        the result in the queries' dtype and device."""
        queries = self._check_read(queries)
        if queries.shape[0] == 0:  # no queries: an empty (0, m) read, as InverseMemory gives
            return queries.new_zeros(0, int(self.value_dim))
        q, keys = self._scoring(queries)
        k = self.effective_k()
        block = max(1, _SCORE_BLOCK // max(keys.shape[0], 1))
        idx = torch.cat([self._nearest(q[i : i + block], keys, k) for i in range(0, q.shape[0], block)])
        return self._aggregate(idx, q.dtype).to(device=queries.device, dtype=queries.dtype)

    def _aggregate(self, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The values (q, m) read from the indices (q, k) of each query's nearest pairs, nearest
        first: their mean (in ``dtype``), or the winning value row of the vote."""
        values = self.store.tensors()[1]
        if self.aggregate == "mean":
            return values[idx].to(dtype).mean(dim=1)
        rows, k = idx.shape
        uniq, inverse = self._value_groups()
        labels = inverse[idx]  # (q, k), nearest first
        groups = uniq.shape[0]
        votes = torch.zeros(rows, groups, dtype=torch.long, device=idx.device)
        votes.scatter_add_(1, labels, torch.ones_like(labels))
        # tie-break: among equal vote counts, the group whose nearest member ranks first wins
        rank = torch.arange(k, device=idx.device).expand_as(labels)
        first = torch.full((rows, groups), k, dtype=torch.long, device=idx.device)
        first.scatter_reduce_(1, labels, rank, reduce="amin")
        winner = torch.argmax(votes * (k + 1) - first, dim=1)
        return uniq[winner]

    def _nearest(self, q: torch.Tensor, keys: torch.Tensor, k: int) -> torch.Tensor:
        """Indices (b, k) of the k stored keys (n, d) nearest each query of q (b, d), nearest first."""
        if self.metric == "cosine":
            return torch.topk(unit_rows(q) @ keys.T, k, dim=1).indices
        return _nearest_l2(q, keys, k)


#: torch.cdist from the differences q − k themselves (no ‖q‖² + ‖k‖² − 2 q·k cancellation): the
#: same bits for a pair whatever the number of rows on either side.
_EXACT = "donot_use_mm_for_euclid_dist"


def _distances(q: torch.Tensor, keys: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """‖q − k‖ (b, c) of each query of q (b, d) to the keys (n, d) at ``index`` (b, c), from the
    differences (:data:`_EXACT`), at most ``_SCORE_BLOCK`` gathered entries at a time."""
    b, c = index.shape
    out = q.new_empty(b, c)
    step = max(1, _SCORE_BLOCK // max(c * q.shape[1], 1))
    for i in range(0, b, step):
        rows = slice(i, i + step)
        out[rows] = torch.cdist(q[rows, None, :], keys[index[rows]], compute_mode=_EXACT)[:, 0]
    return out


def _smallest(distances: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest ``distances`` (b, c) and their ``index`` (b, c) entries (ascending along
    each row), smallest first; among equal distances the lower index first."""
    b = distances.shape[0]
    distances = torch.nan_to_num(distances, nan=math.inf)
    kth = torch.topk(distances, k, dim=1, largest=False).values[:, -1:]
    below, tied = distances < kth, distances == kth
    need = k - below.sum(dim=1, keepdim=True)
    take = below | (tied & (tied.cumsum(dim=1) <= need))  # k per row, in index order
    chosen, where = distances[take].view(b, k), index[take].view(b, k)
    order = torch.sort(chosen, dim=1, stable=True).indices
    return chosen.gather(1, order), where.gather(1, order)


def _nearest_l2(q: torch.Tensor, keys: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (b, k) of the k keys (n, d) nearest each query of q (b, d) in Euclidean distance,
    nearest first, ties to the lower index: the ranking of the distances computed from the
    differences q − k for every key (:data:`_EXACT`), whatever the number of queries read at once.

    Candidates come from one matrix product on keys and queries centred on the keys' mean
    (‖q′‖² + ‖k′‖² − 2 q′·k′, which cancels where the differences are small next to q′ and k′);
    their distances are recomputed from the differences, and a query is answered from them only
    when the k-th of those lies below every other key's distance by more than the product's
    rounding bound. The other queries (ties at the cut, or data the product cannot resolve:
    clusters far apart) are ranked from the differences to every key."""
    n, d = keys.shape
    candidates = min(n, 2 * k + 16)
    if candidates == n:  # every key is a candidate: rank them all from the differences
        return _ranked_all(q, keys, k)
    centre = keys.mean(dim=0)  # any point serves: only the rounding of the subtraction counts
    q_c, keys_c = q - centre, keys - centre
    q_sq, keys_sq = (q_c * q_c).sum(dim=1), (keys_c * keys_c).sum(dim=1)
    approx = torch.addmm(keys_sq[None, :], q_c, keys_c.T, alpha=-2.0).add_(q_sq[:, None])
    cut, index = torch.topk(approx, candidates, dim=1, largest=False, sorted=True)
    del approx
    index = index.sort(dim=1).values  # ascending: ties go to the lower index
    best, nearest = _smallest(_distances(q, keys, index), index, k)
    # |error| of the product's squared distances (and of the centring) ≤ γ_(d+4) (‖q′‖ + max ‖k′‖)²;
    # that of the differences' (squared, summed, square-rooted, squared) ≤ γ_(d+6) · distance²:
    # doubled for safety
    eps = torch.finfo(q.dtype).eps
    radius = (q_sq.sqrt() + keys_sq.max().sqrt()) ** 2
    others = cut[:, -1]  # every key not a candidate has a product distance at least this
    bound = 2.0 * eps * ((d + 4) * radius + (d + 6) * others.abs())
    kth = best[:, -1]
    unsure = ~(kth * kth < others - bound)  # NaN (overflow) included
    if bool(unsure.any()):
        rows = unsure.nonzero()[:, 0]
        nearest[rows] = _ranked_all(q[rows], keys, k)
    return nearest


def _ranked_all(q: torch.Tensor, keys: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (b, k) of the k keys (n, d) nearest each query of q (b, d), from the differences
    to every key (:data:`_EXACT`), nearest first, ties to the lower index."""
    everything = torch.arange(keys.shape[0], device=keys.device).expand(q.shape[0], -1)
    return _smallest(torch.cdist(q, keys, compute_mode=_EXACT), everything, k)[1]
