"""Fashion-MNIST (Zalando, MIT): from the ``fashion-mnist`` asset or a directory of IDX files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faast.data.dataset import ImageDataset
from faast.data.idx import read_idx

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PREFIX = {"train": "train", "test": "t10k"}
SIZES = {"train": 60_000, "test": 10_000}


def _find(root: Path, stem: str) -> Path:
    """The IDX file ``stem`` in ``root``, gzipped or not, with '-' or '.' before ``idx``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"{root} has no {stem}[.gz]; a Fashion-MNIST directory holds train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (gzipped or not)"
    )


def load_fashion_mnist(
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    *,
    fetch: bool = False,
    cache: str | os.PathLike[str] | None = None,
) -> ImageDataset:
    """Load one split: 60,000 (train) or 10,000 (test) 28×28 greyscale images, 10 classes.

    root: a directory with the standard IDX files; ``None`` uses the ``fashion-mnist`` asset
    (fetched first when ``fetch``; otherwise a missing asset raises an error naming the command).
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if root is None:
        from faast.assets.core import ensure

        root = ensure("fashion-mnist", cache, fetch=fetch)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST directory {root} does not exist")
    prefix = _PREFIX[split]
    images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), ndim=3)
    labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{root}: {split} images ({images.shape[0]}) and labels ({labels.shape[0]}) disagree in number"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise ValueError(f"{root}: {split} labels go up to {labels.max()}, Fashion-MNIST has 10 classes")
    return ImageDataset("fashion-mnist", split, images, labels.astype(np.int64), CLASSES)
