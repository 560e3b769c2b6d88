"""Frozen image encoders and a frozen sentence encoder (``text``), with their on-disk feature cache."""

from __future__ import annotations

import warnings

from faast._checks import check_device
from faast.encoders.base import ImageEncoder, encode_batches, to_rgb_batch
from faast.encoders.cache import cache_path, encode_dataset
from faast.encoders.text import SentenceEncoder
from faast.encoders.text_cache import encode_texts

ENCODERS = ("efficientnet-lite0", "clip:<model>/<pretrained>", "pixels")

#: Input size in pixels of ``efficientnet-lite0`` and ``pixels`` unless one is given.
DEFAULT_RESOLUTION = 64


def build_encoder(
    name: str = "efficientnet-lite0", *, resolution: int | None = None, device: str = "cpu", **kwargs
) -> ImageEncoder:
    """``efficientnet-lite0`` (offline asset), ``clip:RN50/openai`` (open_clip, needs internet) or
    ``pixels`` (the resized pixels themselves: a baseline, and the encoder of the CLI tests).

    resolution: input size in pixels (None: :data:`DEFAULT_RESOLUTION`). A CLIP model takes its own
    input size (224 for RN50; ``encoder.resolution``) whatever is given: another one is warned of,
    naming both. The name of a built encoder to give here again is ``name``, not ``encoder.name``
    (``clip-RN50-openai`` for ``clip:RN50/openai``: its feature cache folder)."""
    check_device(device)  # an unusable device fails here, named, not in the first batch
    if name == "pixels":
        from faast.encoders.pixels import PixelEncoder

        return PixelEncoder(resolution=DEFAULT_RESOLUTION if resolution is None else resolution)
    if name == "efficientnet-lite0":
        from faast.encoders.efficientnet import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(
            resolution=DEFAULT_RESOLUTION if resolution is None else resolution, device=device, **kwargs
        )
    if name.startswith("clip:"):
        from faast.encoders.openclip import OpenClipEncoder

        model, _, pretrained = name[5:].partition("/")
        encoder = OpenClipEncoder(model, pretrained or "openai", device=device)
        if resolution is not None and int(resolution) != encoder.resolution:
            warnings.warn(
                f"{name} encodes images at its own input size, {encoder.resolution} px (its positional "
                f"embeddings are learned for it), not at the {resolution} px asked for",
                UserWarning,
                stacklevel=2,
            )
        return encoder
    raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")


__all__ = [
    "ENCODERS",
    "ImageEncoder",
    "SentenceEncoder",
    "build_encoder",
    "cache_path",
    "encode_batches",
    "encode_dataset",
    "encode_texts",
    "to_rgb_batch",
]
