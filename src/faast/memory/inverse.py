"""FAAST's inverse memory: the one fast-weight core of faast.

Float64 sufficient statistics (:class:`~faast.solver.GramStats`) + a :class:`~faast.solver.Cut` +
the compiled fast weights W, cached per (dtype, device) until the statistics or the cut change.
The classifier, every LM read-out and the readout trainer hold one; the softmax and k-NN
memories share its add / read / reset interface.
"""

from __future__ import annotations

from typing import Any

import torch

from faast._checks import check_device
from faast.memory.base import Memory
from faast.solver import Cut, GramStats, SolveInfo, make_cut


class InverseMemory(Memory):
    """Reads ``W·q`` with W the spectrally cut least-squares map from keys to values.

    Only the float64 statistics (G, B) are kept while learning and only W (m × d) at inference,
    whatever the number of pairs.

    Parameters
    ----------
    cut : Cut, float or str, optional
        How the spectral filter is chosen (anything :meth:`Cut.parse` reads); default: the power
        law τ = n⁻¹. ``tau``/``alpha``/``c``/``ridge`` give the same choice as separate parameters.
    key_dim, value_dim : int, optional
        d and m; taken from the first :meth:`add` when not given.
    device : torch.device or str, optional
        Where the statistics live (default: the device of the first batch).
    dual_max_pairs : int, optional
        Keep the float64 rows while at most this many pairs are held (default: d; see
        :class:`~faast.solver.GramStats`): the ``auto`` cut scores exact leave-one-out then.

    Examples
    --------
    >>> mem = InverseMemory(cut="gcv").add(torch.randn(50, 8), torch.randn(50, 3))
    >>> mem.read(torch.randn(4, 8)).shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        cut: Cut | float | str | None = None,
        *,
        key_dim: int | None = None,
        value_dim: int | None = None,
        device: torch.device | str | None = None,
        alpha: float | None = None,
        c: float | None = None,
        tau: float | str | None = None,
        ridge: float | str | None = None,
        dual_max_pairs: int | None = None,
    ) -> None:
        self.cut = make_cut(cut, tau=tau, alpha=alpha, c=c, ridge=ridge)
        self.key_dim, self.value_dim = key_dim, value_dim
        self._given_dims = (key_dim, value_dim)  # what reset keeps: one of them may be given alone
        self._fixed_dims = key_dim is not None and value_dim is not None
        self._device = None if device is None else check_device(device)
        self._dual_max_pairs = dual_max_pairs
        self.stats: GramStats | None = None
        if self._fixed_dims:
            self.stats = GramStats(key_dim, value_dim, device=device, dual_max_pairs=dual_max_pairs)  # type: ignore[arg-type]

    # ----------------------------------------------------------------- learning
    def add(self, keys: Any, values: Any, weights: Any = None) -> InverseMemory:
        """Accumulate pairs: keys (n, d), values (n, m), optional weights (n,) ≥ 0. A refused batch
        leaves the memory as it was (its dimensions included)."""
        k, v = self._check_pairs(keys, values)
        stats = self.stats
        if stats is None:  # kept only once the batch is accepted
            device = self._device or k.device
            stats = GramStats(k.shape[1], v.shape[1], device=device, dual_max_pairs=self._dual_max_pairs)
        stats.add(k, v, weights)
        self.stats = stats
        self._adopt_dims(k, v)
        return self

    def forget(self, keys: Any, values: Any, weights: Any = None) -> InverseMemory:
        """Remove pairs added earlier, exactly: afterwards the memory equals one that never saw them."""
        if self.stats is None or self.stats.count == 0:
            raise ValueError("InverseMemory is empty: there is nothing to forget")
        k, v = self._check_pairs(keys, values)
        self.stats.subtract(k, v, weights)
        return self

    remove = forget

    def check_forget(self, keys: Any, values: Any, weights: Any = None) -> None:
        """Raise the error :meth:`forget` would raise for these pairs (one never added, while the
        rows are kept, among them), without forgetting anything."""
        if self.stats is None or self.stats.count == 0:
            raise ValueError("InverseMemory is empty: there is nothing to forget")
        k, v = self._check_pairs(keys, values)
        self.stats.check_subtract(k, v, weights)

    def reset(self) -> InverseMemory:
        """Forget every pair (dimensions given at construction are kept, others are learned anew)."""
        if self._fixed_dims and self.stats is not None:
            self.stats.reset()
        else:
            self.stats = None
            self.key_dim, self.value_dim = self._given_dims
        return self

    def set_cut(self, cut: Cut | float | str | None) -> InverseMemory:
        """Solve with another cut from now on (no pass over the data: the statistics are kept)."""
        self.cut = Cut.parse(cut)
        return self

    # ----------------------------------------------------------------- reading
    def weight(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The fast-weight matrix W (m, d), compiled on first use and cached per (cut, dtype,
        device) until pairs are added or removed. Returns a copy of the cached W: changing it
        changes nothing in the memory."""
        return self.weight_view(dtype, device).clone()

    def weight_view(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """The cached W (m, d) itself, not a copy, for reads on a hot path (every generated token,
        every predict): read it, never change it in place — that would change every later read.
        :meth:`weight` is the copy to modify."""
        return self._solved(dtype, device)[0]

    def solve_info(self) -> SolveInfo:
        """What the current cut resolves to on the current statistics (τ or ρ, rank, n)."""
        return self._solved(torch.float64, None)[1]

    def _solved(
        self, dtype: torch.dtype | None, device: torch.device | str | None
    ) -> tuple[torch.Tensor, SolveInfo]:
        if self.stats is None or self.stats.count == 0:
            raise ValueError("InverseMemory is empty: add() pairs before reading it")
        return self.stats.solve_with_info(self.cut, dtype=dtype, device=device)

    def read(self, queries: Any) -> torch.Tensor:
        """W·q for queries (q, d) → values (q, m), in the queries' dtype and device, computed in
        float32 at least (float16 queries: W of small keys exceeds float16's range)."""
        q = self._check_read(queries)
        work = torch.promote_types(q.dtype, torch.float32)
        return (q.to(work) @ self.weight_view(work, q.device).T).to(q.dtype)

    # ----------------------------------------------------------------- state
    @property
    def num_pairs(self) -> int:
        return 0 if self.stats is None else self.stats.count

    @property
    def nbytes(self) -> int:
        """Bytes of the compiled W in the dtype of the keys added (what reading needs)."""
        if self.stats is None:
            return 0
        itemsize = (self.stats.input_dtype or torch.float32).itemsize
        return self.stats.key_dim * self.stats.value_dim * itemsize

    def to(self, device: torch.device | str) -> InverseMemory:
        """Move the statistics to ``device`` in place."""
        self._device = check_device(device)
        if self.stats is not None:
            self.stats.to(device)
        return self

    def __repr__(self) -> str:
        dims = f"key_dim={self.key_dim}, value_dim={self.value_dim}"
        return f"InverseMemory(cut={self.cut}, {dims}, pairs={self.num_pairs})"
