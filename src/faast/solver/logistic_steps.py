"""The steps of the closed-form logistic fit (:mod:`faast.solver.logistic`): preconditioned
limited-memory quasi-Newton steps with an exact line search, no backprop.

The objective f(W) = Σᵢ wᵢ CE(softmax(W kᵢ), yᵢ) + (ρ/2)‖W‖²_F (W (m, d)) is minimised from a
start W₀ by steps W ← W + α D where

* D = −H ∇f(W) with H the L-BFGS inverse-Hessian estimate (Nocedal & Wright 2006, Alg. 7.4) built
  on the preconditioner P = U diag(1 / (½λ + ρ)) Uᵀ — the inverse of Böhning's bound ½ G + ρ I on
  the Hessian (G = U Λ Uᵀ the statistics' Gram, already factored by the least-squares solve) —
  from the last ``MEMORY`` pairs (step, change of gradient). Without pairs D = −P ∇f: the
  majorise–minimise step of that bound.
* α minimises f along D exactly (safeguarded Newton on the convex φ(α) = f(W + α D)). The scores
  are linear in W, so with S = K Wᵀ (n, m) kept and S_D = K Dᵀ computed once per step, every
  evaluation of φ, φ′ and φ″ is a pass over the n × m scores only, not over the keys.

So a step costs two products over the keys (K Dᵀ and the gradient Rᵀ K, R (n, m) the weighted
residuals softmax − one-hot), like one majorise–minimise step, but the line search takes the
longer step that the loose bound (the softmax's curvature is mostly well below ½) would shorten,
and the pairs add the curvature the bound misses. A fit holds three n × m float64 arrays (the
scores, the direction's scores, the softmax, which also serves as the residuals); the passes
over them run ``SCORE_CHUNK_ROWS`` rows at a time, so their temporaries stay small.

The pairs hold the change of the data term's gradient only; the penalty's share ρ s is added when
they are used, so a memory stays valid when ρ changes along a path of penalties
(:func:`~faast.solver.logistic.choose_ridge` passes one from penalty to penalty).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from faast.solver.logistic_kernels import RowProducts

__all__ = ["MEMORY", "CurvatureMemory", "data_loss", "line_search", "quasi_newton_steps", "softmax_terms"]

#: Pairs (step, change of the data term's gradient) an L-BFGS memory keeps.
MEMORY = 10
#: The line search ends once |φ′(α)| ≤ LINE_SEARCH_SLOPE · |φ′(0)| (a strong Wolfe condition) and
#: f decreased by at least ARMIJO · α |φ′(0)|, or after LINE_SEARCH_ROUNDS evaluations.
LINE_SEARCH_SLOPE, ARMIJO, LINE_SEARCH_ROUNDS = 0.1, 1e-4, 20
#: Rows per chunk of the passes over the n × m scores (softmax, line search): their temporaries
#: stay this many rows, so a fit holds only the scores, the direction's scores and the softmax.
SCORE_CHUNK_ROWS = 8192
#: A step this small relative to the weights (Frobenius norms) ends the steps early.
STEP_TOLERANCE = 1e-10


@dataclass
class CurvatureMemory:
    """The last ``MEMORY`` pairs (s, y) of an L-BFGS fit, (m, d) float64 each, oldest first: s a
    step taken, y the change of the data term's gradient over it (the penalty's ρ s is added
    when used, so the memory serves any ρ)."""

    steps: list[torch.Tensor] = field(default_factory=list)
    changes: list[torch.Tensor] = field(default_factory=list)
    #: The weights (m, d) the last fit with this memory returned and their scores K Wᵀ (n, m): a
    #: fit on the same rows that starts from those very weights reuses the scores (no pass).
    last: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, step: torch.Tensor, change: torch.Tensor) -> None:
        self.steps.append(step)
        self.changes.append(change)
        del self.steps[:-MEMORY], self.changes[:-MEMORY]

    def scaled(self, factor: float) -> CurvatureMemory:
        """A copy whose data-term changes are multiplied by ``factor`` (the same examples
        weighted ``factor`` times as much: a fit on all rows from a fit on a part of them),
        without the last scores (other rows)."""
        return CurvatureMemory(list(self.steps), [c * factor for c in self.changes])

    def direction(
        self,
        grad: torch.Tensor,
        scaled_grad: torch.Tensor,
        precondition: Callable[[torch.Tensor], torch.Tensor],
        ridge: float,
    ) -> torch.Tensor:
        """−H ∇f (m, d): the two-loop recursion on ``grad`` = ∇f with H₀ = P
        (``precondition``); ``scaled_grad`` = P ∇f is the answer without pairs. Pairs whose
        curvature sᵀy is not positive are skipped."""
        pairs = []
        for s, change in zip(self.steps, self.changes, strict=True):
            y = change + ridge * s
            sy = float((s * y).sum())
            if sy > 0:
                pairs.append((s, y, 1.0 / sy))
        if not pairs:
            return -scaled_grad
        q = grad.clone()
        alphas = []
        for s, y, rho in reversed(pairs):
            a = rho * float((s * q).sum())
            alphas.append(a)
            q -= a * y
        r = precondition(q)
        for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
            r += (a - rho * float((y * r).sum())) * s
        return -r


def softmax_terms(
    scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, float]:
    """softmax(S) (n, m) float64 (written into ``out`` when given) and Σᵢ wᵢ CE for scores S
    (n, m) float64 and labels (n,), ``SCORE_CHUNK_ROWS`` rows at a time."""
    probs = torch.empty_like(scores) if out is None else out
    total = 0.0
    for start in range(0, scores.shape[0], SCORE_CHUNK_ROWS):
        rows = slice(start, start + SCORE_CHUNK_ROWS)
        part = scores[rows]
        lse = torch.logsumexp(part, dim=1)
        torch.exp(part - lse[:, None], out=probs[rows])
        nll = lse - part.gather(1, labels[rows, None])[:, 0]
        total += float(nll.sum() if weights is None else (nll * weights[rows]).sum())
    return probs, total


def _along(
    scores: torch.Tensor,
    direction_scores: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    alpha: float,
    out: torch.Tensor | None = None,
) -> tuple[float, float, float]:
    """The data term Σᵢ wᵢ CE(S + α S_D) and its first and second derivatives in α, summed
    ``SCORE_CHUNK_ROWS`` rows at a time: Σᵢ wᵢ (E_p[S_Dᵢ] − S_Dᵢ,yᵢ) and Σᵢ wᵢ Var_p[S_Dᵢ], p the
    softmax at α (written into ``out`` (n, m) when given)."""
    data = first = second = 0.0
    for start in range(0, scores.shape[0], SCORE_CHUNK_ROWS):
        rows = slice(start, start + SCORE_CHUNK_ROWS)
        along, y = direction_scores[rows], labels[rows, None]
        moved = scores[rows] + alpha * along
        lse = torch.logsumexp(moved, dim=1)
        probs = torch.exp(moved - lse[:, None], out=None if out is None else out[rows])
        mean = (probs * along).sum(dim=1)
        terms = torch.stack(
            [
                lse - moved.gather(1, y)[:, 0],
                mean - along.gather(1, y)[:, 0],
                (probs * along * along).sum(dim=1) - mean * mean,
            ]
        )  # (3, rows)
        sums = terms.sum(dim=1) if weights is None else terms @ weights[rows]
        data, first, second = data + float(sums[0]), first + float(sums[1]), second + float(sums[2])
    return data, first, second


def data_loss(
    keys: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, weight: torch.Tensor
) -> float:
    """Σᵢ wᵢ CE(softmax(W kᵢ), yᵢ) for keys (n, d), labels (n,), weights (n,) or None and W (m, d):
    one scores pass (:class:`~faast.solver.logistic_kernels.RowProducts`), no gradient."""
    scores = RowProducts(keys).scores(weight.to(torch.float64))
    return softmax_terms(scores, labels, None if weights is None else weights.to(torch.float64))[1]


def line_search(
    scores: torch.Tensor,
    direction_scores: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    loss: float,
    slope: float,
    penalty: tuple[float, float, float],
    out: torch.Tensor | None = None,
) -> tuple[float, float]:
    """α > 0 minimising φ(α) = Σᵢ wᵢ CE(S + α S_D) + (ρ/2)‖W + α D‖² by safeguarded Newton from
    α = 1 (convex φ: a Newton step outside the bracket [lo, hi] on the minimiser is replaced by
    doubling or bisection), and the data term at α; each evaluation is a pass over the scores in
    chunks (:func:`_along`), the last one at the α returned, whose softmax is left in ``out``
    (n, m) when given.

    scores S, direction_scores S_D: (n, m) float64; loss: the data term at α = 0; slope:
    φ′(0) = ⟨∇f, D⟩ < 0; penalty: (ρ, ⟨W, D⟩, ‖D‖²)."""
    ridge, wd, dd = penalty
    lo, hi, alpha = 0.0, math.inf, 1.0
    for round_ in range(LINE_SEARCH_ROUNDS):
        data, first, second = _along(scores, direction_scores, labels, weights, alpha, out)
        first += ridge * (wd + alpha * dd)
        second += ridge * dd
        decrease = loss - data - ridge * (alpha * wd + 0.5 * alpha * alpha * dd)
        accepted = abs(first) <= LINE_SEARCH_SLOPE * abs(slope) and decrease >= -ARMIJO * alpha * slope
        if accepted or round_ == LINE_SEARCH_ROUNDS - 1:  # the α evaluated last is returned
            break
        if first < 0:
            lo = alpha
        else:
            hi = alpha
        step = alpha - first / second if second > 0 else math.inf
        alpha = step if lo < step < hi else (2.0 * alpha if math.isinf(hi) else 0.5 * (lo + hi))
    return alpha, data


def quasi_newton_steps(
    products: RowProducts,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    precondition: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    ridge: float,
    steps: int,
    tolerance: float = 0.0,
    memory: CurvatureMemory | None = None,
    scale_start: bool = False,
) -> tuple[torch.Tensor, int]:
    """At most ``steps`` steps (module docstring) from W = ``start`` (m, d) float64 over the rows
    of ``products``, labels (n,) int64, weights (n,) float64 or None; ``precondition``:
    g (m, d) ↦ P g. The steps end early once ½ ∇fᵀ P ∇f — the decrease the majorise–minimise
    step from there guarantees — is at most ``tolerance`` (that step is still taken), or once a
    step is negligible next to the weights. ``memory`` (updated in place) starts the curvature
    estimate from an earlier fit on the same rows (or on a part of them, scaled). With
    ``scale_start`` the steps start from c W₀ instead, c ≥ 0 minimising f along W₀ (an exact
    line search from zero, e.g. along the least-squares weights). Returns the weights and the
    steps taken."""
    memory = CurvatureMemory() if memory is None else memory
    weight = start.to(torch.float64).clone()
    n = labels.shape[0]
    rows = torch.arange(n, device=labels.device)
    if memory.last is not None and memory.last[0] is start and memory.last[1].shape[0] == n:
        scores = memory.last[1]  # the fit that returned ``start`` left its scores: taken over
    elif bool((weight != 0).any()):
        scores = products.scores(weight)
    else:
        scores = torch.zeros(n, weight.shape[0], dtype=torch.float64, device=labels.device)
    memory.last = None
    if scale_start and bool((weight != 0).any()):
        weight, scores = _scaled_start(weight, scores, labels, weights, ridge)
    probs, loss = softmax_terms(scores, labels, weights)  # probs: reused as residuals, then softmax
    previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (step, data gradient before it)
    taken = 0
    for _ in range(steps):
        taken += 1
        residual = probs  # overwritten: the next softmax is written into it after the step
        residual[rows, labels] -= 1.0
        if weights is not None:
            residual *= weights[:, None]
        data_grad = products.gradient(residual)
        if previous is not None:
            memory.add(previous[0], data_grad - previous[1])
        grad = data_grad + ridge * weight
        scaled = precondition(grad)
        guaranteed = 0.5 * float((grad * scaled).sum())
        direction = memory.direction(grad, scaled, precondition, ridge)
        slope = float((grad * direction).sum())
        if not slope < 0:  # not a descent direction (rounding): the bound's own step
            direction, slope = -scaled, -2.0 * guaranteed
        if not slope < 0:  # the gradient vanished
            break
        direction_scores = products.scores(direction)
        penalty = (ridge, float((weight * direction).sum()), float((direction * direction).sum()))
        # the line search leaves the softmax at the α it returns in ``probs`` (free again: its
        # residuals are spent), computed from S + α S_D exactly as the scores are updated here
        alpha, loss = line_search(scores, direction_scores, labels, weights, loss, slope, penalty, probs)
        step = alpha * direction
        weight += step
        for start_row in range(0, n, SCORE_CHUNK_ROWS):
            rows_ = slice(start_row, start_row + SCORE_CHUNK_ROWS)
            scores[rows_] = scores[rows_] + alpha * direction_scores[rows_]
        del direction_scores
        previous = (step, data_grad)
        if guaranteed <= tolerance:
            break
        # relative, not floored at ‖W‖ = 1: features ×c with ρ ×c² scale the weights by 1/c and
        # must take the same steps (an absolute floor stopped features of scale 1e9 after a step)
        if float((step * step).sum()) <= STEP_TOLERANCE * STEP_TOLERANCE * float((weight * weight).sum()):
            break
    memory.last = (weight, scores)
    return weight, taken


def _scaled_start(
    start: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    ridge: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """c W₀ and its scores (n, m), c ≥ 0 minimising f along W₀ from zero (scores: K W₀ᵀ, scaled
    in place); zero weights and scores when W₀ does not point downhill."""
    n, m = scores.shape
    rows = torch.arange(n, device=scores.device)
    margin = scores.mean(dim=1) - scores[rows, labels]  # φ′(0) per example
    slope = float(margin.sum() if weights is None else (margin * weights).sum())
    if not slope < 0:
        return torch.zeros_like(start), scores.zero_()
    total = float(n) if weights is None else float(weights.sum())
    loss0 = total * math.log(m)  # uniform predictions at zero weights
    penalty = (ridge, 0.0, float((start * start).sum()))
    zero = torch.zeros_like(scores)
    alpha, _ = line_search(zero, scores, labels, weights, loss0, slope, penalty)
    del zero
    return alpha * start, scores.mul_(alpha)
