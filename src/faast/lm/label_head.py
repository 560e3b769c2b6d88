"""A closed-form label head on the prompt-end state of a frozen LM (no backprop).

A labelled example's first answer token is learned by the output memory under the key z, the
state the LM head reads at the end of the prompt (:meth:`faast.lm.task.TaskModel.prompt_features`).
The same keys can be mapped straight to the L labels by :class:`~faast.FaastClassifier` — least
squares with the cut chosen by exact leave-one-out (``loss="squared"``), or its closed-form
logistic steps (``loss="logistic"``) — instead of through the LM's vocabulary: scores = W z,
W (L, d) float64. It is stored with the task as plain JSON numbers (no pickle).

The head may read another layer than the LM head's input: the output of a decoder block at the
prompt's end (``layer``). With ``layer="auto"`` (:meth:`LabelHead.fit_layers`; the default of
:meth:`~faast.lm.task.TaskModel.fit_head` and ``faast task learn --head``) it weighs the blocks at
depths ½, ⅝, ¾ and ⅞ (:func:`candidate_layers`) and the head input, finds the one whose head
predicts the examples' labels best under k-fold cross-validation on the examples themselves (ties
go to the deeper layer, the head input last), and keeps it only when a sign-flip test finds its
gain over the head input significant (the guard of the read-out choice). The rule was set on
development sentences of the sentiment task (never its test split), where a middle-to-late block
beat the head input for SmolLM2-135M-Instruct and Gemma-3-270M; on the author task, where
cross-validation on 16–64 passages picked worse blocks, the guard kept the head input; on the
genre task (at chance level for every head) it let one worse block through (docs/tasks.md, "A
label head on a middle layer"). With ``groups`` the folds hold out whole groups.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from faast._checks import check_finite
from faast.lm.calibration import LOG_PROB_FLOOR
from faast.lm.task_choice import SIGN_FLIP_LEVEL, max_gain_p_value

HEAD_LOSSES = ("squared", "logistic")
#: Depths (shares of the decoder blocks) of the blocks ``layer="auto"`` weighs besides the head input.
LAYER_FRACTIONS = (0.5, 0.625, 0.75, 0.875)
#: The layer :meth:`~faast.lm.task.TaskModel.fit_head` reads unless told otherwise.
DEFAULT_HEAD_LAYER = "auto"
#: Folds of the cross-validation that chooses the layer (fewer when a label has fewer examples).
LAYER_FOLDS = 5


def candidate_layers(num_layers: int) -> list[int | None]:
    """The layers ``layer="auto"`` weighs on a model of ``num_layers`` decoder blocks: blocks
    round(f·num_layers) − 1 (0-based) for f in :data:`LAYER_FRACTIONS`, distinct and ascending, then
    ``None`` (the LM head's input)."""
    if not (type(num_layers) is int and num_layers >= 1):
        raise ValueError(f"num_layers must be an integer >= 1, got {num_layers!r}")
    blocks = sorted({max(round(f * num_layers) - 1, 0) for f in LAYER_FRACTIONS})
    return [*blocks, None]


def _classifier(loss: str, seed: int = 0, center: bool = False) -> Any:
    from faast import FaastClassifier

    # tau="auto": the cut of the published head rows (docs/tasks.md); beyond 2d examples it
    # uses GCV truncation where the classifier's default, ridge="auto", uses GCV ridge. No
    # intercept by default: the head is a weight matrix over the state, like the LM's own head;
    # center=True: weights on the states centred on their mean, plus a per-label intercept
    return FaastClassifier(
        tau="auto", loss=loss, fit_intercept=center, center_features=center, random_state=seed
    )


def _head_folds(
    index: np.ndarray, seed: int, groups: Sequence[Hashable] | None
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """(train positions, held-out positions) of each fold of the cross-validation of
    :func:`held_out_right` and :func:`held_out_log_likelihood` for label indices (n,); None when
    nothing can be held out."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    codes = None
    folds = min(LAYER_FOLDS, int(np.bincount(index).min()))
    if groups is not None:
        if len(groups) != len(index):
            raise ValueError(f"{len(groups)} groups for {len(index)} examples: give one group per example")
        number = {g: i for i, g in enumerate(dict.fromkeys(groups))}
        codes = np.array([number[g] for g in groups])
        folds = min(folds, len(number))
    if folds < 2:
        return None
    kind = StratifiedKFold if codes is None else StratifiedGroupKFold
    splitter = kind(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((len(index), 1)), index, codes))


def held_out_right(
    features: torch.Tensor,
    index: np.ndarray,
    loss: str,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
    center: bool = False,
) -> np.ndarray | None:
    """(n, c) for features (n, c, d) of c layers and label indices (n,): 1 where the head of a
    layer, fitted on the other folds, predicts an example's label, else 0 (stratified
    ``min(LAYER_FOLDS, smallest label count)``-fold cross-validation, folds seeded by ``seed``);
    None when a label has fewer than two examples (nothing can be held out). ``groups`` (one per
    example): folds of whole groups instead (scikit-learn's ``StratifiedGroupKFold``, no more
    folds than groups either; None with fewer than two groups); a fold whose other folds hold
    fewer than two labels counts as wrong for every layer. ``center``: heads of centred states
    (:class:`LabelHead`)."""
    folds = _head_folds(index, seed, groups)
    if folds is None:
        return None
    right = np.zeros((len(index), features.shape[1]))
    x = features.double().cpu().numpy()
    for train, held in folds:
        if len(np.unique(index[train])) < 2:
            continue  # nothing to fit: wrong for every layer
        for c in range(x.shape[1]):
            clf = _classifier(loss, seed, center).fit(x[train, c], index[train])
            right[held, c] = clf.predict(x[held, c]) == index[held]
    return right


def held_out_log_likelihood(
    features: torch.Tensor,
    index: np.ndarray,
    loss: str,
    seed: int = 0,
    groups: Sequence[Hashable] | None = None,
    floor: float = LOG_PROB_FLOOR,
    center: bool = False,
) -> np.ndarray | None:
    """(n,) float64 log-probability of each example's label (indices (n,)) under the head on
    its states (n, d), fitted on the other folds — the folds of :func:`held_out_right` — and read
    through its ``predict_log_proba`` (``loss="squared"``: the softmax of its scores at the
    temperature it fits by leave-one-out on those folds). Floored at ``floor`` (the read-out
    choice's :data:`~faast.lm.calibration.LOG_PROB_FLOOR`), which is also the value of an example
    whose label the other folds do not hold. None when nothing can be held out. ``center``: heads
    of centred states (:class:`LabelHead`)."""
    if features.ndim != 2 or features.shape[0] != len(index):
        raise ValueError(f"features {tuple(features.shape)} are not (n={len(index)}, d)")
    folds = _head_folds(index, seed, groups)
    if folds is None:
        return None
    loglik = np.full(len(index), float(floor))
    x = features.double().cpu().numpy()
    for train, held in folds:
        if len(np.unique(index[train])) < 2:
            continue  # nothing to fit: every held-out label at the floor
        clf = _classifier(loss, seed, center).fit(x[train], index[train])
        log_proba = np.asarray(clf.predict_log_proba(x[held]), dtype=np.float64)
        column = {int(c): j for j, c in enumerate(clf.classes_)}
        for row, (i, label) in enumerate(zip(held, index[held], strict=True)):
            if int(label) in column:
                loglik[i] = max(float(log_proba[row, column[int(label)]]), float(floor))
    return loglik


@dataclass
class LabelHead:
    """labels: the L labels in score order; weight: (L, d) float64; loss: how it was fitted;
    layer: the decoder block (0-based) whose output at the prompt's end it reads, None for the LM
    head's input; bias: (L,) float64 per-label intercept of a head fitted with ``center=True``
    (None: scores through the origin); held_out: (layer, cross-validated accuracy) of every layer
    weighed by :meth:`fit_layers` and p_value its guard's test (neither stored).

    ``center=True`` (:meth:`fit`, :meth:`fit_layers`): the weights are solved on the states
    centred on their mean (``FaastClassifier(center_features=True)``), with a per-label
    intercept, so that the cut shrinks the scores towards the label shares instead of towards
    the states' common direction. Without it, a strongly shrunk head scores every input by its
    similarity to each label's summed states, which the component all prompt-end states share
    dominates: it then gives every input the label with the most examples."""

    labels: list[str]
    weight: torch.Tensor
    loss: str
    layer: int | None = None
    held_out: list[tuple[int | None, float]] = field(default_factory=list)
    p_value: float | None = None
    bias: torch.Tensor | None = None

    @classmethod
    def fit(
        cls,
        features: torch.Tensor,
        outputs: Sequence[str],
        labels: Sequence[str],
        loss: str = "squared",
        layer: int | None = None,
        center: bool = False,
    ) -> LabelHead:
        """Fit on (n, d) prompt-end states of ``layer`` (None: the head input) and their outputs
        (each one of ``labels``; every label needs at least one example); ``center``: on the
        centred states, with an intercept."""
        index = _label_index(features, outputs, labels, loss)
        return cls._fitted(features, index, labels, loss, layer, center)

    @classmethod
    def _fitted(
        cls,
        features: torch.Tensor,
        index: np.ndarray,
        labels: Sequence[str],
        loss: str,
        layer: int | None,
        center: bool = False,
    ) -> LabelHead:
        """The head on (n, d) states of ``layer`` for checked label indices (n,)."""
        clf = _classifier(loss, center=center).fit(features.double().cpu().numpy(), index)
        bias = torch.tensor(clf.intercept_, dtype=torch.float64) if center else None  # a copy: read-only
        return cls(list(labels), torch.tensor(clf.coef_, dtype=torch.float64), loss, layer, bias=bias)

    @classmethod
    def fit_layers(
        cls,
        features: torch.Tensor,
        layers: Sequence[int | None],
        outputs: Sequence[str],
        labels: Sequence[str],
        loss: str = "squared",
        seed: int = 0,
        guard: bool = True,
        groups: Sequence[Hashable] | None = None,
        center: bool = False,
    ) -> LabelHead:
        """Fit on the layer whose head cross-validates best: features (n, c, d), the prompt-end
        states of the c ``layers`` (block indices, ``None`` the head input; the order ties are
        broken in: the later wins). Without two examples of every label the last layer is kept.
        ``guard``: keep the last layer unless the best one's gain over it is significant — a
        sign-flip p-value below :data:`~faast.lm.task_choice.SIGN_FLIP_LEVEL` for the largest
        gain of any layer in held-out examples predicted right
        (:func:`~faast.lm.task_choice.max_gain_p_value`, the test of the read-out's guard). The
        result's ``held_out`` lists (layer, accuracy) for every layer weighed and ``p_value`` the
        test's (None when not made). ``groups``: one per example (the document or source it comes
        from); the folds then hold out whole groups (:func:`held_out_right`). ``center``: every head
        on centred states, with an intercept."""
        if features.ndim != 3 or features.shape[1] != len(layers) or not layers:
            raise ValueError(f"features {tuple(features.shape)} are not (n, {len(layers)} layers, d)")
        index = _label_index(features[:, 0], outputs, labels, loss)
        right = held_out_right(features, index, loss, seed, groups, center)
        last, p_value = len(layers) - 1, None
        if right is None:
            pick, held = last, []
        else:
            accuracy = right.mean(axis=0)
            pick = max(range(len(layers)), key=lambda c: (float(accuracy[c]), c))
            held = [(layer, float(a)) for layer, a in zip(layers, accuracy, strict=True)]
            if guard and pick != last:
                gains = torch.as_tensor(right[:, :last] - right[:, last:])
                p_value = max_gain_p_value(gains, seed=seed)
                pick = pick if p_value < SIGN_FLIP_LEVEL else last
        head = cls._fitted(features[:, pick], index, labels, loss, layers[pick], center)
        head.held_out, head.p_value = held, p_value
        return head

    @property
    def where(self) -> str:
        """The layer it reads, in words: "head input" or "block N"."""
        return "head input" if self.layer is None else f"block {self.layer}"

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """(n, L) float64 label scores of (n, d) states of the head's ``layer`` (logits when
        ``loss="logistic"``): W z, plus the bias of a centred head."""
        scores = features.double().cpu() @ self.weight.T
        return scores if self.bias is None else scores + self.bias

    def to_dict(self) -> dict[str, Any]:
        data = {"labels": self.labels, "loss": self.loss, "layer": self.layer, "weight": self.weight.tolist()}
        return data if self.bias is None else data | {"bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: Any, hidden_size: int, num_layers: int | None = None) -> LabelHead:
        """The head stored by :meth:`to_dict`, checked against the model's width (and, when given,
        its number of decoder blocks; a head saved before layers were stored reads the head input)."""
        try:
            labels = [str(x) for x in data["labels"]]
            weight = torch.tensor(data["weight"], dtype=torch.float64)
            loss = str(data["loss"])
            layer = data.get("layer")
            bias = None if data.get("bias") is None else torch.tensor(data["bias"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed label head ({exc})") from None
        if weight.shape != (len(labels), hidden_size) or loss not in HEAD_LOSSES:
            raise ValueError(
                f"label head of shape {tuple(weight.shape)} and loss {loss!r} does not fit "
                f"{len(labels)} labels on a model of width {hidden_size}"
            )
        if bias is not None and bias.shape != (len(labels),):
            raise ValueError(
                f"label head bias of shape {tuple(bias.shape)} does not fit {len(labels)} labels"
            )
        limit = num_layers if num_layers is not None else float("inf")
        if layer is not None and not (type(layer) is int and 0 <= layer < limit):
            raise ValueError(f"label head layer {layer!r} is not a decoder block of this model")
        check_finite(weight, "label head")
        if bias is not None:
            check_finite(bias, "label head bias")
        return cls(labels, weight, loss, layer, bias=bias)


def describe_layer_choice(head: LabelHead, weighed: int) -> str:
    """A line on the layer :meth:`LabelHead.fit_layers` chose among ``weighed``: where, each
    layer's held-out accuracy and the guard's p-value."""
    held = ", ".join(f"{'head' if x is None else x}: {100 * a:.1f}" for x, a in head.held_out)
    test = "" if head.p_value is None else f"; sign-flip p = {head.p_value:.3g}"
    return f"{head.where} of {weighed} layers" + (f" (held-out % {held}{test})" if held else "")


def _label_index(
    features: torch.Tensor, outputs: Sequence[str], labels: Sequence[str], loss: str
) -> np.ndarray:
    """(n,) the index in ``labels`` of each output, after checking a head can be fitted on the
    (n, d) ``features``."""
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
    return index
