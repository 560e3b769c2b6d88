"""NumPy's and SciPy's BLAS held to one thread while faast runs small products or its own
threads (:func:`single_threaded_blas`).

On a machine with several cores, torch's OpenMP pool and the OpenBLAS builds that NumPy and SciPy
each bring keep threads waiting for work after each call; when calls of the different libraries
alternate quickly, or Python threads run their own BLAS calls, those waiting threads compete for
the cores. On the 2-core AMD VM at two threads this made small fits several times slower than on
one thread (a 16-shot dual eigendecomposition, 160 × 160, took up to 64 ms against 2.5 ms).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None
_limiter: Any = None  # threadpoolctl's limiter while single_threaded_blas() is held
_holders = 0
_limit_lock = threading.Lock()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """NumPy's (and SciPy's) BLAS on one thread for the duration: for loops that alternate
    NumPy row passes, split over Python threads by
    :func:`~faast.solver.row_passes.summed_over_threads`, with small products (the logistic
    steps, retargeting), and for small eigendecompositions (:mod:`faast.solver.spectral`).
    Left multi-threaded, the BLAS pool's threads, waiting for work after each small product,
    compete for the cores: on the 2-core AMD VM with two threads the logistic steps ran slower
    than on one thread (n = 500, d = 8192: 3.7 against 1.4 s for the whole fit).

    The limit is process-wide, so it is counted: nested or concurrent uses (fits in several
    Python threads) share one limit, and the last to leave restores the BLAS's own setting.
    (OpenBLAS may not apply a limit set from a thread other than the one that set the previous
    one: the steps are then slower, never different.)"""
    global _controller, _limiter, _holders
    with _limit_lock:
        if _holders == 0:
            if _controller is None:
                _controller = ThreadpoolController()
            _limiter = _controller.limit(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _limit_lock:
            _holders -= 1
            if _holders == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None
