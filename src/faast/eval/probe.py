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
"""

from __future__ import annotations

from dataclasses import dataclass

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


def labels_to_index(y: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    """(sorted classes, y as int64 indices into them)."""
    classes, index = np.unique(y, return_inverse=True)
    return classes, torch.from_numpy(index.astype(np.int64))
