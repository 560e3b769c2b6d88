"""Frozen encoders and the feature cache: the real EfficientNet-Lite0 on a slice of real
Fashion-MNIST, and the cache's keying, staleness checks and atomic writes with a stub encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faast import FaastClassifier
from faast.data import ImageDataset
from faast.encoders import ImageEncoder, build_encoder, cache_path, encode_dataset, to_rgb_batch
from faast.io import load_tensors


class CountingEncoder(ImageEncoder):
    """Mean intensity per image row as features; counts the images it encodes."""

    name = "stub"
    feature_dim = 8

    def __init__(self, resolution: int = 8, version: str = "1") -> None:  # resolution >= 8
        self.resolution, self.version, self.seen = resolution, version, 0

    def identity(self) -> dict[str, str]:
        return {"encoder": self.name, "resolution": str(self.resolution), "preprocess": self.version}

    def encode(self, images: np.ndarray) -> torch.Tensor:
        self.seen += len(images)
        return to_rgb_batch(images, self.resolution)[:, 0, :, :8].mean(dim=1)


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _toy(n=20, seed=0, split="train"):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 12, 12), dtype=np.uint8)
    return ImageDataset("toy", split, images, np.arange(n) % 3, ("a", "b", "c"))


def test_to_rgb_batch_shapes_and_values():
    grey = np.full((2, 28, 28), 200, dtype=np.uint8)
    out = to_rgb_batch(grey, 64)
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, 200.0))
    rgb = np.zeros((1, 40, 40, 3), dtype=np.uint8)
    rgb[..., 2] = 255
    small = to_rgb_batch(rgb, 32)
    assert small.shape == (1, 3, 32, 32) and float(small[0, :2].abs().max()) == 0
    assert torch.allclose(small[0, 2], torch.full((32, 32), 255.0))
    with pytest.raises(TypeError, match="uint8"):
        to_rgb_batch(grey.astype(np.float32), 32)
    with pytest.raises(ValueError, match="shape"):
        to_rgb_batch(np.zeros((2, 8, 8, 4), dtype=np.uint8), 32)


def test_cache_hit_does_not_re_encode(tmp_path):
    enc, ds = CountingEncoder(), _toy()
    first = encode_dataset(enc, ds, tmp_path, batch_size=7, progress=False)
    assert enc.seen == 20 and first.shape == (20, 8)
    again = encode_dataset(enc, ds, tmp_path, batch_size=5, progress=False)
    assert enc.seen == 20 and torch.equal(first, again)
    path = cache_path(tmp_path, enc, ds)
    assert path.name == "toy-train.safetensors" and path.parent.name == "stub-8px"
    tensors, meta = load_tensors(path)
    assert meta["num_images"] == "20" and meta["fingerprint"] == ds.fingerprint()
    assert torch.equal(tensors["labels"], torch.from_numpy(ds.labels))


@pytest.mark.parametrize(
    "change",
    ["content", "count", "encoder-version"],
)
def test_stale_cache_is_detected_and_recomputed(tmp_path, change, capsys):
    enc, ds = CountingEncoder(), _toy()
    encode_dataset(enc, ds, tmp_path, progress=False)
    if change == "content":
        ds = _toy(seed=1)  # same name, split and size, different pixels
    elif change == "count":
        ds = _toy(n=21)
    else:
        enc = CountingEncoder(version="2")
    before = enc.seen
    feats = encode_dataset(enc, ds, tmp_path, progress=False)
    assert enc.seen == before + len(ds) and feats.shape[0] == len(ds)
    assert "stale" in capsys.readouterr().err
    encode_dataset(enc, ds, tmp_path, progress=False)  # the refreshed entry is used
    assert enc.seen == before + len(ds)


def test_resolution_keys_a_separate_entry_and_corrupt_files_are_replaced(tmp_path, capsys):
    ds = _toy()
    a, b = CountingEncoder(8), CountingEncoder(16)
    encode_dataset(a, ds, tmp_path, progress=False)
    encode_dataset(b, ds, tmp_path, progress=False)
    assert cache_path(tmp_path, a, ds) != cache_path(tmp_path, b, ds) and b.seen == 20
    cache_path(tmp_path, a, ds).write_bytes(b"garbage")
    encode_dataset(a, ds, tmp_path, progress=False)
    assert a.seen == 40 and "unreadable" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_no_cache_dir_always_encodes():
    enc = CountingEncoder()
    encode_dataset(enc, _toy(), None, progress=False)
    encode_dataset(enc, _toy(), None, progress=False)
    assert enc.seen == 40
    with pytest.raises(ValueError, match="batch_size"):
        encode_dataset(enc, _toy(), None, batch_size=0)


def test_unknown_encoder_and_bad_resolution():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("resnet-9000")
    with pytest.raises(ValueError, match="resolution"):
        build_encoder("efficientnet-lite0", resolution=8)


@pytest.fixture(scope="module")
def real_slice():
    from faast.data import load_fashion_mnist
    from faast.eval.splits import validation_split

    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    tr = train.subset(validation_split(train.labels, 300, 0)[1], split="train-300")
    te = test.subset(validation_split(test.labels, 200, 0)[1], split="test-200")
    return tr, te


@pytest.mark.assets
def test_real_encoder_features_are_deterministic_and_learnable(real_slice, tmp_path):
    train, test = real_slice
    torch.set_num_threads(1)  # restored by the autouse fixture; faster on a shared 2-core machine
    enc = build_encoder("efficientnet-lite0", resolution=48)
    assert enc.identity()["weights_sha256"].startswith("579344248a93")
    a = encode_dataset(enc, train, tmp_path, batch_size=100, progress=False)
    b = enc.encode(train.images[:30])
    assert a.shape == (300, 1280) and a.dtype == torch.float32 and bool(torch.isfinite(a).all())
    assert torch.allclose(a[:30], b, atol=1e-4)  # batch composition does not change features
    assert float(a.min()) >= 0 and float(a.max()) <= 6  # ReLU6 activations, average-pooled
    q = encode_dataset(enc, test, tmp_path, progress=False)
    acc = FaastClassifier().fit(a, train.labels).score(q, test.labels)
    assert acc > 0.6  # 10 classes from 30 images each: pretrained features carry the signal


@pytest.mark.assets("efficientnet-lite0")
def test_real_encoder_recognises_an_imagenet_photo():
    """Sanity check of the converted weights with their own ImageNet head: matplotlib's sample
    photo of Grace Hopper in uniform is class 652, "military uniform"."""
    from matplotlib import cbook
    from PIL import Image

    photo = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    enc = build_encoder("efficientnet-lite0", resolution=224)
    x = (to_rgb_batch(photo[None], 224) - 127.0) / 128.0
    with torch.inference_mode():
        top = int(enc.model(x).argmax())
    assert top == 652


@pytest.mark.parametrize("kind", ["fifo", "folder", "link-to-device"])
def test_a_cache_entry_that_is_not_a_file_is_skipped_with_a_warning(tmp_path, kind):
    """A cache entry that is a pipe (or a folder, or a link to a device) was found only by the
    write, after the encoding: a ValueError ("not a regular file") from deep in the write ended the
    command. It is warned of, naming it, before the work, never opened (a pipe blocks), and the
    features come without the cache, the entry left as it was."""
    import os
    import stat

    import faast.encoders.cache as cache_module

    enc, ds = CountingEncoder(), _toy()
    path = cache_path(tmp_path, enc, ds)
    path.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(os.devnull)
    cache_module._not_written.discard(path.parent)
    with pytest.warns(UserWarning, match="not a regular file") as caught:
        feats = encode_dataset(enc, ds, tmp_path, progress=False)
    assert f"feature cache {path} not written" in str(caught[0].message)
    assert "continuing without it" in str(caught[0].message)
    assert feats.shape == (20, 8) and enc.seen == 20
    assert torch.equal(feats, encode_dataset(CountingEncoder(), ds, None, progress=False))
    mode = os.lstat(path).st_mode
    assert {"fifo": stat.S_ISFIFO, "folder": stat.S_ISDIR, "link-to-device": stat.S_ISLNK}[kind](mode)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left
    assert os.path.exists(os.devnull) and stat.S_ISCHR(os.stat(os.devnull).st_mode)
