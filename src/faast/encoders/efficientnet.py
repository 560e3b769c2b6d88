"""EfficientNet-Lite0 (ImageNet) as a frozen encoder: global-average-pooled 1280-d features."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from faast.encoders.base import ImageEncoder, to_rgb_batch
from faast.io import load_tensors

#: Bump when preprocessing or pooling changes (invalidates cached features).
PREPROCESS = "v1:bilinear,grey-to-rgb,(x-127)/128,avgpool"


class EfficientNetLiteEncoder(ImageEncoder):
    """Frozen EfficientNet-Lite0 trunk (``extract_features`` + spatial mean), in eval mode.

    weights: the converted safetensors state dict; ``None`` uses the ``efficientnet-lite0``
    asset (fetched first when ``fetch``). resolution: input side in pixels (224 is the native
    size; 64 is ~15× faster on CPU). Input scaling is the Lite convention (x − 127) / 128.
    An image's features depend in their last bits on the size of its batch: encode through
    :func:`~faast.encoders.base.encode_batches` (as the feature cache does) for features that do not.
    """

    name = "efficientnet-lite0"
    feature_dim = 1280
    batch_dependent = True  # on CPU, batches of under 16 images give other last bits

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        *,
        resolution: int = 64,
        device: str | torch.device = "cpu",
        fetch: bool = False,
        cache: str | os.PathLike[str] | None = None,
    ) -> None:
        if int(resolution) < 32:
            raise ValueError(f"resolution must be >= 32 pixels, got {resolution}")
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise ImportError(
                "EfficientNet-Lite needs the architecture package: pip install 'faast[vision]' "
                "(efficientnet-lite-pytorch)"
            ) from exc
        if weights is None:
            from faast.assets.core import ensure
            from faast.assets.vision import EFFICIENTNET_FILE

            weights = ensure("efficientnet-lite0", cache, fetch=fetch) / EFFICIENTNET_FILE
        state, meta = load_tensors(Path(weights))
        self.resolution = int(resolution)
        self.device = torch.device(device)
        self.weights_sha256 = meta.get("pth_sha256", "unknown")
        model = EfficientNet.from_name("efficientnet-lite0", image_size=self.resolution)
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{weights}: not EfficientNet-Lite0 weights (missing {result.missing_keys[:3]}, "
                f"unexpected {result.unexpected_keys[:3]})"
            )
        self.model = model.eval().requires_grad_(False).to(self.device)

    def identity(self) -> dict[str, str]:
        return {
            "encoder": self.name,
            "weights_sha256": self.weights_sha256,
            "resolution": str(self.resolution),
            "preprocess": PREPROCESS,
            "feature_dim": str(self.feature_dim),
        }

    @torch.inference_mode()
    def encode(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W[, 3]) → float32 (B, 1280)."""
        x = to_rgb_batch(images, self.resolution).to(self.device)
        x = (x - 127.0) / 128.0
        fmap = self.model.extract_features(x)  # (B, 1280, h, w)
        return fmap.mean(dim=(2, 3)).float().cpu()
