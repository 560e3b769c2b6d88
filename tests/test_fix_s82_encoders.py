"""Hunt s82 (images), findings 1 and 3.

1. An image's encoder features changed in their last bits with the batch it was encoded in
   (EfficientNet-Lite0 on CPU: batches of under 16 images), and each folder was encoded in batches
   of its own: the classifier's record of examples learned (bit for bit) did not know an image
   learned from ``photos/train`` when given again in ``photos/mislabelled``, so ``forget`` of such
   a folder was refused beyond 2·D examples and dropped the record silently within (and
   ``partial-fit`` no longer said which examples were learned again). Every batch of a
   batch-dependent encoder is now padded to the batch size, and the later commands encode with
   the batch size the classifier was fitted with. Texts keep the issue (strict xfails below).
3. ``fit --encoder clip:RN50/openai`` saved the encoder as ``clip-RN50-openai``, which predict could
   not build again, and ignored ``--resolution``.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from faast.classifier_io import load_classifier
from faast.cli import main
from faast.data import ImageDataset
from faast.encoders import ImageEncoder, build_encoder, cache_path, encode_dataset, to_rgb_batch
from faast.encoders.text import SentenceEncoder
from faast.io import load_tensors, save_tensors
from tests.test_classify_text_cli import sentences, tiny_text_encoder, write_tsv
from tests.test_vision_eval import _one_thread  # noqa: F401 - autouse: one torch thread


def _run(*argv) -> int:
    return main(["classify", *map(str, argv)])


def _images(n: int, seed: int = 0, size: int = 24) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _dataset(images: np.ndarray, name: str = "toy") -> ImageDataset:
    n = len(images)
    return ImageDataset(name, "train", images, np.arange(n) % 2, ("a", "b"))


@pytest.fixture(scope="module")
def effnet():
    return build_encoder("efficientnet-lite0", resolution=32)


# ------------------------------------------------------------------ finding 1: images


@pytest.mark.assets("efficientnet-lite0")
def test_an_image_has_the_same_features_alone_in_a_small_folder_and_in_a_big_one(effnet):
    images = _images(40)
    big = encode_dataset(effnet, _dataset(images), None, batch_size=16, progress=False)
    picked = [5, 33, 39]  # in a full batch, in the last partial one (of 8), and the last image
    small = encode_dataset(effnet, _dataset(images[picked]), None, batch_size=16, progress=False)
    assert torch.equal(small, big[picked])
    for i in picked:
        alone = encode_dataset(effnet, _dataset(images[i : i + 1]), None, batch_size=16, progress=False)
        assert torch.equal(alone[0], big[i])
    # full batches are encoded as before: features published from them do not move
    assert torch.equal(big[:16], effnet.encode(images[:16])) and torch.equal(
        big[16:32], effnet.encode(images[16:32])
    )


class _Shard:
    """One process of a simulated torchrun world: its block of rows, and what it gathers."""

    active = True
    blocks: ClassVar[dict[int, torch.Tensor]] = {}

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world, self.is_main = rank, world, rank == 0

    def shard_range(self, n: int) -> range:
        from faast.distributed import shard_range

        return shard_range(n, self.rank, self.world)

    def gather_rows(self, local: torch.Tensor, total: int) -> torch.Tensor:
        self.blocks[self.rank] = local.clone()
        return torch.zeros(total, local.shape[1])


@pytest.mark.assets("efficientnet-lite0")
def test_torchrun_blocks_give_the_features_one_process_gives(effnet, monkeypatch):
    """Each process encodes its block of 14 or 13 rows (not whole batches of 16): its last batch is
    padded as one process's is, so the gathered features are the single process's, bit for bit."""
    import faast.distributed

    data = _dataset(_images(40, seed=1))
    one = encode_dataset(effnet, data, None, batch_size=16, progress=False)
    _Shard.blocks = {}
    for rank in range(3):
        monkeypatch.setattr(faast.distributed, "current", lambda rank=rank: _Shard(rank, 3))
        encode_dataset(effnet, data, None, batch_size=16, progress=False, distributed=True)
    assert [len(_Shard.blocks[r]) for r in range(3)] == [14, 13, 13]
    assert torch.equal(torch.cat([_Shard.blocks[r] for r in range(3)]), one)


class _Recorder(ImageEncoder):
    """A batch-dependent stub: the first pixel's value as features; records each batch's size."""

    name, feature_dim, resolution, batch_dependent = "recorder", 1, 4, True

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def identity(self) -> dict[str, str]:
        return {"encoder": self.name, "resolution": "4"}

    def encode(self, images: np.ndarray) -> torch.Tensor:
        self.sizes.append(len(images))
        return to_rgb_batch(images, 4)[:, 0, 0, :1]


def test_partial_batches_are_padded_and_the_batching_keys_the_cache(tmp_path, capsys):
    enc, data = _Recorder(), _dataset(_images(20, size=4))
    feats = encode_dataset(enc, data, tmp_path, batch_size=7, progress=False)
    assert enc.sizes == [7, 7, 7]  # the last batch of 6 padded with one black image, dropped
    assert torch.equal(feats[:, 0], torch.from_numpy(data.images[:, 0, 0, 0]).float())
    path = cache_path(tmp_path, enc, data)
    tensors, meta = load_tensors(path, kind="features")
    assert meta["batching"] == "v2:zero-padded-to-batch-size:7"
    encode_dataset(enc, data, tmp_path, batch_size=7, progress=False)
    assert len(enc.sizes) == 3  # read from the cache
    encode_dataset(enc, data, tmp_path, batch_size=5, progress=False)  # another batch size: other bits
    assert enc.sizes[3:] == [5, 5, 5, 5] and "stale: batching" in capsys.readouterr().err
    del meta["batching"]  # an entry written before: its last partial batch was encoded unpadded
    save_tensors(path, tensors, meta, kind="features")
    encode_dataset(enc, data, tmp_path, batch_size=5, progress=False)
    assert len(enc.sizes) == 11 and "stale: batching None" in capsys.readouterr().err


def _folder(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for c, colour in enumerate(((200, 40, 40), (40, 40, 200))):
        (root / "ab"[c]).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 50, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "ab"[c] / f"{i}.png")
    return root


def _record_size(model: Path) -> int | None:
    record = load_classifier(model)[0].__dict__.get("_record")
    return None if record is None else len(record._digests)


@pytest.mark.assets("efficientnet-lite0")
def test_forget_of_learned_images_copied_to_a_folder_of_their_own_is_exact(tmp_path, capsys):
    """The documented flow: fit photos/train, forget photos/mislabelled (copies of 3 of its
    images). The forget finds them in the record bit for bit (it was accepted within rounding and
    the record dropped); partial-fit of them again then says they were learned before."""
    from faast.assets.core import asset_root

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "efficientnet-lite0").symlink_to(asset_root("efficientnet-lite0"), target_is_directory=True)
    train = _folder(tmp_path / "train", 8)
    wrong = tmp_path / "mislabelled"
    for rel in ("a/2.png", "a/7.png", "b/5.png"):
        (wrong / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(train / rel, wrong / rel)
    model, common = tmp_path / "m", ["--cache-dir", cache, "--threads", "1"]
    assert _run("fit", train, "--model", model, "--resolution", 32, *common) == 0
    assert _record_size(model) == 16
    assert _run("forget", wrong, "--model", model, *common) == 0
    assert _record_size(model) == 13  # the record is kept: each image was found in it
    for rel in ("a/2.png", "a/7.png", "b/5.png"):
        (train / rel).unlink()
    assert _run("fit", train, "--model", tmp_path / "ref", "--resolution", 32, *common) == 0
    got, want = load_classifier(model)[0], load_classifier(tmp_path / "ref")[0]
    assert got.class_count_.tolist() == want.class_count_.tolist() == [6, 7]
    np.testing.assert_allclose(got.coef_, want.coef_, rtol=1e-6, atol=1e-6 * np.abs(want.coef_).max())
    capsys.readouterr()
    assert _run("partial-fit", wrong, "--model", model, *common) == 0
    assert "learned before" not in capsys.readouterr().err
    assert _run("partial-fit", wrong, "--model", model, *common) == 0
    assert "3 of the 3 examples of" in capsys.readouterr().err


@pytest.mark.assets("efficientnet-lite0")
def test_forget_encodes_with_the_batch_size_the_classifier_was_fitted_with(tmp_path, capsys):
    """Review: fit with --batch-size 8, forget copies with the default (128) or --batch-size 64:
    padded to another size the images had other bits, and the record was dropped silently."""
    from faast.assets.core import asset_root

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "efficientnet-lite0").symlink_to(asset_root("efficientnet-lite0"), target_is_directory=True)
    train = _folder(tmp_path / "train", 8)
    wrong = tmp_path / "mislabelled"
    for rel in ("a/2.png", "b/5.png"):
        (wrong / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(train / rel, wrong / rel)
    model, common = tmp_path / "m", ["--cache-dir", cache, "--threads", "1"]
    assert _run("fit", train, "--model", model, "--resolution", 32, "--batch-size", 8, *common) == 0
    assert _record_size(model) == 16
    assert _run("forget", wrong, "--model", model, *common) == 0
    assert _record_size(model) == 14
    capsys.readouterr()
    assert _run("partial-fit", wrong, "--model", model, "--batch-size", 64, *common) == 0
    assert "encoded in batches of 8, as the classifier" in capsys.readouterr().err
    assert _record_size(model) == 16


def test_predict_takes_another_batch_size_and_partial_fit_the_fitted_one(tmp_path, monkeypatch, capsys):
    """Review: a classifier fitted with a large --batch-size (on a GPU, say) made predicting one
    image cost a whole such batch; predict checks no record, so it takes --batch-size; partial-fit
    keeps the fitted one (only for an encoder whose features depend on the batch)."""
    import faast.encoders
    from faast.encoders.pixels import PixelEncoder

    monkeypatch.setattr(PixelEncoder, "batch_dependent", True)
    used, encode = [], faast.encoders.encode_dataset

    def spy(encoder, dataset, cache, *, batch_size, **kwargs):
        used.append(batch_size)
        return encode(encoder, dataset, cache, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(faast.encoders, "encode_dataset", spy)
    train = _folder(tmp_path / "train", 6)
    model, common = tmp_path / "m", ["--encoder", "pixels", "--cache-dir", tmp_path / "cache"]
    assert _run("fit", train, "--model", model, "--batch-size", 32, *common) == 0
    common = common[2:]
    predict = ["predict", train, "--model", model, *common]
    assert _run(*predict, "--batch-size", 4, "--out", tmp_path / "p.csv") == 0
    assert _run(*predict, "--out", tmp_path / "q.csv") == 0
    capsys.readouterr()
    assert _run("partial-fit", train, "--model", model, "--batch-size", 4, *common) == 0
    assert "encoded in batches of 32, as the classifier" in capsys.readouterr().err
    assert used == [32, 4, 32, 32]


# ------------------------------------------------------------------ finding 1: texts
#: Not fixed (known, in docs/classifier.md): a text's embedding depends on its batch-mates (the
#: padded length, the batch's size). A fix that pads every batch to its full size made a lone long
#: text cost a whole batch and moved every published MiniLM embedding in its last bits.
TEXTS_BATCH_DEPENDENT = pytest.mark.xfail(
    strict=True, reason="a text's embedding depends on the texts batched with it (known, not fixed)"
)


@TEXTS_BATCH_DEPENDENT
def test_a_text_has_the_same_embedding_alone_and_among_longer_texts(tmp_path):
    encoder = SentenceEncoder(tiny_text_encoder(tmp_path / "tiny-bert"), batch_size=4)
    words = "good film and the plot was fine".split()
    texts = [" ".join(words[: 1 + i % 7] * (1 + i // 7)) for i in range(20)]  # 3 to 43 tokens
    together = encoder.encode(texts, progress=False)
    for i in (0, 6, 13, 19):
        assert torch.equal(encoder.encode([texts[i]], progress=False)[0], together[i]), texts[i]
    others = list(range(19, -1, -3))  # other batch-mates, in another order
    assert torch.equal(encoder.encode([texts[i] for i in others], progress=False), together[others])


@TEXTS_BATCH_DEPENDENT
@pytest.mark.assets("minilm")
def test_minilm_embeds_a_text_alone_as_among_others():
    """t22: a short and a long text, together vs alone, differed by 1.2e-7."""
    encoder = SentenceEncoder("minilm", fetch=False, batch_size=8)
    texts = [
        "a short one",
        "a much longer sentence that needs many more tokens to encode than the first one",
    ] * 4
    together = encoder.encode(texts, progress=False)
    alone = torch.cat([encoder.encode([t], progress=False) for t in texts])
    assert torch.equal(together, alone)


@TEXTS_BATCH_DEPENDENT
def test_forget_of_some_lines_of_a_text_file_given_as_another_file_keeps_the_record(tmp_path):
    encoder = tiny_text_encoder(tmp_path / "tiny-bert")
    rows = sentences(12, 0)
    rows[0] = ("good film and the plot was fine and the acting was lovely and it was superb", "pos")
    train = write_tsv(tmp_path / "train.tsv", rows)
    wrong = write_tsv(tmp_path / "wrong.tsv", [rows[0], rows[3], rows[4]])
    model, common = tmp_path / "m", ["--cache-dir", tmp_path / "cache", "--batch-size", 4]
    assert _run("fit", train, "--model", model, "--encoder", encoder, *common) == 0
    assert _record_size(model) == 12
    assert _run("forget", wrong, "--model", model, *common) == 0
    assert _record_size(model) == 9


# ------------------------------------------------------------------ finding 3: CLIP


def _fake_open_clip() -> types.ModuleType:
    """A stand-in for open_clip (not installed; it downloads weights): a tiny image tower with
    CLIP's preprocessing configuration (224 px)."""

    class Visual(torch.nn.Module):
        output_dim = 8

        def __init__(self) -> None:
            super().__init__()
            self.preprocess_cfg = {"size": 224}
            self.lin = torch.nn.Linear(3, 8)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = Visual()

        def encode_image(self, x: torch.Tensor) -> torch.Tensor:
            return self.visual.lin(x.mean(dim=(2, 3)))

    def create_model_and_transforms(model, pretrained=None, device="cpu"):
        torch.manual_seed(0)
        return Model(), None, None

    module = types.ModuleType("open_clip")
    module.create_model_and_transforms = create_model_and_transforms
    module.get_tokenizer = lambda model: None
    return module


def test_clip_fit_refuses_another_resolution_and_the_library_warns_of_it(tmp_path, monkeypatch, capsys):
    """``--resolution 32`` was ignored without a word (the classifier saved ``resolution: 224``)."""
    monkeypatch.setitem(sys.modules, "open_clip", _fake_open_clip())
    train, model = _folder(tmp_path / "train", 3), tmp_path / "m"
    argv = ["fit", train, "--model", model, "--encoder", "clip:RN50/openai", "--no-feature-cache"]
    assert _run(*argv, "--resolution", 32) == 1
    assert (
        "--resolution 32: clip:RN50/openai encodes images at its own input size, 224 px"
        in capsys.readouterr().err
    )
    assert not model.exists()
    assert _run(*argv, "--resolution", 224, "--batch-size", 8) == 0  # its own size may be named
    with pytest.warns(UserWarning, match="its own input size, 224 px .*not at the 64 px asked for"):
        build_encoder("clip:RN50/openai", resolution=64)  # the library (faast demo's default) warns


def test_a_clip_fitted_classifier_predicts_with_the_encoder_it_saved(tmp_path, monkeypatch):
    """fit saved the encoder as ``clip-RN50-openai``, which predict refused: "unknown encoder"."""
    monkeypatch.setitem(sys.modules, "open_clip", _fake_open_clip())
    train = _folder(tmp_path / "train", 3)
    model, common = tmp_path / "m", ["--no-feature-cache", "--batch-size", 8]
    assert _run("fit", train, "--model", model, "--encoder", "clip:RN50/openai", *common) == 0
    source = json.loads((model / "classifier.json").read_text())["metadata"]["source"]
    assert source["encoder"] == "clip:RN50/openai" and source["resolution"] == 224
    out = tmp_path / "p.csv"
    assert _run("predict", train, "--model", model, "--out", out, *common) == 0
    assert out.is_file()
    # a classifier saved before, under the encoder's cache-folder name, is rebuilt from its identity
    saved = json.loads((model / "classifier.json").read_text())
    saved["metadata"]["source"]["encoder"] = "clip-RN50-openai"
    (model / "classifier.json").write_text(json.dumps(saved))
    out.unlink()
    assert _run("predict", train, "--model", model, "--out", out, *common) == 0
    assert out.is_file()
