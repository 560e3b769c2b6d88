"""Fast paths of the solver, the classifier and the memories against plain references.

The project's standard: every fast path is tested against a plain reference on random inputs of
many shapes. Each test here draws problems with hypothesis — 1 and 2 rows, n < d, n = d, n > d,
rank-deficient keys, duplicate rows, weights with zeros, scales far from 1 — and compares the fast
path with a reference written in this file (brute-force refits, loops, ``np.linalg``), never with
the library's own ``naive``/``brute_force_loo`` helpers. It guards:

* ``solver/loo.py``: ``ridge_path`` and ``truncation_path`` (exact PRESS, on the dual and the
  primal-with-rows factors) against weighted refits without each row, and +∞ exactly where a
  refit interpolates the row held out;
* ``solver/temperature.py``: ``sampled_rows_loo`` + ``restore_class_share`` (the classifier's
  held-out scores beyond 2·D rows) against refits without each example;
* ``memory/knn.py`` ``KNNMemory.read`` (blocked top-k, vectorised vote) and ``memory/softmax.py``
  ``SoftmaxMemory.read`` (blocked, float64 rescue of overflowing scores) against per-query loops;
* ``lm/train.py``: ``differentiable_fast_weight`` against the inference solve of ``GramStats``;
* ``SpectralFactor.inverse`` and ``SpectralFactor.in_shifted_coordinates`` against ``np.linalg``;
* ``FaastClassifier.forget`` / ``partial_fit`` in batches against a weighted refit on what is left,
  in the regimes ``test_classifier_forget.py`` does not draw;
* cosine reads and ``normalize_keys`` of float32 keys beyond ~1.8·10¹⁹ against the same keys in
  float64 (``F.normalize`` made them 0; found by these tests, fixed by ``faast.unit_rows``).
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

import faast.memory.knn as knn_module
import faast.memory.softmax as softmax_module
from faast import FaastClassifier
from faast.lm.train import differentiable_fast_weight
from faast.memory.knn import KNNMemory
from faast.memory.softmax import SoftmaxMemory
from faast.solver import Cut, GramStats, SpectralFactor
from faast.solver.loo import ridge_path, truncation_path
from faast.solver.spectral import center_on_last
from faast.solver.temperature import fit_temperature

KEY_MODES = ("free", "n=d", "duplicates", "low rank")


def _keys(rng: np.random.Generator, n: int, d: int, mode: str) -> np.ndarray:
    """Keys (n, d) float64: independent rows of decreasing column scale ("free", "n=d"), rows drawn
    with repeats from n/2 distinct ones ("duplicates"), or rank max(1, min(n, d)/2) ("low rank")."""
    if mode == "duplicates" and n > 1:
        base = rng.standard_normal((max(1, n // 2), d))
        return base[rng.integers(0, base.shape[0], n)]
    if mode == "low rank":
        r = max(1, min(n, d) // 2)
        return rng.standard_normal((n, r)) @ rng.standard_normal((r, d))
    return rng.standard_normal((n, d)) * np.logspace(0, -1.5, d)


def _weights(rng: np.random.Generator, n: int, kind: str) -> np.ndarray | None:
    """None, positive weights (n,), or positive weights with about a third of them 0 (never all)."""
    if kind == "none":
        return None
    w = rng.uniform(0.3, 2.0, n)
    if kind == "zeros":
        w[rng.random(n) < 0.35] = 0.0
        if not w.any():
            w[0] = 1.0
    return w


# ---------------------------------------------------------------------------------------------- LOO
def _ridge_press_by_refits(keys: np.ndarray, values: np.ndarray, weights: np.ndarray, rho: float) -> float:
    """Σᵢ wᵢ ‖vᵢ − kᵢ W₋ᵢ‖², W₋ᵢ the weighted ridge fit (Σⱼ≠ᵢ wⱼ kⱼkⱼᵀ + ρI)⁻¹ Σⱼ≠ᵢ wⱼ kⱼvⱼᵀ.
    keys (n, d), values (n, m), weights (n,) ≥ 0, all unscaled."""
    n, d = keys.shape
    press = 0.0
    for i in range(n):
        rest = np.arange(n) != i
        weighted = keys[rest] * weights[rest, None]
        coef = np.linalg.solve(weighted.T @ keys[rest] + rho * np.eye(d), weighted.T @ values[rest])
        press += weights[i] * float(((values[i] - keys[i] @ coef) ** 2).sum())
    return press


@settings(max_examples=300, deadline=None)
@given(
    n=st.sampled_from(range(1, 13)),
    d=st.integers(1, 10),
    m=st.integers(1, 3),
    mode=st.sampled_from(KEY_MODES),
    weighting=st.sampled_from(["none", "positive", "zeros"]),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    seed=st.integers(0, 2**31 - 1),
)
def test_ridge_press_equals_weighted_refits_on_every_route_and_scale(n, d, m, mode, weighting, scale, seed):
    """PRESS of ``ridge_path`` at ρ = λ_max·{10⁻⁴, 10⁻², 1} on the factor of ``GramStats`` with the
    rows kept (dual route for n < d, primal with rows for n ≥ d) equals n weighted ridge refits,
    each without one row: keys (n, d), values (n, m), weights (n,) with zeros, keys scaled by
    10^±30, 1 or 2 rows, n = d, duplicate rows, rank-deficient keys."""
    rng = np.random.default_rng(seed)
    if mode == "n=d":
        n = d
    keys = _keys(rng, n, d, mode) * scale
    values = rng.standard_normal((n, m))
    w = _weights(rng, n, weighting)
    stats = GramStats(d, m, dual_max_pairs=10_000).add(
        torch.from_numpy(keys), torch.from_numpy(values), None if w is None else torch.from_numpy(w)
    )
    factor = stats.factor()
    assert factor.has_rows
    event("dual route" if factor._basis is None else "primal route with rows")
    r = factor.left.shape[1]
    fractions = [1e-4, 1e-2, 1.0]
    grid = factor.lambda_max * torch.tensor(fractions, dtype=torch.float64)
    path = ridge_path(factor.left, factor.eigenvalues[:r], factor.row_values, grid)
    weights = np.ones(n) if w is None else w
    null = float((weights[:, None] * values**2).sum())
    for j, rho in enumerate(grid.tolist()):
        expected = _ridge_press_by_refits(keys, values, weights, rho)
        # float64: ρ ≥ 10⁻⁴·λ_max keeps both solves' conditioning ≤ 10⁴ and 1 − hᵢ ≥ 10⁻⁴
        assert float(path.press[j]) == pytest.approx(expected, rel=1e-7, abs=1e-12 * null), fractions[j]


def _truncation_refits(keys_w: np.ndarray, values_w: np.ndarray, rank: int) -> tuple[float, str]:
    """The classical PRESS of principal-component regression on the first ``rank`` right singular
    directions of the weighted keys (held fixed), by n least-squares refits without each row; and
    whether some row is interpolated — its projection z_i leaves the span of the other rows' (the
    refit without it has rank < ``rank``, so nothing predicts it): "yes", "no", or "unclear" when
    the smallest singular value of some Z₋ᵢ lies between 10⁻¹⁰ and 10⁻³ of Z's largest.
    keys_w (n, d), values_w (n, m): rows already scaled by √wᵢ."""
    n = keys_w.shape[0]
    _, _, vh = np.linalg.svd(keys_w, full_matrices=False)
    z = keys_w @ vh[:rank].T  # (n, rank)
    top = np.linalg.norm(z, 2)
    press, verdict = 0.0, "no"
    for i in range(n):
        rest = np.arange(n) != i
        smallest = np.linalg.svd(z[rest], compute_uv=False)[rank - 1] if n - 1 >= rank else 0.0
        if smallest <= 1e-10 * top:
            verdict = "yes"
            continue
        if smallest < 1e-3 * top and verdict == "no":
            verdict = "unclear"
        coef = np.linalg.lstsq(z[rest], values_w[rest], rcond=None)[0]
        press += float(((values_w[i] - z[i] @ coef) ** 2).sum())
    return press, verdict


@settings(max_examples=300, deadline=None)
@given(
    n=st.sampled_from(range(1, 13)),
    d=st.integers(1, 10),
    m=st.integers(1, 3),
    mode=st.sampled_from(KEY_MODES),
    weighting=st.sampled_from(["none", "positive", "zeros"]),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    seed=st.integers(0, 2**31 - 1),
)
def test_truncation_press_equals_refits_and_is_infinite_exactly_where_a_refit_interpolates(
    n, d, m, mode, weighting, scale, seed
):
    """PRESS of ``truncation_path`` at every rank equals n least-squares refits on the rank's
    principal directions (held fixed, the classical PCR PRESS the docstring promises), and it is
    +∞ exactly where a refit cannot predict the row held out (interpolation: 1 row, rank = n,
    a row whose direction no other row shares). keys (n, d), values (n, m), weighted rows."""
    rng = np.random.default_rng(seed)
    if mode == "n=d":
        n = d
    keys = _keys(rng, n, d, mode) * scale
    values = rng.standard_normal((n, m))
    w = _weights(rng, n, weighting)
    stats = GramStats(d, m, dual_max_pairs=10_000).add(
        torch.from_numpy(keys), torch.from_numpy(values), None if w is None else torch.from_numpy(w)
    )
    factor = stats.factor()
    assert factor.has_rows
    root = np.ones(n) if w is None else np.sqrt(w)
    keys_w, values_w = keys * root[:, None], values * root[:, None]
    r = factor.left.shape[1]
    path = truncation_path(factor.left, factor.row_values, torch.arange(1, r + 1))
    singular = np.linalg.svd(keys_w, compute_uv=False)
    for rank in range(1, r + 1):
        if rank < len(singular) and singular[rank] > (1 - 1e-3) * singular[rank - 1]:
            continue  # the rank's directions are not determined: no reference
        expected, interpolated = _truncation_refits(keys_w, values_w, rank)
        got = float(path.press[rank - 1])
        event(f"a refit interpolates: {interpolated}")
        if interpolated == "unclear":
            continue
        assert math.isinf(got) == (interpolated == "yes"), (rank, got, expected)
        if not math.isinf(got):
            # float64: every Z₋ᵢ has condition ≤ 10³ here; PRESS is a sum of squares
            assert got == pytest.approx(expected, rel=1e-7, abs=1e-12 * float((values_w**2).sum())), rank


# ----------------------------------------------------------------- held-out scores beyond 2·D rows
def _held_out_by_refits(
    design: np.ndarray, labels: np.ndarray, weights: np.ndarray, ridge: float, classes: int
) -> np.ndarray:
    """Held-out scores (n, C) of the fit that holds one example out: row i's weight less
    δ = min(wᵢ, 1), its class's other targets scaled by W_c / (W_c − δ) (the class keeps its total
    target weight), a ridge refit (ZᵀWZ + ρI)⁻¹ZᵀWY; NaN rows for a class's only example.
    design Z (n, D), labels (n,), weights (n,)."""
    n = len(labels)
    out = np.full((n, classes), np.nan)
    for i in range(n):
        held = min(weights[i], 1.0)
        w = weights.copy()
        w[i] -= held
        total = weights[labels == labels[i]].sum()
        if total - held <= 1e-9 * total:
            continue
        targets = np.eye(classes)[labels]
        targets[:, labels[i]] *= total / (total - held)
        gram = design.T @ (w[:, None] * design) + ridge * np.eye(design.shape[1])
        out[i] = design[i] @ np.linalg.solve(gram, design.T @ (w[:, None] * targets))
    return out


def _captured_held_out_scores(clf: FaastClassifier) -> tuple[float, dict[str, torch.Tensor]]:
    """``clf.logit_scale_`` found on first use, and the held-out scores (s′, C), one-hot targets
    and weights (s′,) it was fitted on (what ``_held_out_temperature`` received)."""
    captured: dict[str, torch.Tensor] = {}
    original = FaastClassifier._held_out_temperature

    def spy(self, loo, onehot, weights, reduce=None):
        captured.update(loo=loo, onehot=onehot, weights=weights)
        return original(self, loo, onehot, weights, reduce)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FaastClassifier, "_held_out_temperature", spy)
        temperature = clf.logit_scale_
    return temperature, captured


@settings(max_examples=200, deadline=None)
@given(
    d=st.integers(1, 6),
    extra=st.integers(1, 40),
    classes=st.integers(2, 5),
    setup=st.sampled_from(["intercept", "intercept, weights ≤ 1", "intercept, any weights", "no intercept"]),
    random_features=st.sampled_from([None, None, 5]),
    duplicates=st.booleans(),
    scale=st.sampled_from([1.0, 1e-3, 1e3]),
    ridge=st.sampled_from([0.05, 1.0, 20.0]),
    seed=st.integers(0, 10_000),
)
def test_held_out_scores_beyond_two_d_rows_equal_refits(
    d, extra, classes, setup, random_features, duplicates, scale, ridge, seed
):
    """Beyond 2·D examples (the rows are dropped), ``logit_scale="auto"`` takes its temperature from
    the held-out scores of a sample (here every row, n ≤ 1024): ``sampled_rows_loo`` (primal
    leverages) then ``restore_class_share`` (class totals from the intercept's row of B, or the
    class counts). The scores (s′, C), targets and weights equal refits without each example, and
    T equals the temperature of the refits' scores. Weighted fits without an intercept take
    class totals from counts — a documented approximation, not drawn here."""
    rng = np.random.default_rng(seed)
    intercept = setup != "no intercept"
    D = (random_features or d) + int(intercept)
    n = 2 * D + extra
    classes = min(classes, n)
    y = rng.integers(0, classes, n)
    y[:classes] = np.arange(classes)
    X = rng.standard_normal((n, d)) + 2.0 * np.eye(max(classes, d))[y][:, :d]
    if duplicates:
        X[n // 2 :], y[n // 2 :] = X[: n - n // 2], y[: n - n // 2]
    X = X * scale
    w = None
    if setup.endswith("≤ 1"):
        w = rng.uniform(0.2, 1.0, n)
    elif setup.endswith("any weights"):
        w = rng.uniform(0.2, 2.5, n)
    clf = FaastClassifier(ridge=ridge, fit_intercept=intercept, random_features=random_features)
    clf.fit(X, y, sample_weight=w)
    assert clf.memory_.stats.kept_row_count == 0
    if clf.class_count_.max() <= 1:  # nothing to hold out (duplicates may leave one per class)
        assert clf.logit_scale_ == 10.0
        return
    assert clf._calibration_sample is not None
    temperature, got = _captured_held_out_scores(clf)
    labels, classes = np.searchsorted(clf.classes_, y), len(clf.classes_)

    features = X
    if random_features is not None:
        projection = torch.randn(
            d, random_features, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        features = np.maximum(X @ (projection.numpy() / d**0.5), 0.0)
    design = np.hstack([features, np.ones((n, 1))]) if intercept else features
    weights = np.ones(n) if w is None else w
    expected = _held_out_by_refits(design, labels, weights, ridge, classes)
    has = ~np.isnan(expected[:, 0])
    assert got["loo"].shape == (int(has.sum()), classes)
    np.testing.assert_array_equal(got["onehot"].numpy(), np.eye(classes)[labels[has]])
    np.testing.assert_allclose(got["weights"].numpy(), weights[has], rtol=1e-12)
    # float64 solves of condition up to ~10⁹ (features of size 10³, ρ = 0.05): ~10⁻⁷ relative
    np.testing.assert_allclose(
        got["loo"].numpy(), expected[has], rtol=1e-6, atol=1e-7 * np.abs(expected[has]).max()
    )
    expected_t = fit_temperature(
        torch.from_numpy(expected[has]),
        torch.from_numpy(np.eye(classes)[labels[has]]),
        torch.from_numpy(weights[has]),
        fallback=10.0,
    )
    # Newton stops once a step moves T by < 10⁻⁴ of it (quadratic convergence: far closer)
    assert temperature == pytest.approx(expected_t, rel=1e-5)


# -------------------------------------------------------------------------------------- memories
def _knn_reference(
    keys: np.ndarray, values: np.ndarray, queries: np.ndarray, k: int, metric: str, aggregate: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per query, in float64: the k best keys by cosine similarity or −L2 distance, then the mean
    of their values, or the value row with most votes (ties: the one whose nearest member ranks
    first). Returns the reads (q, m) and which queries are ambiguous: a run of neighbours in the
    ranking with scores within 10⁻⁵ of each other (cosine: absolute; L2: relative) and different
    values decides the top k or the order the vote breaks ties by (excluded from the comparison)."""
    if metric == "cosine":
        unit_k = keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-12)
        unit_q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        scores = unit_q @ unit_k.T
    else:
        scores = -np.sqrt(((queries[:, None, :] - keys[None, :, :]) ** 2).sum(-1))

    reads, ambiguous, tie_broken = [], [], []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        s = row[order]
        nearest = order[:k]
        if aggregate == "mean":
            reads.append(values[nearest].mean(axis=0))
        else:
            groups: dict[tuple[float, ...], list[int]] = {}  # value row -> ranks of its members
            for rank, j in enumerate(nearest):
                groups.setdefault(tuple(values[j]), []).append(rank)
            best = max(groups.items(), key=lambda kv: (len(kv[1]), -kv[1][0]))
            reads.append(np.array(best[0]))
            tie_broken.append(sum(len(g) == len(best[1]) for g in groups.values()) > 1)
        # runs of neighbours within 10⁻⁵: any order among them is a right ranking
        scale = np.ones_like(s) if metric == "cosine" else np.maximum(np.abs(s[:-1]), np.abs(s[1:]))
        tied = np.abs(np.diff(s)) <= 1e-5 * scale[: len(s) - 1]
        unclear, start = False, 0
        for end in range(1, len(s) + 1):
            if end < len(s) and tied[end - 1]:
                continue
            run = order[start:end]  # ranks start..end-1 tie
            mixed = len({tuple(values[j]) for j in run}) > 1
            if start < k and mixed and (end > k or aggregate == "vote"):
                unclear = True  # the run decides which values make the top k, or the vote's tie-break
            start = end
        ambiguous.append(unclear)
    decided = [tie and not unclear for tie, unclear in zip(tie_broken, ambiguous, strict=False)]
    event("vote: a tie broken by rank" if any(decided) else f"{aggregate}: no tie broken by rank")
    return np.array(reads), np.array(ambiguous)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 8),
    q=st.integers(1, 30),
    palette=st.integers(1, 4),
    k=st.one_of(st.none(), st.integers(1, 12)),
    metric=st.sampled_from(["cosine", "l2"]),
    aggregate=st.sampled_from(["vote", "mean"]),
    duplicates=st.booleans(),
    block=st.sampled_from([None, 1, 7]),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1.0, 1e-3, 1e3]),
    seed=st.integers(0, 10_000),
)
def test_knn_read_equals_a_per_query_loop_in_blocks(
    n, d, q, palette, k, metric, aggregate, duplicates, block, dtype, scale, seed
):
    """``KNNMemory.read`` (top-k over query blocks of ``_SCORE_BLOCK`` scores — forced down to 1
    and 7 queries a block — and the vectorised vote with its tie-break) equals a per-query loop in
    float64: keys (n, d), values (n, m) drawn from a palette of rows, queries (q, d), duplicate
    keys, float32/float64, scales 10^±3; k given or the paper's rule."""
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((n, d)) * scale
    if duplicates and n > 1:
        keys[n // 2 :] = keys[: n - n // 2]
    keys = keys.astype(dtype)
    rows = rng.standard_normal((palette, 3)).round(1)
    values = rows[rng.integers(0, palette, n)].astype(dtype)
    queries = (rng.standard_normal((q, d)) * scale).astype(dtype)
    memory = KNNMemory(k, metric=metric, aggregate=aggregate).add(
        torch.from_numpy(keys), torch.from_numpy(values)
    )
    largest_group = max(int((values == v).all(axis=1).sum()) for v in values)
    expected_k = min(k, n) if k is not None else max(1, min(10, largest_group, n))
    assert memory.effective_k() == expected_k
    with pytest.MonkeyPatch.context() as patch:
        if block is not None:
            patch.setattr(knn_module, "_SCORE_BLOCK", block * n)
        got = memory.read(torch.from_numpy(queries))
    assert got.dtype == torch.from_numpy(queries).dtype and got.shape == (q, 3)
    expected, ambiguous = _knn_reference(
        keys.astype(np.float64),
        values.astype(np.float64),
        queries.astype(np.float64),
        expected_k,
        metric,
        aggregate,
    )
    clear = ~ambiguous
    event(
        ["no query near-tied", "some queries near-tied", "every query near-tied"][
            int(ambiguous.any()) + int(ambiguous.all())
        ]
    )
    # the mean of ≤ 12 float32 values: float32 rounding
    np.testing.assert_allclose(got.double().numpy()[clear], expected[clear], rtol=1e-5, atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    d=st.integers(1, 8),
    q=st.integers(1, 20),
    m=st.integers(1, 3),
    temperature=st.sampled_from([0.01, 1.0, 100.0]),
    normalize=st.booleans(),
    block=st.sampled_from([None, 1, 3]),
    regime=st.sampled_from(["float64", "float32", "float32 overflowing"]),
    seed=st.integers(0, 10_000),
)
def test_softmax_read_equals_the_formula_in_blocks(n, d, q, m, temperature, normalize, block, regime, seed):
    """``SoftmaxMemory.read`` over query blocks (forced down to 1 and 3 queries) equals
    softmax(q Kᵀ / T) V in float64, keys (n, d), values (n, m), queries (q, d); with float32 keys
    and queries of size 10²⁰ too (scores overflow float32 and are recomputed in float64; with
    ``normalize``, the rows' squares overflow float32)."""
    rng = np.random.default_rng(seed)
    dtype = np.float64 if regime == "float64" else np.float32
    scale = 1e20 if regime == "float32 overflowing" else 1.0
    keys = (rng.standard_normal((n, d)) * scale).astype(dtype)
    values = rng.standard_normal((n, m)).astype(dtype)
    queries = (rng.standard_normal((q, d)) * scale).astype(dtype)
    memory = SoftmaxMemory(temperature=temperature, normalize=normalize)
    memory.add(torch.from_numpy(keys), torch.from_numpy(values))
    with pytest.MonkeyPatch.context() as patch:
        if block is not None:
            patch.setattr(softmax_module, "_SCORE_BLOCK", block * n)
        got = memory.read(torch.from_numpy(queries)).double().numpy()
    k, x, v = keys.astype(np.float64), queries.astype(np.float64), values.astype(np.float64)
    if normalize:
        k = k / np.linalg.norm(k, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = x @ k.T / temperature
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected = (p / p.sum(axis=1, keepdims=True)) @ v
    if regime == "float64":
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    else:  # float32 scores (or float32 rounding of the float64 ones) and a float32 result
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(v).max()))


@pytest.mark.parametrize("reader", ["softmax normalize=True", "knn cosine", "classifier normalize_keys=True"])
def test_cosine_reads_of_float32_keys_beyond_1e19_equal_float64_reads(reader: str) -> None:
    """Keys and queries of size 10²⁰ in float32 — representable, their squares are not — read as
    the same keys in float64 do (after normalising, scores are cosines in [−1, 1]): memories with
    keys (2, 2) and a query (1, 2) whose nearest key holds value 0; a classifier fitted on X (20, 3).
    ``F.normalize`` made such rows 0, silently (fixed by ``faast.unit_rows``, 01e74927)."""
    if reader.startswith("classifier"):
        rng = np.random.default_rng(0)
        X, y = (rng.standard_normal((20, 3)) * 1e20).astype(np.float32), np.arange(20) % 2
        expected = FaastClassifier(normalize_keys=True).fit(X.astype(np.float64), y).decision_function(X)
        got = FaastClassifier(normalize_keys=True).fit(X, y).decision_function(X)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
        return
    keys = torch.tensor([[1e20, 0.0], [0.0, 3e20]])
    values = torch.tensor([[1.0], [0.0]])
    query = torch.tensor([[1e19, 2e20]])

    def make() -> SoftmaxMemory | KNNMemory:
        return (
            SoftmaxMemory(temperature=0.01, normalize=True) if reader.startswith("softmax") else KNNMemory(1)
        )

    expected_read = make().add(keys.double(), values.double()).read(query.double())
    assert float(expected_read[0, 0]) == pytest.approx(0.0, abs=1e-12)
    got_read = make().add(keys, values).read(query)
    torch.testing.assert_close(got_read.double(), expected_read, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- the differentiable solve of training
@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 30),
    d=st.integers(1, 16),
    rank_fraction=st.sampled_from([1.0, 0.5]),
    duplicates=st.booleans(),
    cut=st.sampled_from(["alpha=1", "alpha=0.5", "0.01", "ridge=0.1", "prior=4"]),
    scale=st.sampled_from([1.0, 1e-4, 1e4]),
    scored=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_differentiable_fast_weight_equals_the_inference_solve(
    n, d, rank_fraction, duplicates, cut, scale, scored, seed
):
    """``differentiable_fast_weight`` (eigh of the d × d Gram matrix, ``SpectralFactor.inverse``,
    times B) predicts what ``GramStats.solve`` does with the same cut — the dual route there when
    n < d — on keys (n, d) of full or half rank, duplicates, scales 10^±4, with and without scorer
    weights w (n,) on the values; the gradient reaches the values."""
    gen = torch.Generator().manual_seed(seed)
    r = max(1, round(rank_fraction * min(n, d)))
    keys = torch.randn(n, r, generator=gen, dtype=torch.float64) @ torch.randn(
        r, d, generator=gen, dtype=torch.float64
    )
    if duplicates and n > 1:
        keys[n // 2 :] = keys[: n - n // 2].clone()
    keys = keys * scale
    values = torch.randn(n, d, generator=gen, dtype=torch.float64).requires_grad_(True)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1 if scored else None
    parsed = Cut.parse(cut)
    if parsed.kind in ("power", "fixed"):  # an eigenvalue at the truncation threshold: no reference
        lam = np.linalg.eigvalsh(keys.T.numpy() @ keys.numpy())
        tau = float(parsed.tau) if parsed.kind == "fixed" else float(parsed.c) * n ** -float(parsed.alpha)
        threshold = tau * tau * lam.max()
        assume(not np.any(np.abs(lam - threshold) <= 1e-6 * lam.max()))
    memory = types.SimpleNamespace(
        memory=types.SimpleNamespace(cut=parsed), value_weights=lambda k, v: weights
    )
    got = differentiable_fast_weight(memory, keys, values)
    assert got.shape == (d, d) and got.requires_grad
    target = values.detach() if weights is None else values.detach() * weights[:, None]
    expected = GramStats(d, d).add(keys, target).solve(parsed, dtype=torch.float64)
    # compared on the keys: weights may differ along directions of rounding-level eigenvalues.
    # The d × d eigh resolves G's null directions only to ε·λ_max, which a fixed ridge ρ weighs by
    # 1/ρ: a relative error up to ~ε·λ_max/ρ (10⁻⁶ at scale 10⁴, ρ = 0.1), the solve's condition
    fitted, reference = keys @ got.detach().T, keys @ expected.T
    condition = 1.0
    if parsed.kind == "ridge":
        condition += float(torch.linalg.eigvalsh(keys.T @ keys).max()) / float(parsed.ridge)
    scale_ref = max(float(torch.linalg.norm(reference)), 1e-300)
    assert float(torch.linalg.norm(fitted - reference)) <= (1e-8 + 1e-14 * condition) * scale_ref


# ----------------------------------------------------------------------------------- SpectralFactor
def _assert_weights_close(got: torch.Tensor, expected: np.ndarray) -> None:
    """Weights (m, d) equal to float64 rounding of a solve of condition ≤ 100, relative to the
    largest weight (an entry may cancel to far below it)."""
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8, atol=1e-9 * np.abs(expected).max())


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 14),
    d=st.integers(2, 10),
    m=st.integers(1, 3),
    mode=st.sampled_from(KEY_MODES),
    route=st.sampled_from(["primal", "dual"]),
    shifted=st.booleans(),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    seed=st.integers(0, 10_000),
)
def test_spectral_inverse_and_shifted_coordinates_equal_linalg(n, d, m, mode, route, shifted, scale, seed):
    """``SpectralFactor.inverse(φ)`` (d, d) is (G + ρI)⁻¹ for a ridge φ (on the dual route, n < d,
    restricted to the rows' directions, the only ones it keeps) and the pseudo-inverse of the best
    rank-k part of G for a rank φ (from an SVD of the keys here). With a shift (an intercept column
    centred on: z′ = z M) the factor is that of G′ = MᵀGM and ``inverse`` is M f(G′) Mᵀ, in the
    keys' own coordinates; ``in_shifted_coordinates()`` gives f(G′) itself, weights
    ((G′ + ρI)⁻¹ MᵀB)ᵀ and the same eigenvalues. Keys (n, d) of every mode, scales 10^±30."""
    rng = np.random.default_rng(seed)
    if route == "dual":
        n = min(n, d - 1)
    elif mode == "n=d":
        n = d
    keys = _keys(rng, n, d, mode)
    if shifted:
        keys[:, -1] = 1.0  # an intercept column
    keys = keys * scale
    values = rng.standard_normal((n, m))
    gram, cross = keys.T @ keys, keys.T @ values
    shift = center_on_last(torch.from_numpy(gram[:, -1].copy())) if shifted else None
    k_t, v_t = torch.from_numpy(keys), torch.from_numpy(values)
    if route == "dual":
        factor = SpectralFactor.from_pairs(k_t, v_t, float(n), float((values**2).sum()), shift)
    else:
        factor = SpectralFactor.from_stats(
            torch.from_numpy(gram), torch.from_numpy(cross), float(n), float((values**2).sum()), shift
        )
    M = np.eye(d)
    if shift is not None:
        M[-1, :-1] = -shift.numpy()  # z′ = z M: z′[:-1] = z[:-1] − z[-1]·shift
    keys_z = keys @ M  # the keys in the factor's coordinates
    gram_z = keys_z.T @ keys_z
    _, sv, vh = np.linalg.svd(keys_z, full_matrices=False)
    lam_max = float(sv[0] ** 2)
    rho = 1e-2 * lam_max
    ridge_inverse = np.linalg.inv(gram_z + rho * np.eye(d))
    kept = ridge_inverse  # the primal route keeps every direction (null ones with λ = 0)
    if route == "dual":  # the dual route keeps the directions of the rows only: U (d, r), r ≤ n
        # a direction at the rounding level: whether it is kept is not determined
        assume(not np.any((sv**2 > 1e-24 * lam_max) & (sv**2 < 1e-8 * lam_max)))
        r = int((sv**2 >= 1e-8 * lam_max).sum())
        assert factor.eigenvalues.numel() == r
        kept = (vh[:r].T / (sv[:r] ** 2 + rho)) @ vh[:r]
    # float64: condition ≤ 100 for the ridge; the rank-k part is kept only where λ_k ≥ 10⁻⁶ λ_max
    tol = dict(rtol=1e-8, atol=1e-10 / rho)
    np.testing.assert_allclose(factor.inverse(factor.ridge_filter(rho)).numpy(), M @ kept @ M.T, **tol)
    _assert_weights_close(factor.weights(factor.ridge_filter(rho)), (M @ ridge_inverse @ M.T @ cross).T)
    for rank in range(1, min(len(sv), factor.eigenvalues.numel()) + 1):
        if sv[rank - 1] ** 2 < 1e-6 * lam_max or (rank < len(sv) and sv[rank] > (1 - 1e-3) * sv[rank - 1]):
            continue  # rounding-level or undetermined directions: no reference
        pinv = (vh[:rank].T / sv[:rank] ** 2) @ vh[:rank]
        atol = 1e-8 * float(np.abs(pinv).max())
        np.testing.assert_allclose(
            factor.inverse(factor.rank_filter(rank)).numpy(), M @ pinv @ M.T, rtol=1e-6, atol=atol
        )
        in_z = factor.in_shifted_coordinates()
        np.testing.assert_allclose(in_z.inverse(in_z.rank_filter(rank)).numpy(), pinv, rtol=1e-6, atol=atol)
    in_z = factor.in_shifted_coordinates()
    if shift is None:
        assert in_z is factor
    assert in_z.shift is None
    torch.testing.assert_close(in_z.eigenvalues, factor.eigenvalues, rtol=0, atol=0)
    np.testing.assert_allclose(in_z.inverse(in_z.ridge_filter(rho)).numpy(), kept, **tol)
    _assert_weights_close(in_z.weights(in_z.ridge_filter(rho)), (ridge_inverse @ M.T @ cross).T)


# ---------------------------------------------------------------------------- forget / partial_fit
def _near_truncation_threshold(design: np.ndarray, weights: np.ndarray, tau: float) -> bool:
    """Whether an eigenvalue of ZᵀWZ (design (n, D), weights (n,)) lies within 10⁻⁶·λ_max of the
    truncation threshold τ²·λ_max (the two routes may then keep different ranks)."""
    lam = np.linalg.eigvalsh(design.T @ (weights[:, None] * design))
    return bool(np.any(np.abs(lam - tau * tau * lam.max()) <= 1e-6 * lam.max()))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 36),
    d=st.integers(1, 9),
    classes=st.integers(2, 4),
    drop_fraction=st.floats(0.05, 0.6),
    cut=st.sampled_from(
        [{"ridge": 0.3}, {"alpha": 1.0}, {"tau": 0.05}, {"ridge": "auto"}, {"tau": "auto"}, {"ridge": "gcv"}]
    ),
    intercept=st.booleans(),
    weighting=st.sampled_from(["none", "positive", "zeros"]),
    duplicates=st.booleans(),
    batches=st.integers(1, 4),
    seed=st.integers(0, 10_000),
)
def test_forget_after_partial_fits_equals_a_weighted_refit_also_across_two_d(
    n, d, classes, drop_fraction, cut, intercept, weighting, duplicates, batches, seed
):
    """``partial_fit`` in 1–4 batches then ``forget`` of a random subset predicts as one weighted
    fit on what is left: X (n, d) with n below, at and above 2·D (D = d + intercept), small d,
    intercept on and off, weights with zeros, duplicate examples. Fixed cuts also when the rows
    are dropped for good on the way (crossing 2·D); cuts chosen from the data only when the route
    does not change (a documented switch from leave-one-out to GCV)."""
    rng = np.random.default_rng(seed)
    classes = min(classes, n)
    X = rng.standard_normal((n, d)) + 1.0
    y = rng.integers(0, classes, n)
    y[:classes] = np.arange(classes)
    if duplicates:
        X[n // 2 :], y[n // 2 :] = X[: n - n // 2], y[: n - n // 2]
    w = _weights(rng, n, weighting)
    gone = rng.choice(n, size=max(1, int(drop_fraction * n)), replace=False)
    keep = np.setdiff1d(np.arange(n), gone)
    parts = np.array_split(np.arange(n), min(batches, n))
    if w is not None:  # a call whose weights are all 0 is refused (scikit-learn): give each one a 1
        for rows in [*parts, keep, gone]:
            if not w[rows].any():
                w[rows[0]] = 1.0
    weights = np.ones(n) if w is None else w
    D = d + int(intercept)
    parsed = Cut.from_params(**cut)
    learned, left = int((weights > 0).sum()), int((weights[keep] > 0).sum())  # weight 0: not learned
    assume(parsed.kind not in ("auto", "ridge-auto", "ridge-gcv") or (learned <= 2 * D) == (left <= 2 * D))
    design = np.hstack([X, np.ones((n, 1))]) if intercept else X
    if parsed.kind in ("power", "fixed"):
        total = weights[keep].sum()
        tau = float(parsed.tau) if parsed.kind == "fixed" else float(parsed.c) * total ** -float(parsed.alpha)
        assume(not _near_truncation_threshold(design[keep], weights[keep], tau))
    labels = np.arange(classes)
    clf = FaastClassifier(fit_intercept=intercept, **cut)
    for part in parts:
        clf.partial_fit(X[part], y[part], classes=labels, sample_weight=None if w is None else w[part])
    clf.forget(X[gone], y[gone], sample_weight=None if w is None else w[gone])
    ref = FaastClassifier(fit_intercept=intercept, **cut)
    ref.partial_fit(X[keep], y[keep], classes=labels, sample_weight=None if w is None else w[keep])
    queries = rng.standard_normal((15, d)) + 1.0
    got, expected = clf.decision_function(queries), ref.decision_function(queries)
    # float64 statistics: a subtraction loses ~ε·‖G_before‖/‖G_after‖ against a fresh sum
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * max(np.abs(expected).max(), 1e-12))
    np.testing.assert_array_equal(clf.class_count_, ref.class_count_)
