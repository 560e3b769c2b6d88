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

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faast.solver.cut import Cut, SolveInfo
from faast.solver.spectral import SpectralFactor


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


@dataclass(frozen=True)
class ChosenLevel(Cut):
    """A cut rule (the fields of :class:`~faast.solver.Cut`, which ``str`` and ``to_dict`` give)
    pinned to the level a solve of it chose: the ridge ρ (``level_ridge``), or the truncation's
    kept rank and its τ (``level_rank``, ``level_tau``), in the units of the statistics. Solving
    with it applies that level as a fixed cut, whatever the rule would choose now: a loaded
    classifier predicts with the level its fit chose (:mod:`faast.classifier_io`), not one its
    rule, which can change between versions, chooses again. A fixed ridge rule (``ridge``,
    ``prior``) is solved by the same route as before (:meth:`~faast.solver.Cut.fixed_penalty`), a
    level chosen from the data by the eigendecomposition, as the rule chose it."""

    level_ridge: float | None = None
    level_rank: int | None = None
    level_tau: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.level_ridge is None) == (self.level_rank is None):
            raise ValueError("a chosen level is a ridge or a truncation rank, one of them")
        if self.level_ridge is not None and not (self.level_ridge >= 0.0 and math.isfinite(self.level_ridge)):
            raise ValueError(f"the chosen ridge must be a finite number >= 0, got {self.level_ridge!r}")
        if self.level_rank is not None and self.level_rank < 0:
            raise ValueError(f"the chosen rank must be >= 0, got {self.level_rank!r}")

    @classmethod
    def of(cls, rule: Cut, info: SolveInfo) -> ChosenLevel:
        """``rule`` pinned to the level of the solve ``info`` describes."""
        if info.ridge is not None:
            return cls.of_level(rule, ridge=float(info.ridge))
        return cls.of_level(rule, rank=int(info.rank), tau=None if info.tau is None else float(info.tau))

    @classmethod
    def of_level(
        cls, rule: Cut, *, ridge: float | None = None, rank: int | None = None, tau: float | None = None
    ) -> ChosenLevel:
        """``rule`` (itself a ``ChosenLevel`` or not) pinned to the ridge ρ, or the rank and τ, given."""
        fields = {f.name: getattr(rule, f.name) for f in dataclasses.fields(Cut)}
        return cls(**fields, level_ridge=ridge, level_rank=rank, level_tau=tau)

    def apply(self, factor: SpectralFactor) -> tuple[torch.Tensor, float | None, float | None]:
        if self.level_ridge is not None:
            return factor.ridge_choice(self.level_ridge)
        return factor.rank_filter(self.level_rank), self.level_tau, None  # type: ignore[arg-type]

    def fixed_penalty(self, count: float, dim: int) -> Callable[[float], float] | None:
        if self.level_ridge is None or super().fixed_penalty(count, dim) is None:
            return None
        rho = self.level_ridge
        return lambda trace: rho

    def to_level(self) -> dict[str, Any]:
        """The level as ``classifier.json`` records it (``cut_level``)."""
        if self.level_ridge is not None:
            return {"ridge": self.level_ridge}
        return {"rank": self.level_rank, "tau": self.level_tau}

    def __repr__(self) -> str:
        return f"ChosenLevel({str(self)!r}, {self.to_level()})"


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``: predictions read the memory's weights, not ``coef_``, so an
    edit in place (which would change what ``coef_`` reads back but no prediction) fails instead.
    A view, not a flag on the memo itself, so that a copy (pickle) stays read-only too."""
    view = array.view()
    view.flags.writeable = False
    return view
