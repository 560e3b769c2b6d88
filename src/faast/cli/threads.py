"""``--threads`` of the command line: torch's and the BLAS libraries' CPU threads for one command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` CPU threads for torch and for BLAS/OpenMP (threadpoolctl),
    then restore torch's count; ``None`` changes nothing; fewer than 1 is a clear error."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import threadpoolctl
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpoolctl.threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)
