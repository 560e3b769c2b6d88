"""Evaluation logic on synthetic features: episodes, intervals, splits, preprocessing, every
method, the backprop probe's recipe, both protocols, the bars and the report files."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.eval.episodes import sample_episodes
from faast.eval.methods import LOGISTIC_CS, METHODS, Faast, LogReg, _solve_args, build_methods
from faast.eval.preprocess import Preprocess
from faast.eval.probe import ProbeRecipe, _holdout, train_linear_probe
from faast.eval.protocols import Features, MethodResult, run_fewshot, run_full
from faast.eval.report import comparison, update_doc_block, write_report
from faast.eval.splits import validation_split
from faast.eval.stats import binomial_ci95, mean_ci95, wilson_ci95


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are tiny: one thread avoids OpenMP overhead on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n_per_class=60, classes=4, dim=16, sep=3.0, seed=0):
    """Gaussian class clusters shifted to positive values, like pooled ReLU features."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * sep
    y = np.repeat(np.arange(classes), n_per_class)
    x = centers[y] + rng.standard_normal((len(y), dim)) + 10.0
    perm = rng.permutation(len(y))
    return torch.tensor(x[perm], dtype=torch.float32), y[perm]


@pytest.fixture(scope="module")
def features():
    """240 train / 120 test examples of 4 classes in 16 dimensions (balanced)."""
    x, y = blobs(n_per_class=90, seed=0)
    train, test = validation_split(y, 120, seed=0)
    return Features(x[train], y[train], x[test], y[test])


# ----------------------------------------------------------------- episodes, splits, intervals
def test_episodes_are_balanced_disjoint_and_reproducible():
    s_labels = np.repeat(np.arange(5), 20)
    q_labels = np.repeat(np.arange(5), 10)
    eps = sample_episodes(s_labels, q_labels, ways=3, shots=4, queries=6, episodes=30, seed=7)
    again = sample_episodes(s_labels, q_labels, ways=3, shots=4, queries=6, episodes=30, seed=7)
    other = sample_episodes(s_labels, q_labels, ways=3, shots=4, queries=6, episodes=30, seed=8)
    for e, f in zip(eps, again, strict=True):
        assert np.array_equal(e.support, f.support) and np.array_equal(e.query, f.query)
        assert len(np.unique(e.support)) == 12 and len(np.unique(e.query)) == 18
        assert np.array_equal(np.unique(s_labels[e.support], return_counts=True)[1], [4, 4, 4])
        assert set(s_labels[e.support]) == set(q_labels[e.query]) == set(e.classes)
    assert any(not np.array_equal(e.support, f.support) for e, f in zip(eps, other, strict=True))
    assert len({tuple(e.classes) for e in eps}) > 1  # 3 of 5 classes vary across episodes
    full = sample_episodes(s_labels, q_labels, ways=None, shots=1, queries=1, episodes=2, seed=0)
    assert all(len(e.classes) == 5 for e in full)


def test_episode_errors():
    labels = np.repeat(np.arange(3), 4)
    with pytest.raises(ValueError, match="fewer than 5 shots"):
        sample_episodes(labels, labels, ways=None, shots=5, queries=1, episodes=1, seed=0)
    with pytest.raises(ValueError, match="fewer than 9 queries"):
        sample_episodes(labels, labels, ways=None, shots=1, queries=9, episodes=1, seed=0)
    with pytest.raises(ValueError, match="ways"):
        sample_episodes(labels, labels, ways=4, shots=1, queries=1, episodes=1, seed=0)
    with pytest.raises(ValueError, match=">= 1"):
        sample_episodes(labels, labels, ways=None, shots=0, queries=1, episodes=1, seed=0)


def test_confidence_intervals():
    mean, half = mean_ci95([0.5, 0.7, 0.6, 0.8])
    assert mean == pytest.approx(0.65)
    assert half == pytest.approx(1.959964 * np.std([0.5, 0.7, 0.6, 0.8], ddof=1) / 2, rel=1e-6)
    assert mean_ci95([0.3]) == (0.3, 0.0)
    assert binomial_ci95(0.9, 10_000) == pytest.approx(1.959964 * math.sqrt(0.09 / 10_000), rel=1e-6)
    with pytest.raises(ValueError):
        mean_ci95([])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), share=st.floats(0, 1))
def test_wilson_interval_matches_its_formula(n, share):
    """The Wilson score interval (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n), from its
    textbook formula: it holds p̂, stays in [0, 1], and at 6 of 6 right starts near 61 %."""
    right = round(share * n)
    p, z = right / n, 1.959963984540054
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson_ci95(right, n)
    assert low == pytest.approx(max((centre - half) / (1 + z * z / n), 0.0), abs=1e-12)
    assert high == pytest.approx(min((centre + half) / (1 + z * z / n), 1.0), abs=1e-12)
    assert 0.0 <= low <= p <= high <= 1.0


def test_wilson_interval_on_few_items_and_bad_counts():
    assert wilson_ci95(6, 6)[0] == pytest.approx(6 / (6 + 1.959963984540054**2))
    with pytest.raises(ValueError, match="n must be positive"):
        wilson_ci95(0, 0)
    with pytest.raises(ValueError, match=r"right must lie in \[0, n\], got 7 of 6"):
        wilson_ci95(7, 6)


def test_validation_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), 60)
    fit, val = validation_split(labels, 100, seed=3)
    assert len(val) == 100 and len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == 600
    assert np.array_equal(np.bincount(labels[val]), np.full(10, 10))


def test_preprocess_uses_support_statistics_only():
    x = torch.tensor([[1.0, 3.0], [3.0, 5.0]])
    pre = Preprocess("center-l2").fit(x)
    out = pre.transform(torch.tensor([[2.0, 4.0 + 2.0]]))
    assert torch.allclose(out, torch.tensor([[0.0, 1.0]])) and pre.nbytes == 8
    assert Preprocess("none").fit(x).nbytes == 0
    assert torch.allclose(Preprocess("l2").fit_transform(x).norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="preprocessing"):
        Preprocess("whiten")


# ----------------------------------------------------------------- methods
@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_learns_separable_classes(key, features):
    method = METHODS[key]()
    grid = method.grid("full")
    model = method.fit(features.train_x, features.train_y, grid[0], seed=0)
    acc = np.mean(model.predict(features.test_x) == features.test_y)
    assert acc > 0.9, (key, grid[0], acc)
    scores = method.validate(
        features.train_x, features.train_y, features.test_x, features.test_y, grid[:2], 0
    )
    assert len(scores) == len(grid[:2]) and all(0 <= s <= 1 for s in scores)


def test_methods_accept_arbitrary_label_values(features):
    y = features.train_y * 10 + 3  # labels 3, 13, 23, 33
    for method in build_methods():
        pred = method.fit(features.train_x, y, method.grid("few")[0], seed=0).predict(features.test_x[:5])
        assert set(pred) <= {3, 13, 23, 33}, method.key


def test_bytes_kept_at_inference(features):
    n, d = features.train_x.shape
    c = 4
    faast = Faast().fit(features.train_x, features.train_y, {"prep": "center-l2", "cut": 0.8}, 0)
    assert faast.nbytes == (c * d + c) * 4 + d * 4  # W (C × d) and intercept (C,) float32, the mean
    plain = Faast().fit(features.train_x, features.train_y, {"prep": "none", "cut": 0.8}, 0)
    assert plain.nbytes == (c * d + c) * 4
    knn = METHODS["knn"]().fit(features.train_x, features.train_y, {"prep": "none"}, 0)
    assert knn.nbytes == n * (d + c) * 4  # every key and its one-hot value
    lr = METHODS["logreg"]().fit(features.train_x, features.train_y, {"prep": "l2", "C": 1.0}, 0)
    assert lr.nbytes == (c * d + c) * 4  # float32 features give float32 coefficients


def test_faast_shared_validation_matches_separate_fits(features):
    method = Faast(cuts=[0.5, 1.0, "gcv"], preps=["none", "l2"])
    grid = method.grid("few")
    xs, ys = features.train_x[:8], features.train_y[:8]
    shared = method.validate(xs, ys, features.test_x, features.test_y, grid, 0)
    separate = [np.mean(method.fit(xs, ys, p, 0).predict(features.test_x) == features.test_y) for p in grid]
    assert np.allclose(shared, separate)


def test_faast_logistic_candidates_share_logreg_penalties(features):
    """FAAST's logistic steps are validated over LogisticRegression's C grid, after ``C="auto"``
    (first, so it wins ties), and a fit honours the C of its grid point."""
    grid = Faast(preps=["l2"]).grid("full")
    logistic = [p for p in grid if p.get("loss") == "logistic"]
    assert [p["C"] for p in logistic] == ["auto", *LOGISTIC_CS]
    assert sorted({p["C"] for p in LogReg().grid("full")}) == sorted(LOGISTIC_CS)
    params = logistic[2]
    _, clf = Faast()._fit_classifier(features.train_x, features.train_y, "l2", *_solve_args(params))
    assert clf.C_ == pytest.approx(params["C"]) and clf.loss == "logistic"


def test_probe_holdout_follows_the_recipe():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(16)
    train, val = _holdout(y, ProbeRecipe(validation="per-class"), gen)
    assert len(val) == 4 * 2 and len(train) == 4 * 14  # ⌊16/8⌋ per class
    train, val = _holdout(torch.arange(4), ProbeRecipe(validation="per-class"), gen)
    assert len(val) == 0 and len(train) == 4  # one shot: nothing to hold out
    train, val = _holdout(torch.arange(100) % 4, ProbeRecipe(validation="random"), gen)
    assert len(val) == 20 and len(np.intersect1d(train.numpy(), val.numpy())) == 0


def test_probe_training_is_deterministic_and_learns(features):
    y = torch.from_numpy(features.train_y)
    recipe = ProbeRecipe(epochs=4)
    a = train_linear_probe(features.train_x, y, 4, recipe, seed=5)
    b = train_linear_probe(features.train_x, y, 4, recipe, seed=5)
    assert torch.equal(a.weight, b.weight)
    pred = a(features.test_x).argmax(dim=1).numpy()
    assert np.mean(pred == features.test_y) > 0.9


# ----------------------------------------------------------------- protocols and report
def test_protocols_end_to_end(features, tmp_path):
    methods = build_methods(["faast", "knn", "ridge"])
    few = run_fewshot(
        methods, features, [1, 3], episodes=6, val_episodes=2, queries=5, val_size=40, seed=0, progress=False
    )
    full = run_full(methods, features, val_size=40, seed=0, progress=False)
    assert [(r.method, r.shots) for r in few] == [(m.key, k) for k in (1, 3) for m in methods]
    assert all(r.episodes == 6 and r.n_support == 4 * r.shots and r.n_query == 20 for r in few)
    assert all(r.shots is None and r.n_support == 240 and r.n_query == 120 for r in full)
    for r in few + full:
        assert 0 <= r.accuracy <= 1 and r.ci95 >= 0 and r.fit_s > 0 and r.predict_s > 0 and r.nbytes > 0
        assert set(r.params) >= {"prep"}
    assert min(r.accuracy for r in full) > 0.9
    again = run_fewshot(
        methods, features, [1], episodes=6, val_episodes=2, queries=5, val_size=40, seed=0, progress=False
    )
    assert [r.accuracy for r in again] == [r.accuracy for r in few if r.shots == 1]

    meta = {"dataset": "blobs", "encoder": "none", "resolution": 0, "seed": 0, "full_per_class": 60.0}
    paths = write_report(tmp_path / "out", few + full, meta)
    rows = list(csv.DictReader(open(paths["csv"], encoding="utf-8")))
    assert (
        len(rows) == len(few) + len(full) and rows[-1]["regime"] == "full" and rows[0]["dataset"] == "blobs"
    )
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["md"].read_text(encoding="utf-8")
    assert "| FAAST |" in text and "results.png" in text and "full data" in text


def _result(method, shots, acc, fit):
    return MethodResult(method, method, shots, acc, 0.0, fit, 0.0, 0, {}, float("nan"), 0.0, 1, 1, 1)


def test_comparison_states_the_numbers():
    results = [
        _result("faast", None, 0.880, 1.0),
        _result("logreg", None, 0.884, 4.0),
        _result("probe", None, 0.870, 30.0),
        _result("faast", 1, 0.50, 0.1),
        _result("probe", 1, 0.40, 0.1),
        _result("faast", 5, 0.60, 0.1),
        _result("probe", 5, 0.61, 0.1),
    ]
    lines = comparison(results)
    assert lines[0] == "1-shot: FAAST 50.00 % vs the best baseline, probe, 40.00 % (+10.00 points)"
    assert lines[1].endswith("probe, 61.00 % (-1.00 points)")
    assert lines[2] == "full: FAAST 88.00 % vs the best baseline, logreg, 88.40 % (-0.40 points)"
    assert lines[3] == "full-data fit: FAAST 1.00 s; logreg 4.00 s (4.0×), probe 30.00 s (30.0×)"


def test_doc_block_is_replaced_in_place(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nintro\n", encoding="utf-8")
    update_doc_block(doc, "demo", "first table", "faast demo")
    update_doc_block(doc, "demo", "second table", "faast demo --seed 1")
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Results\n\nintro\n") and "second table" in text and "first table" not in text
    assert text.count("faast:demo:begin") == 1 and "faast demo --seed 1" in text


@pytest.mark.parametrize("kind", ["none", "l2", "center", "center-l2"])
@pytest.mark.parametrize("shape", [(1, 3), (7, 5), (300, 17)])
def test_preprocess_matches_the_plain_formulas(kind, shape):
    """The in-place normalisation equals the plain (X − mean) / ‖X − mean‖ bit for bit."""
    gen = torch.Generator().manual_seed(shape[0])
    x = torch.randn(shape, generator=gen)
    q = torch.randn(4, shape[1], generator=gen)
    q[0] = 0.0  # a zero row stays zero (norm floored)
    mean = x.mean(dim=0) if kind.startswith("center") else torch.zeros(shape[1])
    want = q - mean
    if kind.endswith("l2"):
        want = torch.nn.functional.normalize(want, dim=1)
    before = q.clone()
    pre = Preprocess(kind).fit(x)
    assert torch.equal(pre.transform(q), want)
    assert torch.equal(q, before)  # the input is not modified
