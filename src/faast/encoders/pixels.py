"""``pixels``: the resized RGB pixels as features (no network, no weights).

A baseline and a stand-in encoder for tests of the command line: features are the image resized
to ``resolution`` × ``resolution``, scaled to [0, 1] and flattened (3·resolution² values).
"""

from __future__ import annotations

import numpy as np
import torch

from faast.encoders.base import ImageEncoder, to_rgb_batch


class PixelEncoder(ImageEncoder):
    """uint8 images → float32 (B, 3·resolution²) pixel features in [0, 1]."""

    name = "pixels"

    def __init__(self, resolution: int = 16) -> None:
        if int(resolution) < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        self.resolution = int(resolution)
        self.feature_dim = 3 * self.resolution**2

    def encode(self, images: np.ndarray) -> torch.Tensor:
        return (to_rgb_batch(images, self.resolution) / 255.0).flatten(1)

    def identity(self) -> dict[str, str]:
        return {"encoder": self.name, "resolution": str(self.resolution), "preprocess": "rgb/255"}
