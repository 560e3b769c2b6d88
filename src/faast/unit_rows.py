"""Rows scaled to unit L2 length without float overflow or underflow."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Values normalised in float64 at a time (8 MB), beside the output.
_BLOCK_VALUES = 1 << 20


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """x (n, d) with each row divided by its L2 norm, as ``F.normalize(x, dim=1)`` but without its
    overflow and underflow: in float32 the squares of entries beyond about 1.8·10¹⁹ overflowed, the
    norm was infinite and the row became zero (every key of a cosine read then scored alike, with
    no warning), and rows of norm below 10⁻¹² (its ``eps``) were left short of unit length. Rows are
    divided by their largest absolute entry, then normalised, in float64 (float32 and narrower rows
    rounded once, at the end, to their dtype). A zero row stays zero; a row holding a NaN or an
    infinity becomes all NaN. Same dtype and device as ``x``; the float64 work is done a block of
    rows at a time, so it holds a few megabytes beside the output."""
    if x.shape[-1] == 0 or x.dim() != 2 or not x.is_floating_point():
        return F.normalize(x, dim=-1)
    out = torch.empty_like(x)
    step = max(1, _BLOCK_VALUES // x.shape[1])  # float64 work a block of rows at a time
    for start in range(0, x.shape[0], step):
        wide = x[start : start + step].to(torch.float64)
        scale = wide.abs().amax(dim=1, keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        out[start : start + step] = F.normalize(wide / scale, dim=1)
    return out
