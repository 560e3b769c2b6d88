"""CIFAR-10 (binary version) for users with internet access; not needed by the demo or the tests.

The binary release (``cifar-10-binary.tar.gz``) stores each image as one label byte followed by
3,072 bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32×32); reading it needs no pickle.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from faast.data.dataset import ImageDataset

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
_RECORD = 1 + 3 * 32 * 32


def read_cifar10_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file → images uint8 (n, 32, 32, 3) and labels int64 (n,)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {_RECORD}-byte CIFAR-10 records")
    records = raw.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASSES):
        raise ValueError(f"{path}: label {labels.max()} out of range; is this CIFAR-100?")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def download_cifar10(dest: str | os.PathLike[str]) -> Path:
    """Download and unpack the binary release into ``dest`` (needs internet; ~163 MB)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "cifar-10-binary.tar.gz"
        try:
            urllib.request.urlretrieve(URL, archive)
        except OSError as exc:
            raise RuntimeError(
                f"could not download CIFAR-10 from {URL} ({exc}); download it yourself and pass its "
                f"'{FOLDER}' directory"
            ) from exc
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return dest / FOLDER


def load_cifar10(split: str, root: str | os.PathLike[str], *, download: bool = False) -> ImageDataset:
    """Load a split from ``root`` (the ``cifar-10-batches-bin`` folder or its parent)."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    folder = root if (root / _FILES["test"][0]).is_file() else root / FOLDER
    if not (folder / _FILES[split][0]).is_file():
        if not download:
            raise FileNotFoundError(
                f"no CIFAR-10 binary batches in {root}; pass download=True (faast demo: --fetch; needs "
                f"internet) or get {URL}"
            )
        folder = download_cifar10(root)
    parts = [read_cifar10_batch(folder / name) for name in _FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset("cifar10", split, images, labels, CLASSES)
