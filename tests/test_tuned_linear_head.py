"""faast.eval.probe's tuned backprop head (``train_tuned_linear_head``): it reaches the optimum of the
penalised cross-entropy, chooses its weight decay by cross-validation on the training examples
alone, beats the authors' SGD recipe few-shot, is deterministic, refuses bad input; and
benchmarks/lm_sentiment.py's heads part reports it beside the SGD head."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from faast.eval.probe import (
    ProbeRecipe,
    TunedHeadRecipe,
    _stratified_folds,
    fit_penalised_linear_head,
    train_linear_probe,
    train_tuned_linear_head,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lm_sentiment
from tests.test_benchmark_lm_lead import TEMPLATE, _labelled, _task


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are tiny: one thread (more only adds synchronisation on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _problem(n: int, d: int, classes: int, seed: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, d) float64 on uneven scales and offsets, labels (n,) in [0, classes) that the
    first columns carry with noise (every class present)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    X = rng.normal(size=(n, d))
    X[:, :classes] += shift * np.eye(classes)[y]
    return X * rng.uniform(0.3, 4.0, d) + rng.normal(scale=3.0, size=d), y


def _sklearn_optimum(
    X: np.ndarray, y: np.ndarray, lam: float, standardize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, C), weights (C, d) on the features it was fitted on) of scikit-learn's
    LogisticRegression at the C equivalent to weight decay ``lam`` on the mean cross-entropy:
    it minimises C Σ CE + ½‖w‖² (intercept unpenalised). With 3 or more classes (softmax, one row
    per class) C = 1 / (λ n); with two it keeps one row v = W₁ − W₀, and as the optimum has
    W₀ = −W₁, λ/2 ‖W‖² = λ/4 ‖v‖²: C = 2 / (λ n)."""
    Z = StandardScaler().fit_transform(X) if standardize else X
    two = len(np.unique(y)) == 2
    clf = LogisticRegression(C=(2.0 if two else 1.0) / (lam * len(y)), tol=1e-12, max_iter=100_000).fit(Z, y)
    return clf.predict_proba(Z), clf.coef_


@pytest.mark.parametrize(
    ("n", "d", "classes", "lam"),
    [(16, 40, 2, 1e-3), (16, 40, 3, 1e-2), (400, 12, 2, 1e-4), (300, 10, 3, 1e-3), (300, 10, 2, 3.0)],
)
@pytest.mark.parametrize("standardize", [False, True])
def test_the_penalised_head_is_logistic_regressions_optimum(n, d, classes, lam, standardize):
    X, y = _problem(n, d, classes, seed=n + classes)
    head, iterations = fit_penalised_linear_head(
        torch.tensor(X), torch.tensor(y), classes, lam, standardize=standardize
    )
    assert head.weight.dtype == torch.float64 and iterations > 0
    with torch.no_grad():
        probs = torch.softmax(head(torch.tensor(X)), 1).numpy()  # the head reads raw features
    expected_probs, expected_coef = _sklearn_optimum(X, y, lam, standardize)
    np.testing.assert_allclose(probs, expected_probs, atol=1e-5)
    W = head.weight.numpy() * (X.std(0) if standardize else 1.0)  # the weights the penalty is on
    coef = W[1:] - W[:1] if classes == 2 else W
    np.testing.assert_allclose(coef, expected_coef, atol=1e-4 * np.abs(expected_coef).max())
    # the optimum itself: no gradient of the penalised loss is left
    Xt, yt = torch.tensor(X), torch.tensor(y)
    Z = (Xt - Xt.mean(0)) / Xt.std(0, correction=0) if standardize else Xt
    V = torch.tensor(W, requires_grad=True)
    shift = Xt.mean(0) if standardize else torch.zeros(d, dtype=torch.float64)
    c = (head.bias + head.weight @ shift).detach().requires_grad_(True)
    loss = F.cross_entropy(Z @ V.T + c, yt) + lam / 2 * V.pow(2).sum()
    assert max(float(g.abs().max()) for g in torch.autograd.grad(loss, [V, c])) < 1e-6


def test_the_head_keeps_the_features_dtype_and_is_frozen():
    X, y = _problem(30, 6, 2, seed=1)
    head, _ = fit_penalised_linear_head(torch.tensor(X, dtype=torch.float32), torch.tensor(y), 2, 0.1)
    assert head.weight.dtype == torch.float32 and not head.training
    assert not any(p.requires_grad for p in head.parameters())


def test_a_fit_that_stops_early_warns():
    X, y = _problem(40, 10, 2, seed=2)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        fit_penalised_linear_head(torch.tensor(X), torch.tensor(y), 2, 1e-4, max_iter=2)


def _easy_few_shot(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """16 training and 1000 test examples of two well-separated classes in 64 dimensions, on a
    large common offset with unit-norm-scale differences (as an LM's states: far from the origin)."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(64, generator=gen)
    offset = 20 * torch.randn(64, generator=gen)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 2
        X = offset + 0.5 * torch.randn(n, 64, generator=gen) + (2 * y[:, None] - 1) * 0.25 * direction
        return X, y

    return (*draw(16), *draw(1000))


def test_the_tuned_head_beats_the_authors_recipe_on_16_examples():
    Xtr, ytr, Xte, yte = _easy_few_shot(seed=0)
    tuned = train_tuned_linear_head(Xtr, ytr, 2, seed=0).head
    sgd = train_linear_probe(Xtr, ytr, 2, ProbeRecipe(validation="per-class", patience=5), seed=0)
    with torch.no_grad():
        acc_tuned = float((tuned(Xte).argmax(1) == yte).double().mean())
        acc_sgd = float((sgd(Xte).argmax(1) == yte).double().mean())
    assert acc_tuned > 0.9
    assert acc_tuned > acc_sgd + 0.2


def test_the_weight_decay_is_chosen_on_held_out_training_examples_only():
    # the trainer is given the training examples and nothing else: no test data can reach it
    assert list(inspect.signature(train_tuned_linear_head).parameters) == [
        "X",
        "y",
        "num_classes",
        "recipe",
        "seed",
    ]
    X, y = _problem(60, 30, 2, seed=3, shift=1.5)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    recipe = TunedHeadRecipe(weight_decays=(1e-4, 1e-2, 1.0, 100.0), folds=4)
    fit = train_tuned_linear_head(Xt, yt, 2, recipe, seed=7)
    assert fit.folds == 4 and set(fit.cv_accuracy) == set(recipe.weight_decays)
    # each λ's score is the accuracy on folds held out of its fits, over all 60 examples once
    folds = _stratified_folds(yt, 4, 7)
    assert sorted(torch.cat(folds).tolist()) == list(range(60))
    for lam in recipe.weight_decays:
        correct = 0
        for val in folds:
            keep = torch.ones(60, dtype=torch.bool)
            keep[val] = False
            head, _ = fit_penalised_linear_head(Xt[keep], yt[keep], 2, lam)
            with torch.no_grad():
                correct += int((head(Xt[val]).argmax(1) == yt[val]).sum())
        assert fit.cv_accuracy[lam] == pytest.approx(correct / 60)
    assert fit.cv_accuracy[fit.weight_decay] == max(fit.cv_accuracy.values())
    # and the returned head is the refit on all examples at the chosen λ
    refit, _ = fit_penalised_linear_head(Xt, yt, 2, fit.weight_decay)
    torch.testing.assert_close(fit.head.weight, refit.weight)


def test_the_folds_are_scikit_learns_stratified_k_fold():
    from sklearn.model_selection import StratifiedKFold

    y = np.array([0] * 7 + [1] * 12 + [2] * 5)
    ours = _stratified_folds(torch.tensor(y), 5, 3)
    theirs = [test for _, test in StratifiedKFold(5, shuffle=True, random_state=3).split(y[:, None], y)]
    assert [f.tolist() for f in ours] == [t.tolist() for t in theirs]
    assert sorted(torch.cat(ours).tolist()) == list(range(len(y)))


def test_accuracy_ties_go_to_the_lower_held_out_cross_entropy():
    X, y = _problem(40, 10, 2, seed=8, shift=8.0)  # separable: every λ classifies the folds right
    recipe = TunedHeadRecipe(weight_decays=(1e-2, 1e-1, 1.0, 10.0), folds=4)
    fit = train_tuned_linear_head(torch.tensor(X), torch.tensor(y), 2, recipe)
    assert set(fit.cv_accuracy.values()) == {1.0}
    assert len(set(fit.cv_loss.values())) == 4
    assert fit.weight_decay == min(fit.cv_loss, key=fit.cv_loss.get)


def test_the_choice_follows_the_training_data():
    # pure-noise labels: a strong penalty is as good as any; clean labels in many dimensions:
    # weak penalties fit them (the grid's ends are chosen where they should be)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 20))
    noise = torch.tensor(rng.integers(0, 2, 80))
    noise[:2] = torch.tensor([0, 1])
    clean = torch.tensor((X[:, :10].sum(1) > 0).astype(np.int64))
    recipe = TunedHeadRecipe(weight_decays=(1e-4, 100.0))
    assert train_tuned_linear_head(torch.tensor(X), clean, 2, recipe).weight_decay == 1e-4
    noisy = train_tuned_linear_head(torch.tensor(X), noise, 2, recipe)
    assert noisy.cv_loss[100.0] < noisy.cv_loss[1e-4]


def test_the_tuned_head_is_deterministic_and_its_optimum_does_not_depend_on_the_seed():
    X, y = _problem(50, 20, 3, seed=5)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    a = train_tuned_linear_head(Xt, yt, 3, seed=11)
    b = train_tuned_linear_head(Xt, yt, 3, seed=11)
    assert torch.equal(a.head.weight, b.head.weight) and torch.equal(a.head.bias, b.head.bias)
    assert a.weight_decay == b.weight_decay and a.cv_accuracy == b.cv_accuracy
    one = TunedHeadRecipe(weight_decays=(0.05,))
    c = train_tuned_linear_head(Xt, yt, 3, one, seed=1).head
    d = train_tuned_linear_head(Xt, yt, 3, one, seed=2).head
    torch.testing.assert_close(c.weight, d.weight, atol=1e-5, rtol=1e-4)


def test_too_few_per_class_to_cross_validate_uses_the_default():
    X, y = _problem(5, 4, 2, seed=6)
    y = torch.tensor([0, 0, 0, 0, 1])
    fit = train_tuned_linear_head(torch.tensor(X), y, 2, TunedHeadRecipe(default_weight_decay=0.3))
    assert fit.folds == 0 and fit.weight_decay == 0.3 and fit.cv_accuracy == {}
    ref, _ = fit_penalised_linear_head(torch.tensor(X), y, 2, 0.3)
    torch.testing.assert_close(fit.head.weight, ref.weight)


@pytest.mark.parametrize(
    ("X", "y", "classes", "error", "match"),
    [
        (torch.zeros(5, 3), torch.tensor([0, 1, 0, 1]), 2, ValueError, "5 rows but y has 4"),
        (torch.randn(4, 3), torch.tensor([1, 1, 1, 1]), 2, ValueError, "at least two classes"),
        (torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), 2, ValueError, r"must lie in \[0, 2\)"),
        (torch.randn(4, 3), torch.tensor([0.0, 1.0, 0.0, 1.0]), 2, TypeError, "integer class indices"),
        (torch.randn(4), torch.tensor([0, 1, 0, 1]), 2, ValueError, r"must be \(n, d\)"),
        (
            torch.tensor([[0.0], [float("nan")], [1.0], [2.0]]),
            torch.tensor([0, 1, 0, 1]),
            2,
            ValueError,
            "non-finite",
        ),
        (torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), 1, ValueError, "num_classes"),
    ],
)
def test_bad_input_is_refused_clearly(X, y, classes, error, match):
    with pytest.raises(error, match=match):
        train_tuned_linear_head(X, y, classes)
    with pytest.raises(error, match=match):
        fit_penalised_linear_head(X, y, classes, 0.1)


def test_bad_settings_are_refused_clearly():
    X, y = torch.randn(8, 3), torch.tensor([0, 1] * 4)
    with pytest.raises(ValueError, match="weight_decay must be > 0"):
        fit_penalised_linear_head(X, y, 2, 0.0)
    with pytest.raises(ValueError, match="weight decays must be > 0"):
        train_tuned_linear_head(X, y, 2, TunedHeadRecipe(weight_decays=(1.0, -1.0)))
    with pytest.raises(ValueError, match="folds must be at least 2"):
        train_tuned_linear_head(X, y, 2, TunedHeadRecipe(folds=1))


def test_sentiment_heads_report_the_tuned_head_beside_the_sgd_one(monkeypatch):
    monkeypatch.setattr(lm_sentiment, "TEMPLATE", TEMPLATE)
    monkeypatch.setattr(lm_sentiment, "LABELS", ["w40", "w41"])
    task = _task()
    pool, test = _labelled(24), _labelled(12, offset=5)
    rows: list = []
    lm_sentiment._head_rows("tiny", task, pool, test, [1, 12, 24], seed=0, rows=rows)
    methods = [lm_sentiment.SGD_HEAD, lm_sentiment.TUNED_HEAD, "faast-head", "faast-head (logistic)"]
    assert [(r.method, r.k) for r in rows] == [(m, k) for k in (12, 24) for m in methods]
    feats_test = task.prompt_features([e.input for e in test]).float()
    for row in rows[1::4]:
        ys = torch.tensor([["w40", "w41"].index(e.output) for e in pool[: row.k]])
        feats = task.prompt_features(pool[: row.k]).float()
        fit = train_tuned_linear_head(feats, ys, 2, seed=0)
        with torch.no_grad():
            scores = fit.head(feats_test).double()
        assert row.score == pytest.approx(lm_sentiment.accuracy(scores, test)[0])
        assert row.detail.startswith(f"wd={fit.weight_decay:.3g} (5-fold CV acc")
        assert row.nbytes == (2 * feats.shape[1] + 2) * 4
