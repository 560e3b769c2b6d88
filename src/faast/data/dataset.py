"""``ImageDataset``: images, integer labels and class names of one split, held in memory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ImageDataset:
    """One split of an image-classification dataset.

    name: dataset identifier (``fashion-mnist``); split: ``train`` / ``test``;
    images: uint8, (n, H, W) greyscale or (n, H, W, 3) RGB; labels: int64 (n,) in [0, C);
    classes: the C class names, index = label.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(
                f"{self.name}/{self.split}: images must be uint8 (n, H, W) or (n, H, W, 3), got "
                f"{self.images.dtype} {self.images.shape}"
            )
        if self.images.ndim == 4 and self.images.shape[3] != 3:
            raise ValueError(
                f"{self.name}/{self.split}: colour images need 3 channels, got {self.images.shape}"
            )
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"{self.name}/{self.split}: {self.images.shape[0]} images but labels of shape "
                f"{self.labels.shape}"
            )
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(
                f"{self.name}/{self.split}: labels span [{self.labels.min()}, {self.labels.max()}] but "
                f"there are {len(self.classes)} classes"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray | slice, split: str | None = None) -> ImageDataset:
        """A new dataset holding ``images[indices]`` (its split name says it is a subset)."""
        idx = np.arange(len(self))[indices] if isinstance(indices, slice) else np.asarray(indices)
        name = split or f"{self.split}[{len(idx)}]"
        return ImageDataset(self.name, name, self.images[idx], self.labels[idx].copy(), self.classes)

    def fingerprint(self) -> str:
        """sha256 of the images and labels (hex, 16 chars): detects changed content."""
        if not self._fingerprint:
            digest = hashlib.sha256()
            digest.update(str(self.images.shape).encode())
            digest.update(np.ascontiguousarray(self.images).data)
            digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).data)
            self._fingerprint.append(digest.hexdigest()[:16])
        return self._fingerprint[0]
