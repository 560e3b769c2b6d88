"""Rows scaled to unit L2 length without float overflow or underflow."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: ``F.normalize``'s floor on a norm: rows whose norm is below it were left short of unit length.
_EPS = 1e-12


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """x (n, d) with each row divided by its L2 norm: ``F.normalize(x, dim=1)``, bit for bit, on
    every row whose norm it computes finite and at least 10⁻¹² — the bits the classifier's record
    of examples was digested from — and, on the others, the same division made safely: in float32
    the squares of entries beyond about 1.8·10¹⁹ overflowed, the norm was infinite and the row
    became zero (every key of a cosine read then scored alike, with no warning), and a row of norm
    below 10⁻¹² was left short of unit length. Those rows are first divided by their largest
    absolute entry (squares then at most 1), in float32 at least, with no float64 (which some
    devices lack). A zero row stays zero; a row holding a NaN or an infinity becomes all NaN. Same
    dtype and device as ``x``."""
    if x.dim() != 2 or x.shape[1] == 0 or not x.is_floating_point():
        return F.normalize(x, dim=-1)
    norms = x.norm(2, dim=1, keepdim=True)  # as F.normalize computes it
    out = x / norms.clamp_min(_EPS).expand_as(x)
    redo = (~torch.isfinite(norms[:, 0]) | (norms[:, 0] < _EPS)) & x.ne(0).any(dim=1)
    if bool(redo.any()):
        rows = x[redo]
        wide = rows if rows.dtype in (torch.float32, torch.float64) else rows.float()
        scale = wide.abs().amax(dim=1, keepdim=True)
        out[redo] = F.normalize(wide / scale, dim=1).to(x.dtype)
    return out
