"""``Cut``: how the spectral filter of a solve is chosen, as one validated value.

A cut turns the eigendecomposition of the Gram matrix (:class:`~faast.solver.spectral.SpectralFactor`)
into a spectral filter φ (see :mod:`faast.solver.spectral`). The kinds:

=============  ==============================================================================
``power``      truncation at τ = c·n^(−α) (the paper's rule; n = Σ wᵢ, the number of pairs
               when unweighted). ``Cut.power(alpha=1.0, c=1.0)`` is the library default.
``fixed``      truncation at a given relative τ (drop σ < τ·σ_max).
``gcv``        truncation rank chosen by generalised cross-validation on the statistics.
``auto``       the ridge level with the fewest exact leave-one-out errors (ties: lowest PRESS;
               only levels whose PRESS beats predicting zero; :mod:`faast.solver.loo`) when the
               rows are known (n < d, the dual route);
               GCV truncation otherwise (n ≥ d, where GCV approximates leave-one-out).
``ridge``      ridge regression (G + ρI)⁻¹ with a given ρ.
``ridge-gcv``  ridge with ρ chosen by generalised cross-validation.
``ridge-auto`` ridge with ρ chosen from the data alone: by exact leave-one-out while the rows are
               known (as ``auto``), by GCV beyond (where ``auto`` falls back to GCV truncation).
``prior``      ridge worth N pseudo-pairs: ρ = N·tr(G)/(n·d), as if N more pairs with the mean key
               energy spread evenly over the d directions, and zero values, had been learned:
               strong with few pairs, negligible with many (scale-free).
=============  ==============================================================================

A cut is validated when it is made, so a bad value fails where it is written, not at the first
solve. ``Cut.parse`` reads the short text forms used by the command line and config files
(``"gcv"``, ``"auto"``, ``"0.01"``, ``"alpha=0.8"``, ``"ridge=1e-2"``, ``"ridge=gcv"``,
``"ridge=auto"``, ``"prior=512"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from faast._checks import finite_number
from faast.solver.spectral import SpectralFactor

KINDS = ("power", "fixed", "gcv", "auto", "ridge", "ridge-gcv", "ridge-auto", "prior")
#: The kinds whose filter depends on the values learned, not on the keys alone.
DATA_CHOSEN = ("gcv", "auto", "ridge-gcv", "ridge-auto")


@dataclass(frozen=True)
class SolveInfo:
    """What a solve did: the filter, the cut it used and how many directions it kept.

    ``rank``: the directions with a non-zero filter (a ridge keeps every one the factor holds:
    d, or on the dual route the eigenvalues above the noise floor); for a ridge solved without
    the eigendecomposition (:mod:`faast.solver.direct`), the size of the system solved (d, or n
    on the dual route) and ``lambda_max`` None (not computed)."""

    mode: str  # "truncation" or "ridge"
    tau: float | None
    ridge: float | None
    rank: int
    count: int
    lambda_max: float | None


def power_law_tau(count: float, alpha: float, c: float) -> float:
    """The paper's relative cut τ = c·n^(−α), capped at 1 (n may be a sum of weights)."""
    if count <= 0:
        raise ValueError("cannot compute tau: no examples have been added")
    if not (math.isfinite(alpha) and math.isfinite(c) and c > 0):
        raise ValueError(f"alpha must be finite and c > 0, got alpha={alpha}, c={c}")
    return min(1.0, c * count ** (-alpha))


@dataclass(frozen=True)
class Cut:
    """A validated choice of spectral filter; see the module docstring for the kinds.

    Parameters
    ----------
    kind : str
        One of ``KINDS``.
    tau : float, optional
        The relative cut of ``kind="fixed"``, in [0, 1].
    alpha, c : float
        The power law of ``kind="power"``: τ = c·n^(−α), α ≥ 0, c > 0.
    ridge : float, optional
        ρ > 0 of ``kind="ridge"``.
    prior : float, optional
        N > 0 pseudo-pairs of ``kind="prior"``.

    Examples
    --------
    >>> Cut.power(alpha=0.8)
    Cut('alpha=0.8')
    >>> Cut.parse("ridge=gcv").kind
    'ridge-gcv'
    """

    kind: str = "power"
    tau: float | None = None
    alpha: float = 1.0
    c: float = 1.0
    ridge: float | None = None
    prior: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cut kind must be one of {KINDS}, got {self.kind!r}")
        alpha, c = finite_number(self.alpha, "alpha"), finite_number(self.c, "c")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if c <= 0:
            raise ValueError(f"c must be > 0, got {c}")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "c", c)
        if self.kind == "fixed":
            tau = finite_number(self.tau, "tau")
            if not 0.0 <= tau <= 1.0:
                raise ValueError(f"tau is a relative singular-value cut in [0, 1], got {tau}")
            object.__setattr__(self, "tau", tau)
        elif self.tau is not None:
            raise ValueError(f"tau is only used by the 'fixed' cut, not {self.kind!r}")
        if self.kind == "ridge":
            rho = finite_number(self.ridge, "ridge")
            if rho <= 0:
                raise ValueError(f"ridge must be > 0, got {rho}")
            object.__setattr__(self, "ridge", rho)
        elif self.ridge is not None:
            raise ValueError(f"ridge is only used by the 'ridge' cut, not {self.kind!r}")
        if self.kind == "prior":
            pairs = finite_number(self.prior, "prior")
            if pairs <= 0:
                raise ValueError(f"prior (pseudo-pairs) must be > 0, got {pairs}")
            object.__setattr__(self, "prior", pairs)
        elif self.prior is not None:
            raise ValueError(f"prior is only used by the 'prior' cut, not {self.kind!r}")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def power(cls, alpha: float = 1.0, c: float = 1.0) -> Cut:
        """Truncation at τ = c·n^(−α)."""
        return cls("power", alpha=alpha, c=c)

    @classmethod
    def fixed(cls, tau: float) -> Cut:
        """Truncation at a fixed relative τ."""
        return cls("fixed", tau=tau)

    @classmethod
    def gcv(cls) -> Cut:
        """Truncation rank by generalised cross-validation."""
        return cls("gcv")

    @classmethod
    def auto(cls) -> Cut:
        """Ridge level by exact leave-one-out while the rows are kept; GCV truncation beyond."""
        return cls("auto")

    @classmethod
    def ridge_penalty(cls, ridge: float | str) -> Cut:
        """Ridge with penalty ρ, or ``"gcv"`` / ``"auto"`` to choose ρ."""
        if ridge in ("gcv", "auto"):
            return cls(f"ridge-{ridge}")
        return cls("ridge", ridge=ridge)

    @classmethod
    def pseudo_pairs(cls, pairs: float) -> Cut:
        """Ridge worth ``pairs`` pseudo-pairs: ρ = pairs·tr(G)/(n·d)."""
        return cls("prior", prior=pairs)

    @classmethod
    def from_params(
        cls,
        tau: float | str | None = None,
        alpha: float | None = None,
        c: float | None = None,
        ridge: float | str | None = None,
    ) -> Cut:
        """The cut named by the separate parameters used by ``GramStats.solve`` and the estimators:
        ``tau`` (a number, ``"gcv"``, or ``None`` for the power law of ``alpha``, ``c``, each 1 when
        None) or ``ridge`` (a number, ``"gcv"`` or ``"auto"``), not both; ``alpha``/``c`` with
        either are refused, as ``Cut.parse("tau=0.1,alpha=0.5")`` is (they would be ignored)."""
        if tau is not None and ridge is not None:
            raise ValueError("give either tau (truncation) or ridge, not both")
        if (tau is not None or ridge is not None) and (alpha is not None or c is not None):
            given = "tau" if tau is not None else "ridge"
            raise ValueError(
                f"alpha and c shape the power-law cut τ = c·n^(−alpha); with {given} they would be "
                f"ignored: give {given} alone, or alpha/c without {given}"
            )
        alpha, c = 1.0 if alpha is None else alpha, 1.0 if c is None else c
        if ridge is not None:
            if isinstance(ridge, str) and ridge not in ("gcv", "auto"):
                raise ValueError(f"ridge must be a number, 'gcv' or 'auto', got {ridge!r}")
            return cls.ridge_penalty(ridge)
        if tau is None:
            return cls.power(alpha, c)
        if isinstance(tau, str):
            if tau not in ("gcv", "auto"):
                raise ValueError(f"tau must be a number, 'gcv', 'auto' or None, got {tau!r}")
            return cls.gcv() if tau == "gcv" else cls.auto()
        return cls.fixed(tau)

    @classmethod
    def parse(cls, spec: Cut | str | float | None) -> Cut:
        """A cut from a ``Cut``, ``None`` (the default power law), a number (fixed τ) or text:
        ``"gcv"``, ``"0.01"``, ``"alpha=0.8"``, ``"alpha=0.8,c=2"``, ``"ridge=1e-2"``, ``"ridge=gcv"``."""
        if spec is None:
            return cls.power()
        if isinstance(spec, Cut):
            return spec
        if isinstance(spec, bool) or not isinstance(spec, (str, int, float)):
            raise TypeError(f"a cut is a Cut, a number or a string, got {type(spec).__name__}")
        if not isinstance(spec, str):
            return cls.fixed(spec)
        text = spec.strip().lower()
        if text in ("gcv", "auto", "power", "default"):
            return {"gcv": cls.gcv, "auto": cls.auto}.get(text, cls.power)()
        if "=" not in text:
            try:
                tau = finite_number(text, "tau")
            except ValueError as exc:  # name the forms a cut takes, not only the number
                raise ValueError(
                    f"{exc}; a cut is gcv, auto, a relative tau in [0, 1] (tau=T), alpha=A[,c=C], "
                    "ridge=R (or ridge=gcv, ridge=auto) or prior=N"
                ) from None
            return cls.fixed(tau)
        pairs = [_split_field(part, spec) for part in text.split(",")]
        twice = sorted({name for name, _ in pairs if [n for n, _ in pairs].count(name) > 1})
        if twice:  # dict() would keep the last one silently
            raise ValueError(f"cut {spec!r}: {', '.join(twice)} given more than once")
        fields = dict(pairs)
        if "ridge" in fields:
            if len(fields) > 1:
                raise ValueError(f"cut {spec!r}: ridge takes no other fields")
            text_rho = fields["ridge"]
            rho = text_rho if text_rho in ("gcv", "auto") else finite_number(text_rho, "ridge")
            return cls.ridge_penalty(rho)
        if "prior" in fields:
            if len(fields) > 1:
                raise ValueError(f"cut {spec!r}: prior takes no other fields")
            return cls.pseudo_pairs(finite_number(fields["prior"], "prior"))
        if "tau" in fields:
            if len(fields) > 1:
                raise ValueError(f"cut {spec!r}: tau takes no other fields")
            return cls.fixed(finite_number(fields["tau"], "tau"))
        unknown = set(fields) - {"alpha", "c"}
        if unknown:
            raise ValueError(
                f"cut {spec!r}: unknown field(s) {sorted(unknown)}; use tau, alpha, c, ridge or prior"
            )
        alpha = finite_number(fields.get("alpha", 1.0), "alpha")
        return cls.power(alpha, finite_number(fields.get("c", 1.0), "c"))

    # ----------------------------------------------------------------- use
    def apply(self, factor: SpectralFactor) -> tuple[torch.Tensor, float | None, float | None]:
        """The filter φ (r,) for ``factor`` and the (τ, ρ) it resolved to (one of them None)."""
        if self.kind in ("ridge", "ridge-gcv"):
            rho = factor.gcv_ridge() if self.kind == "ridge-gcv" else float(self.ridge)  # type: ignore[arg-type]
            return factor.ridge_filter(rho), None, rho
        if self.kind == "prior":
            penalty = self.fixed_penalty(factor.count, factor.dim)
            return factor.ridge_choice(penalty(float(factor.eigenvalues.sum())))  # type: ignore[misc]
        if self.kind in ("auto", "ridge-auto"):
            return factor.loo_choice(beyond="truncation" if self.kind == "auto" else "ridge")
        if self.kind == "power":
            tau = power_law_tau(factor.count, self.alpha, self.c)
        elif self.kind == "gcv":
            tau, rank = factor.gcv_truncation()
            return factor.rank_filter(rank), tau, None
        else:
            tau = float(self.tau)  # type: ignore[arg-type]
        return factor.truncation_filter(tau), tau, None

    def fixed_penalty(self, count: float, dim: int) -> Callable[[float], float] | None:
        """For the cuts that are a ridge set before the spectrum is known, ρ as a function of
        trace(G): ``ridge``, ρ itself; ``prior``, N·trace(G)/(n·d) (n = ``count`` = Σ wᵢ, d =
        ``dim``). None for every other kind (they need the eigenvalues). Such a ridge can be
        solved without the eigendecomposition (:mod:`faast.solver.direct`)."""
        if self.kind == "ridge":
            rho = float(self.ridge)  # type: ignore[arg-type]
            return lambda trace: rho
        if self.kind == "prior":
            pairs = float(self.prior)  # type: ignore[arg-type]
            return lambda trace: pairs * trace / (count * dim)
        return None

    def solve(self, factor: SpectralFactor) -> tuple[torch.Tensor, SolveInfo]:
        """Fast weights W (m, d) float64 for ``factor`` and what the solve did."""
        phi, tau, rho = self.apply(factor)
        info = SolveInfo(
            "ridge" if rho is not None else "truncation",
            tau,
            rho,
            int((phi > 0).sum()),
            round(factor.count),
            factor.lambda_max,
        )
        return factor.weights(phi), info

    # ----------------------------------------------------------------- text / JSON
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "power":
            out.update(alpha=self.alpha, c=self.c)
        elif self.kind == "fixed":
            out["tau"] = self.tau
        elif self.kind == "ridge":
            out["ridge"] = self.ridge
        elif self.kind == "prior":
            out["prior"] = self.prior
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cut:
        if not isinstance(data, dict) or "kind" not in data:
            raise ValueError(f"a cut is a dict with a 'kind', got {data!r}")
        return cls(**data)

    def __str__(self) -> str:
        if self.kind == "power":
            return f"alpha={self.alpha:g}" + ("" if self.c == 1.0 else f",c={self.c:g}")
        if self.kind == "fixed":
            return f"tau={self.tau:g}"
        if self.kind == "ridge":
            return f"ridge={self.ridge:g}"
        if self.kind == "prior":
            return f"prior={self.prior:g}"
        return {"gcv": "gcv", "auto": "auto", "ridge-gcv": "ridge=gcv", "ridge-auto": "ridge=auto"}[self.kind]

    def __repr__(self) -> str:
        return f"Cut({str(self)!r})"


def make_cut(
    cut: Cut | float | str | None = None,
    *,
    tau: float | str | None = None,
    alpha: float | None = None,
    c: float | None = None,
    ridge: float | str | None = None,
) -> Cut:
    """One :class:`Cut` from either ``cut`` (anything :meth:`Cut.parse` reads) or the separate
    parameters ``tau``/``alpha``/``c``/``ridge`` (:meth:`Cut.from_params`). A number or ``"gcv"``
    given as ``cut`` together with ``alpha``/``c``/``ridge`` is read as ``tau`` (the older
    positional form ``solve(tau, alpha=..., ridge=...)``)."""
    separate = tau is not None or alpha is not None or c is not None or ridge is not None
    if cut is not None and separate:
        if isinstance(cut, Cut) or tau is not None:
            raise ValueError("give a cut or the separate tau/alpha/c/ridge parameters, not both")
        tau, cut = cut, None
    if cut is not None:
        return Cut.parse(cut)
    return Cut.from_params(tau, alpha, c, ridge)


def _split_field(part: str, spec: str) -> tuple[str, str]:
    name, sep, value = part.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValueError(f"cut {spec!r}: expected fields like alpha=0.8 or ridge=1e-2, got {part!r}")
    return name.strip(), value.strip()
