"""Multinomial logistic regression in closed-form steps on the spectral factor (no backprop).

Least squares to one-hot targets trails the logistic loss in accuracy. The logistic objective

    f(W) = Σᵢ wᵢ CE(softmax(W kᵢ), yᵢ) + (ρ/2) ‖W‖²_F          W (m, d), kᵢ (d,)

has no closed form, but its curvature is bounded once and for all (Böhning 1992): the Hessian of
the softmax cross-entropy in the scores, diag(p) − p pᵀ, never exceeds ½ I, so

    ∇²f(W) ⪯ (½ G + ρ I) ⊗ I_m,        G = Σᵢ wᵢ kᵢ kᵢᵀ  (the statistics' Gram).

Minimising that quadratic upper bound is one closed-form solve with the eigendecomposition
G = U Λ Uᵀ the least-squares fit has already made, W ← W − P ∇f(W) with
P = U diag(1 / (½λ + ρ)) Uᵀ and ∇f(W) = Σᵢ wᵢ (pᵢ − vᵢ) kᵢᵀ + ρ W. The bound is loose (the
softmax's curvature is mostly well below ½), so the steps
(:mod:`faast.solver.logistic_steps`) are L-BFGS steps with P as the initial inverse Hessian and
an exact line search on the scores: two thin products over the rows per step (O(n·d·m)), no other
factorisation. On the dual route (n < d) the steps run in the span of the rows, where the
gradient lives. (Until 2026-12 the steps were the bound's own, with Nesterov momentum: ten per
penalty, each one pass.)

The penalty ρ (ρ = 1/C of scikit-learn's ``LogisticRegression``) can be chosen from the training
set alone (:func:`choose_ridge`): a seeded stratified tenth of the examples is held out, the
others are fitted along a path of penalties from strong to weak (each warm-started from the last;
stronger ones too when the strongest tried wins), and the penalty with the lowest held-out
cross-entropy wins, where a penalty beats the best so far only by lowering it by more than
``PATH_TOLERANCE`` (1 %) of it; each walk stops at the first that does not (a flat or
separable path — few-shot data are separable — no longer walks on for negligible gains). While
no penalty so far beats the plateau's loss by that fraction — the held-out loss of the kept
examples' class frequencies, what an intercept predicts while the penalty hides the features, or
log m where that is lower or there is no intercept (since 2026-12-06: with imbalanced classes
log m was the level, and the class frequencies, more than 1 % below it, passed for found
features) — the penalties are still too
strong for the features to show (uncentred or unevenly scaled features, whose few large
directions make the scale s, start there), so any decrease beats the best and the walk goes on
until the loss stops falling; a decade whose loss stays within ``FLAT_TOLERANCE`` of the best
there (the penalty hides the features entirely, as when they are far smaller than the
intercept's constant column) neither ends the walk nor counts towards its weakest decade. The
winner must also beat the null loss log m (predicting the m classes uniformly: guessing) by that
fraction; when none does, the held-out examples cannot rank the penalties and ρ = s /
:data:`~faast.solver.spectral.FALLBACK_DIVISOR` is used (as by the ``auto`` cut with one example
per class). (Not the class frequencies' loss: an intercept learns them, and under heavy class
weights their held-out loss is near zero, which no penalty beats by 1 %.)
When that tenth would be fewer than ``MIN_HELD_OUT`` examples (few-shot: one or two per
class), a couple of examples cannot rank penalties, so every example is held out once instead,
in ``HOLDOUT_FOLDS`` stratified folds (:func:`holdout_folds`), and the held-out cross-entropy is
summed over the folds. The
held-out examples' features still shape the bound G (a larger G is still an upper bound), their
labels are never fitted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faast.solver.blas_threads import single_threaded_blas
from faast.solver.logistic_kernels import RowProducts, logistic_gradient, preconditioner
from faast.solver.logistic_steps import CurvatureMemory, data_loss, quasi_newton_steps
from faast.solver.spectral import SpectralFactor, fallback_penalty, penalty_scale

__all__ = [
    "RidgeChoice",
    "choose_ridge",
    "fallback_penalty",
    "fit_logistic",
    "holdout_folds",
    "holdout_split",
    "logistic_gradient",
    "logistic_objective",
    "penalty_scale",
    "preconditioner",
]

#: :func:`choose_ridge` tries ρ = s · 10^(−t) with s = :func:`penalty_scale` (scale-free: the same
#: path for any feature scale and number of examples): t = START_DECADE, then one decade weaker at a
#: time while the held-out loss falls (up to WEAKEST_DECADE), and, when the first was best, one
#: decade stronger at a time (down to STRONGEST_DECADE).
START_DECADE, WEAKEST_DECADE, STRONGEST_DECADE = 1, 9, -3
#: Fraction of the examples :func:`choose_ridge` holds out.
HOLDOUT_FRACTION = 0.1
#: Below this many held-out examples, :func:`holdout_folds` holds out every example once instead,
#: in HOLDOUT_FOLDS stratified folds.
MIN_HELD_OUT, HOLDOUT_FOLDS = 30, 5
#: Along :func:`choose_ridge`'s path a penalty replaces the best one only when it lowers the
#: held-out cross-entropy by more than this fraction of the best; a walk ends at the first that
#: does not (near ties keep the penalty found first). The chosen penalty must also beat the null
#: loss log m (uniform predictions) by this fraction; until one does, any decrease replaces the
#: best (the path is still on the null plateau).
PATH_TOLERANCE = 0.01
#: On the null plateau a candidate whose held-out loss is within this fraction of the null loss of
#: the best so far neither replaces it nor ends the walk: the penalties still hide the features
#: entirely (as when the features are far smaller than the intercept's constant column, whose
#: curvature then sets s), so the walk goes on, and such flat decades do not count towards
#: WEAKEST_DECADE (the walk may go that many decades further, above the factor's noise floor).
FLAT_TOLERANCE = 1e-4


def logistic_objective(
    keys: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, weight: torch.Tensor, ridge: float
) -> float:
    """f(W) = Σᵢ wᵢ CE + (ρ/2)‖W‖²_F (float)."""
    _, loss = logistic_gradient(keys, labels, weights, weight)
    return loss + 0.5 * ridge * float((weight.to(torch.float64) ** 2).sum())


def fit_logistic(
    keys: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    factor: SpectralFactor,
    ridge: float,
    steps: int,
    init: torch.Tensor | None = None,
    num_classes: int | None = None,
    tolerance: float = 0.0,
    memory: CurvatureMemory | None = None,
    scale_init: bool = False,
) -> tuple[torch.Tensor, int]:
    """W (m, d) float64 after at most ``steps`` quasi-Newton steps on f
    (:func:`~faast.solver.logistic_steps.quasi_newton_steps`) from ``init`` (zeros by default; it
    should lie in the span of the rows on the dual route), and the number of steps taken: fewer
    when ½ gᵀ P g, the decrease a majorise–minimise step from there guarantees, is at most
    ``tolerance`` nats per unit of example weight (the classifier's ``tol``; 0: never) or a step
    falls below ``STEP_TOLERANCE`` of the weights. ``memory`` (updated in place): the curvature
    pairs of an earlier fit on these rows to start from (a path of penalties). ``scale_init``:
    start from c · ``init`` with c ≥ 0 minimising f along it (e.g. the least-squares weights).

    factor: the eigendecomposition of a Gram G ⪰ Σᵢ wᵢ kᵢ kᵢᵀ over these rows (the classifier's
    own, or one that also holds rows left out here); ridge: ρ > 0.
    """
    if ridge <= 0 or not math.isfinite(ridge):
        raise ValueError(f"ridge must be a positive finite number, got {ridge}")
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a non-negative finite number, got {tolerance}")
    if num_classes is not None:
        m = num_classes
    else:
        m = init.shape[0] if init is not None else int(labels.max()) + 1
    d = keys.shape[1]
    if init is None:
        init = torch.zeros(m, d, dtype=torch.float64, device=keys.device)
    phi = 1.0 / (0.5 * factor.eigenvalues + ridge)
    total_weight = _total_weight(keys, weights)
    if weights is not None:
        weights = weights.to(torch.float64)
    # on the CPU the products run through NumPy's BLAS on one thread, the rows split over Python
    # threads: no thread pool waits for work while another runs (see single_threaded_blas)
    with single_threaded_blas():
        return quasi_newton_steps(
            RowProducts(keys),
            labels,
            weights,
            preconditioner(factor, phi),
            init.to(device=keys.device, dtype=torch.float64),
            ridge,
            steps,
            tolerance * total_weight,
            memory,
            scale_init,
        )


@dataclass(frozen=True)
class RidgeChoice:
    """What :func:`choose_ridge` found: the penalty, the weights fitted on the kept examples at
    that penalty (averaged over the folds when there are several: a warm start for the fit on all
    of them), the penalties tried, in order, with their held-out cross-entropy per example, the
    number of folds, the null loss log m (the held-out cross-entropy per example of uniform
    predictions over the m classes), and, with one fold, the curvature pairs of its path scaled
    from the kept examples' weight to that of all the examples given (the final fit on all of
    them starts from them)."""

    ridge: float
    weight: torch.Tensor
    candidates: tuple[float, ...]
    holdout_loss: tuple[float, ...]
    folds: int = 1
    null_loss: float = math.inf
    memory: CurvatureMemory | None = None


def holdout_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(kept, held-out) indices: a seeded, stratified ``HOLDOUT_FRACTION`` of the examples, at
    least one per class, taken only from classes with two or more examples; None when no class
    has two (nothing can be held out)."""
    rng = np.random.RandomState(seed)
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        take = min(len(members) - 1, max(1, round(HOLDOUT_FRACTION * len(members))))
        held.append(rng.permutation(members)[:take])
    if not held:
        return None
    out = np.sort(np.concatenate(held))
    mask = np.zeros(len(labels), dtype=bool)
    mask[out] = True
    return np.flatnonzero(~mask), out


def holdout_folds(labels: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kept, held-out) index pairs for :func:`choose_ridge`: the one :func:`holdout_split` when it
    holds out at least ``MIN_HELD_OUT`` examples; otherwise ``HOLDOUT_FOLDS`` stratified folds
    that hold out every example of the classes with two or more examples exactly once (each
    class's examples, shuffled with ``seed``, dealt in turn to the folds, starting where the last
    class stopped), so every fold keeps at least one example of each such class. Empty folds are
    left out; an empty list when no class has two examples."""
    single = holdout_split(labels, seed)
    if single is None:
        return []
    if len(single[1]) >= MIN_HELD_OUT:
        return [single]
    rng = np.random.RandomState(seed)
    fold_of = np.full(len(labels), -1)
    turn = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue
        for member in rng.permutation(members):
            fold_of[member] = turn % HOLDOUT_FOLDS
            turn += 1
    folds = []
    for f in range(HOLDOUT_FOLDS):
        held = np.flatnonzero(fold_of == f)
        if held.size:
            folds.append((np.flatnonzero(fold_of != f), held))
    return folds


def choose_ridge(
    keys: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    factor: SpectralFactor,
    steps: int,
    seed: int,
    num_classes: int,
    tolerance: float = 0.0,
    start: torch.Tensor | None = None,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    intercept: bool = False,
) -> RidgeChoice | None:
    """The penalty ρ with the lowest held-out cross-entropy (see the module docstring); None when
    no example can be held out (every class has a single example). Examples of zero weight are
    neither kept nor held out, so the choice equals one made without them.

    The path starts at t = ``START_DECADE`` and walks one decade weaker at a time, ``steps``
    steps each (fewer when a step guarantees a decrease of at most ``tolerance`` nats per unit
    of example weight, see :func:`fit_logistic`) from the previous candidate's weights, until a
    candidate fails to lower the best held-out loss by more than ``PATH_TOLERANCE`` of it (at
    all, while no candidate so far beats the null loss by that fraction); if
    the first candidate was the best, it then walks one decade stronger at a time from it, the
    same way (features whose penalty scale is dominated by a few large directions need it).
    With several folds (:func:`holdout_folds`) every fold walks the same path from its own
    weights and a candidate's loss is summed over the folds. ``RidgeChoice.candidates`` lists
    the penalties in the order tried. Each fold's path carries its quasi-Newton curvature pairs
    from penalty to penalty; the first candidate starts from c · ``start`` (c ≥ 0 fitted along
    it; e.g. the least-squares weights), or from zero.

    ``folds``: the (kept, held-out) index pairs to use instead of :func:`holdout_folds` of the
    examples of non-zero weight (for a caller that has ordered the rows so that each part is a
    range of rows: ranges are taken as views, not copied). ``intercept``: whether the design has
    an intercept column, which learns the class frequencies while the penalty hides the
    features: the null plateau is then at their held-out loss where that is below log m.
    """
    if folds is None:
        labels_np = labels.cpu().numpy()
        # examples of zero weight change nothing: left out of the split, so that a fit with them
        # chooses as one without them (the split of the others is not shifted by them)
        counted = np.arange(len(labels_np)) if weights is None else np.flatnonzero(weights.cpu().numpy() > 0)
        folds = [(counted[kept], counted[held]) for kept, held in holdout_folds(labels_np[counted], seed)]
    if not folds:
        return None
    scale = penalty_scale(factor)
    if scale <= 0:
        return None

    def part(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
            rows = slice(int(index[0]), int(index[0]) + index.size)  # a range of rows: views
            return keys[rows], labels[rows], None if weights is None else weights[rows]
        i = torch.as_tensor(index, device=keys.device)
        # index_select: a third of the time of keys[i] for 54,000 × 1280 rows on one thread
        return keys.index_select(0, i), labels[i], None if weights is None else weights[i]

    splits = [(part(kept), part(held)) for kept, held in folds]
    out_total = max(sum(_total_weight(k_out, w_out) for _, (k_out, _, w_out) in splits), 1e-300)
    null_loss = math.log(num_classes)  # uniform predictions, per unit of held-out weight
    # what a penalty that hides the features predicts: the kept examples' class frequencies, with
    # an intercept (imbalanced classes: below log m, so the plateau was missed and the walk ended
    # at the strongest penalties), uniform without one
    plateau_loss = min(null_loss, _prior_loss(splits, num_classes) / out_total) if intercept else null_loss
    tried: list[tuple[float, float, list[torch.Tensor]]] = []  # (ρ, held-out loss, weights per fold)
    memories = [CurvatureMemory() for _ in splits]  # each fold's curvature pairs, along the path

    def walk(decades: Iterable[int], init: list[torch.Tensor] | None, weakest: int | None = None) -> None:
        """Fit along ``decades`` from ``init`` until the held-out loss stops beating the best. The
        weaker walk (``weakest`` given) also goes on through decades flat on the null plateau
        (they hid the features), and past ``weakest`` by as many decades as were flat, above the
        factor's noise floor."""
        current: list[torch.Tensor | None] = list(init) if init is not None else [start] * len(splits)
        for t in decades:
            ridge = scale * 10.0 ** (-t)
            if weakest is not None and t > weakest:
                flats = sum(flat(i) for i in range(len(tried)))
                if t > weakest + flats or ridge < factor.noise_floor:
                    return
            loss = 0.0
            for f, ((k_fit, y_fit, w_fit), (k_out, y_out, w_out)) in enumerate(splits):
                current[f], _ = fit_logistic(
                    k_fit,
                    y_fit,
                    w_fit,
                    factor,
                    ridge,
                    steps,
                    current[f],
                    num_classes,
                    tolerance,
                    memories[f],
                    scale_init=init is None and not tried,
                )
                loss += data_loss(k_out, y_out, w_out, current[f])
            tried.append((ridge, loss / out_total, list(current)))  # type: ignore[arg-type]
            if not beats_best(len(tried) - 1) and not (weakest is not None and flat(len(tried) - 1)):
                return  # (flat decades continue only the weaker walk: stronger ones hide more)

    def flat(index: int) -> bool:
        """Whether candidate ``index`` is on the null plateau within ``FLAT_TOLERANCE`` of the
        best earlier loss (the penalties still hide the features)."""
        best = min((entry[1] for entry in tried[:index]), default=math.inf)
        on_plateau = not best < plateau_loss * (1.0 - PATH_TOLERANCE)
        return on_plateau and abs(tried[index][1] - best) <= FLAT_TOLERANCE * null_loss

    def beats_best(index: int) -> bool:
        """Whether candidate ``index`` lowers the held-out loss of every earlier one by more
        than ``PATH_TOLERANCE`` of it, or at all while none of them beats the plateau's loss (the
        class frequencies' or, lower, log m) by that fraction (on the null plateau a small
        decrease is the first sign of the features)."""
        best = min((entry[1] for entry in tried[:index]), default=math.inf)
        if not best < plateau_loss * (1.0 - PATH_TOLERANCE):
            return tried[index][1] < best
        return tried[index][1] < best * (1.0 - PATH_TOLERANCE)

    walk(itertools.count(START_DECADE), None, weakest=WEAKEST_DECADE)
    winners = [i for i in range(len(tried)) if beats_best(i)]  # in the order tried; the last is best
    if winners == [0]:  # the strongest so far won: go stronger
        walk(range(START_DECADE - 1, STRONGEST_DECADE - 1, -1), tried[0][2])
        winners = [i for i in range(len(tried)) if beats_best(i)]
    best = winners[-1]
    if not tried[best][1] < null_loss * (1.0 - PATH_TOLERANCE):
        # no penalty predicts the held-out labels better than guessing: the held-out examples
        # cannot rank the penalties, so the fallback penalty is used (as with none held out)
        fallback = fallback_penalty(factor)
        best = min(range(len(tried)), key=lambda i: abs(math.log(tried[i][0] / fallback)))
    ridge, _, fold_weights = tried[best]
    weight = fold_weights[0] if len(fold_weights) == 1 else torch.stack(fold_weights).mean(dim=0)
    return RidgeChoice(
        ridge,
        weight,
        tuple(e[0] for e in tried),
        tuple(e[1] for e in tried),
        folds=len(splits),
        null_loss=null_loss,
        memory=_for_all_rows(memories, splits, _total_weight(keys, weights)),
    )


def _prior_loss(
    splits: list[tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], tuple]], num_classes: int
) -> float:
    """Σ over the folds of the held-out cross-entropy (summed over the held-out weight) of
    predicting each fold's kept class frequencies (weighted): what a fit whose penalty hides the
    features predicts with an intercept. Infinite when a held-out class is never kept."""
    total = 0.0
    for (_, y_fit, w_fit), (_, y_out, w_out) in splits:
        kept = torch.bincount(y_fit, weights=w_fit, minlength=num_classes).to(torch.float64)
        held = torch.bincount(y_out, weights=w_out, minlength=num_classes).to(torch.float64)
        share = kept / kept.sum()
        seen = held > 0
        if bool((share[seen] <= 0).any()):
            return math.inf
        total += float(-(held[seen] * share[seen].log()).sum())
    return total


def _for_all_rows(
    memories: list[CurvatureMemory],
    splits: list[tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None], Any]],
    total: float,
) -> CurvatureMemory | None:
    """The single fold's curvature pairs with its data-term changes scaled from the kept
    examples' weight to ``total`` (None with several folds: their pairs differ)."""
    if len(memories) != 1:
        return None
    (k_fit, _, w_fit), _ = splits[0]
    return memories[0].scaled(total / _total_weight(k_fit, w_fit))


def _total_weight(keys: torch.Tensor, weights: torch.Tensor | None) -> float:
    """Σᵢ wᵢ over these rows (n when unweighted)."""
    return float(keys.shape[0]) if weights is None else float(weights.to(torch.float64).sum())
