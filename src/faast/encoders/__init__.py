"""Frozen image encoders and a frozen sentence encoder (``text``), with their on-disk feature cache."""

from __future__ import annotations

from faast._checks import check_device
from faast.encoders.base import ImageEncoder, to_rgb_batch
from faast.encoders.cache import cache_path, encode_dataset
from faast.encoders.text import SentenceEncoder
from faast.encoders.text_cache import encode_texts

ENCODERS = ("efficientnet-lite0", "clip:<model>/<pretrained>", "pixels")


def build_encoder(name: str = "efficientnet-lite0", *, resolution: int = 64, device: str = "cpu", **kwargs):
    """``efficientnet-lite0`` (offline asset), ``clip:RN50/openai`` (open_clip, needs internet) or
    ``pixels`` (the resized pixels themselves: a baseline, and the encoder of the CLI tests)."""
    check_device(device)  # an unusable device fails here, named, not in the first batch
    if name == "pixels":
        from faast.encoders.pixels import PixelEncoder

        return PixelEncoder(resolution=resolution)
    if name == "efficientnet-lite0":
        from faast.encoders.efficientnet import EfficientNetLiteEncoder

        return EfficientNetLiteEncoder(resolution=resolution, device=device, **kwargs)
    if name.startswith("clip:"):
        from faast.encoders.openclip import OpenClipEncoder

        model, _, pretrained = name[5:].partition("/")
        return OpenClipEncoder(model, pretrained or "openai", device=device)
    raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")


__all__ = [
    "ENCODERS",
    "ImageEncoder",
    "SentenceEncoder",
    "build_encoder",
    "cache_path",
    "encode_dataset",
    "encode_texts",
    "to_rgb_batch",
]
