"""Tensors kept across calls are normal tensors, never inference tensors.

A tensor made inside ``torch.inference_mode()`` is an inference tensor: once the caller leaves that
mode it cannot be updated in place, nor saved for backward. Users wrap evaluation code in
``torch.inference_mode()``, and learning there must leave statistics (and caches) that the code
after it can still update: the methods that make such tensors run outside that mode
(:func:`outside_inference_mode`), and tensors handed in are copied when they are inference tensors
(:func:`normal_tensor`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

_P = ParamSpec("_P")
_R = TypeVar("_R")


def outside_inference_mode(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """``method`` run outside ``torch.inference_mode()`` (with gradients still off) when it is
    called inside it, so that the tensors it creates — and keeps — are normal tensors: an
    inference tensor cannot be updated in place, nor saved for backward, once the caller leaves
    that mode. Outside inference mode it runs as is (no cost, same numerics)."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not torch.is_inference_mode_enabled():
            return method(*args, **kwargs)
        with torch.inference_mode(False), torch.no_grad():
            return method(*args, **kwargs)

    return wrapper


@outside_inference_mode
def normal_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` (any shape), or a copy of it when it is an inference tensor (made in
    ``torch.inference_mode()``), so that it can be kept and changed outside that mode."""
    return t.clone() if t.is_inference() else t
