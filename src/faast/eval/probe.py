"""The backprop baseline: a linear probe trained by SGD with the FAAST authors' recipe.

Recipe (``vision/train.py`` / ``train_fewshot.py`` of the reference code): SGD lr 1e-3,
momentum 0.9, no weight decay, batch 16, 20 epochs, StepLR(step = epochs // 2, γ = 0.1); the
checkpoint with the best accuracy on a validation part of the training data is kept.

* ``validation="random"`` (full data): a random 20 % of the examples, no early stopping.
* ``validation="per-class"`` (few-shot): ⌊K/8⌋ (at least 1) examples per class, early stopping
  after ``patience`` epochs without improvement. With one shot there is nothing to hold out:
  all examples are trained on for every epoch and the last weights are kept.

The probe is ``nn.Linear(d, C)`` with bias and PyTorch's default initialisation. Minibatches are
taken by indexing the feature tensor (no DataLoader), so its time is the recipe's, not Python's.

A second, well-tuned backprop head (:func:`train_tuned_linear_head`, :class:`TunedHeadRecipe`):
the same ``nn.Linear(d, C)``, trained full-batch on the mean cross-entropy plus an L2 penalty
(weight decay) ``λ/2 · ‖W‖²`` (the bias is not penalised) by L-BFGS with a strong-Wolfe line search
in float64 until the largest gradient entry is below 1e-7 — the optimum of the penalised loss
(scikit-learn's ``LogisticRegression`` at C = 1 / (λ n), 2 / (λ n) for two classes), which is
unique (strictly convex for λ > 0), so nothing depends on the initialisation or on a step size.
Features are standardised with the training rows' mean and standard deviation and the scaling
folded back into the layer, so the head reads raw features. λ (1e-4 … 1e2 in half decades) is
chosen by stratified 5-fold cross-validation (scikit-learn's ``StratifiedKFold``, shuffled by
the seed) on the training examples alone (the best held-out accuracy, ties to the lower held-out
cross-entropy), and the head refitted on all of them with it. The authors' recipe above
under-fits few-shot (20 epochs of batch-16 SGD at lr 1e-3 barely move the head on 16 examples);
this one does not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ProbeRecipe:
    lr: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 16
    epochs: int = 20
    validation: str = "random"  # "random" (20 %) or "per-class" (⌊K/8⌋, ≥ 1)
    val_fraction: float = 0.2
    patience: int | None = None


def _holdout(y: torch.Tensor, recipe: ProbeRecipe, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices)."""
    n = y.shape[0]
    if recipe.validation == "random":
        perm = torch.randperm(n, generator=gen)
        n_val = round(recipe.val_fraction * n)
        return perm[n_val:], perm[:n_val]
    if recipe.validation != "per-class":
        raise ValueError(f"validation must be 'random' or 'per-class', got {recipe.validation!r}")
    train, val = [], []
    for c in torch.unique(y):
        members = torch.nonzero(y == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        hold = max(1, len(members) // 8) if len(members) > 1 else 0
        val.append(members[:hold])
        train.append(members[hold:])
    return torch.cat(train), torch.cat(val)


def train_linear_probe(
    X: torch.Tensor, y: torch.Tensor, num_classes: int, recipe: ProbeRecipe, seed: int
) -> nn.Linear:
    """Train a linear probe on features X (n, d) float32 and labels y (n,) int64 in [0, C)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Linear(X.shape[1], num_classes)
    train_idx, val_idx = _holdout(y, recipe, gen)
    Xtr, ytr, Xva, yva = X[train_idx], y[train_idx], X[val_idx], y[val_idx]
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, recipe.epochs // 2), gamma=0.1)
    best_acc, best_state, stale = -1.0, None, 0
    for _ in range(recipe.epochs):
        perm = torch.randperm(Xtr.shape[0], generator=gen)
        for start in range(0, Xtr.shape[0], recipe.batch_size):
            idx = perm[start : start + recipe.batch_size]
            loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        if len(val_idx) == 0:
            continue
        with torch.no_grad():
            acc = float((model(Xva).argmax(dim=1) == yva).float().mean())
        if acc > best_acc:
            best_acc, stale = acc, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if recipe.patience is not None and stale >= recipe.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval().requires_grad_(False)


#: The weight decays λ the tuned head chooses among (on standardised features, the penalty on the
#: mean cross-entropy): 1e-4 … 1e2 in half decades, from almost none to a penalty that pulls the
#: head close to the difference of the class means.
TUNED_WEIGHT_DECAYS: tuple[float, ...] = tuple(10.0 ** (e / 2) for e in range(-8, 5))


@dataclass(frozen=True)
class TunedHeadRecipe:
    """Settings of :func:`train_tuned_linear_head`.

    ``weight_decays``: the λ grid (each > 0); ``folds``: cross-validation folds (fewer when the
    smallest class has fewer examples; with fewer than two in some class nothing can be held out
    and ``default_weight_decay`` is used); ``standardize``: fit on standardised features (the
    training rows' mean and standard deviation, folded back into the head); ``max_iter``: L-BFGS
    iterations per fit; ``tolerance_grad``: the largest gradient entry at which a fit has
    converged (:func:`fit_penalised_linear_head`).
    """

    weight_decays: tuple[float, ...] = TUNED_WEIGHT_DECAYS
    folds: int = 5
    standardize: bool = True
    default_weight_decay: float = 1e-2
    max_iter: int = 5000
    tolerance_grad: float = 1e-7


@dataclass
class TunedHead:
    """A fitted :func:`train_tuned_linear_head`: ``head`` maps raw features (n, d) to scores
    (n, C); ``weight_decay`` the chosen λ; ``cv_accuracy`` / ``cv_loss``: the held-out accuracy
    and mean cross-entropy of each λ tried (empty when nothing could be held out); ``folds`` the
    number of folds (0: not validated); ``iterations``: L-BFGS iterations of the final fit."""

    head: nn.Linear
    weight_decay: float
    folds: int
    iterations: int
    cv_accuracy: dict[float, float] = field(default_factory=dict)
    cv_loss: dict[float, float] = field(default_factory=dict)


def _check_head_inputs(X: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    """Clear errors for what no head can be fitted on: X (n, d) floating, y (n,) integer labels in
    [0, num_classes), at least two classes present."""
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("X and y must be torch tensors")
    if X.ndim != 2 or y.ndim != 1:
        raise ValueError(f"X must be (n, d) and y (n,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if not X.is_floating_point():
        raise TypeError(f"X must be floating point, got {X.dtype}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class indices, got {y.dtype}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {int(y.min())} … {int(y.max())}")
    if torch.unique(y).numel() < 2:
        raise ValueError("a linear head needs examples of at least two classes")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X has non-finite values")


def fit_penalised_linear_head(
    X: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    *,
    standardize: bool = True,
    max_iter: int = 5000,
    tolerance_grad: float = 1e-7,
) -> tuple[nn.Linear, int]:
    """The minimiser of ``mean_i CE(W z_i + b, y_i) + weight_decay / 2 · ‖W‖²`` over W (C, d) and b
    (C,), by full-batch L-BFGS (strong-Wolfe line search) in float64, from zero; z = x without
    ``standardize``, z = (x − mean) / std of these rows with it (a constant column keeps std 1).

    X: (n, d) floating features; y: (n,) integer labels in [0, num_classes). The rows are centred
    in either case (the same optimum, as the bias is not penalised, and far better conditioning
    for features far from the origin), and the solution is mapped back: the returned
    ``nn.Linear(d, num_classes)`` (X's dtype, eval mode, no grad) reads raw features. Returns
    (head, L-BFGS iterations). Converged: the largest gradient entry at most ``tolerance_grad``,
    or the loss unchanged in float64 with it at most 1e-5 (a strong penalty's curvature stops it
    there); otherwise a ``RuntimeWarning``.
    """
    _check_head_inputs(X, y, num_classes)
    if not weight_decay > 0:
        raise ValueError(f"weight_decay must be > 0, got {weight_decay}")
    Z, mean, scale = _standardized(X, standardize)
    W, b, iterations = _minimise(Z, y.long(), num_classes, weight_decay, None, max_iter, tolerance_grad)
    return _raw_head(W, b, mean, scale, X.dtype), iterations


#: A fit whose L-BFGS stopped with the gradient between ``tolerance_grad`` and this stopped because
#: the loss no longer changed in float64 (a strong penalty's curvature puts the optimum there): it
#: is converged. Above this, or out of iterations, it is not.
_STALLED_GRADIENT = 1e-5


def _minimise(
    Z: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    init: tuple[torch.Tensor, torch.Tensor] | None,
    max_iter: int,
    tolerance_grad: float,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(W (C, d), b (C,), iterations): L-BFGS on the penalised mean cross-entropy of Z (n, d)
    float64, y (n,) int64, from ``init`` (a warm start; the optimum does not depend on it) or
    zero."""
    d = Z.shape[1]
    if init is None:
        W, b = torch.zeros(num_classes, d, dtype=torch.float64), torch.zeros(num_classes, dtype=torch.float64)
    else:
        W, b = init[0].clone(), init[1].clone()
    W.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tolerance_grad,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(torch.addmm(b, Z, W.T), y) + 0.5 * weight_decay * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        closure()  # the gradient at the final point
    iterations, evals = int(opt.state[W].get("n_iter", 0)), int(opt.state[W].get("func_evals", 0))
    worst = max(float(W.grad.abs().max()), float(b.grad.abs().max()))
    out_of_budget = iterations >= max_iter or evals >= 2 * max_iter
    if worst > tolerance_grad and (out_of_budget or worst > _STALLED_GRADIENT):
        warnings.warn(
            f"the penalised linear head did not converge (largest gradient {worst:.2e} after "
            f"{iterations} L-BFGS iterations, weight_decay={weight_decay:g})",
            RuntimeWarning,
            stacklevel=3,
        )
    return W.detach(), b.detach(), iterations


def _raw_head(
    W: torch.Tensor, b: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype
) -> nn.Linear:
    """``nn.Linear`` on raw features x of the head W (C, d), b (C,) on z = (x − mean) / scale."""
    raw_w = W / scale
    head = nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
    with torch.no_grad():
        head.weight.copy_(raw_w)
        head.bias.copy_(b - raw_w @ mean)
    return head.eval().requires_grad_(False)


def _standardized(X: torch.Tensor, standardize: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Z (n, d) float64, mean (d,), scale (d,)) with Z = (X − mean) / scale: the rows' mean and
    standard deviation (a column whose deviation is 0 keeps scale 1), or scale 1 without
    ``standardize``. Centring alone leaves the optimum as it is (the bias is not penalised: it
    takes up W · mean) and conditions L-BFGS far better on features far from the origin."""
    Xd = X.detach().double()
    mean = Xd.mean(0)
    if not standardize:
        return Xd - mean, mean, torch.ones_like(mean)
    scale = Xd.std(0, correction=0)
    scale = torch.where(scale > 1e-12 * scale.max().clamp_min(1e-300), scale, torch.ones_like(scale))
    return (Xd - mean) / scale, mean, scale


def _stratified_folds(y: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """The held-out index sets (each sorted, int64) of scikit-learn's ``StratifiedKFold`` with
    ``folds`` splits, shuffled by ``seed``: disjoint, covering y (n,), each holding every class
    about equally (every class must have at least ``folds`` members)."""
    from sklearn.model_selection import StratifiedKFold

    labels = y.detach().cpu().numpy()
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [torch.from_numpy(test).long() for _, test in splitter.split(np.zeros((len(labels), 1)), labels)]


def train_tuned_linear_head(
    X: torch.Tensor, y: torch.Tensor, num_classes: int, recipe: TunedHeadRecipe | None = None, seed: int = 0
) -> TunedHead:
    """A well-tuned backprop linear head on features X (n, d) for labels y (n,) integer in
    [0, num_classes): the weight decay λ chosen by stratified cross-validation on these examples
    only (:class:`TunedHeadRecipe`; the best held-out accuracy over all n, ties to the lower
    held-out cross-entropy), then :func:`fit_penalised_linear_head` on all of them with it; each
    fold standardises with its own training rows. Deterministic given ``seed`` (it only shuffles
    the folds). See the module docstring."""
    recipe = TunedHeadRecipe() if recipe is None else recipe
    _check_head_inputs(X, y, num_classes)
    grid = sorted(set(recipe.weight_decays), reverse=True)  # strong to weak: warm starts
    if not grid or min(grid) <= 0 or not recipe.default_weight_decay > 0:
        raise ValueError("the weight decays must be > 0 and their grid not empty")
    if recipe.folds < 2:
        raise ValueError(f"folds must be at least 2, got {recipe.folds}")
    y = y.long()
    counts = torch.bincount(y, minlength=num_classes)
    folds = min(recipe.folds, int(counts[counts > 0].min()))
    solve = {"max_iter": recipe.max_iter, "tolerance_grad": recipe.tolerance_grad}
    cv_acc: dict[float, float] = {}
    cv_loss: dict[float, float] = {}
    weight_decay = recipe.default_weight_decay
    if folds >= 2:
        correct, nll = dict.fromkeys(grid, 0.0), dict.fromkeys(grid, 0.0)
        for val in _stratified_folds(y, folds, seed):
            keep = torch.ones(len(y), dtype=torch.bool)
            keep[val] = False  # every class keeps ≥ 1 member: each has ≥ folds of them
            Z, mean, scale = _standardized(X[keep], recipe.standardize)
            Zval = (X[val].double() - mean) / scale
            init = None
            for lam in grid:
                W, b, _ = _minimise(Z, y[keep], num_classes, lam, init, **solve)
                init = (W, b)
                scores = Zval @ W.T + b
                correct[lam] += float((scores.argmax(1) == y[val]).sum())
                nll[lam] += float(F.cross_entropy(scores, y[val], reduction="sum"))
        cv_acc = {lam: correct[lam] / len(y) for lam in grid}
        cv_loss = {lam: nll[lam] / len(y) for lam in grid}
        weight_decay = max(grid, key=lambda lam: (cv_acc[lam], -cv_loss[lam], lam))
    else:
        folds = 0
    head, iterations = fit_penalised_linear_head(
        X, y, num_classes, weight_decay, standardize=recipe.standardize, **solve
    )
    return TunedHead(head, weight_decay, folds, iterations, cv_acc, cv_loss)


def labels_to_index(y: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """(sorted classes, y as int64 indices into them)."""
    classes, index = np.unique(y, return_inverse=True)
    return classes, torch.from_numpy(index.astype(np.int64))
