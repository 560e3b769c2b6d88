"""Reader for the IDX format of MNIST-style datasets (``*-idx3-ubyte`` images, ``*-idx1-ubyte`` labels).

An IDX file starts with two zero bytes, a type code (0x08 = unsigned byte) and the number of
dimensions, then one big-endian uint32 per dimension, then the data. Files may be gzipped.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from faast.io import existing_file

_UBYTE = 0x08


def read_idx(path: str | os.PathLike[str], *, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally ``.gz``) with ``ndim`` dimensions.

    Returns a uint8 array: (n,) for labels (ndim=1), (n, rows, cols) for images (ndim=3).
    Raises ``ValueError`` naming the file when it is not such an IDX file or is truncated.
    """
    p = existing_file(path, "IDX file")
    with open(p, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    try:
        opener = gzip.open if gzipped else open
        with opener(p, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{p}: cannot be read as {'gzip' if gzipped else 'raw'} IDX: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{p}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    if data[2] != _UBYTE:
        raise ValueError(f"{p}: IDX type code 0x{data[2]:02x}; only unsigned bytes (0x08) are supported")
    if data[3] != ndim:
        kind = "labels" if ndim == 1 else "images"
        raise ValueError(f"{p}: has {data[3]} dimensions, expected {ndim} for {kind}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{p}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"{p}: header promises shape {shape} ({expected} bytes) but the file holds "
            f"{len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write a uint8 array as IDX (gzipped when the name ends with ``.gz`` or ``compress``)."""
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UBYTE, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    p = Path(path)
    compress = p.suffix == ".gz" if compress is None else compress
    opener = gzip.open if compress else open
    with opener(p, "wb") as fh:
        fh.write(header + arr.tobytes())
    return p
