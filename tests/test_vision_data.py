"""Datasets: the IDX reader, Fashion-MNIST from a user directory and from the asset, CIFAR-10
binary batches, and the errors bad input must raise."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from faast.assets import AssetError
from faast.data import ImageDataset, load_cifar10, load_dataset, load_fashion_mnist, read_idx, write_idx
from faast.data.fashion_mnist import CLASSES


def _write_fashion_dir(root, n_train=30, n_test=20, gz=True, rng=None):
    rng = rng or np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        data[prefix] = (images, labels)
    return data


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    arr = np.random.default_rng(1).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    path = write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), arr)
    out = read_idx(path, ndim=3)
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


def test_idx_errors_name_the_problem(tmp_path):
    write_idx(tmp_path / "labels", np.arange(10, dtype=np.uint8))
    with pytest.raises(ValueError, match="has 1 dimensions, expected 3"):
        read_idx(tmp_path / "labels", ndim=3)
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk", ndim=1)
    good = (tmp_path / "labels").read_bytes()
    (tmp_path / "short").write_bytes(good[:-3])
    with pytest.raises(ValueError, match="promises shape"):
        read_idx(tmp_path / "short", ndim=1)
    (tmp_path / "float").write_bytes(bytes([0, 0, 0x0D, 1]) + (1).to_bytes(4, "big") + b"\0" * 4)
    with pytest.raises(ValueError, match="type code 0x0d"):
        read_idx(tmp_path / "float", ndim=1)
    with gzip.open(tmp_path / "broken.gz", "wb") as fh:
        fh.write(good)
    (tmp_path / "cut.gz").write_bytes((tmp_path / "broken.gz").read_bytes()[:-8])
    with pytest.raises(ValueError, match="cannot be read"):
        read_idx(tmp_path / "cut.gz", ndim=1)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent", ndim=1)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_a_user_directory(tmp_path, gz):
    data = _write_fashion_dir(tmp_path, gz=gz)
    train = load_fashion_mnist("train", tmp_path)
    test = load_dataset("fashion-mnist", "test", tmp_path)
    assert np.array_equal(train.images, data["train"][0]) and train.labels.dtype == np.int64
    assert len(test) == 20 and test.classes == CLASSES and test.split == "test"


def test_fashion_mnist_user_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_fashion_mnist("train", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_fashion_mnist("train", tmp_path)
    _write_fashion_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, dtype=np.uint8))
    with pytest.raises(ValueError, match="disagree in number"):
        load_fashion_mnist("train", tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(30, 12, dtype=np.uint8))
    with pytest.raises(ValueError, match="10 classes"):
        load_fashion_mnist("train", tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist("validation", tmp_path)


def test_missing_asset_names_the_fetch_command(tmp_path):
    with pytest.raises(AssetError, match="faast assets fetch fashion-mnist"):
        load_fashion_mnist("train", cache=tmp_path)


def test_cifar10_binary_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    expected = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, size=4, dtype=np.uint8)
        planes = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], planes.reshape(4, -1)], axis=1)
        records.tofile(folder / name)
        expected[name] = (planes.transpose(0, 2, 3, 1), labels)
    test = load_cifar10("test", tmp_path)
    assert test.images.shape == (4, 32, 32, 3)
    assert np.array_equal(test.images, expected["test_batch.bin"][0])
    assert np.array_equal(test.labels, expected["test_batch.bin"][1])
    assert len(load_dataset("cifar10", "train", folder)) == 20
    (folder / "test_batch.bin").write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="whole number"):
        load_cifar10("test", tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10("test", tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="needs a data directory"):
        load_dataset("cifar10", "test")


def test_image_dataset_checks_and_fingerprint():
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    ds = ImageDataset("toy", "train", images, np.array([0, 1, 0, 1]), ("a", "b"))
    changed = ImageDataset("toy", "train", images + 1, np.array([0, 1, 0, 1]), ("a", "b"))
    assert ds.fingerprint() != changed.fingerprint() and len(ds.fingerprint()) == 16
    sub = ds.subset(np.array([1, 3]))
    assert len(sub) == 2 and sub.split == "train[2]" and sub.fingerprint() != ds.fingerprint()
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset("toy", "train", images.astype(np.float32), np.zeros(4, dtype=np.int64), ("a",))
    with pytest.raises(ValueError, match="labels of shape"):
        ImageDataset("toy", "train", images, np.zeros(3, dtype=np.int64), ("a",))
    with pytest.raises(ValueError, match="2 classes"):
        ImageDataset("toy", "train", images, np.array([0, 1, 2, 0]), ("a", "b"))


@pytest.mark.assets("fashion-mnist")
def test_real_fashion_mnist_asset():
    train = load_fashion_mnist("train")
    test = load_fashion_mnist("test")
    assert train.images.shape == (60_000, 28, 28) and test.images.shape == (10_000, 28, 28)
    assert np.array_equal(np.bincount(train.labels), np.full(10, 6000))
    assert np.array_equal(np.bincount(test.labels), np.full(10, 1000))
    assert 60 < train.images.mean() < 90  # dark background, bright garments


def test_demo_fetch_downloads_missing_cifar10_batches(tmp_path, monkeypatch, capsys):
    """`faast demo --dataset cifar10 --fetch` asks the loader to download (its message told the
    user to pass download=True, which the command line had no way to pass)."""
    from faast.cli import main
    from faast.data import cifar10

    asked = []

    def no_internet(root):
        asked.append(root)
        raise OSError("no internet here")

    monkeypatch.setattr(cifar10, "download_cifar10", no_internet)
    data, out = str(tmp_path / "cifar"), str(tmp_path / "o")
    argv = ["demo", "--dataset", "cifar10", "--data-dir", data, "--out", out]
    assert main(argv) == 1
    assert "faast demo: --fetch" in capsys.readouterr().err and not asked
    assert main([*argv, "--fetch"]) == 1
    assert asked and "no internet here" in capsys.readouterr().err
