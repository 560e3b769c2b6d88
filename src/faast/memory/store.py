"""An append-only store of raw key/value rows, shared by the memories that keep every pair."""

from __future__ import annotations

import torch


class PairStore:
    """Keeps keys (n, d) and values (n, m) as a list of batches, concatenated on demand."""

    def __init__(self) -> None:
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._cat: tuple[torch.Tensor, torch.Tensor] | None = None
        self.count = 0

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if self._keys and (keys.device != self._keys[0].device or keys.dtype != self._keys[0].dtype):
            raise TypeError(
                f"batch is {keys.dtype} on {keys.device} but the memory holds "
                f"{self._keys[0].dtype} on {self._keys[0].device}"
            )
        self._keys.append(keys.detach())
        self._values.append(values.detach())
        self._cat = None
        self.count += keys.shape[0]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All keys (n, d) and values (n, m)."""
        if self._cat is None:
            self._cat = (torch.cat(self._keys), torch.cat(self._values))
            self._keys, self._values = [self._cat[0]], [self._cat[1]]
        return self._cat

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._keys + self._values)
