"""A closed-form label head on the prompt-end state of a frozen LM (no backprop).

A labelled example's first answer token is learned by the output memory under the key z, the
state the LM head reads at the end of the prompt (:meth:`faast.lm.task.TaskModel.prompt_features`).
The same keys can be mapped straight to the L labels by :class:`~faast.FaastClassifier` — least
squares with the cut chosen by exact leave-one-out (``loss="squared"``), or its closed-form
logistic steps (``loss="logistic"``) — instead of through the LM's vocabulary: scores = W z,
W (L, d) float64. It is stored with the task as plain JSON numbers (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faast._checks import check_finite

HEAD_LOSSES = ("squared", "logistic")


@dataclass
class LabelHead:
    """labels: the L labels in score order; weight: (L, d) float64; loss: how it was fitted."""

    labels: list[str]
    weight: torch.Tensor
    loss: str

    @classmethod
    def fit(
        cls, features: torch.Tensor, outputs: Sequence[str], labels: Sequence[str], loss: str = "squared"
    ) -> LabelHead:
        """Fit on (n, d) prompt-end states and their outputs (each one of ``labels``; every label
        needs at least one example)."""
        from faast import FaastClassifier

        if loss not in HEAD_LOSSES:
            raise ValueError(f"head loss must be one of {HEAD_LOSSES}, got {loss!r}")
        labels = list(labels)
        if len(labels) < 2:
            raise ValueError(f"a label head needs at least two labels, got {labels}")
        if features.ndim != 2 or features.shape[0] != len(outputs):
            raise ValueError(f"features {tuple(features.shape)} do not match {len(outputs)} outputs")
        unknown = sorted({o for o in outputs if o not in labels})
        if unknown:
            raise ValueError(f"outputs that are not labels: {unknown[:5]}")
        index = np.array([labels.index(o) for o in outputs])
        missing = [lab for i, lab in enumerate(labels) if not (index == i).any()]
        if missing:
            raise ValueError(f"labels without an example: {missing[:5]}; the head cannot score them")
        # tau="auto": the cut of the published head rows (docs/tasks.md); beyond 2d examples it
        # uses GCV truncation where the classifier's default, ridge="auto", uses GCV ridge. No
        # intercept: the head is a weight matrix over the state, like the LM's own head
        clf = FaastClassifier(tau="auto", loss=loss, fit_intercept=False).fit(
            features.double().cpu().numpy(), index
        )
        return cls(labels, torch.as_tensor(clf.coef_, dtype=torch.float64), loss)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """(n, L) float64 label scores of (n, d) states (logits when ``loss="logistic"``)."""
        return features.double().cpu() @ self.weight.T

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "loss": self.loss, "weight": self.weight.tolist()}

    @classmethod
    def from_dict(cls, data: Any, hidden_size: int) -> LabelHead:
        """The head stored by :meth:`to_dict`, checked against the model's width."""
        try:
            labels = [str(x) for x in data["labels"]]
            weight = torch.tensor(data["weight"], dtype=torch.float64)
            loss = str(data["loss"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed label head ({exc})") from None
        if weight.shape != (len(labels), hidden_size) or loss not in HEAD_LOSSES:
            raise ValueError(
                f"label head of shape {tuple(weight.shape)} and loss {loss!r} does not fit "
                f"{len(labels)} labels on a model of width {hidden_size}"
            )
        check_finite(weight, "label head")
        return cls(labels, weight, loss)
