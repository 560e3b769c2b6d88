"""Sentence-encoder features of a list of texts, through the on-disk feature cache.

An entry is ``root/<encoder>-text/texts-<fingerprint>.safetensors`` (written atomically, read
without pickle) holding ``features`` (n, D) float32; its metadata records the encoder's identity
(:meth:`~faast.encoders.text.SentenceEncoder.identity`: weights, tokenizer, truncation, pooling)
and the texts' count and fingerprint. An entry whose metadata disagrees is recomputed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import faast.distributed
from faast.encoders.cache import safe_name, through_cache
from faast.encoders.text import length_order

#: Characters of the texts' fingerprint in an entry's file name (the whole of it is in the metadata).
NAME_DIGITS = 16


def texts_fingerprint(texts: Sequence[str]) -> str:
    """Hex SHA-256 of the texts in order (each prefixed by its UTF-8 length, so that no two lists
    of texts share one)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(f"{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def text_cache_path(root: str | os.PathLike[str], encoder: Any, fingerprint: str) -> Path:
    """``root/<encoder>-text/texts-<first NAME_DIGITS of fingerprint>.safetensors``."""
    return Path(root) / safe_name(f"{encoder.name}-text") / f"texts-{fingerprint[:NAME_DIGITS]}.safetensors"


def encode_texts(
    encoder: Any,
    texts: Sequence[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
    distributed: bool = False,
) -> torch.Tensor:
    """Features (n, D) float32 of ``texts`` by ``encoder`` (a
    :class:`~faast.encoders.text.SentenceEncoder`), from the cache when valid.

    cache_dir: where entries live (``None``: no caching); a missing, stale or unreadable entry is
    (re)computed and written atomically. distributed: under ``torchrun``
    (:mod:`faast.distributed`) each process encodes its block of the encoder's batches
    (:func:`_encode`) and the blocks are gathered, so every process returns all the features, equal
    to one process's; rank 0 alone writes the cache and shows progress.
    """
    texts = list(texts)
    dist = faast.distributed.current() if distributed else faast.distributed.Dist()
    fingerprint = texts_fingerprint(texts)
    expected = {**encoder.identity(), "num_texts": str(len(texts)), "fingerprint": fingerprint}
    path = None if cache_dir is None else text_cache_path(cache_dir, encoder, fingerprint)

    def encode() -> dict[str, torch.Tensor]:
        return {"features": _encode(encoder, texts, dist, progress=progress and dist.is_main)}

    return through_cache(path, expected, dist, encode, rows_key="num_texts")


def _encode(encoder: Any, texts: list[str], dist: faast.distributed.Dist, *, progress: bool) -> torch.Tensor:
    """(n, D) float32 features of ``texts``: on one process ``encoder.encode``; on several, each
    encodes its contiguous block of the batches ``encode`` would form (:func:`length_order`, batches
    of ``encoder.batch_size``: the same texts padded together, so the same features), and the
    blocks are gathered and put back in input order."""
    if not dist.active:
        return encoder.encode(texts, progress=progress).to(torch.float32)
    order = length_order(texts)
    size = int(encoder.batch_size)
    batches = -(-len(texts) // size)
    mine = dist.shard_range(batches)
    rows = order[mine.start * size : min(mine.stop * size, len(texts))]
    dim = int(encoder.dim)
    local = torch.zeros(len(mine) * size, dim, dtype=torch.float32)
    local[: len(rows)] = encoder.encode([texts[i] for i in rows], progress=progress).to(torch.float32)
    gathered = dist.gather_rows(local.view(len(mine), size, dim), batches).reshape(batches * size, dim)
    out = torch.empty(len(texts), dim, dtype=torch.float32)
    out[torch.as_tensor(order, dtype=torch.long)] = gathered[: len(texts)]
    return out
