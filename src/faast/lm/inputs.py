"""Validation of the tokenizer outputs given to ``FaastModel.learn``."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from faast._checks import caller_stacklevel


def as_long_2d(x: Any, name: str) -> torch.Tensor:
    """A (B, T) integer tensor from a tensor / nested list; 1-D input becomes one row."""
    if isinstance(x, str | bytes):
        raise TypeError(f"{name} must hold integer token ids, got a string; tokenize the text first")
    try:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a tensor or nested list of integer token ids ({exc})") from None
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer token ids or 0/1 flags, got dtype {t.dtype}")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, seq_len), got {tuple(t.shape)}")
    return t


def check_learn_inputs(
    input_ids: Any, attention_mask: Any, vocab_size: int | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (input_ids (B, T) long, attention_mask (B, T) long) or raise a clear error."""
    if input_ids is None:
        raise ValueError(
            "learn needs input_ids (pass the tokenizer's output: model.learn(**tokenizer(texts)))"
        )
    ids = token_ids(input_ids)
    if ids.shape[1] < 2:
        raise ValueError(f"learn needs sequences of at least 2 tokens, got shape {tuple(ids.shape)}")
    if attention_mask is None:
        mask = torch.ones_like(ids)
    else:
        mask = as_long_2d(attention_mask, "attention_mask")
        if mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(mask.shape)} but input_ids has {tuple(ids.shape)}"
            )
        if bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")
    if ids.device != device or mask.device != device:
        raise ValueError(
            f"input_ids/attention_mask are on {ids.device}/{mask.device} but the model is on {device}"
        )
    check_vocabulary(ids, vocab_size)
    return ids.long(), mask.long()


def warn_unmasked_padding(ids: torch.Tensor, pad_token_id: Any) -> None:
    """Warn when a batch ids (B, T) given without an attention mask looks padded: the model's pad
    token ends (or starts) some rows and not others, as a tokenizer's padding leaves them. Those
    pads would be learned as real tokens (transformers' convention for a missing mask)."""
    if not isinstance(pad_token_id, int) or ids.shape[0] < 2:
        return
    for column, side in ((-1, "end"), (0, "start")):
        padded = ids[:, column] == pad_token_id
        if bool(padded.any()) and not bool(padded.all()):
            warnings.warn(
                f"learn: {int(padded.sum())} of {ids.shape[0]} rows {side} with the pad token "
                f"{pad_token_id} and no attention_mask was given, so the pads are learned as real "
                "tokens; pass the tokenizer's attention_mask (model.learn(**tokenizer(texts, "
                "padding=True, return_tensors='pt')))",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
            return


def token_ids(input_ids: Any) -> torch.Tensor:
    """``input_ids`` as a (B, T) integer tensor (:func:`as_long_2d`; booleans refused): what
    ``learn`` and ``generate`` take."""
    ids = as_long_2d(input_ids, "input_ids")
    if ids.dtype == torch.bool:
        raise TypeError("input_ids must hold integer token ids, got dtype torch.bool")
    return ids


def check_vocabulary(ids: torch.Tensor, vocab_size: int | None) -> None:
    """Refuse token ids outside [0, ``vocab_size``) (the embedding lookup would fail inside torch)."""
    if vocab_size is not None and ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"input_ids must lie in [0, {vocab_size}), got values in [{lo}, {hi}]")


def check_pair_mask(pair_mask: Any, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """A (B, T−1) bool mask of the pairs t → t+1 that may be learned, for input ids of ``shape``."""
    mask = pair_mask if isinstance(pair_mask, torch.Tensor) else torch.as_tensor(pair_mask)
    if mask.ndim == 1:
        mask = mask.unsqueeze(0)
    want = (shape[0], shape[1] - 1)
    if tuple(mask.shape) != want:
        raise ValueError(f"pair_mask must have shape (batch, seq_len - 1) = {want}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("pair_mask must hold booleans (or 0/1)")
        mask = mask.bool()
    return mask.to(device)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only (as ``generate`` does): (B, T) → (B, T) long.

    With them, a left-padded row gives its real tokens the same positions as a right-padded one,
    which matters for absolute position embeddings (GPT-2).
    """
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 0)
