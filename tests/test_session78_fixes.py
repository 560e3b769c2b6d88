"""Fixes from the hunt of session 78 (``.dev/hunts/session78/FINDINGS.md``) not tested elsewhere.

* An asset folder linked to another disk is fetched there: the fetch builds beside the folder the
  link names (it built in the cache and failed moving it: "Invalid cross-device link").
* A temporary file's name keeps whole characters of a long name (it cut one in two: not UTF-8).
* A feature-cache entry that is a link to nothing is replaced by the entry (the write raised a
  ValueError that lost the features computed).
* A classifier save with ``expect=`` refuses to save over another command's save.

The forced races of the classifier commands are in ``tests/test_concurrent_saves.py``, the lock's
refused upgrade in ``tests/test_locks.py``.
"""

from __future__ import annotations

import argparse
import errno
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from faast import FaastClassifier
from faast.assets import core
from faast.classifier_io import JSON_NAME, TENSORS_NAME, load_classifier, save_classifier
from faast.distributed import Dist
from faast.encoders.cache import load_cached, through_cache
from faast.io import _temp_prefix, atomic_write


# ----------------------------------------------------------------- 1. an asset folder on another disk
@pytest.fixture
def two_disks(tmp_path, monkeypatch):
    """``tmp_path/cache`` and ``tmp_path/big`` as two file systems: a rename from one to the other
    fails with EXDEV, as the kernel's does (the entry's folder decides, links resolved, the last
    component not: a rename moves a link, not what it names)."""
    cache, big = tmp_path / "cache", tmp_path / "big"
    cache.mkdir()
    big.mkdir()
    real_replace = os.replace

    def on_big(path) -> bool:
        path = Path(path)
        return (Path(os.path.realpath(path.parent)) / path.name).is_relative_to(os.path.realpath(big))

    def replace(source, dest):
        if on_big(source) != on_big(dest):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source), None, str(dest))
        return real_replace(source, dest)

    monkeypatch.setattr(core.os, "replace", replace)
    fetches: list[int] = []

    def fetch(root: Path) -> None:
        fetches.append(1)
        (root / "model").mkdir()
        (root / "model" / "weights.bin").write_bytes(b"w" * 100 * len(fetches))
        (root / "READY").write_text(str(len(fetches)))

    asset = core.Asset("linked-asset", "a test asset", fetch, lambda r: (r / "READY").is_file(), ("x",), 1)
    monkeypatch.setitem(core._REGISTRY, asset.name, asset)
    return cache, big


def test_an_asset_folder_linked_to_another_disk_is_fetched_there(two_disks):
    """``cache/NAME -> big/NAME``: the asset is built beside ``big/NAME`` and moved into it (built in
    the cache, each move into the link's folder failed with EXDEV, after the whole download); the
    link is kept, nothing is left in either folder; ``--force`` replaces the folder it names."""
    cache, big = two_disks
    (big / "linked-asset").mkdir()
    (cache / "linked-asset").symlink_to(big / "linked-asset")
    root = core.ensure("linked-asset", cache)
    assert root == cache / "linked-asset" and root.is_symlink()
    assert (big / "linked-asset" / "READY").read_text() == "1"
    assert (big / "linked-asset" / "model" / "weights.bin").stat().st_size == 100
    assert sorted(p.name for p in cache.iterdir()) == ["linked-asset"]
    assert sorted(p.name for p in big.iterdir()) == ["linked-asset"]
    assert core.refetch("linked-asset", cache) == root
    assert root.is_symlink() and (big / "linked-asset" / "READY").read_text() == "2"
    assert (big / "linked-asset" / "model" / "weights.bin").stat().st_size == 200
    assert sorted(p.name for p in cache.iterdir()) == ["linked-asset"]
    assert sorted(p.name for p in big.iterdir()) == ["linked-asset"]


def test_a_link_to_a_folder_not_made_yet_gets_the_asset(two_disks):
    """A link to nothing on the other disk: the folder it names is made by the move (its parent
    too), the link kept."""
    cache, big = two_disks
    (cache / "linked-asset").symlink_to(big / "models" / "linked-asset")
    core.ensure("linked-asset", cache)
    assert (cache / "linked-asset").is_symlink()
    assert (big / "models" / "linked-asset" / "READY").read_text() == "1"
    assert sorted(p.name for p in (big / "models").iterdir()) == ["linked-asset"]


# ----------------------------------------------------------------- 4. temporary names of long names
@pytest.mark.parametrize(
    "name", ["a" + "é" * 40 + ".csv", "é" * 40 + ".csv", "日本語のファイル名" * 4 + ".csv", "x😀" * 20]
)
def test_a_temporary_name_keeps_whole_characters(tmp_path, name):
    """The first 64 bytes of "a" + "éé…" end inside an "é": the temporary name was not UTF-8 (a
    lone surrogate), which file systems that require UTF-8 names refuse."""
    prefix = _temp_prefix(name)
    encoded = prefix.encode("utf-8")  # no lone surrogate
    assert len(encoded) <= 64 + 2 and name.startswith(prefix[1:-1])
    assert len(encoded) > 64 + 2 - 4  # at most the bytes of one character are left out
    seen: list[str] = []
    atomic_write(tmp_path / name, lambda tmp: (seen.append(os.path.basename(tmp)), Path(tmp).write_text("x")))
    seen[0].encode("utf-8")
    assert (tmp_path / name).read_text() == "x"


def test_a_temporary_name_of_an_undecodable_name_keeps_its_bytes():
    """A name that is not UTF-8 (its bytes carried as surrogates): its first 64 bytes, unchanged."""
    name = os.fsdecode(b"\xff\xfe" * 50 + b".csv")
    assert os.fsencode(_temp_prefix(name)) == b"." + b"\xff\xfe" * 32 + b"."


# ----------------------------------------------------------------- 5. a feature-cache link to nothing
def test_a_feature_cache_entry_linked_to_nothing_is_replaced(tmp_path):
    """An entry linked into a shared cache that was moved: the features are computed, then the
    write refused the link to nothing with a ValueError through_cache did not catch (the features
    lost); the entry now replaces the link, and is read next time."""
    entry = tmp_path / "enc-224px" / "data-train.safetensors"
    entry.parent.mkdir()
    entry.symlink_to(tmp_path / "moved" / "data-train.safetensors")
    computed: list[int] = []

    def compute() -> dict[str, torch.Tensor]:
        computed.append(1)
        return {"features": torch.ones(4, 2)}

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            assert torch.equal(through_cache(entry, {"num_images": "4"}, Dist(), compute), torch.ones(4, 2))
    assert computed == [1] and entry.is_file() and not entry.is_symlink()
    assert load_cached(entry, {"num_images": "4"})[1] == ""


# ----------------------------------------------------------------- 2. a save refused over another's
def _fitted(seed: int) -> FaastClassifier:
    rng = np.random.default_rng(seed)
    n = 20 + 4 * seed
    return FaastClassifier().fit(rng.standard_normal((n, 5)).astype(np.float32), np.arange(n) % 3)


def test_a_save_expecting_the_loaded_classifier_refuses_another_save(tmp_path):
    """``load_classifier_version`` gives the version loaded; ``save_classifier(expect=)`` saves over
    it, and refuses (nothing written) once another save came in between, or the folder went."""
    from faast.classifier_io import ClassifierChangedError, classifier_version, load_classifier_version

    folder = tmp_path / "m"
    assert classifier_version(folder) is None
    save_classifier(_fitted(0), folder, {"save": 0})
    clf, meta, version = load_classifier_version(folder)
    assert meta == {"save": 0} and version == classifier_version(folder)
    save_classifier(clf, folder, {"save": 1}, expect=version)  # nothing in between: saved
    changed = classifier_version(folder)
    assert changed != version and load_classifier(folder)[1] == {"save": 1}
    files = {name: (folder / name).read_bytes() for name in (JSON_NAME, TENSORS_NAME)}
    said = rf"^{folder}: the classifier changed while this command ran \(another faast command saved it\); "
    with pytest.raises(ClassifierChangedError, match=said + "nothing was written: run again$"):
        save_classifier(_fitted(1), folder, {"save": 2}, expect=version)
    assert {name: (folder / name).read_bytes() for name in files} == files
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    gone = tmp_path / "gone"
    save_classifier(_fitted(0), gone)
    before = classifier_version(gone)
    for name in (JSON_NAME, TENSORS_NAME):
        (gone / name).unlink()
    gone.rmdir()
    with pytest.raises(ClassifierChangedError):
        save_classifier(_fitted(1), gone, expect=before)
    assert not gone.exists()


def test_ranks_that_loaded_different_saves_all_refuse(tmp_path):
    """Under torchrun every rank loads (under the shared lock, never across a collective); a save
    between two ranks' loads gives them different classifiers to change: every rank refuses, with
    the same line, before any data is read."""
    from faast.classifier_io import ClassifierChangedError
    from faast.cli.classify_cmd import _use_saved

    folder = tmp_path / "m"
    save_classifier(_fitted(0), folder)

    class TwoRanks(Dist):
        def barrier(self) -> None:
            pass

        def all_gather_json(self, obj):
            return [obj, "the version another rank loaded"]

    args = argparse.Namespace(model=str(folder), action="partial-fit")
    with pytest.raises(ClassifierChangedError, match="nothing was written: run again"):
        _use_saved(args, TwoRanks(rank=0, world_size=2))
