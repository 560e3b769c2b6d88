"""``PairBuffer``: the one buffer of raw key/value rows in faast.

Used wherever rows must be kept rather than summarised: the memories that read every stored
pair (softmax, k-NN), the float64 pairs behind :class:`~faast.solver.GramStats`' dual route
(few-shot solves), and the readout trainer's bank of recent pairs (``capacity``: first in,
first out).

Stored rows are always normal tensors, never inference tensors: rows added, concatenated or moved
inside ``torch.inference_mode()`` are made outside it (:mod:`faast.solver.normal_tensors`), so the
buffer stays usable once the caller leaves that mode.
"""

from __future__ import annotations

import numpy as np
import torch

from faast.solver.normal_tensors import normal_tensor, outside_inference_mode


class PairBuffer:
    """Keys (n, d) and values (n, m) kept as a list of batches, concatenated on demand.

    Parameters
    ----------
    capacity : int, optional
        Keep only the most recent ``capacity`` rows (oldest dropped first); ``None`` keeps all.
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and int(capacity) < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = None if capacity is None else int(capacity)
        self.clear()

    def clear(self) -> PairBuffer:
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._cat: tuple[torch.Tensor, torch.Tensor] | None = None
        self.count = 0
        return self

    def __len__(self) -> int:
        return self.count

    @outside_inference_mode
    def append(self, keys: torch.Tensor, values: torch.Tensor) -> PairBuffer:
        """Add rows: keys (n, d), values (n, m), of the dtype and device of the rows held. The
        tensors are kept as given, not copied (except inference tensors, copied into normal ones):
        pass rows that nothing else will change."""
        if keys.shape[0] != values.shape[0]:
            raise ValueError(
                f"keys and values disagree on the number of rows: {keys.shape[0]} vs {values.shape[0]}"
            )
        if self._keys and (keys.device != self._keys[0].device or keys.dtype != self._keys[0].dtype):
            raise TypeError(
                f"batch is {keys.dtype} on {keys.device} but the buffer holds "
                f"{self._keys[0].dtype} on {self._keys[0].device}"
            )
        self._keys.append(normal_tensor(keys.detach()))
        self._values.append(normal_tensor(values.detach()))
        self._cat = None
        self.count += keys.shape[0]
        if self.capacity is not None and self.count > self.capacity:
            k, v = self.tensors()
            self._keys, self._values = [k[-self.capacity :]], [v[-self.capacity :]]
            self._cat = (self._keys[0], self._values[0])
            self.count = self.capacity
        return self

    @outside_inference_mode
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All keys (n, d) and values (n, m), oldest first."""
        if not self._keys:
            raise ValueError("the buffer is empty")
        if self._cat is None:  # one batch is itself (no copy)
            one = len(self._keys) == 1
            self._cat = (
                (self._keys[0], self._values[0]) if one else (torch.cat(self._keys), torch.cat(self._values))
            )
            self._keys, self._values = [self._cat[0]], [self._cat[1]]
        return self._cat

    def find(self, keys: torch.Tensor, values: torch.Tensor, *, rtol: float = 0.0) -> torch.Tensor:
        """Indices (n,) of stored rows equal to the given rows (keys (n, d), values (n, m)), each
        stored row matched at most once; raises ``ValueError`` naming the rows not held.

        ``rtol > 0`` also accepts, for a row with no bit-identical match, the closest unmatched
        stored row whose keys and values each differ by at most ``rtol`` times the larger of the
        two rows' largest magnitude in that part (features recomputed in another batch, e.g. a
        random projection, can differ from the stored ones in the last bits: BLAS results depend
        on the batch shape).
        """
        if keys.shape[0] != values.shape[0]:
            raise ValueError(
                f"keys and values disagree on the number of rows: {keys.shape[0]} vs {values.shape[0]}"
            )
        if keys.shape[0] == 0:
            return torch.zeros(0, dtype=torch.int64)
        keys, values = keys.detach(), values.detach()  # compared by value (numpy): no autograd
        held_k, held_v = self.tensors() if self.count else (keys[:0], values[:0])
        slots: dict[bytes, list[int]] = {}
        # compared in NumPy, which has no bfloat16: widened to float32, exactly (equal there iff equal)
        wide = torch.float32 if held_k.dtype == torch.bfloat16 else held_k.dtype
        rows = torch.cat([held_k, held_v.to(held_k.dtype)], dim=1).to(wide).cpu().numpy()
        for i in range(rows.shape[0] - 1, -1, -1):  # popped from the end: oldest first
            slots.setdefault(rows[i].tobytes(), []).append(i)
        asked = torch.cat([keys.to(held_k.dtype), values.to(held_k.dtype)], dim=1).to(wide).cpu().numpy()
        found: list[int | None] = []
        for j in range(asked.shape[0]):
            match = slots.get(asked[j].tobytes())
            found.append(match.pop() if match else None)
        if rtol > 0 and None in found:
            _match_close(rows, asked, found, rtol, keys.shape[1])
        missing = [j for j, i in enumerate(found) if i is None]
        if missing:
            raise ValueError(
                f"{len(missing)} of the {asked.shape[0]} pairs to remove were never added "
                f"(or were already removed): rows {missing[:10]}"
            )
        return torch.as_tensor(found, dtype=torch.int64)

    @outside_inference_mode
    def remove(self, index: torch.Tensor) -> PairBuffer:
        """Drop the stored rows at ``index`` (as returned by :meth:`find`); order is kept."""
        if index.numel() == 0:
            return self
        k, v = self.tensors()
        keep = torch.ones(self.count, dtype=torch.bool)
        keep[index] = False
        keep = keep.to(k.device)
        self._keys, self._values = [k[keep]], [v[keep]]
        self._cat = (self._keys[0], self._values[0])
        self.count = int(keep.sum())
        return self

    @outside_inference_mode
    def to(self, device: torch.device | str) -> PairBuffer:
        """Move the rows to ``device`` in place."""
        self._keys = [k.to(device) for k in self._keys]
        self._values = [v.to(device) for v in self._values]
        self._cat = None
        return self

    def copy(self) -> PairBuffer:
        out = PairBuffer(self.capacity)
        out._keys, out._values, out.count = list(self._keys), list(self._values), self.count
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._keys + self._values)


def _match_close(
    rows: np.ndarray, asked: np.ndarray, found: list[int | None], rtol: float, split: int
) -> None:
    """Fill the ``None`` entries of ``found`` (indices into ``rows`` (n, k) for each row of
    ``asked`` (q, k); keys are the first ``split`` columns, values the rest) with the closest
    stored row not matched yet, when both its keys and its values are within ``rtol`` of the
    larger magnitude of that part (relative per part: tiny keys are not matched by the values'
    scale); in place."""
    free = np.ones(rows.shape[0], dtype=bool)
    free[[i for i in found if i is not None]] = False
    parts = (slice(0, split), slice(split, rows.shape[1]))
    held_scale = [np.abs(rows[:, part]).max(axis=1, initial=0.0) for part in parts]
    for j, i in enumerate(found):
        if i is not None or not free.any():
            continue
        candidates = np.flatnonzero(free)
        ratios = []
        for part, held in zip(parts, held_scale, strict=True):
            gap = np.abs(rows[candidates, part] - asked[j, part]).max(axis=1, initial=0.0)
            scale = np.maximum(held[candidates], np.abs(asked[j, part]).max(initial=0.0))
            ratios.append(np.where(gap == 0, 0.0, gap / np.where(scale > 0, scale, np.inf)))
        worst = np.maximum(*ratios)
        best = int(np.argmin(worst))
        if worst[best] <= rtol:
            found[j] = int(candidates[best])
            free[candidates[best]] = False
