"""The temperature of ``predict_proba`` from exact leave-one-out scores.

A least-squares fit to one-hot targets gives scores in the targets' units, not logits:
``softmax(T · scores)`` needs a temperature T. ``FaastClassifier(logit_scale="auto")`` takes the T
that minimises the weighted cross-entropy of the training examples' *leave-one-out* scores,

    CE(T) = Σᵢ wᵢ [log Σ_c exp(T·s₋ᵢ,c) − T·eᵧᵢ·s₋ᵢ] / Σᵢ wᵢ,

where s₋ᵢ is the prediction for example i of the fit without it: for a linear smoother with hat
matrix H (weighted rows), vᵢ − s₋ᵢ = (vᵢ − ŝᵢ) / (1 − hᵢ) (:mod:`faast.solver.loo`), so no refit is
made. CE is convex in T (a log-sum-exp of functions linear in T): CE′(T) = mean of
E_p[s₋ᵢ] − eᵧᵢ·s₋ᵢ and CE″(T) = mean of Var_p[s₋ᵢ] ≥ 0, under p = softmax(T·s₋ᵢ). The minimiser is
found by Newton steps kept inside a bracket (bisection when a step leaves it).

Weights count examples (scikit-learn's ``sample_weight``): a row of weight w stands for w
examples, one of which is held out (:func:`held_out_scores`), and counts w times in CE.

*The held-out example's class keeps its share.* Least squares to one-hot targets pulls the
scores towards the classes with more target weight, and holding example i out takes weight from
its own class only: with two examples per class, the fit without i sees its class half as often
as every other, and its held-out predictions favour the other classes far more than a test
example's do (on the few-shot folds of ``benchmarks/classifier_calibration.py`` held-out accuracy
fell below chance where test accuracy was well above it, and T to 0). So s₋ᵢ is the prediction of
the fit without i whose other examples of i's class have their targets scaled by
W_c / (W_c − δᵢ) (W_c the class's total weight, δᵢ the weight held out): the class keeps its total
target weight. The fit is linear in each target column, so this is s₋ᵢ with its own class's
entry multiplied by that factor (:func:`restore_class_share`) — still exact, still no refit.

Some rows say nothing and are left out: an example that is its class's only one (its held-out
prediction has no class to give it; with one example per class nothing is left and the fallback
is used), and one the fit interpolates (hᵢ = 1).

*Smoothing.* When every held-out prediction is right by a margin, CE falls without end as T
grows, and the temperature would promise certainty that a few dozen examples cannot support.
So the targets are smoothed by Laplace's rule of succession: after n held-out predictions, the
next is taken to err with probability 1/(n + 2) (n = Σ wᵢ), spread evenly over the other
classes — ``CE`` above with eᵧ replaced by (1 − ε)eᵧ + ε(1 − eᵧ)/(m − 1), ε = 1/(n + 2) —
which keeps T finite and matters little once n is large. T is also held to
[:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from faast.solver.loo import LEVERAGE_LIMIT
from faast.solver.spectral import SpectralFactor

#: Bounds of the temperature (scores are in one-hot units: at T = 1000 a score gap of 0.01 is
#: odds of e¹⁰).
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e3
_ITERATIONS = 60
#: Newton stops once a step moves T by less than this fraction (quadratic convergence: the T it
#: returns is then far more accurate than this).
_RELATIVE_TOL = 1e-4

Reduce = Callable[[torch.Tensor], torch.Tensor]


def held_out_scores(
    onehot: torch.Tensor, fitted: torch.Tensor, leverage: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out predictions s₋ᵢ = vᵢ − (vᵢ − ŝᵢ)/(1 − hᵢ·δᵢ/wᵢ) and which rows have one.

    Weights count examples (as scikit-learn's ``sample_weight``: weight 2 is the example twice),
    so one example is held out: δᵢ = min(wᵢ, 1) of row i's weight (Sherman–Morrison: removing
    δ of it scales the hat matrix's diagonal by δ/wᵢ). Weight 2 and the example twice then give
    the same scores; with weights ≤ 1 it is exact leave-one-out.

    onehot: (n, m) targets; fitted: (n, m) predictions ŝ of the fit on every row; leverage:
    (n,) the hat matrix's diagonal hᵢ (of the weighted rows); weights: (n,) wᵢ > 0. Returns
    (n, m) float64 and an (n,) bool mask, False where the fit interpolates what is held out.
    """
    w = weights.to(torch.float64)
    held = leverage.to(torch.float64) * torch.clamp(1.0 / w, max=1.0)
    denom = 1.0 - held
    usable = denom > LEVERAGE_LIMIT
    hot = onehot.to(torch.float64)
    resid = (hot - fitted.to(torch.float64)) / denom.clamp_min(LEVERAGE_LIMIT)[:, None]
    return hot - resid, usable


def restore_class_share(
    loo: torch.Tensor, onehot: torch.Tensor, class_total: torch.Tensor, held: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out predictions of fits in which the held-out example's class keeps its total target
    weight: the own-class entry of each row of loo (n, m) multiplied by W / (W − δ); and which
    rows have such a prediction at all.

    onehot: (n, m) the rows' one-hot targets; class_total: (n,) W, the total weight of each row's
    class; held: (n,) δ, the weight held out. Returns (n, m) float64 and an (n,) bool mask, False
    for a class's only example (W − δ at most 10⁻⁹ W, rounding: predicted without its class, left
    out by callers; its row is unchanged).
    """
    rest = class_total - held
    scale_up = torch.where(rest > 0, class_total / rest.clamp_min(torch.finfo(torch.float64).tiny), 1.0)
    hot = onehot.to(torch.float64)
    return loo + hot * loo * (scale_up - 1.0)[:, None], rest > 1e-9 * class_total


def kept_rows_loo(
    factor: SpectralFactor, phi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out predictions (:func:`held_out_scores`) of the rows a factor keeps
    (``factor.has_rows``), for the filter φ (r,): the shrink factors sⱼ = φⱼλⱼ give the fitted
    values A diag(s) Aᵀ V and leverages (A∘A) s of the weighted rows (:mod:`faast.solver.loo`).
    One-hot values only: the kept values are √wᵢ·eᵧ, so √wᵢ is each row's sum.

    Returns the predictions (n′, m) float64 (the held-out example's class keeping its share:
    :func:`restore_class_share`), the one-hot targets (n′, m) and the weights (n′,) of the rows
    that have an informative one: not interpolated, and their class keeps weight once the
    example is held out (a class's only example is predicted without its class).
    """
    left, values = factor.left, factor.row_values
    if left is None or values is None:
        raise ValueError("the factor keeps no rows: exact leave-one-out needs them")
    r = left.shape[1]
    shrink = phi[:r].to(torch.float64) * factor.eigenvalues[:r]
    fitted = left @ (shrink[:, None] * (left.T @ values))  # (n, m), rows scaled by √wᵢ
    leverage = (left * left) @ shrink
    root = values.sum(dim=1)
    live = root > 0
    root = torch.where(live, root, torch.ones_like(root))
    onehot = values / root[:, None]
    weights = root * root
    loo, usable = held_out_scores(onehot, fitted / root[:, None], leverage, weights)
    class_weight = onehot.T @ weights  # (m,)
    class_total = onehot @ class_weight  # (n,) W of each row's class
    held = torch.clamp(weights, max=1.0)
    loo, shared = restore_class_share(loo, onehot, class_total, held)
    keep = usable & live & shared
    return loo[keep], onehot[keep], weights[keep]


def sampled_rows_loo(
    factor: SpectralFactor,
    phi: torch.Tensor,
    rows_times: Callable[[torch.Tensor], torch.Tensor],
    onehot: torch.Tensor,
    weights: torch.Tensor | None,
    weight_matrix: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Held-out predictions (:func:`held_out_scores`) of rows the statistics hold but do not
    keep (the primal route), for the filter φ (r,): hᵢ = wᵢ Σⱼ φⱼ (xᵢ·uⱼ)² (the weighted rows'
    hat matrix, U the factor's basis) and ŝᵢ = W xᵢ. O(s·d·r) for s rows.

    rows_times: M (d, k) ↦ X M (s, k) float64 for the rows X as the solve saw them (before
    weighting; the caller need not build X); onehot: (s, m); weights: (s,) > 0 or None;
    weight_matrix: (m, d) the fast weights of the filter. Returns the predictions (s′, m)
    float64, the one-hot targets and the weights (s′,), interpolated rows left out.
    """
    proj = rows_times(factor.basis.to(torch.float64))  # (s, r)
    fitted = rows_times(weight_matrix.to(torch.float64).T)  # (s, m)
    w = torch.ones(proj.shape[0], dtype=torch.float64, device=proj.device) if weights is None else weights
    w = w.to(device=proj.device, dtype=torch.float64)
    leverage = w * ((proj * proj) @ phi.to(device=proj.device, dtype=torch.float64))
    loo, usable = held_out_scores(onehot, fitted, leverage, w)
    return loo[usable], onehot[usable].to(torch.float64), w[usable]


def fit_temperature(
    scores: torch.Tensor,
    onehot: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    fallback: float,
    reduce: Reduce | None = None,
) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] minimising the weighted cross-entropy of
    softmax(T · scores) against ``onehot`` smoothed by Laplace's rule (module docstring).

    scores: (n, m) held-out (leave-one-out) scores; onehot: (n, m) one-hot targets; weights: (n,)
    ≥ 0 or None. ``reduce`` sums a tensor across processes (data-parallel fits: every process
    then finds the same T from its own rows). Returns ``fallback`` when no row carries weight.
    """
    s = scores.detach().to(device="cpu", dtype=torch.float64).numpy()
    hot = onehot.detach().to(device="cpu", dtype=torch.float64).numpy()
    w = np.ones(s.shape[0]) if weights is None else weights.detach().to("cpu", torch.float64).numpy()

    def summed(values: list[float]) -> list[float]:
        if reduce is None:
            return values
        return reduce(torch.tensor(values, dtype=torch.float64)).tolist()

    (total,) = summed([float(w.sum())])
    if not total > 0:
        return float(fallback)
    m = hot.shape[1]
    miss = 1.0 / (total + 2.0)  # Laplace's rule: after n held-out examples, a new one errs ≥ 1/(n+2)
    target = (1.0 - miss) * (s * hot).sum(axis=1) + miss * (s * (1.0 - hot)).sum(axis=1) / max(
        m - 1, 1
    )  # (n,) the smoothed targets' expected score
    shifted = s - s.max(axis=1, keepdims=True)  # softmax(t·s) = softmax(t·shifted), no overflow

    def moments(t: float) -> tuple[float, float]:
        """(Σw·CE′, Σw·CE″) at temperature t, summed across processes."""
        p = np.exp(t * shifted)
        p /= p.sum(axis=1, keepdims=True)
        ps = p * s
        mean = ps.sum(axis=1)
        var = np.maximum((ps * s).sum(axis=1) - mean * mean, 0.0)
        grad, curv = summed([float(w @ (mean - target)), float(w @ var)])
        return grad, curv

    lo, hi = MIN_TEMPERATURE, MAX_TEMPERATURE
    t = min(max(float(fallback), lo), hi)
    for _ in range(_ITERATIONS):
        grad, curv = moments(t)
        if grad > 0:
            hi = t
        else:
            lo = t
        step = t - grad / curv if curv > 0 else math.nan
        if not lo < step < hi:  # the step leaves the bracket: is the optimum at a bound?
            if hi == MAX_TEMPERATURE and step >= hi and moments(hi)[0] <= 0:
                return hi  # CE still falls at the largest T
            if lo == MIN_TEMPERATURE and step <= lo and moments(lo)[0] >= 0:
                return lo  # CE rises from the smallest T: (nearly) uniform is best
            step = math.sqrt(lo * hi)  # bisection in log T
        if abs(step - t) <= _RELATIVE_TOL * t:
            return step
        t = step
    return t
