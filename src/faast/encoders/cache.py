"""On-disk cache of encoded features, keyed by (encoder, resolution, dataset, split).

Each entry is one safetensors file (written atomically, read without pickle) holding
``features`` (n, D) float32 and ``labels`` (n,) int64; its metadata records the encoder's
identity (name, weights hash, resolution, preprocessing), for an encoder whose features depend on
the batch (:attr:`~faast.encoders.base.ImageEncoder.batch_dependent`) the batching (:data:`BATCHING`
and the batch size), and the dataset's fingerprint (number of images and a content hash). An entry
whose metadata disagrees is stale and is recomputed.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import faast.distributed
from faast.data.dataset import ImageDataset
from faast.encoders.base import ImageEncoder, encode_batches
from faast.io import load_tensors, os_error_cause, save_tensors


def cache_path(root: str | os.PathLike[str], encoder: ImageEncoder, dataset: ImageDataset) -> Path:
    """``root/<encoder>-<resolution>px/<dataset>-<split>.safetensors`` (unsafe characters → '_')."""
    folder = safe_name(f"{encoder.name}-{encoder.resolution}px")
    return Path(root) / folder / f"{safe_name(dataset.name)}-{safe_name(dataset.split)}.safetensors"


def safe_name(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-``
    replaced by ``_`` (a file or folder name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


#: How a batch-dependent encoder's batches are formed (:func:`~faast.encoders.base.encode_batches`),
#: recorded in its cache entries with the batch size. Entries without it are stale, and encoded
#: again: they were written when a folder's last partial batch (and, under torchrun, each process's)
#: was encoded unpadded, so that its images' features were not the bits they get in another folder.
BATCHING = "v2:zero-padded-to-batch-size"


def _expected_meta(encoder: ImageEncoder, dataset: ImageDataset, batch_size: int) -> dict[str, str]:
    batching = {"batching": f"{BATCHING}:{batch_size}"} if encoder.batch_dependent else {}
    return {
        **encoder.identity(),
        **batching,
        "dataset": dataset.name,
        "split": dataset.split,
        "num_images": str(len(dataset)),
        "fingerprint": dataset.fingerprint(),
    }


def load_cached(
    path: Path, expected: dict[str, str], *, rows_key: str = "num_images"
) -> tuple[torch.Tensor | None, str]:
    """(features, "") if ``path`` holds features matching ``expected`` (their row count its
    ``rows_key`` field), else (None, reason)."""
    if not path.is_file():
        return None, "not cached"
    try:
        tensors, meta = load_tensors(path, kind="features")
    except ValueError as exc:
        return None, f"unreadable ({exc})"
    diff = [k for k, v in expected.items() if meta.get(k) != v]
    if diff:
        return None, "stale: " + ", ".join(f"{k} {meta.get(k)!r} != {expected[k]!r}" for k in diff[:3])
    feats = tensors.get("features")
    if feats is None or feats.ndim != 2 or feats.shape[0] != int(expected[rows_key]):
        return None, "malformed features tensor"
    return feats, ""


def encode_dataset(
    encoder: ImageEncoder,
    dataset: ImageDataset,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    batch_size: int = 128,
    progress: bool = True,
    distributed: bool = False,
) -> torch.Tensor:
    """Features (n, D) float32 of every image of ``dataset``, from the cache when valid.

    cache_dir: where entries live (``None``: no caching). A missing, stale or unreadable entry is
    (re)computed in batches of ``batch_size`` (:func:`~faast.encoders.base.encode_batches`: for a
    batch-dependent encoder each partial batch is padded to ``batch_size``, so that an image's
    features do not depend on the other images, their number or the processes; the batch size keys
    its entries) with a progress bar and written atomically.
    distributed: under ``torchrun`` (:mod:`faast.distributed`), each process encodes its block of
    the images and the blocks are gathered, so every process returns all the features (those one
    process computes); the processes agree on using the cache, and rank 0 alone writes it and shows
    progress.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dist = faast.distributed.current() if distributed else faast.distributed.Dist()

    def encode() -> dict[str, torch.Tensor]:
        rows = dist.shard_range(len(dataset))
        where = f" ({len(rows)} of {len(dataset)} on {dist})" if dist.active else ""
        bar = tqdm(
            total=len(rows),
            desc=f"encoding {dataset.name}/{dataset.split} @{encoder.resolution}px{where}",
            unit="img",
            disable=not (progress and dist.is_main),
            leave=False,
        )
        with bar:
            out = encode_batches(
                encoder, dataset.images[rows.start : rows.stop], batch_size, on_batch=bar.update
            )
        labels = torch.from_numpy(np.ascontiguousarray(dataset.labels, dtype=np.int64))
        return {"features": dist.gather_rows(out, len(dataset)), "labels": labels}

    path = None if cache_dir is None else cache_path(cache_dir, encoder, dataset)
    return through_cache(path, _expected_meta(encoder, dataset, batch_size), dist, encode)


def through_cache(
    path: Path | None,
    expected: dict[str, str],
    dist: faast.distributed.Dist,
    compute: Callable[[], dict[str, torch.Tensor]],
    *,
    rows_key: str = "num_images",
) -> torch.Tensor:
    """The features (n, D) of the cache entry at ``path`` when every process finds it valid for
    ``expected`` (:func:`load_cached`); else those of ``compute()`` (its tensors, ``features``
    among them, every process computing its part), which rank 0 writes atomically as the entry
    (after saying why an existing one was not used) while the others wait. ``path`` None: no
    cache, ``compute()`` alone. An entry that cannot be written (a full disk or quota, a read-only
    or not writable cache folder) is skipped with one warning naming it and the cause: the cache
    saves time, its failure does not cost the work done. So is, before the work, an entry that is
    not a regular file (a folder, a pipe, a device, or a link to one): it is neither read nor
    written (nor opened: a pipe would block). An entry that is a link to nothing is replaced by the
    entry written (an entry that is a link to a file is written through it)."""
    odd = None
    if path is not None:
        feats, reason = load_cached(path, expected, rows_key=rows_key)  # reads regular files alone
        if dist.all_true(feats is not None):
            return feats  # type: ignore[return-value]
        if reason not in ("not cached", "") and dist.is_main:
            print(f"[faast] feature cache {path}: {reason}; re-encoding", file=sys.stderr)
        odd = _not_a_file(path) if dist.is_main else None  # rank 0 alone writes: said before the work
        if odd is not None:
            _warn_not_written(path, odd)
    tensors = compute()
    if path is not None:
        if dist.is_main and odd is None:
            try:
                if path.is_symlink() and not path.exists():  # a link to nothing (a shared cache moved):
                    path.unlink()  # the entry replaces it (writes go through a link, none to nothing)
                save_tensors(path, tensors, expected, kind="features")
            except OSError as exc:  # the previous entry, if any, is unchanged (an atomic write)
                _warn_not_written(path, os_error_cause(exc))
        dist.barrier()  # the cache exists before any process can look for it again
    return tensors["features"]


_not_written: set[Path] = set()  # the cache folders already warned of in this process


def _not_a_file(path: Path) -> str | None:
    """What the cache entry ``path`` is when it is something other than a regular file (or a link
    to one) that a cache write would replace or a read would open: a folder, a pipe, a device, a
    socket; None when it is a file, nothing, or a link to nothing. Only ``stat``: nothing is
    opened (opening a pipe blocks until another process opens its other end)."""
    try:
        mode = path.stat().st_mode
    except OSError:  # nothing there, a link to nothing, or a folder above that is not one
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        kind = "a folder"
    elif stat.S_ISFIFO(mode):
        kind = "a pipe (FIFO)"
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    elif stat.S_ISSOCK(mode):
        kind = "a socket"
    else:
        kind = "an unusual file"
    return f"{kind}, not a regular file"


def _warn_not_written(path: Path, cause: str) -> None:
    """Warn, once per cache folder, that the entry ``path`` could not be written (``cause``)."""
    if path.parent in _not_written:
        return
    _not_written.add(path.parent)
    warnings.warn(
        f"feature cache {path} not written ({cause}); continuing without it (--cache-dir puts the cache "
        "elsewhere, --no-feature-cache skips it)",
        UserWarning,
        stacklevel=3,
    )
