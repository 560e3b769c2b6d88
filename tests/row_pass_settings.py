"""Test helper: run the NumPy row passes (:mod:`faast.solver.row_passes`) with small chunks and
several threads, so that inputs of a few hundred rows cross chunk and thread boundaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch

from faast.solver import row_passes


@contextmanager
def row_pass_settings(chunk_budget: int | None, threads: int) -> Iterator[None]:
    """Within the block: chunks of ``chunk_budget`` multiply-adds (down to one row; None: the
    library's own sizes), ``threads`` torch threads, a thread for every 7 rows. Restores all."""
    budget = row_passes.CHUNK_MULTIPLY_ADDS if chunk_budget is None else chunk_budget
    bounds = row_passes.CHUNK_ROWS_RANGE if chunk_budget is None else (1, 4096)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)  # the passes split their rows over this many Python threads
        with (
            mock.patch.object(row_passes, "CHUNK_MULTIPLY_ADDS", budget),
            mock.patch.object(row_passes, "CHUNK_ROWS_RANGE", bounds),
            mock.patch.object(row_passes, "MIN_ROWS_PER_THREAD", 7),
        ):
            yield
    finally:
        torch.set_num_threads(before)
