"""torch's global random streams seeded for one step and given back after it (:func:`seeded_rng`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch's global random streams (the CPU's and every CUDA device's) with ``seed`` for the
    ``with`` block, and give them back as they were after it: a seeded step (a read-out's training,
    a LoRA adapter's initialisation) is reproducible without resetting the caller's own stream (a
    user who seeded torch before calling it draws afterwards what they would have drawn without
    the call)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
