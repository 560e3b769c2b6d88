"""FaastClassifier: scikit-learn conformance, torch inputs, streaming, priors and embeddings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils.estimator_checks import parametrize_with_checks

from faast import FaastClassifier, GramStats
from tests.test_classifier_refine import no_intercept_fails


@parametrize_with_checks(
    [
        FaastClassifier(),
        FaastClassifier(alpha=0.8),
        FaastClassifier(tau="gcv", similarity="cosine"),
        FaastClassifier(ridge="auto"),
        FaastClassifier(fit_intercept=False),
    ],
    expected_failed_checks=no_intercept_fails,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, random_state=0)


def test_learns_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = FaastClassifier().fit(X_tr, y_tr)
    assert clf.score(X_te, y_te) > 0.9
    assert clf.coef_.shape == (10, 64)


def test_torch_inputs_match_numpy_and_keep_their_type(digits):
    X_tr, X_te, y_tr, _ = digits
    ref = FaastClassifier().fit(X_tr, y_tr)
    clf = FaastClassifier().fit(torch.from_numpy(X_tr), torch.from_numpy(y_tr))
    scores = clf.decision_function(torch.from_numpy(X_te))
    assert isinstance(scores, torch.Tensor) and scores.dtype == torch.float64
    assert np.allclose(scores.numpy(), ref.decision_function(X_te), atol=1e-10)
    proba = clf.predict_proba(torch.from_numpy(X_te).float())
    assert isinstance(proba, torch.Tensor) and torch.allclose(proba.sum(1), torch.ones(len(X_te)))
    assert np.array_equal(clf.predict(torch.from_numpy(X_te)), ref.predict(X_te))


def test_multilabel_targets_are_refused_with_the_wrapper_that_learns_them():
    """An indicator matrix is refused by fit, partial_fit and forget, naming OneVsRestClassifier;
    wrapped in it, FaastClassifier learns each label as a separate binary fit (its binary
    decision_function is positive exactly where predict says class 1, which the wrapper relies on)."""
    from sklearn.datasets import make_multilabel_classification
    from sklearn.multiclass import OneVsRestClassifier

    X, Y = make_multilabel_classification(n_samples=160, n_features=12, n_classes=4, random_state=0)
    X_tr, Y_tr, X_te = X[:120], Y[:120], X[120:]
    fitted = FaastClassifier().fit(X_tr, Y_tr[:, 0])
    for call in (
        lambda: FaastClassifier().fit(X_tr, Y_tr),
        lambda: FaastClassifier(class_weight="balanced").fit(X_tr, Y_tr),
        lambda: FaastClassifier().partial_fit(X_tr, Y_tr, classes=[0, 1]),
        lambda: fitted.forget(X_tr[:3], Y_tr[:3]),
    ):
        with pytest.raises(ValueError, match=r"indicator matrix \(\d+, 4\).*OneVsRestClassifier"):
            call()
    wrapped = OneVsRestClassifier(FaastClassifier(center_features=True)).fit(X_tr, Y_tr)
    each = [FaastClassifier(center_features=True).fit(X_tr, Y_tr[:, j]).predict(X_te) for j in range(4)]
    assert np.array_equal(wrapped.predict(X_te), np.stack(each, axis=1))
    assert 0 < wrapped.predict(X_te).mean() < 1  # both values occur: the comparison is not vacuous


def test_partial_fit_in_batches_equals_fit(digits):
    X_tr, X_te, y_tr, _ = digits
    full = FaastClassifier(alpha=1.0).fit(X_tr, y_tr)
    stream = FaastClassifier(alpha=1.0)
    for i in range(0, len(X_tr), 97):
        stream.partial_fit(X_tr[i : i + 97], y_tr[i : i + 97], classes=np.arange(10))
    assert np.allclose(stream.decision_function(X_te), full.decision_function(X_te), atol=1e-9)


def test_class_embeddings_equal_regressing_onto_them(digits):
    X_tr, X_te, y_tr, _ = digits
    emb = np.random.default_rng(0).standard_normal((10, 5))
    clf = FaastClassifier(class_embeddings=emb, alpha=1.0, fit_intercept=False).fit(X_tr, y_tr)
    w = GramStats(64, 5).add(X_tr, emb[y_tr]).solve(alpha=1.0)
    values = torch.from_numpy(X_te) @ w.T
    expected = (values @ torch.from_numpy(emb).T).numpy()
    assert np.allclose(clf.decision_function(X_te), expected, atol=1e-9)


def test_identity_prior_mix_follows_effective_sample_sizes():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3, 6))
    X = rng.standard_normal((12, 6))
    y = np.arange(12) % 3
    clf = FaastClassifier(class_embeddings=emb, prior="identity", n0=36.0, alpha=1.0).fit(X, y)
    learned = FaastClassifier(class_embeddings=emb, alpha=1.0).fit(X, y)
    Xq = rng.standard_normal((4, 6))
    r = 12 / (36 + 12)
    expected = r * learned.decision_function(Xq) + (1 - r) * Xq @ emb.T
    assert np.allclose(clf.decision_function(Xq), expected, atol=1e-9)
    # with n0 = 0 the prior has no weight
    no_prior = FaastClassifier(class_embeddings=emb, prior="identity", n0=0.0, alpha=1.0).fit(X, y)
    assert np.allclose(no_prior.decision_function(Xq), learned.decision_function(Xq))


def test_matrix_and_callable_priors_agree():
    rng = np.random.default_rng(1)
    P = rng.standard_normal((3, 5))
    X, y = rng.standard_normal((9, 5)), np.arange(9) % 3
    a = FaastClassifier(prior=P, n0=5.0).fit(X, y)
    b = FaastClassifier(prior=lambda k: k @ torch.from_numpy(P).T, n0=5.0).fit(X, y)
    assert np.allclose(a.decision_function(X), b.decision_function(X))


def test_solver_options_reach_the_solve(digits):
    X_tr, X_te, y_tr, y_te = digits
    for params in ({"tau": "gcv"}, {"ridge": "gcv"}, {"ridge": 1.0}, {"tau": 1e-3}):
        assert FaastClassifier(**params).fit(X_tr, y_tr).score(X_te, y_te) > 0.85


def test_bad_input_errors(digits):
    X_tr, _, y_tr, _ = digits
    clf = FaastClassifier().fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="NaN"):
        FaastClassifier().fit(np.full((3, 2), np.nan), [0, 1, 0])
    with pytest.raises(ValueError, match="NaN or Inf"):
        FaastClassifier().fit(torch.tensor([[float("inf"), 0.0], [0.0, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf.predict(np.zeros((2, 63)))
    with pytest.raises(ValueError, match="expecting 64 features"):
        clf.predict(torch.zeros(2, 63))
    with pytest.raises(ValueError, match="labels not in classes_"):
        clf.partial_fit(X_tr[:2], [0, 42])
    with pytest.raises(ValueError, match="classes must be passed"):
        FaastClassifier().partial_fit(X_tr, y_tr)
    with pytest.raises(ValueError, match=r"class_embeddings: expected shape \(10, m\)"):
        FaastClassifier(class_embeddings=np.ones((3, 4))).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="prior='identity' needs keys and values of one dimension"):
        FaastClassifier(prior="identity", n0=1.0).fit(X_tr, y_tr).predict(X_tr)
    with pytest.raises(ValueError, match="either tau or ridge"):
        FaastClassifier(tau=0.1, ridge=1.0).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="X has 5 rows but y has 4"):
        FaastClassifier().fit(torch.zeros(5, 3), np.arange(4))
    with pytest.raises(ValueError, match=r"expected a 2-D tensor"):
        FaastClassifier().fit(torch.zeros(5), np.arange(5))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_non_finite_labels_are_refused_without_a_cast_warning(bad, method):
    """A NaN or infinite label is named as such, before NumPy casting it to an integer warns."""
    X = np.random.default_rng(0).standard_normal((6, 3))
    y = np.array([0.0, 1.0, bad, 0.0, 1.0, 0.0])
    kwargs = {"classes": [0.0, 1.0]} if method == "partial_fit" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="Input y contains (NaN|infinity)"):
            getattr(FaastClassifier(), method)(X, y, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "kwargs", [{}, {"center_features": True}, {"center_features": True, "loss": "logistic"}]
)
def test_gpu_tensors_stay_on_the_gpu(digits, kwargs):
    X_tr, X_te, y_tr, _ = digits
    clf = FaastClassifier(**kwargs).fit(torch.from_numpy(X_tr).cuda(), y_tr)
    assert clf.stats_.device.type == "cuda"
    scores = clf.decision_function(torch.from_numpy(X_te).cuda())
    assert scores.device.type == "cuda"
    ref = FaastClassifier(**kwargs).fit(X_tr, y_tr).decision_function(X_te)
    # the logistic steps' line searches can carry another device's rounding a little further
    assert np.allclose(scores.cpu().numpy(), ref, atol=1e-6 if "loss" in kwargs else 1e-8)


def test_one_example_per_class_takes_the_fallback_ridge_until_a_class_has_two():
    """``auto`` at one example per class: ρ = s₋₁, the mean non-zero eigenvalue after the largest
    (leave-one-out cannot rank levels when each held-out example's class vanishes); a second
    example of any class brings the leave-one-out choice back (a level of the grid)."""
    from faast.solver.loo import default_ridge_grid
    from faast.solver.spectral import one_per_class_penalty

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 30))
    clf = FaastClassifier().partial_fit(X, [0, 1, 2, 3], classes=[0, 1, 2, 3])
    factor = clf.memory_.stats.factor()
    assert clf.ridge_ == pytest.approx(one_per_class_penalty(factor), rel=1e-12)
    lam = factor.eigenvalues[factor.eigenvalues > factor.noise_floor]
    assert lam.numel() == 4 and clf.ridge_ == pytest.approx(float(lam[1:].mean()), rel=1e-12)
    clf.partial_fit(rng.standard_normal((1, 30)), [2])
    grid = default_ridge_grid(clf.memory_.stats.factor().lambda_max).numpy()
    assert np.isclose(grid, clf.ridge_, rtol=1e-12).any()


def test_predicting_in_another_dtype_reuses_the_fits_cut(monkeypatch):
    """fit solves in float64; the first predict on float32 features converts those weights rather
    than choosing the cut again (a second leave-one-out path: seconds with many classes)."""
    from faast.solver.cut import Cut

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 12)).astype(np.float32)
    y = np.arange(40) % 4
    clf = FaastClassifier().fit(X, y)
    calls = []
    original = Cut.apply
    monkeypatch.setattr(Cut, "apply", lambda self, factor: calls.append(1) or original(self, factor))
    scores = clf.decision_function(X)
    assert calls == []
    expected = X.astype(np.float64) @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"logit_scale": 500.0}, {"loss": "logistic", "C": 10.0}])
def test_predict_log_proba_is_the_log_of_predict_proba_and_stays_finite(kwargs):
    """log softmax without forming softmax: equal to log(predict_proba) where the probabilities
    are representable, finite where they underflow to 0 (a very large temperature)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 5)) + 3.0 * np.eye(3, 5)[np.arange(60) % 3]
    y = np.arange(60) % 3
    clf = FaastClassifier(**kwargs).fit(X, y)
    log_proba, proba = clf.predict_log_proba(X), clf.predict_proba(X)
    assert log_proba.shape == (60, 3) and np.isfinite(log_proba).all()
    representable = proba > 1e-300
    np.testing.assert_allclose(log_proba[representable], np.log(proba[representable]), rtol=1e-9, atol=1e-12)
    if "logit_scale" in kwargs:
        assert (~representable).any()  # the case the log form exists for
    np.testing.assert_allclose(np.exp(log_proba).sum(axis=1), 1.0, rtol=1e-9)


@pytest.mark.parametrize("weight", [2.0, 3, np.float32(0.5), torch.tensor(4.0)])
def test_a_number_as_sample_weight_weighs_every_example_alike(weight):
    """As in scikit-learn, one number weighs every example alike: the fit equals the one with that
    weight spelt out per example (a 0-d array was refused by the length check before)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 6)), np.arange(30) % 3
    spelt_out = np.full(30, float(weight))
    one = FaastClassifier().fit(X, y, sample_weight=weight)
    ref = FaastClassifier().fit(X, y, sample_weight=spelt_out)
    np.testing.assert_allclose(one.decision_function(X), ref.decision_function(X), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        FaastClassifier().fit(X, y, sample_weight=-1.0)


@pytest.mark.parametrize(
    "change",
    [
        {"random_state": 5},
        {"intercept_scaling": 10.0},
        {"normalize_keys": True},
        {"fit_intercept": False},
        {"random_features": 32},
    ],
)
def test_parameters_that_built_the_statistics_are_fixed_until_the_next_fit(tmp_path, change):
    """set_params(random_state=5) then solve() read the statistics through other random features
    (89.7 → 8.3 % in a bug hunt), a later partial_fit mixed two designs in one set of statistics,
    fit_intercept=False failed deep in torch; now each is refused by name, the read-time knobs
    (the cut, similarity) still change freely, and the next fit takes the new value."""
    from faast.classifier_io import load_classifier, save_classifier

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 8)), np.arange(60) % 3
    clf = FaastClassifier(random_features=16).fit(X, y)
    before = clf.decision_function(X[:4]).copy()
    clf.set_params(**change)
    for what, call in (
        ("solve", clf.solve),
        ("predict", lambda: clf.predict(X[:4])),
        ("partial_fit", lambda: clf.partial_fit(X[:3], y[:3])),
        ("forget", lambda: clf.forget(X[:3], y[:3])),
    ):
        with pytest.raises(
            ValueError, match=rf"{what}: {next(iter(change))}=.* \(fitted with .*\): these shape"
        ):
            call()
    clf.set_params(**{k: FaastClassifier(random_features=16).get_params()[k] for k in change})
    np.testing.assert_array_equal(clf.decision_function(X[:4]), before)
    clf.set_params(ridge=1.0, similarity="cosine").solve()  # read-time knobs: free
    save_classifier(clf, tmp_path / "m")
    loaded, _ = load_classifier(tmp_path / "m")
    loaded.set_params(**change)
    with pytest.raises(ValueError, match="these shape the statistics"):
        loaded.solve()
    assert clf.set_params(**change).fit(X, y).score(X, y) > 0.5


@pytest.mark.filterwarnings("ignore:The number of unique classes is greater than 50%")  # scikit-learn's
def test_one_example_per_class_with_about_as_many_classes_as_features_is_not_at_the_double_descent_peak():
    """64 classes of one example each in 64 dimensions (noise 1.2 around each class centre): the
    ridge ρ = s/100 of ``auto`` until 2026-12-06 nearly interpolated the support set, at the peak of
    double descent (about 26 % on these queries); ρ = s₋₁ stays near RidgeClassifierCV."""
    from sklearn.linear_model import RidgeClassifierCV

    from faast.solver.spectral import penalty_scale

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, 64))
    y, qy = np.arange(64), np.repeat(np.arange(64), 5)
    X = centres + 1.2 * rng.normal(size=(64, 64))
    Q = centres[qy] + 1.2 * rng.normal(size=(len(qy), 64))
    clf = FaastClassifier().fit(X, y)
    accuracy = float(np.mean(clf.predict(Q) == qy))
    old = FaastClassifier(ridge=penalty_scale(clf.memory_.stats.factor()) / 100.0).fit(X, y)
    reference = RidgeClassifierCV(alphas=np.logspace(-6, 3, 25)).fit(X, y)
    assert float(np.mean(old.predict(Q) == qy)) < 0.4  # the old penalty, as the bug hunt saw it
    assert accuracy > 0.65
    assert accuracy >= float(np.mean(reference.predict(Q) == qy)) - 0.1


def test_one_example_per_class_far_from_the_origin_keeps_the_directions_between_the_classes():
    """Eight classes of one example each, features shifted by +30 (d = 20): the mean eigenvalue s is
    the offset's, and ρ = s shrank the directions between the classes away (16 % on these
    queries); ρ = s₋₁ leaves the offset's eigenvalue out."""
    from faast.solver.spectral import penalty_scale

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 20))
    y, qy = np.arange(8), np.repeat(np.arange(8), 40)
    X = centres + 0.6 * rng.normal(size=(8, 20)) + 30.0
    Q = centres[qy] + 0.6 * rng.normal(size=(len(qy), 20)) + 30.0
    clf = FaastClassifier().fit(X, y)
    strong = FaastClassifier(ridge=penalty_scale(clf.memory_.stats.factor())).fit(X, y)
    assert float(np.mean(strong.predict(Q) == qy)) < 0.3
    assert float(np.mean(clf.predict(Q) == qy)) > 0.95


@pytest.mark.filterwarnings("ignore:The number of unique classes is greater than 50%")  # scikit-learn's
@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_one_example_per_class_beyond_the_rows_kept_takes_the_one_per_class_penalty(offset):
    """300 classes of one example each in 64 dimensions: more pairs than the 2·D rows kept, so
    leave-one-out has no rows; GCV, used there until 2026-12-06, took a huge ridge on features
    far from the origin (+3: 1 % on these queries, one class predicted, against RidgeClassifierCV's
    92 %). The class counts tell the statistics that no class has two examples, and ``auto`` takes
    the same ρ = s₋₁ as with the rows kept; a second example of a class brings GCV back."""
    from sklearn.linear_model import RidgeClassifierCV

    from faast.solver.spectral import one_per_class_penalty

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(300, 64))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y, qy = np.arange(300), np.repeat(np.arange(300), 5)
    X = centres + rng.normal(size=(300, 64)) / 8.0 + offset
    Q = centres[qy] + rng.normal(size=(len(qy), 64)) / 8.0 + offset
    clf = FaastClassifier().fit(X, y)
    stats = clf.memory_.stats
    assert stats._pairs is None and stats.values_unshared  # the rows are dropped: no leave-one-out
    assert clf.ridge_ == pytest.approx(one_per_class_penalty(stats.factor()), rel=1e-12)
    reference = RidgeClassifierCV(alphas=np.logspace(-6, 6, 25)).fit(X, y)
    accuracy = float(np.mean(clf.predict(Q) == qy))
    assert accuracy > 0.85
    assert accuracy >= float(np.mean(reference.predict(Q) == qy)) - 0.03
    stats.values_unshared = False  # what the solve did before: GCV's ridge
    before = FaastClassifier(ridge=clf.memory_.solve_info().ridge).fit(X, y)
    assert (float(np.mean(before.predict(Q) == qy)) < 0.1) == (offset > 0)  # failed shifted only
    clf.partial_fit(X[:1], y[:1])  # class 0 has two examples now: GCV
    assert not stats.values_unshared and clf.ridge_ != pytest.approx(one_per_class_penalty(stats.factor()))
