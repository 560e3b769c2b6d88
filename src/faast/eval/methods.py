"""The methods compared, all fitted on the same frozen features.

Each :class:`Method` has a grid of candidate hyper-parameters (chosen per regime on validation
data, never on test) and ``fit(X, y, params, seed)`` returning a :class:`Fitted` model with
``predict`` and ``nbytes`` (bytes that must be kept to answer queries: weights, or the stored
pairs of a memory, plus the preprocessing mean). Features are float32 tensors (n, d); labels
are integer numpy arrays (n,) of any values.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from faast.classifier import FaastClassifier
from faast.eval.preprocess import Preprocess
from faast.eval.probe import ProbeRecipe, labels_to_index, train_linear_probe
from faast.memory import KNNMemory, SoftmaxMemory

Params = dict[str, Any]

#: The inverse penalties C validated for the logistic loss, by :class:`LogReg` and by
#: :class:`Faast`'s logistic steps alike.
LOGISTIC_CS = [0.1, 1.0, 10.0, 100.0]


@dataclass
class Fitted:
    """A fitted model: ``predict(X (q, d)) -> labels (q,)``; ``nbytes`` kept for inference."""

    predict: Callable[[torch.Tensor], np.ndarray]
    nbytes: int


def _nbytes(*arrays: Any) -> int:
    return int(sum(a.numel() * a.element_size() if isinstance(a, torch.Tensor) else a.nbytes for a in arrays))


def _fitted_intercept(clf: FaastClassifier) -> np.ndarray:
    """The intercept a FaastClassifier reads at inference (float32), empty without one."""
    return clf.intercept_.astype(np.float32) if clf.fit_intercept else np.empty(0, np.float32)


class Method(ABC):
    """A classifier family. ``key`` is its CLI name, ``label`` its name in tables; ``slow_reads``:
    predicting scans every stored pair (validation then uses a capped query subset)."""

    key: str
    label: str
    slow_reads: bool = False

    @abstractmethod
    def grid(self, regime: str) -> list[Params]:
        """Candidate hyper-parameters for ``regime`` ("few" or "full")."""

    @abstractmethod
    def fit(self, X: torch.Tensor, y: np.ndarray, params: Params, seed: int) -> Fitted:
        """Fit on support features X (n, d) and labels y (n,)."""

    def validate(
        self,
        X: torch.Tensor,
        y: np.ndarray,
        Xval: torch.Tensor,
        yval: np.ndarray,
        grid: list[Params],
        seed: int,
    ) -> list[float]:
        """Validation accuracy of every candidate (subclasses may share work across candidates)."""
        return [float(np.mean(self.fit(X, y, p, seed).predict(Xval) == yval)) for p in grid]


def _grid(**axes: list[Any]) -> list[Params]:
    out: list[Params] = [{}]
    for name, values in axes.items():
        out = [{**p, name: v} for p in out for v in values]
    return out


# ----------------------------------------------------------------- FAAST
class Faast(Method):
    """``FaastClassifier``: truncated least squares onto one-hot labels; the cut τ = n^(−α) with α
    from the grid, chosen by GCV on the training statistics (``cut="gcv"``), or by exact
    leave-one-out on the support set (``cut="auto"``); with cut ``auto`` also ``refine`` rounds of
    margin retargeting (:mod:`faast.solver.retarget`; R = 5, θ = 0.5 chosen with
    ``benchmarks/classifier_options.py --split validation``) or the closed-form logistic steps
    (``loss="logistic"``, :mod:`faast.solver.logistic`) with C chosen on the support set
    (``C="auto"``, first, so it wins ties) or one of ``LOGISTIC_CS``, the grid
    :class:`LogReg` validates: both logistic fits get the same choice of penalty."""

    key, label = "faast", "FAAST"

    def __init__(
        self,
        cuts: list[Any] | None = None,
        preps: list[str] | None = None,
        refines: list[int] | None = None,
        logistic: bool = True,
        Cs: list[float | str] | None = None,
    ) -> None:
        self.cuts = cuts or [0.4, 0.6, 0.8, 1.0, "gcv", "auto"]
        self.preps = preps or ["none", "l2", "center-l2"]
        self.refines = [5] if refines is None else refines
        self.logistic = logistic
        self.Cs = Cs or ["auto", *LOGISTIC_CS]

    def grid(self, regime: str) -> list[Params]:
        plain = _grid(prep=self.preps, cut=self.cuts, refine=[0])
        refined = _grid(prep=self.preps, cut=["auto"], refine=[r for r in self.refines if r])
        logistic = _grid(prep=self.preps, cut=["auto"], loss=["logistic"], C=self.Cs) if self.logistic else []
        return plain + refined + logistic

    @staticmethod
    def _kwargs(cut: Any, refine: int, loss: str = "squared", C: float | str = "auto") -> dict[str, Any]:
        cut_kwargs = (
            {"tau": cut, "alpha": None} if cut in ("gcv", "auto") else {"alpha": float(cut), "tau": None}
        )
        return {**cut_kwargs, "refine": int(refine), "loss": loss, "C": C}

    def _fit_classifier(
        self,
        X: torch.Tensor,
        y: np.ndarray,
        prep: str,
        cut: Any,
        refine: int = 0,
        loss: str = "squared",
        C: float | str = "auto",
    ) -> tuple[Preprocess, FaastClassifier]:
        pre = Preprocess(prep)
        return pre, FaastClassifier(**self._kwargs(cut, refine, loss, C)).fit(pre.fit_transform(X), y)

    def fit(self, X: torch.Tensor, y: np.ndarray, params: Params, seed: int) -> Fitted:
        pre, clf = self._fit_classifier(X, y, params["prep"], *_solve_args(params))
        return Fitted(
            lambda Q: clf.predict(pre.transform(Q)),
            _nbytes(clf.coef_.astype(np.float32), _fitted_intercept(clf)) + pre.nbytes,
        )

    def validate(self, X, y, Xval, yval, grid, seed):
        scores: dict[int, float] = {}
        for prep in dict.fromkeys(p["prep"] for p in grid):
            own = [(i, p) for i, p in enumerate(grid) if p["prep"] == prep]
            cuts = [(i, p["cut"]) for i, p in own if not _needs_data(p)]
            pre, clf = self._fit_classifier(X, y, prep, cuts[0][1])  # one set of statistics per prep
            Q = pre.transform(Xval)
            for i, cut in cuts:
                clf.set_params(**self._kwargs(cut, 0)).solve()
                scores[i] = float(np.mean(clf.predict(Q) == yval))
            for i, p in own:  # retargeting and the logistic steps need the data: one fit each
                if _needs_data(p):
                    fitted = self._fit_classifier(X, y, prep, *_solve_args(p))[1]
                    scores[i] = float(np.mean(fitted.predict(Q) == yval))
        return [scores[i] for i in range(len(grid))]


def _solve_args(params: Params) -> tuple[Any, int, str, float | str]:
    """(cut, refine rounds, loss, C) of a FAAST grid point."""
    return params["cut"], params.get("refine", 0), params.get("loss", "squared"), params.get("C", "auto")


def _needs_data(params: Params) -> bool:
    """Grid points that ``solve`` cannot reach from shared statistics (refine, logistic)."""
    _, refine, loss, _ = _solve_args(params)
    return bool(refine) or loss != "squared"


# ----------------------------------------------------------------- memories
class _MemoryMethod(Method):
    def _memory(self, params: Params) -> Any:
        raise NotImplementedError

    def fit(self, X: torch.Tensor, y: np.ndarray, params: Params, seed: int) -> Fitted:
        classes, index = labels_to_index(y)
        pre = Preprocess(params["prep"])
        keys = pre.fit_transform(X)
        values = F.one_hot(index, len(classes)).to(keys.dtype)
        mem = self._memory(params).add(keys, values)

        def predict(Q: torch.Tensor) -> np.ndarray:
            return classes[mem.read(pre.transform(Q)).argmax(dim=1).numpy()]

        return Fitted(predict, mem.nbytes + pre.nbytes)


class Softmax(_MemoryMethod):
    """``SoftmaxMemory`` over every stored pair, cosine scores (unit keys), temperature from the grid."""

    key, label = "softmax", "softmax memory"
    slow_reads = True

    def __init__(self, temperatures: list[float] | None = None, preps: list[str] | None = None) -> None:
        self.temperatures = temperatures or [0.01, 0.03, 0.1]
        self.preps = preps or ["l2", "center-l2"]

    def grid(self, regime: str) -> list[Params]:
        return _grid(prep=self.preps, temperature=self.temperatures)

    def _memory(self, params: Params) -> SoftmaxMemory:
        return SoftmaxMemory(temperature=params["temperature"], normalize=True)


class KNN(_MemoryMethod):
    """``KNNMemory``: cosine k-NN majority vote, k by the paper's rule min(10, shots)."""

    key, label = "knn", "k-NN memory"
    slow_reads = True

    def __init__(self, preps: list[str] | None = None) -> None:
        self.preps = preps or ["none", "center"]

    def grid(self, regime: str) -> list[Params]:
        return _grid(prep=self.preps)

    def _memory(self, params: Params) -> KNNMemory:
        return KNNMemory(metric="cosine")


# ----------------------------------------------------------------- backprop probe
class BackpropProbe(Method):
    """Linear probe trained by SGD with the authors' recipe (:mod:`faast.eval.probe`).

    Its inputs are the raw features by default: with unit-norm inputs, lr 1e-3 barely moves the
    weights in 20 epochs (validation accuracy 77 % vs 88 % on full data, near chance few-shot)."""

    key, label = "probe", "linear probe (SGD)"

    def __init__(self, preps: list[str] | None = None) -> None:
        self.preps = preps or ["none"]

    def grid(self, regime: str) -> list[Params]:
        validation = "random" if regime == "full" else "per-class"
        patience = None if regime == "full" else 5
        return _grid(prep=self.preps, validation=[validation], patience=[patience])

    def fit(self, X: torch.Tensor, y: np.ndarray, params: Params, seed: int) -> Fitted:
        classes, index = labels_to_index(y)
        pre = Preprocess(params["prep"])
        recipe = ProbeRecipe(validation=params["validation"], patience=params["patience"])
        model = train_linear_probe(pre.fit_transform(X), index, len(classes), recipe, seed)

        def predict(Q: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return classes[model(pre.transform(Q)).argmax(dim=1).numpy()]

        return Fitted(predict, _nbytes(model.weight, model.bias) + pre.nbytes)


# ----------------------------------------------------------------- scikit-learn baselines
class _SklearnMethod(Method):
    def _estimator(self, params: Params, seed: int) -> Any:
        raise NotImplementedError

    def fit(self, X: torch.Tensor, y: np.ndarray, params: Params, seed: int) -> Fitted:
        pre = Preprocess(params["prep"])
        est = self._estimator(params, seed).fit(pre.fit_transform(X).numpy(), y)
        return Fitted(
            lambda Q: est.predict(pre.transform(Q).numpy()), _nbytes(est.coef_, est.intercept_) + pre.nbytes
        )


class LogReg(_SklearnMethod):
    """scikit-learn ``LogisticRegression`` (multinomial, L-BFGS), C from the grid."""

    key, label = "logreg", "LogisticRegression"

    def __init__(
        self, Cs: list[float] | None = None, preps: list[str] | None = None, max_iter: int = 1000
    ) -> None:
        self.Cs = Cs or list(LOGISTIC_CS)
        self.preps = preps or ["l2"]
        self.max_iter = max_iter

    def grid(self, regime: str) -> list[Params]:
        return _grid(prep=self.preps, C=self.Cs)

    def _estimator(self, params: Params, seed: int) -> LogisticRegression:
        return LogisticRegression(C=params["C"], max_iter=self.max_iter, random_state=seed)


class Ridge(_SklearnMethod):
    """scikit-learn ``RidgeClassifier`` (one-vs-all least squares with intercept), α from the grid."""

    key, label = "ridge", "RidgeClassifier"

    def __init__(self, alphas: list[float] | None = None, preps: list[str] | None = None) -> None:
        self.alphas = alphas or [0.1, 1.0, 10.0]
        self.preps = preps or ["none", "l2"]

    def grid(self, regime: str) -> list[Params]:
        return _grid(prep=self.preps, alpha=self.alphas)

    def _estimator(self, params: Params, seed: int) -> RidgeClassifier:
        return RidgeClassifier(alpha=params["alpha"])

    def fit(self, X: torch.Tensor, y: np.ndarray, params: Params, seed: int) -> Fitted:
        with warnings.catch_warnings():  # small α on raw features is ill-conditioned; validation judges it
            warnings.simplefilter("ignore", LinAlgWarning)
            return super().fit(X, y, params, seed)


METHODS: dict[str, type[Method]] = {m.key: m for m in (Faast, Softmax, KNN, BackpropProbe, LogReg, Ridge)}


def build_methods(keys: list[str] | None = None) -> list[Method]:
    """Instances of the named methods (default: all, in table order)."""
    keys = keys or list(METHODS)
    unknown = [k for k in keys if k not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    return [METHODS[k]() for k in keys]
