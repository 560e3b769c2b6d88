"""Plumbing of the NumPy row passes (:mod:`faast.solver.row_passes`) and the BLAS thread limit
(:mod:`faast.solver.blas_threads`)."""

from __future__ import annotations

import threading

import numpy as np
import torch
from threadpoolctl import threadpool_info

from faast.solver import blas_threads
from faast.solver.blas_threads import single_threaded_blas
from faast.solver.row_passes import numpy_rows, uses_numpy_passes


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_single_threaded_blas_limits_numpy_blas_and_restores_it():
    np.ones((4, 4)) @ np.ones((4, 4))  # NumPy's BLAS is loaded
    before = _blas_threads()
    assert before, "no BLAS library found by threadpoolctl"
    with single_threaded_blas():
        assert set(_blas_threads()) == {1}
        with single_threaded_blas():  # nested: still one thread, and the outer limit survives
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before


def test_single_threaded_blas_from_several_threads_restores_the_setting_once_all_leave(monkeypatch):
    """Fits in several Python threads overlap: one limit is set by the first to enter, the first
    one out does not lift it, and the last one out restores the original setting. (A recording
    controller stands in for threadpoolctl's: OpenBLAS may ignore a limit set from a thread
    other than the one that set the last, which would hide what is counted here.)"""
    calls: list[str] = []

    class Limiter:
        def restore_original_limits(self) -> None:
            calls.append("restore")

    class Controller:
        def limit(self, *, limits: int, user_api: str) -> Limiter:
            calls.append(f"limit {limits} {user_api}")
            return Limiter()

    monkeypatch.setattr(blas_threads, "_controller", Controller())
    inside, release = threading.Barrier(3), threading.Event()
    seen: list[list[str]] = []

    def hold(leave_first: bool) -> None:
        with single_threaded_blas():
            inside.wait()
            if not leave_first:
                release.wait()
                seen.append(list(calls))

    workers = [threading.Thread(target=hold, args=(first,)) for first in (True, False)]
    for t in workers:
        t.start()
    inside.wait()  # both hold the limit
    workers[0].join()  # the first left
    release.set()
    workers[1].join()
    assert seen == [["limit 1 blas"]]  # still limited for the one that stayed
    assert calls == ["limit 1 blas", "restore"]  # restored once, by the last to leave


def test_numpy_rows_are_views_and_float64_weights():
    keys = torch.randn(5, 3)
    labels = torch.arange(5)
    k, y, w = numpy_rows(keys, labels, torch.ones(5, dtype=torch.float32))
    assert np.shares_memory(k, keys.numpy()) and y.tolist() == list(range(5)) and w.dtype == np.float64
    assert numpy_rows(keys, labels, None)[2] is None
    assert uses_numpy_passes(keys) and uses_numpy_passes(keys.double())
    assert not uses_numpy_passes(keys.half())
