"""The compiled attributes of ``FaastClassifier`` — ``coef_``, ``intercept_``, ``rank_``, ``tau_``,
``ridge_`` — and when they are solved.

``fit``, ``forget``, ``solve`` and loading solve at once. ``partial_fit`` only adds to the
statistics and leaves the solve (an eigendecomposition, or one Cholesky factorisation for a fixed
ridge) to the first use of these attributes or of a prediction, so that a stream of
``partial_fit`` calls costs one solve instead of one per call. Predictions read the memory's
weights (:class:`~faast.memory.InverseMemory`, itself compiled on first use and cached), so they
never wait for these attributes; the attributes then reuse that solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class _Solution:
    """The attributes of the current solve (``coef`` None: not solved yet). A holder, so that
    solving on first use inside ``predict`` does not change the estimator's attributes
    (scikit-learn's ``check_dict_unchanged``): a memo of what the statistics already determine."""

    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    rank: int | None = None
    tau: float | None = None
    ridge: float | None = None


class SolutionMixin:
    """``coef_`` and its companions for :class:`~faast.classifier.FaastClassifier`, which provides
    ``memory_``, ``fit_intercept``, ``intercept_scaling`` and ``_check_design_params``."""

    def _solution_pending(self) -> None:
        """Forget the attributes of the previous solve: the next use solves the current statistics."""
        self._solution = _Solution()

    def _solved(self) -> _Solution:
        """The attributes of the current solve, solving the statistics first if needed."""
        holder = self.__dict__.get("_solution")
        if holder is None:
            raise AttributeError("coef_, intercept_, rank_, tau_ and ridge_ are set by fit")
        if holder.coef is None:  # read through the design that built the statistics, or refused
            self._check_design_params("coef_")
            info = self.memory_.solve_info()
            holder.rank, holder.tau, holder.ridge = info.rank, info.tau, info.ridge
            holder.coef, holder.intercept = self._coef_and_intercept(self.memory_.weight(torch.float64))
        return holder

    def _set_coef(self, weight: torch.Tensor) -> None:
        """Adopt other fast weights (C, D′) for ``coef_``/``intercept_`` (retargeting, the logistic
        steps); ``rank_``, ``tau_`` and ``ridge_`` stay those of the solve they started from."""
        holder = self._solved()
        holder.coef, holder.intercept = self._coef_and_intercept(weight)

    def _coef_and_intercept(self, weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``coef_`` (C, D) and ``intercept_`` (C,) from fast weights over the design features
        (C, D + 1 with ``fit_intercept``: the last column is the constant feature's weight)."""
        full = weight.detach().to(torch.float64).cpu().numpy()
        if self.fit_intercept:
            return full[:, :-1].copy(), full[:, -1] * float(self.intercept_scaling)
        return full, np.zeros(full.shape[0])

    @property
    def coef_(self) -> np.ndarray:
        """(n_classes, n_features) float64, read-only: see the class docstring."""
        return _read_only(self._solved().coef)  # type: ignore[arg-type]

    @property
    def intercept_(self) -> np.ndarray:
        """(n_classes,) float64, read-only: see the class docstring."""
        return _read_only(self._solved().intercept)  # type: ignore[arg-type]

    @property
    def rank_(self) -> int:
        """Spectral directions the cut kept."""
        return self._solved().rank  # type: ignore[return-value]

    @property
    def tau_(self) -> float | None:
        """The relative cut the solve used (None for ridge)."""
        return self._solved().tau

    @property
    def ridge_(self) -> float | None:
        """The ridge penalty the solve used (None for truncation)."""
        return self._solved().ridge


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``: predictions read the memory's weights, not ``coef_``, so an
    edit in place (which would change what ``coef_`` reads back but no prediction) fails instead.
    A view, not a flag on the memo itself, so that a copy (pickle) stays read-only too."""
    view = array.view()
    view.flags.writeable = False
    return view
