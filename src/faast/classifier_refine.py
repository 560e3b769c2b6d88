"""The steps of ``FaastClassifier`` beyond its closed-form least-squares solve: ``refine``'s
margin-retargeting rounds (:mod:`faast.solver.retarget`) and ``loss="logistic"``'s quasi-Newton
steps (:mod:`faast.solver.logistic`).

Both start from the least-squares solve and reuse its eigendecomposition, and both need every
example at once: ``fit`` runs them, and ``partial_fit``, ``forget`` and ``solve`` refuse a
classifier that uses them. The mixin needs the classifier's ``memory_``, ``_design``, ``_filter``
and ``_set_coef``.
"""

from __future__ import annotations

import numpy as np
import torch

from faast.solver.logistic import choose_ridge, fallback_penalty, fit_logistic, holdout_folds
from faast.solver.retarget import retarget
from faast.solver.spectral import SpectralFactor


class RefinementMixin:
    """``refine`` and ``loss="logistic"`` of :class:`~faast.classifier.FaastClassifier`."""

    def _check_logistic(self) -> None:
        """``loss="logistic"`` fits one-hot logits on every example at once: refuse what it
        cannot honour."""
        if self.loss != "logistic":
            return
        clashes = {
            "refine > 0": bool(self.refine),
            "distributed=True": bool(self.distributed),
            "class_embeddings": self.class_embeddings is not None,
            "a prior": self.prior is not None,
        }
        for what, present in clashes.items():
            if present:
                raise ValueError(f'loss="logistic" cannot be combined with {what}; use loss="squared"')

    def _check_not_refined(self, what: str, remedy: str | None = None) -> None:
        """``refine`` and ``loss="logistic"`` need every example at once (``fit``): refuse
        incremental changes. ``remedy``: what to do instead (by default: fit, or the setting
        without the step, which Python users can make)."""
        if self.refine:
            raise ValueError(
                f"{what} is not available with refine={self.refine}: the retargeting rounds need "
                f"every example at once; {remedy or 'call fit, or set refine=0'}"
            )
        if self.loss == "logistic":
            remedy = remedy or 'call fit, or set loss="squared"'
            raise ValueError(
                f'{what} is not available with loss="logistic": its steps need every example at '
                f"once; {remedy}"
            )

    def _retarget(self, keys: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor | None) -> None:
        """``refine`` rounds of margin retargeting (:mod:`faast.solver.retarget`) on the pairs
        just learned, with the filter of the solve held fixed."""
        factor = self.memory_.stats.factor()
        cross, weight, moved = retarget(
            keys,
            onehot,
            weights,
            factor,
            self._filter(factor),
            self.memory_.weight(torch.float64),
            float(self.margin),
            int(self.refine),
        )
        self._set_retarget(cross, weight, moved)

    def _fit_logistic(self, keys: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor | None) -> None:
        """``max_iter`` quasi-Newton steps per penalty on the penalised logistic loss
        (:mod:`faast.solver.logistic`) over the design of ``keys`` (n, d), with the factor of the
        least-squares solve, from its weights.

        With ``C="auto"`` and a single held-out split, the design is built with the kept rows
        first and the held-out ones last (one copy of the rows, in that order), so the path fits
        and scores views of it, and the final fit runs over all of it."""
        factor = self.memory_.stats.factor()
        labels = onehot.argmax(dim=1)
        m = onehot.shape[1]
        # the steps start from the least-squares weights, scaled to fit the logistic loss best; with
        # center_features they run in the factor's centred coordinates (design, factor and weights)
        init = factor.shifted_weights(self.memory_.weight(torch.float64))
        steps, memory, scale_init = int(self.max_iter), None, True
        centred, factor = factor, factor.in_shifted_coordinates()
        if self.C != "auto":
            ridge, design = 1.0 / float(self.C), self._centred_design(centred, keys)
        else:
            folds = holdout_folds(labels.cpu().numpy(), int(self.random_state))
            order = None
            if len(folds) == 1:  # kept rows first, held-out last: the split takes views
                kept, held = folds[0]
                order = torch.as_tensor(np.concatenate([kept, held]), device=keys.device)
                labels = labels[order]
                weights = None if weights is None else weights[order]
                folds = [(np.arange(len(kept)), np.arange(len(kept), len(order)))]
            design = self._centred_design(centred, keys, order)
            choice = choose_ridge(
                design,
                labels,
                weights,
                factor,
                steps,
                int(self.random_state),
                m,
                tolerance=float(self.tol),
                start=init,
                folds=folds,
                intercept=bool(self.fit_intercept),
            )
            if choice is None:  # one example per class: nothing to hold out
                ridge = fallback_penalty(factor)
            else:
                ridge, init, scale_init = choice.ridge, choice.weight, False
                steps = max(3, steps // 2)  # warm: from the weights fitted without the held-out tenth
                memory = choice.memory  # and their curvature, scaled to all the examples' weight
        weight, self.n_iter_ = fit_logistic(
            design,
            labels,
            weights,
            factor,
            ridge,
            steps,
            init=init,
            num_classes=m,
            tolerance=float(self.tol),
            memory=memory,
            scale_init=scale_init,
        )
        self._set_logistic(centred.original_weights(weight), 1.0 / ridge)

    def _centred_design(
        self, factor: SpectralFactor, keys: torch.Tensor, order: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The design of ``keys`` (n, d) → (k, D + 1) in ``factor``'s coordinates: the features
        less their weighted mean with ``center_features`` (the design is a copy: changed in place),
        as built otherwise."""
        return factor.shifted_keys(self._design(keys, order), copy=False)

    def _set_logistic(self, weight: torch.Tensor, inverse_penalty: float) -> None:
        """Adopt logistic fast weights W (m, d) fitted with ρ = 1/C."""
        self._refined = weight
        self.C_ = float(inverse_penalty)
        self._set_coef(weight)

    def _set_retarget(self, cross: torch.Tensor, weight: torch.Tensor, moved: int) -> None:
        """Adopt retargeted fast weights (m, d) and the cross matrix B′ (d, m) they solve."""
        self.retarget_cross_ = cross
        self._refined = weight
        self.retargeted_ = int(moved)
        self._set_coef(weight)
