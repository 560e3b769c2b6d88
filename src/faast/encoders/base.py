"""The interface of a frozen image encoder: uint8 images in, one pooled feature vector each out;
and :func:`encode_batches`, through which every image is encoded in batches of one fixed size."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


class ImageEncoder(ABC):
    """A frozen feature extractor.

    ``encode(images)``: uint8 (B, H, W) greyscale or (B, H, W, 3) RGB → float32 (B, feature_dim).
    ``identity()``: everything that changes the features (name, weights hash, resolution,
    preprocessing); it keys the feature cache. ``batch_dependent``: whether an image's features
    depend on the batch it is encoded in (see :func:`encode_batches`).
    """

    name: str
    resolution: int
    feature_dim: int
    #: True for a network whose features of an image change in their last bits with the size of
    #: the batch (EfficientNet-Lite0 on CPU: batches of 1 to 15 images differ from larger ones by
    #: up to 1e-5, as the kernels chosen vary with the batch's size): :func:`encode_batches` then
    #: pads every batch to its fixed size. False where each image is computed alone (pixels).
    batch_dependent: bool = False

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


def encode_batches(
    encoder: ImageEncoder,
    images: np.ndarray,
    batch_size: int,
    *,
    on_batch: Callable[[int], object] | None = None,
) -> torch.Tensor:
    """Features (n, feature_dim) float32 of uint8 ``images`` (n, H, W) or (n, H, W, 3), encoded
    ``batch_size`` at a time (``on_batch(k)`` after each batch of k images).

    For a ``batch_dependent`` encoder every forward pass has the same shape: a partial batch (the
    last one, a single image) is padded with black (zero) images to ``batch_size`` and the padding
    rows are dropped. An image's features are then the same bits whatever its batch-mates, its
    place in the batch and the number of images encoded (an image given again in another folder is
    the example learned, bit for bit, as the classifier's record of examples needs), for a given
    ``batch_size``, device and library; full batches are encoded as they always were.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    out = torch.empty(n, encoder.feature_dim, dtype=torch.float32)
    for start in range(0, n, batch_size):
        batch = images[start : start + batch_size]
        k = len(batch)
        if encoder.batch_dependent and k < batch_size:
            padded = np.zeros((batch_size, *batch.shape[1:]), dtype=batch.dtype)
            padded[:k] = batch
            feats = encoder.encode(padded)[:k]
        else:
            feats = encoder.encode(batch)
        if tuple(feats.shape) != (k, encoder.feature_dim):
            raise ValueError(
                f"encoder {encoder.name} gave features of shape {tuple(feats.shape)} for {k} images, "
                f"expected ({k}, {encoder.feature_dim})"
            )
        out[start : start + k] = feats
        if on_batch is not None:
            on_batch(k)
    return out
