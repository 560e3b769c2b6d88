"""The interface of a frozen image encoder: uint8 images in, one pooled feature vector each out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F


class ImageEncoder(ABC):
    """A frozen feature extractor.

    ``encode(images)``: uint8 (B, H, W) greyscale or (B, H, W, 3) RGB → float32 (B, feature_dim).
    ``identity()``: everything that changes the features (name, weights hash, resolution,
    preprocessing); it keys the feature cache.
    """

    name: str
    resolution: int
    feature_dim: int

    @abstractmethod
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """Features (B, feature_dim), float32 on CPU, for a batch of uint8 images."""

    @abstractmethod
    def identity(self) -> dict[str, str]:
        """String fields that determine the features (stored with cached features)."""


def to_rgb_batch(images: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (B, H, W) or (B, H, W, 3) → float32 (B, 3, resolution, resolution) in [0, 255].

    Greyscale is repeated over the three channels; resizing is bilinear (antialiased when
    shrinking).
    """
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    x = torch.from_numpy(np.array(images))  # a writable copy of the batch
    if x.ndim == 3:
        x = x[:, None].expand(-1, 3, -1, -1)
    elif x.ndim == 4 and x.shape[3] == 3:
        x = x.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"images must be (B, H, W) or (B, H, W, 3), got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    if x.shape[2:] != (resolution, resolution):
        shrink = min(x.shape[2:]) > resolution
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=shrink
        )
    return x
