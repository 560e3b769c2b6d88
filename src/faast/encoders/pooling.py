"""How a sentence encoder turns token states into one vector: its sentence-transformers recipe.

A sentence-transformers folder says how in ``modules.json``: a ``Transformer`` (the token states),
a ``Pooling`` module whose ``config.json`` names one mode — ``mean`` over the attention mask
(all-MiniLM-L6-v2, E5, GTE), the ``cls`` token's state (BGE), ``max`` over the tokens, or the
``lasttoken`` (decoder embedders) — and, when present, ``Normalize`` (L2). A folder without
``modules.json`` (a plain ``from_pretrained`` model) gets MiniLM's recipe: mean, then L2. Other
modules (``Dense`` projections, several pooling modes at once, a pooling mode without a module)
are refused by name rather than approximated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

#: sentence-transformers ``pooling_mode_*`` keys → the modes :func:`pool` computes.
POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
}
#: Modes sentence-transformers has that :func:`pool` does not compute (refused by name).
UNSUPPORTED_MODES = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
#: Module types (the end of their ``type`` in ``modules.json``) the recipe understands.
KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


@dataclass(frozen=True)
class Recipe:
    """``mode`` ("mean", "cls", "max" or "lasttoken") and whether the vector is L2-normalised."""

    mode: str = "mean"
    normalize: bool = True

    def describe(self) -> str:
        """E.g. ``"mean pooling, L2-normalised"`` (part of the encoder's identity)."""
        return f"{self.mode} pooling" + (", L2-normalised" if self.normalize else "")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, D) token states over the tokens where the (B, T) attention mask is 1 → (B, D)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def pool(hidden: torch.Tensor, mask: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """(B, D) sentence vectors of (B, T, D) token states under the (B, T) attention mask (padding
    on the right), by ``recipe``."""
    if recipe.mode == "mean":
        out = mean_pool(hidden, mask)
    elif recipe.mode == "cls":
        out = hidden[:, 0]
    elif recipe.mode == "max":
        out = hidden.masked_fill(mask[..., None] == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    elif recipe.mode == "lasttoken":
        last = (mask.sum(dim=1) - 1).clamp(min=0)
        out = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    else:
        raise ValueError(
            f"unknown pooling mode {recipe.mode!r}; known: {sorted(set(POOLING_MODES.values()))}"
        )
    return F.normalize(out, dim=-1) if recipe.normalize else out


def read_recipe(folder: Path) -> Recipe:
    """The recipe of the encoder in ``folder`` (see the module docstring); a clear error for a
    sentence-transformers pipeline it cannot follow."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return Recipe()
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{modules_file}: not a sentence-transformers module list ({exc})") from None
    unknown = [t for t in types if t not in KNOWN_MODULES]
    if unknown:
        raise ValueError(
            f"{folder}: the sentence-transformers modules {unknown} (after the token states) are not "
            f"supported; only {', '.join(KNOWN_MODULES)}"
        )
    pooling = [m for m, t in zip(modules, types, strict=True) if t == "Pooling"]
    if len(pooling) != 1:
        raise ValueError(f"{modules_file}: expected one Pooling module, found {len(pooling)}")
    config_file = folder / str(pooling[0].get("path", "")) / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{folder}: the Pooling module has no {config_file.relative_to(folder)}")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    chosen = [key for key in (*POOLING_MODES, *UNSUPPORTED_MODES) if config.get(key)]
    if len(chosen) != 1 or chosen[0] not in POOLING_MODES:
        raise ValueError(
            f"{config_file}: pooling modes {chosen or 'none'}; supported: exactly one of "
            f"{', '.join(POOLING_MODES)}"
        )
    return Recipe(POOLING_MODES[chosen[0]], normalize="Normalize" in types)
