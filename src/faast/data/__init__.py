"""Image datasets: Fashion-MNIST (offline asset or IDX directory) and CIFAR-10 (internet)."""

from faast.data.cifar10 import load_cifar10
from faast.data.dataset import ImageDataset
from faast.data.fashion_mnist import load_fashion_mnist
from faast.data.idx import read_idx, write_idx


def load_dataset(name: str, split: str, root=None, **kwargs) -> ImageDataset:
    """Load ``split`` of dataset ``name`` (``fashion-mnist`` or ``cifar10``; cifar10 needs ``root``)."""
    if name == "fashion-mnist":
        return load_fashion_mnist(split, root, **kwargs)
    if name == "cifar10":
        if root is None:
            raise ValueError("cifar10 needs a data directory (--data-dir); it is not an offline asset")
        return load_cifar10(split, root, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; known: fashion-mnist, cifar10")


__all__ = [
    "ImageDataset",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]
