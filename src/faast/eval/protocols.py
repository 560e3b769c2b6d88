"""Evaluation protocols on precomputed features: few-shot episodes and full data.

Hyper-parameters are chosen on a validation split carved from the training features (stratified,
``val_size`` examples): each method's candidates are fitted on the rest and scored on it, the
best is refitted on all training data, and only that model sees the test split.

* **full**: fit on the whole training split, report test accuracy with a binomial 95 % interval.
* **few-shot**: N-way K-shot episodes; support from the training split, ``queries`` per class
  from the test split; mean per-episode accuracy with a 95 % interval. Validation episodes draw
  support from the fit part and (up to ``queries`` per class) queries from the validation part.

Fit and predict times are wall-clock (``time.perf_counter``) on the features, so they exclude
encoding, which every method shares.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from faast.eval.episodes import sample_episodes
from faast.eval.methods import Method, Params
from faast.eval.splits import validation_split
from faast.eval.stats import binomial_ci95, mean_ci95


@dataclass
class MethodResult:
    """One method in one regime. shots: K, or None for full data."""

    method: str
    label: str
    shots: int | None
    accuracy: float
    ci95: float
    fit_s: float
    predict_s: float
    nbytes: int
    params: Params
    val_accuracy: float
    select_s: float
    episodes: int
    n_support: int
    n_query: int

    @property
    def regime(self) -> str:
        return "full" if self.shots is None else f"{self.shots}-shot"

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["regime"] = self.regime
        if math.isnan(self.val_accuracy):  # one candidate: nothing was validated
            out["val_accuracy"] = None
        out["params"] = ";".join(f"{k}={v}" for k, v in self.params.items())
        return out


@dataclass
class Features:
    """Train and test features (n, d) float32 with labels (n,) int64."""

    train_x: torch.Tensor
    train_y: np.ndarray
    test_x: torch.Tensor
    test_y: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def _select(
    method: Method,
    grid: list[Params],
    splits: Sequence[tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]],
    seed: int,
) -> tuple[Params, float, float]:
    """(best params, its mean validation accuracy, seconds) over one or more validation splits."""
    start = time.perf_counter()
    if len(grid) == 1:
        return grid[0], float("nan"), 0.0
    scores = np.zeros(len(grid))
    for i, (x, y, xv, yv) in enumerate(splits):
        scores += method.validate(x, y, xv, yv, grid, seed + i)
    scores /= len(splits)
    best = int(np.argmax(scores))  # ties: the first candidate in grid order
    return grid[best], float(scores[best]), time.perf_counter() - start


def _timed_fit_predict(
    method: Method, params: Params, x, y, q, seed: int
) -> tuple[np.ndarray, float, float, int]:
    start = time.perf_counter()
    model = method.fit(x, y, params, seed)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = model.predict(q)
    return pred, fit_s, time.perf_counter() - start, model.nbytes


def run_full(
    methods: Sequence[Method],
    data: Features,
    *,
    val_size: int = 10_000,
    val_limit: int = 2_000,
    seed: int = 0,
    progress: bool = True,
) -> list[MethodResult]:
    """Full-data protocol. ``val_limit`` caps the validation queries of memory methods (whose
    reads scan every stored pair); the others use the whole validation split."""
    fit_idx, val_idx = validation_split(data.train_y, val_size, seed)
    sub_idx = val_idx
    if len(val_idx) > val_limit:
        sub_idx = val_idx[validation_split(data.train_y[val_idx], val_limit, seed)[1]]
    results = []
    for method in tqdm(methods, desc="full data", disable=not progress, leave=False):
        v_idx = sub_idx if getattr(method, "slow_reads", False) else val_idx
        split = (data.train_x[fit_idx], data.train_y[fit_idx], data.train_x[v_idx], data.train_y[v_idx])
        params, val_acc, select_s = _select(method, method.grid("full"), [split], seed)
        pred, fit_s, predict_s, nbytes = _timed_fit_predict(
            method, params, data.train_x, data.train_y, data.test_x, seed
        )
        acc = float(np.mean(pred == data.test_y))
        results.append(
            MethodResult(
                method.key,
                method.label,
                None,
                acc,
                binomial_ci95(acc, len(data.test_y)),
                fit_s,
                predict_s,
                nbytes,
                params,
                val_acc,
                select_s,
                1,
                len(data.train_y),
                len(data.test_y),
            )
        )
    return results


def run_fewshot(
    methods: Sequence[Method],
    data: Features,
    shots: Sequence[int],
    *,
    episodes: int = 100,
    val_episodes: int = 20,
    queries: int = 20,
    ways: int | None = None,
    val_size: int = 10_000,
    seed: int = 0,
    progress: bool = True,
) -> list[MethodResult]:
    """Few-shot protocol for each K in ``shots``; every method sees the same episodes."""
    fit_idx, val_idx = validation_split(data.train_y, val_size, seed)
    results = []
    for k in shots:
        val_eps = sample_episodes(
            data.train_y[fit_idx],
            data.train_y[val_idx],
            ways=ways,
            shots=k,
            queries=queries,
            episodes=val_episodes,
            seed=seed + 1_000,
        )
        val_splits = [
            (data.train_x[fit_idx[e.support]], data.train_y[fit_idx[e.support]],
             data.train_x[val_idx[e.query]], data.train_y[val_idx[e.query]])
            for e in val_eps
        ]  # fmt: skip
        test_eps = sample_episodes(
            data.train_y, data.test_y, ways=ways, shots=k, queries=queries, episodes=episodes, seed=seed
        )
        chosen = {}
        for method in tqdm(methods, desc=f"{k}-shot: validation", disable=not progress, leave=False):
            chosen[method.key] = _select(method, method.grid("few"), val_splits, seed)
        accs = {m.key: [] for m in methods}
        times = {m.key: [] for m in methods}
        nbytes = {m.key: 0 for m in methods}
        for i, ep in enumerate(
            tqdm(test_eps, desc=f"{k}-shot: test episodes", disable=not progress, leave=False)
        ):
            x, y = data.train_x[ep.support], data.train_y[ep.support]
            q, qy = data.test_x[ep.query], data.test_y[ep.query]
            for method in methods:
                pred, fit_s, predict_s, nb = _timed_fit_predict(
                    method, chosen[method.key][0], x, y, q, seed + i
                )
                accs[method.key].append(float(np.mean(pred == qy)))
                times[method.key].append((fit_s, predict_s))
                nbytes[method.key] = max(nbytes[method.key], nb)
        for method in methods:
            mean, half = mean_ci95(accs[method.key])
            fit_s, predict_s = np.mean(times[method.key], axis=0)
            params, val_acc, select_s = chosen[method.key]
            results.append(
                MethodResult(
                    method.key,
                    method.label,
                    int(k),
                    mean,
                    half,
                    float(fit_s),
                    float(predict_s),
                    nbytes[method.key],
                    params,
                    val_acc,
                    select_s,
                    len(test_eps),
                    len(test_eps[0].support),
                    len(test_eps[0].query),
                )
            )
    return results
