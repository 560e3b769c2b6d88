"""``FaastClassifier``: a scikit-learn classifier whose fit is one closed-form solve.

Keys are feature vectors (from any frozen encoder), values are label embeddings: one-hot by
default, or rows of a given class-embedding matrix E (C × m), e.g. CLIP text embeddings of the
class names. Because the values of class c are always E_c, the statistics are kept with one-hot
values (B = per-class key sums, d × C) and E is applied after the solve, which is exact:
W_E = Eᵀ W_onehot.

Prediction for keys k (q × d):

    ŷ = r·W k + (1 − r)·P(k),   r = n / (n0 + n)          (value space, m)
    scores_c = sim(ŷ, E_c)                                  (dot or cosine)

with P an optional zero-shot prior ("identity" when keys and class embeddings share a space,
as with CLIP, or any matrix / callable) and n0 its effective sample size (paper Eq. 14).
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, assert_all_finite, check_is_fitted, column_or_1d

import faast.distributed
from faast._checks import caller_stacklevel, check_finite
from faast.classifier_design import DesignMixin
from faast.classifier_distributed import (
    check_same_setup,
    refuse_nothing_learned,
    shard_without_weight,
    weighs_nothing,
)
from faast.classifier_record import ExampleRecord, class_index, example_digests
from faast.classifier_refine import RefinementMixin
from faast.classifier_rollback import Rollback
from faast.classifier_solution import SolutionMixin
from faast.classifier_temperature import TemperatureMixin
from faast.memory import InverseMemory
from faast.remembered_params import RememberedValidation
from faast.solver import Cut, GramStats
from faast.unit_rows import unit_rows

#: The classifier keeps its float64 rows while n ≤ ROWS_KEPT · d, so that its ``auto`` cuts score
#: exact leave-one-out there (GCV, its large-n approximation, misjudges n just above d).
ROWS_KEPT = 2

#: The parameters that act when solving or reading (not on the statistics: ``_design_params``):
#: each solve (``fit``, ``partial_fit``, ``forget``, ``solve``, loading) records them in
#: ``_solve_params_``, and predictions and ``save`` read them there, so that a ``set_params``
#: acts from the next solve (scikit-learn's rule) and a saved classifier predicts as it did.
SOLVE_PARAMS = ("alpha", "c", "tau", "ridge", "center_features", "similarity", "prior", "n0")
#: The parameters of the steps ``fit`` takes after the solve (``refine``'s rounds, the steps of
#: ``loss="logistic"`` and the held-out split of ``C="auto"``), recorded with :data:`SOLVE_PARAMS`:
#: ``partial_fit``, ``forget`` and ``solve`` refuse those steps, so the record says what the weights
#: predicting came from, and ``save`` writes it (a ``refine`` set since, written, would not load).
FIT_STEP_PARAMS = ("refine", "margin", "loss", "C", "max_iter", "tol", "random_state")

#: Design parameters that act only through another (:meth:`FaastClassifier._design_params`).
_ACTS_THROUGH = {"intercept_scaling": "fit_intercept", "random_state": "random_features"}

#: The fitted attributes without scikit-learn's trailing underscore (the memo of the solve, the
#: refined weights, the record of examples learned, the temperature's): with those that have one,
#: what ``fit`` drops before it starts (:class:`~faast.classifier_rollback.Rollback`; a test checks
#: that the classifier keeps no other).
PRIVATE_STATE = ("_solution", "_refined", "_record", *TemperatureMixin._TEMPERATURE_STATE)


Prior = Literal["identity"] | np.ndarray | torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None


class FaastClassifier(
    DesignMixin,
    RefinementMixin,
    TemperatureMixin,
    SolutionMixin,
    RememberedValidation,
    ClassifierMixin,
    BaseEstimator,
):
    """Forward-only classifier: least-squares fast weights from features to label embeddings.

    ``fit`` accumulates float64 statistics of (feature → label embedding) pairs in one pass and
    compiles them in closed form (one eigendecomposition); no gradient step is taken.

    Parameters
    ----------
    alpha : float or None, default=None
        Exponent of the power-law cut τ = c·n^(−α) (drop singular values of the key matrix below
        τ·σ_max; 0.8 is the authors' vision setting), used when ``tau`` and ``ridge`` are None.
        ``None`` with ``tau`` and ``ridge`` None means ``ridge="auto"`` (the default: no
        hyper-parameter to choose).
    c : float, default=1.0
        Scale of the power-law cut, used with ``alpha`` (without it, ignored with a warning).
    tau : float in [0, 1], "gcv" or "auto", default=None
        A fixed relative cut instead of the power law, ``"gcv"`` to choose the truncation rank
        by generalised cross-validation on the training statistics, or ``"auto"``: while
        n ≤ 2·D (the rows are kept; D the design's width, n_features + 1 with the intercept),
        the ridge level with the fewest exact leave-one-out
        errors (ties: lowest PRESS) among those whose PRESS beats predicting zero, on the
        training set alone, from the one eigendecomposition (:mod:`faast.solver.loo`); with one
        example per class, where leave-one-out cannot rank levels, ρ = s₋₁ (the mean non-zero
        eigenvalue of G after the largest: :func:`faast.solver.spectral.one_per_class_penalty`);
        GCV truncation beyond. With ``center_features=True`` the leave-one-out runs in the
        coordinates centred on the mean of all the rows (the held-out row stays in the mean and
        in the intercept's direction), not refits that centre without it.
    ridge : float > 0, "gcv" or "auto", default=None
        Ridge regression with this penalty instead of truncation, ``"gcv"`` to choose it by
        generalised cross-validation, or ``"auto"`` — what all-None cut parameters mean — by
        exact leave-one-out while the rows are kept (as ``tau="auto"``) and by GCV beyond, where
        ``tau="auto"`` uses GCV truncation (ridge did better there on data the defaults were not
        chosen on, level on the demo's: ``docs/classifier.md``). A number is solved by one
        Cholesky factorisation, without the eigendecomposition (:mod:`faast.solver.direct`):
        the fastest fit when the penalty is known (e.g. ``ridge_`` of an earlier ``auto`` fit).
    class_embeddings : array-like of shape (n_classes, m), default=None
        Label embeddings in the order of ``classes_``; ``None`` means one-hot (m = n_classes).
    prior : "identity", array-like of shape (m, n_features) or callable, default=None
        Zero-shot prior mapping keys to value space: ``"identity"`` (keys and class embeddings
        share a space, as with CLIP), a matrix, or a callable on a (q, d) tensor.
    n0 : float, default=0.0
        Effective sample size of the prior; the learned map gets weight r = n / (n0 + n).
    similarity : {"dot", "cosine"}, default="dot"
        Similarity between predicted values and class embeddings.
    normalize_keys : bool, default=False
        L2-normalise features before use (as done for CLIP embeddings).
    logit_scale : float > 0 or "auto", default="auto"
        ``predict_proba`` = softmax(T · scores) with T = ``logit_scale``, or with ``"auto"`` the
        T that minimises the cross-entropy of the training examples' exact leave-one-out scores
        (no refit: :mod:`faast.solver.temperature`), from the training set alone, against the
        current solve, found on first use (``predict_proba``, ``logit_scale_``, ``save``; ``fit``
        does not pay for it): from every example while at most 2·D are held (the rows are kept,
        as for the ``auto`` cuts), beyond from a sample of at most 1024 evenly spaced examples
        that the ``fit``/``partial_fit`` call passing them keeps for it — unless they are fewer
        than the sample before (a small ``partial_fit`` batch keeps that one); a loaded
        classifier beyond 2·D has no sample and keeps the saved T. The held-out example's class
        keeps its share of the targets (its other examples' targets scaled by W_c / (W_c − 1)):
        holding it out would otherwise make its class the smallest. Examples that are
        their class's only one are left out (removing them leaves the class unseen); where
        nothing is left (one example per class) or with a ``prior``, T = 10, the fixed default
        before 2026-12. With ``refine``, the T of the solve before retargeting. Predictions
        (``predict``, ``decision_function``) do not depend on it.
    device : str or torch.device, default=None
        Where statistics live and predictions run; ``None`` follows the first batch.
    distributed : bool, default=False
        Data-parallel fitting under ``torchrun`` (:mod:`faast.distributed`): every process passes
        its own shard to ``fit``/``partial_fit`` (an empty (0, n_features) shard is fine), the
        classes are united and the statistics of each call are summed across processes before
        the solve, so every process ends with the fast weights of all the data. Each call
        refuses processes given features of other widths or other parameters (``device`` aside):
        a ValueError on every process, naming what differs and each process's value.
    random_features : int, default=None
        Expand the (normalised) features by a fixed random projection to this many dimensions
        followed by a ReLU, k ↦ max(0, Rᵀk) with R (n_features, M) Gaussian / √n_features (as in
        RanPAC), before the closed-form solve; ``None`` solves on the features themselves. The
        fit then costs O(n·M²) (n ≥ M) or O(n²·M) (n < M). A prior acts on the features.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into ``sample_weight`` (as in scikit-learn's linear
        classifiers): a dict {label: weight} (classes it does not name weigh 1), or
        ``"balanced"``, n / (n_classes · n_c) from the labels ``fit`` sees, so that every class
        weighs the same in the statistics (least squares to one-hot targets otherwise pulls the
        scores towards the larger classes). ``"balanced"`` depends on every example's label, so
        ``partial_fit`` and ``forget`` refuse it (pass the dict ``class_weight_`` holds instead);
        a dict works with both.
    random_state : int in [0, 2³² − 1], default=0
        Seed of the random projection (and of the logistic loss's held-out tenth).
    refine : int, default=0
        Margin-retargeting rounds after the solve (:mod:`faast.solver.retarget`): each round
        replaces the target of every training example whose margin (its class's score minus the
        best other class's) exceeds ``margin`` by its own prediction, and solves again with the
        same cut — closed-form steps from the squared loss towards a hinge-like one (one pass
        over the data per round, no other eigendecomposition). Applied by ``fit``, which sees
        every example: ``partial_fit``, ``forget`` and ``solve`` refuse a classifier with
        ``refine > 0``.
    margin : float, default=0.5
        The margin θ beyond which ``refine`` retargets an example (one-hot targets: 1 is a
        perfect fit).
    loss : {"squared", "logistic"}, default="squared"
        ``"logistic"``: from the closed-form least-squares solve, ``max_iter`` quasi-Newton
        steps per penalty on the L2-penalised multinomial logistic loss
        (:mod:`faast.solver.logistic`): L-BFGS preconditioned by the eigendecomposition already
        made (the inverse of Böhning's curvature bound), each step two products over the data
        and an exact line search on the scores, no learning rate to tune and no other
        factorisation. The scores are then logits: ``predict_proba`` is
        their softmax (``logit_scale`` is not used). One-hot labels only (no
        ``class_embeddings``/``prior``); like ``refine`` it needs every example at once, so
        ``partial_fit``, ``forget`` and ``solve`` refuse it.
    C : float or "auto", default="auto"
        Inverse penalty of ``loss="logistic"`` (as in scikit-learn's ``LogisticRegression``:
        ρ = 1/C). ``"auto"`` chooses it from the training set alone: the penalty with the lowest
        cross-entropy on a seeded (``random_state``) stratified tenth of the examples held out
        while the rest are fitted, over ρ = s·10^(−t), s = trace(G)/rank(G), t = 1, 2, … while
        the held-out loss falls by more than 1 % (to 9), and t = 0, −1, … (to −3) when t = 1
        wins; with one example per class nothing can be held out and ρ = s/100 is used, as it is
        when no penalty beats, by 1 %, the held-out loss of uniform predictions (log of the
        number of classes).
    max_iter : int, default=5
        Quasi-Newton steps of ``loss="logistic"`` per penalty (fewer if they converge);
        after ``C="auto"`` the final fit on every example starts from the chosen candidate's
        weights and curvature pairs and makes ``max(3, max_iter // 2)``. (5 was chosen on the
        demo's validation split over 4, 5 and 10: ``benchmarks/classifier_options.py --split
        validation``; docs/classifier.md.)
    tol : float ≥ 0, default=1e-4
        Convergence of the ``loss="logistic"`` steps: they stop once the majorise–minimise step
        from the current weights would guarantee a decrease of at most ``tol`` nats per example
        (per unit of sample weight), ½ gᵀ P g with P the inverse of the curvature bound (that
        step is still taken). 0 runs every ``max_iter`` step.
    fit_intercept : bool, default=True
        Learn a per-class intercept: a constant feature of value ``intercept_scaling`` is
        appended to every example (after ``normalize_keys`` and ``random_features``) before the
        solve, as liblinear does, so every cut, ``loss``, ``partial_fit``, ``forget`` and saving
        treat it as one more feature (built a block of rows at a time: X is not copied). Like
        liblinear's, the intercept is penalised (shrunk by the cut) with the other weights; a
        larger ``intercept_scaling`` penalises it less. It matters on features that are not
        centred (raw tables, binary or count features, imbalanced classes) and is neutral on
        centred or L2-normalised embeddings (``docs/classifier.md``, "Intercept"); ``False``
        fits scores through the origin (the default before 2026-12).
    intercept_scaling : float > 0, default=1.0
        The value of the constant feature of ``fit_intercept``; ``intercept_`` is its weight
        times this value. Keep it near the features' typical row norm (1 for unit-norm
        embeddings; standardise raw tables first): far below, the cut shrinks the intercept to
        nothing; far above, it is barely penalised. It is fixed, not estimated from the data, so
        that ``partial_fit`` in batches equals one ``fit``. ``fit`` warns when the features'
        scale is so far from it (10⁷ per entry) that float64 cannot hold both in one Gram.
    center_features : bool, default=False
        With ``fit_intercept``: solve with the features (the design's, after
        ``normalize_keys``/``random_features``) centred on their weighted mean, so that the cut
        shrinks the weights around the mean instead of pulling the scores through the origin.
        ``coef_`` then equals scikit-learn's ``Ridge(fit_intercept=True)`` at the same penalty
        (to rounding, where n ≥ D — the design's width — only while the features' columns are not
        far from the origin for their spread: the centring is then done on their float64 Gram,
        whose centred entries carry a relative error ε·(mean/std)², and ``fit`` warns above 10⁻⁶,
        mean/std ≳ 7·10⁴; subtract the mean before fit there); the intercept keeps its own
        direction (eigenvalue ``intercept_scaling``² · Σ weights), shrunk only as much as the cut
        shrinks that direction. The mean is taken from the statistics
        at every solve, so ``partial_fit`` in batches, ``forget`` and distributed fits stay exact
        (the features are never copied); ``refine`` and ``loss="logistic"`` (whose steps then
        penalise the weights of the centred features) run in the centred coordinates too.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of features seen during ``fit``.
    coef_ : ndarray of shape (n_classes, n_features)
        The compiled fast weights mapping features (or their random expansion, shape
        (n_classes, random_features)) to one-hot class scores (float64). Read-only, as is
        ``intercept_``: predictions read the classifier's own weights, so an edit in place would
        change ``coef_`` but no prediction; it fails instead (edit a copy, ``np.array(clf.coef_)``).
    intercept_ : ndarray of shape (n_classes,)
        The per-class intercept (zeros unless ``fit_intercept``): the scores are
        ``X @ coef_.T + intercept_`` (before ``class_embeddings``/``prior``).
    rank_ : int
        Spectral directions the cut kept.
    tau_ : float or None
        The relative cut the solve used (None for ridge).
    ridge_ : float or None
        The ridge penalty the solve used (None for truncation).
    cut_ : faast.solver.Cut
        The validated cut built from ``alpha``, ``c``, ``tau`` and ``ridge`` (after a load, that
        rule pinned to the level the saved fit chose, until the next solve:
        :class:`~faast.classifier_solution.ChosenLevel`).
    memory_ : faast.InverseMemory
        The float64 statistics (features → one-hot labels) and the compiled fast weights.
    class_count_ : ndarray of shape (n_classes,)
        Examples learned per class, those of weight 0 left out (``forget`` refuses to remove
        more).
    retargeted_ : int
        Training examples the last ``refine`` round retargeted (0 when ``refine=0``).
    C_ : float or None
        The inverse penalty ``loss="logistic"`` used (chosen when ``C="auto"``); None otherwise.
    logit_scale_ : float
        The temperature ``predict_proba`` applies to the scores of ``loss="squared"``
        (``logit_scale``, or the one ``"auto"`` chose); 1 with ``loss="logistic"``.
    n_iter_ : int
        Logistic steps of the final fit (``loss="logistic"``); 1 otherwise (the one solve).
    class_weight_ : ndarray of shape (n_classes,)
        The weight of each class of ``classes_`` that ``class_weight`` resolved to (ones when
        None).

    Notes
    -----
    Because the values of class c are always E_c, the statistics are kept with one-hot values
    and E is applied after the solve, which is exact (W_E = Eᵀ W_onehot). Inputs may be numpy
    arrays or torch tensors (CPU or GPU): ``decision_function`` and ``predict_proba`` return the
    input's type (tensors stay on their device); ``predict`` returns labels from ``classes_``.
    Floating inputs keep their dtype; integer and bool ones, arrays and tensors alike, are read
    as float64 (integers beyond 2²⁴, such as timestamps, keep their digits).
    After ``set_params`` of a cut parameter, :meth:`solve` recompiles without another pass; a
    parameter changed by ``set_params`` acts on predictions from the next fit (or ``solve``).

    Examples
    --------
    >>> import numpy as np
    >>> from faast import FaastClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 16)); y = (X[:, 0] > 0).astype(int)
    >>> clf = FaastClassifier().fit(X, y)  # cut: exact leave-one-out (n < d) or GCV
    >>> clf.coef_.shape, float(clf.score(X, y)) > 0.9
    ((2, 16), True)
    """

    _parameter_constraints: dict = {  # noqa: RUF012 - scikit-learn's declared form
        "alpha": [None, Interval(Real, 0, None, closed="left")],
        "c": [Interval(Real, 0, None, closed="neither")],
        "tau": [None, Interval(Real, 0, 1, closed="both"), StrOptions({"gcv", "auto"})],
        "ridge": [None, Interval(Real, 0, None, closed="neither"), StrOptions({"gcv", "auto"})],
        "class_embeddings": [None, "array-like"],
        "prior": [None, StrOptions({"identity"}), "array-like", callable],
        "n0": [Interval(Real, 0, None, closed="left")],
        "similarity": [StrOptions({"dot", "cosine"})],
        "normalize_keys": ["boolean"],
        "logit_scale": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "device": [None, str, torch.device],
        "distributed": ["boolean"],
        "random_features": [None, Interval(Integral, 1, None, closed="left")],
        # torch's and NumPy's generators take 32 bits: a larger seed aliased a smaller one or failed late
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both")],
        "refine": [Interval(Integral, 0, None, closed="left")],
        "margin": [Interval(Real, 0, None, closed="neither")],
        "loss": [StrOptions({"squared", "logistic"})],
        "C": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "fit_intercept": ["boolean"],
        "intercept_scaling": [Interval(Real, 0, None, closed="neither")],
        "center_features": ["boolean"],
    }

    def __init__(
        self,
        alpha: float | None = None,
        c: float = 1.0,
        tau: float | str | None = None,
        ridge: float | str | None = None,
        class_embeddings: Any = None,
        prior: Prior = None,
        n0: float = 0.0,
        similarity: str = "dot",
        normalize_keys: bool = False,
        logit_scale: float | str = "auto",
        device: str | None = None,
        distributed: bool = False,
        random_features: int | None = None,
        random_state: int = 0,
        refine: int = 0,
        margin: float = 0.5,
        loss: str = "squared",
        C: float | str = "auto",
        max_iter: int = 5,
        fit_intercept: bool = True,
        intercept_scaling: float = 1.0,
        tol: float = 1e-4,
        class_weight: dict[Any, float] | str | None = None,
        center_features: bool = False,
    ) -> None:
        self.alpha = alpha
        self.c = c
        self.tau = tau
        self.ridge = ridge
        self.class_embeddings = class_embeddings
        self.prior = prior
        self.n0 = n0
        self.similarity = similarity
        self.normalize_keys = normalize_keys
        self.logit_scale = logit_scale
        self.device = device
        self.distributed = distributed
        self.random_features = random_features
        self.random_state = random_state
        self.refine = refine
        self.margin = margin
        self.loss = loss
        self.C = C
        self.max_iter = max_iter
        self.fit_intercept = fit_intercept
        self.intercept_scaling = intercept_scaling
        self.tol = tol
        self.class_weight = class_weight
        self.center_features = center_features

    # ----------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FaastClassifier:
        """Compile the fast weights from (X, y) in one pass.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Features from any frozen encoder.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : float or array-like of shape (n_samples,), default=None
            Non-negative weights of the examples (a number: the same weight for each, as in
            scikit-learn).

        Returns
        -------
        self : FaastClassifier
        """
        # from an unfitted estimator; a refused or interrupted fit leaves the earlier one, every
        # fitted attribute as it was (as scikit-learn's estimators do)
        with Rollback(self, clear=PRIVATE_STATE):
            return self._fit(X, y, sample_weight)

    def _fit(self, X: Any, y: Any, sample_weight: Any) -> FaastClassifier:
        """:meth:`fit` on an estimator whose fitted state was cleared."""
        if self.distributed:  # first: a parameter refused below is then refused by every process
            check_same_setup(self, X, None, "fit")
        if self.refine and self.distributed:
            raise ValueError("refine > 0 is not supported with distributed=True")
        if isinstance(self.class_weight, str) and self.distributed:
            raise ValueError('class_weight="balanced" is not supported with distributed=True; pass a dict')
        self._check_logistic()
        y_np = _labels_to_numpy(y)
        classes = np.unique(y_np)
        if self.distributed:  # the classes of every process's shard, in the labels' dtype
            d = faast.distributed.current()
            classes = d.union_labels(classes)
            if classes.size == 0:  # the same union everywhere: every process refuses it
                raise ValueError(
                    f"{d}: fit(distributed=True) got no examples on any process (every shard is empty)"
                )
        labels = classes if self.distributed else y_np
        if not (labels.ndim == 1 and labels.dtype.kind in "biu"):  # integer labels are classes as they are
            check_classification_targets(labels)
        if isinstance(self.class_weight, str):  # "balanced": n / (C · n_c) from the labels of this fit
            self.class_weight_ = compute_class_weight("balanced", classes=classes, y=y_np)
        keys, onehot, weights = self._partial_fit(X, y_np, classes, sample_weight, refining=True)
        if self.fit_intercept:  # center_features needs the intercept
            stats = self.memory_.stats
            _warn_far_from_origin(
                keys,
                centred=bool(self.center_features),
                primal=stats.count >= stats.key_dim,  # the centring is then done on the Gram
                expand=None if self.random_features is None else self._expand,
            )
        if self.refine:  # every design row at once
            self._retarget(self._design(keys), onehot, weights)
        if self.loss == "logistic":  # builds the design itself, in the order of its held-out split
            self._fit_logistic(keys, onehot, weights)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> FaastClassifier:
        """Add examples to the statistics (``classes`` is required on the first call).

        The decision scores and predictions equal (up to rounding) those of one ``fit`` on every
        example passed so far. So does ``predict_proba`` while every example is kept (n ≤ 2·D);
        beyond, its temperature (``logit_scale="auto"``) comes from the sample of the call that
        passed the most rows (``logit_scale``), so the probabilities can differ from one fit's.
        X may have any numeric dtype: it is cast to the one the statistics were built from (as the
        first call left them), so that rows learned in float32 and passed again in float64 are
        the same rows. The fast weights are compiled on first use (a prediction, ``coef_`` and
        the other fitted attributes), not here: a stream of ``partial_fit`` calls costs one solve,
        not one per call. A call that raises changes nothing (a refused first call leaves the
        classifier unfitted), unless it is interrupted once the statistics took its examples:
        they are then learned, as ``class_count_`` says.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class that will ever be seen; required on the first call only.
        sample_weight : float or array-like of shape (n_samples,), default=None

        Returns
        -------
        self : FaastClassifier
        """
        if classes is not None and not hasattr(self, "classes_"):
            given = np.asarray(classes)
            if given.ndim != 1 or given.size == 0:
                raise ValueError(f"classes must be a non-empty list of labels, got {given.tolist()!r}")
            if given.dtype.kind == "O":  # None / NaN among them, or labels that do not sort together
                _check_object_labels(given, "classes")
        # a refused call changes nothing (a refused first one leaves the classifier unfitted)
        with Rollback(self) as rollback:
            self._partial_fit(X, y, classes, sample_weight, rollback=rollback)
        return self

    def _partial_fit(
        self,
        X: Any,
        y: Any,
        classes: Any,
        sample_weight: Any,
        refining: bool = False,
        rollback: Rollback | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Learn the pairs and recompile; returns them (keys (n, d) before the design, one-hot
        values, weights; examples of zero weight left out) for ``refine`` and the logistic loss.
        Runs inside a :class:`~faast.classifier_rollback.Rollback` (``fit``'s, or ``rollback``,
        which it commits once statistics held before the call took the pairs, in place)."""
        first = not hasattr(self, "classes_")
        if self.distributed and not refining:  # fit checked them, and unites the labels
            # before the refusals below, so that every process refuses a parameter together; at
            # every call (a set_params on one process since the last one), the classes at the first
            given = None if classes is None or not first else np.unique(np.asarray(classes))
            check_same_setup(self, X, given, "partial_fit")
        if not refining:
            self._check_not_refined("partial_fit")
            self._check_fixed_class_weight("partial_fit")
        self._check_center()
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            classes_ = np.unique(np.asarray(classes))
        else:
            self._check_design_params("partial_fit")
            classes_ = self.classes_
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), classes_):
                raise ValueError(
                    f"classes {np.asarray(classes)} differ from those of earlier calls {classes_}"
                )
        cut = self._cut()
        if not isinstance(self.class_weight, str):
            self.class_weight_ = _class_weights(self.class_weight, classes_)
        keys, onehot, weights = self._pairs(X, y, classes_, sample_weight, reset=first)
        self._check_intercept_scale(keys)
        if not first:
            self._settle_temperature(keys.shape[0])
        # examples of zero weight add nothing to the statistics: left out, so that a fit with them
        # computes exactly what one without them does (the same rows summed in the same order);
        # nor are they counted in class_count_ (forgetting the others would leave it non-zero)
        rows = keys.shape[0]
        keys, onehot, weights = _weighted_rows(keys, onehot, weights)
        counts = _per_class(onehot)
        if first and keys.shape[0] == 0 and not self.distributed:
            raise ValueError(
                "every example weighs 0 (sample_weight times class_weight): there is nothing to learn"
            )
        if first:
            self.classes_ = classes_
            self.embeddings_ = self._class_embeddings(keys)
            self._design_params_ = self._design_params()
            design_dim = self._design_dim(keys.shape[1])
            self.memory_ = InverseMemory(
                cut,
                key_dim=design_dim,
                value_dim=len(classes_),
                device=keys.device,
                dual_max_pairs=ROWS_KEPT * design_dim,
            )
            self.class_count_ = np.zeros(len(classes_), dtype=np.int64)
        digests = self._learned_digests(keys, onehot, weights)
        if self.distributed:  # this call's statistics and class counts, summed over every shard
            dist = faast.distributed.current()
            batch = dist.all_reduce_stats(self._batch_stats(keys, onehot, weights))
            tally = torch.from_numpy(np.append(counts, rows)).to(torch.float64)  # + the rows passed
            summed = dist.all_reduce_(tally, what="class counts").round().to(torch.int64).numpy()
            counts = summed[:-1]
            if counts.sum() == 0 and (first or summed[-1]):  # the same sums everywhere: all refuse
                refuse_nothing_learned(self, dist, int(summed[-1]), first)
            learn = functools.partial(self.memory_.stats.merge, batch)
        elif self._design_in_one_block(keys.shape[0]):  # one add: refused whole
            learn = functools.partial(self.memory_.add, self._design(keys), onehot, weights)
        else:  # several blocks: summed apart, then merged, so that a refused block changes nothing
            learn = functools.partial(self.memory_.stats.merge, self._batch_stats(keys, onehot, weights))
        # what learning the pairs changes besides the statistics comes first, as new bindings that
        # the rollback puts back if the add refuses them: once the statistics held take the pairs
        # (in place), nothing is left to do before the call commits
        self.class_count_ = self.class_count_ + counts
        self._note_learned(digests, first, rollback)
        self._solution_pending()
        learn()
        if rollback is not None and not first:  # the statistics held took the pairs: they are learned
            rollback.commit()
        self._compile(cut, calibration=(keys, onehot, weights), lazy=not refining)  # fit solves now
        return keys, onehot, weights  # without the examples of zero weight

    def forget(self, X: Any, y: Any, sample_weight: Any = None) -> FaastClassifier:
        """Remove examples learned earlier, exactly, and recompile.

        Afterwards the decision scores and predictions equal (up to rounding) those of a classifier
        fitted (``partial_fit`` with the same ``classes``) on the remaining examples only: the
        statistics are sums, so removing a pair subtracts its terms. While at most 2·D examples
        are held (D the design's width: n_features or random_features, + 1 with the intercept),
        the rows themselves are kept and each forgotten pair must match a learned one (same
        features, label and weight, within rounding); beyond, each must be one learned bit for
        bit — features as learned, label and weight — by the classifier's record of examples
        learned (:mod:`faast.classifier_record`; a classifier saved before it, or one that forgot
        a row matched within rounding, has none and checks only that no class loses more
        examples than it learned, and warns). Either way an error leaves the classifier unchanged.
        Examples of weight 0 changed nothing when learned and are passed over (``class_count_``
        counts the others). X is cast to the dtype the statistics were built from, as in ``partial_fit``.
        Crossing back below 2·D examples, the rows are gone, so the ``auto`` cuts fall back to
        GCV (a refit would score exact leave-one-out). ``predict_proba``'s temperature
        (``logit_scale="auto"``) equals a refit's while the rows are kept (found again from the
        remaining ones, as a fit would); beyond, it is found from the sample of rows kept before,
        less the forgotten examples it holds (matched by their digests): a refit's T while the
        sample held every row learned (at most 1,024), else close to it (a loaded classifier has
        no sample and keeps the saved T).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels from ``classes_``.
        sample_weight : float or array-like of shape (n_samples,), default=None
            The weights the examples were learned with.

        Returns
        -------
        self : FaastClassifier
        """
        check_is_fitted(self, "memory_")
        self._check_design_params("forget")
        self._check_not_refined("forget")
        self._check_fixed_class_weight("forget")
        cut = self._cut()  # refused before anything changes, as center_features without the intercept
        self._check_center()
        keys, onehot, weights = self._pairs(X, y, self.classes_, sample_weight, reset=False)
        keys, onehot, weights = _weighted_rows(keys, onehot, weights)  # zero weight: never learned
        if keys.shape[0] == 0:
            return self  # only examples of zero weight, which changed nothing
        removed = _per_class(onehot)
        over = np.flatnonzero(removed > self.class_count_)
        if over.size:
            c = over[0]
            raise ValueError(
                f"cannot forget {removed[c]} examples of class {self.classes_[c].item()!r}: only "
                f"{self.class_count_[c]} were learned"
            )
        record = self.__dict__.get("_record")
        digests = example_digests(keys, class_index(onehot), weights)  # for the record and the sample
        if record is not None:
            self._check_learned(record, digests)
        if removed.sum() == self.class_count_.sum():
            # a pair never learned is the error to name first (checked while the rows are kept)
            self.memory_.check_forget(self._design(keys), onehot, weights)
            raise ValueError("forgetting every learned example would leave nothing to predict with; fit anew")
        held = self.memory_.stats
        if record is None and held.kept_row_count < held.count:  # nothing checks each example
            warnings.warn(
                f"this classifier holds {held.count} examples, more than twice its design's width, so it "
                "no longer keeps their rows, and it has no record of the examples learned (saved before "
                "2026-12-06, or an example was forgotten from features recomputed to other roundings): "
                "the examples to forget cannot be verified (their features and labels), only their class "
                "counts; forgetting an example under a label it was not learned with changes the model "
                "wrongly (refit on what should remain when unsure)",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
        design, memory = self._design(keys), self.memory_
        # the solve that follows can still refuse (only zero keys left) or be interrupted: the
        # pairs are subtracted from a copy of the statistics (O(D²), or the kept rows; the solve
        # costs O(D³)) that replaces them, and an error puts the ones held back, as every attribute
        with Rollback(self, objects=((memory, "stats"), (memory, "cut"))):
            memory.stats = memory.stats.copy()
            memory.forget(design, onehot, weights)  # one call: refused whole
            self.class_count_ = self.class_count_ - removed
            if record is not None:
                record = record.copy()  # the one held stays as it was until the forget is through
                # None: matched within rounding while the rows were kept, not bit for bit
                self._record = record if record.remove_found(digests) else None
            self._forget_from_sample(digests)  # T found again from examples still learned
            return self._compile(cut)

    def _learned_digests(
        self, keys: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor | None
    ) -> np.ndarray:
        """The digests of a call's examples (of weight > 0; every process's, when distributed) for
        the record of examples learned that ``forget`` checks (:mod:`faast.classifier_record`)."""
        digests = example_digests(keys, class_index(onehot), weights)
        if self.distributed:  # every process keeps every example's digest: each forgets them all
            digests = faast.distributed.current().gather_digests(digests, "example digests")
        return digests

    def _note_learned(self, digests: np.ndarray, first: bool, rollback: Rollback | None = None) -> None:
        """Add a call's :meth:`_learned_digests` to the record of examples learned: a new record on
        the first call; else added in place (O(new), unlike a copy of the record at every call), the
        rollback told how to take them out again if the call fails before it commits."""
        record = self.__dict__.get("_record")
        if first:
            self._record: ExampleRecord | None = ExampleRecord(digests)
        elif record is not None:
            record.add(digests)
            if rollback is not None:
                rollback.on_undo(lambda: record.remove_found(digests))

    def _check_learned(self, record: ExampleRecord, digests: np.ndarray) -> None:
        """Refuse examples to forget that ``record`` does not hold, once the statistics no longer
        keep the rows (while they do, each is matched with a kept row, within rounding)."""
        stats = self.memory_.stats
        if stats.kept_row_count >= stats.count:
            return
        missing = record.missing(digests)
        if missing.size:
            shown = ", ".join(str(int(i)) for i in missing[:5]) + (" …" if missing.size > 5 else "")
            raise ValueError(
                f"{missing.size} of the {digests.size} examples to forget were never learned (or were "
                f"already forgotten), so nothing was forgotten: rows {shown}. Beyond 2·D examples each "
                "must be a learned one bit for bit — its features as learned (in the dtype of the fit), "
                "its label and its weight: pass the very features learned (e.g. from the feature cache), "
                "not recomputed ones"
            )

    def _check_fixed_class_weight(self, what: str, remedy: str | None = None) -> None:
        """``class_weight="balanced"`` is computed from every label ``fit`` sees: refuse calls
        that would change the examples without recomputing it. ``remedy``: what to do instead
        (by default: fit, or fix the weights fitted, a dict ``partial_fit`` and ``forget`` take)."""
        if isinstance(self.class_weight, str):
            raise ValueError(
                f'{what} is not available with class_weight="balanced": its weights depend on '
                "every example's label; "
                + (
                    remedy
                    or "call fit, or pass a dict (e.g. the fitted class_weight_: "
                    "dict(zip(clf.classes_, clf.class_weight_)))"
                )
            )

    def _pairs(
        self, X: Any, y: Any, classes: np.ndarray, sample_weight: Any, *, reset: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Validated keys (n, d) (before the design: :meth:`_design`), one-hot values (n, C) and
        weights (n,) or None: the sample weights times the weight of each example's class
        (``class_weight_``; None when both are absent or all ones)."""
        y_np = _labels_to_numpy(y)
        keys = self._keys(X, reset=reset, fitted_dtype=not reset)  # partial_fit, forget: as learned
        if y_np.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y_np.shape}")
        if keys.shape[0] != y_np.shape[0]:
            raise ValueError(f"X has {keys.shape[0]} rows but y has {y_np.shape[0]} labels")
        index = np.clip(np.searchsorted(classes, y_np), 0, len(classes) - 1)
        unknown = classes[index] != y_np
        if unknown.any():
            raise ValueError(f"y holds labels not in classes_: {np.unique(y_np[unknown])[:5]}")
        onehot = torch.zeros(keys.shape[0], len(classes), dtype=keys.dtype, device=keys.device)
        onehot[
            torch.arange(keys.shape[0], device=keys.device), torch.as_tensor(index, device=keys.device)
        ] = 1
        weights = None
        if sample_weight is not None:
            given: Any = _to_numpy(sample_weight)
            if given.ndim == 0 and given.dtype.kind in "biuf":
                # One number for every example, as scikit-learn takes it (its check refuses a 0-d
                # array, which a number or a 0-d tensor becomes here, as having no length).
                given = float(given)
            if self.distributed and weighs_nothing(given, keys.shape[0]):
                # an empty shard, or one of zero weights (scikit-learn refuses both): the union may
                # weigh something (the sums are checked after the all-reduce)
                checked = shard_without_weight(given, keys.shape[0])
            else:
                checked = _check_sample_weight(given, np.empty((keys.shape[0], 0)))
            weights = torch.as_tensor(  # a copy: a pandas Series' array may be read-only
                np.array(checked, dtype=np.float64),
                dtype=torch.float64,
                device=keys.device,
            )
        per_class = getattr(self, "class_weight_", None)
        if per_class is not None and not np.all(per_class == 1.0):
            factor = torch.as_tensor(per_class[index], dtype=torch.float64, device=keys.device)
            weights = factor if weights is None else weights * factor
        return keys, onehot, weights

    def _cut(self) -> Cut:
        if self.tau is not None and self.ridge is not None:
            raise ValueError("set either tau or ridge, not both")
        if self.tau is None and self.ridge is None and self.alpha is None:
            if self.c != 1.0:  # as for alpha and c beside tau or ridge: a parameter switched off
                warnings.warn(
                    f"c={self.c!r} scales the power-law cut, which alpha selects; with alpha=None (and "
                    "tau=None, ridge=None) the cut is ridge='auto' and c is ignored: set alpha too "
                    "(alpha=1 is τ = c/n)",
                    UserWarning,
                    stacklevel=caller_stacklevel(),
                )
            return Cut.ridge_penalty("auto")
        if self.tau is None and self.ridge is None:
            return Cut.from_params(None, self.alpha, self.c)
        if self.alpha is not None or self.c != 1.0:
            # as scikit-learn's estimators do for a parameter the others switch off (l1_ratio)
            warnings.warn(
                f"alpha and c shape the power-law cut (tau=None, ridge=None); with "
                f"{'tau' if self.tau is not None else 'ridge'} they are ignored",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
        return Cut.from_params(self.tau, None, None, self.ridge)

    def solve(self) -> FaastClassifier:
        """Recompile ``coef_`` from the stored statistics with the current cut parameters.

        ``fit`` and ``partial_fit`` call it; call it yourself after ``set_params(alpha=...)``
        (or ``tau``/``c``/``ridge``) to try another cut without another pass over the data. Like
        a fit, it also adopts the current ``logit_scale`` (``predict_proba``'s temperature, found
        again for ``"auto"``) and, after ``loss="logistic"``, ``set_params(loss="squared")``; a
        parameter changed by ``set_params`` acts on predictions only from the next ``fit``,
        ``partial_fit``, ``forget`` or ``solve``.

        Returns
        -------
        self : FaastClassifier
        """
        check_is_fitted(self, "memory_")
        self._validate_params()
        self._check_design_params("solve")
        self._check_not_refined("solve")
        cut = self._cut()
        memory = self.memory_
        stats = memory.stats
        # an error (the temperature's sample, an interrupted solve) leaves the solve held
        with Rollback(
            self, objects=((memory, "cut"), (stats, "center_on_last_key"), (stats, "values_unshared"))
        ):
            return self._compile(cut)

    def _compile(
        self,
        cut: Cut,
        calibration: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
        lazy: bool = False,
    ) -> FaastClassifier:
        """Solve with ``cut`` and set the fitted attributes (with ``lazy``, on their first use:
        :mod:`faast.classifier_solution`); ``calibration``: the pairs (keys, one-hot values,
        weights) of the call that passed them, for ``logit_scale="auto"`` when the statistics do
        not keep their rows."""
        self._check_center()
        self._solution_pending()  # first: an interrupted compile leaves no attribute of an earlier solve
        self._solve_params_ = {name: getattr(self, name) for name in (*SOLVE_PARAMS, *FIT_STEP_PARAMS)}
        self.memory_.stats.center_on_last_key = bool(self.center_features)
        # one example per class: the auto cuts' penalty for it also beyond the rows kept
        self.memory_.stats.values_unshared = bool(self.class_count_.max(initial=0) <= 1)
        self.memory_.set_cut(cut)
        self.cut_ = cut
        self._refined: torch.Tensor | None = None  # a new plain solve drops any retargeting
        self.__dict__.pop("retarget_cross_", None)
        self.retargeted_ = 0
        self.C_: float | None = None
        self.n_iter_ = 1  # the closed-form solve; the logistic steps set their own count
        if not lazy:
            self._solved()
        self._calibrate(calibration)
        return self

    def _design_params(self) -> dict[str, Any]:
        """The parameters that shape the statistics — the design rows, their values and weights —
        as they act: ``random_state`` with ``random_features`` only, ``intercept_scaling`` with
        the intercept only (the cut, ``center_features``, ``similarity`` and ``prior`` act when
        solving or reading)."""
        return {
            "fit_intercept": bool(self.fit_intercept),
            "intercept_scaling": self.intercept_scaling if self.fit_intercept else None,
            "normalize_keys": bool(self.normalize_keys),
            "random_features": self.random_features,
            "random_state": self.random_state if self.random_features is not None else None,
            "class_weight": self.class_weight,
        }

    def _check_design_params(self, what: str) -> None:
        """Refuse ``what`` when ``set_params`` changed a parameter that shaped the statistics held
        (:meth:`_design_params`): they would be read, extended or forgotten through another design
        (a new ``random_state`` read them through other random features: chance accuracy)."""
        fixed = getattr(self, "_design_params_", None)
        if fixed is None:
            return
        now = self._design_params()
        moved = [
            k
            for k in fixed
            if not _same_param(now[k], fixed[k]) and not (k == "class_weight" and self._same_class_weights())
        ]
        # a parameter that acts only through another one that changed too is not named (the user
        # set fit_intercept=False, not intercept_scaling=None)
        changed = [
            f"{k}={now[k]!r} (fitted with {fixed[k]!r})" for k in moved if _ACTS_THROUGH.get(k) not in moved
        ]
        if changed:
            raise ValueError(
                f"{what}: {', '.join(changed)}: these shape the statistics the classifier holds; "
                "set them back, or fit anew"
            )

    def _same_class_weights(self) -> bool:
        """Whether ``class_weight``, a dict or None, gives every class the weight the statistics
        were built with (``class_weight_``): the same statistics, e.g. the dict of the weights
        ``"balanced"`` fitted, which ``partial_fit`` and ``forget`` take where they refuse
        ``"balanced"``."""
        fitted = self.__dict__.get("class_weight_")
        if fitted is None or isinstance(self.class_weight, str):
            return False
        try:
            return bool(np.array_equal(_class_weights(self.class_weight, self.classes_), fitted))
        except ValueError:  # a label that is not a class, a weight that is not a number ≥ 0
            return False

    def _check_center(self) -> None:
        if self.center_features and not self.fit_intercept:
            raise ValueError(
                "center_features=True needs fit_intercept=True (the features are centred on the intercept)"
            )

    def _filter(self, factor: Any) -> torch.Tensor:
        """The filter φ the solve used, from what it resolved to (ρ, or the kept rank: every cut
        keeps a prefix of the eigenvalues), without choosing the cut again."""
        if self.ridge_ is not None:
            return factor.ridge_filter(self.ridge_)
        return factor.rank_filter(self.rank_)

    def _weight(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The fast weights (C, d) used for prediction: retargeted ones if ``refine`` ran."""
        refined = getattr(self, "_refined", None)
        if refined is not None:
            return refined.to(device=device, dtype=dtype)
        return self.memory_.weight_view(dtype, device)  # read only: no copy per predict

    def _class_embeddings(self, keys: torch.Tensor) -> torch.Tensor | None:
        if self.class_embeddings is None:
            return None
        emb = torch.as_tensor(_to_numpy(self.class_embeddings)).to(device=keys.device, dtype=keys.dtype)
        if emb.ndim != 2 or emb.shape[0] != len(self.classes_):
            raise ValueError(
                f"class_embeddings: expected shape ({len(self.classes_)}, m) for {len(self.classes_)} "
                f"classes, got {tuple(emb.shape)}"
            )
        check_finite(emb, "class_embeddings")
        return emb

    # ----------------------------------------------------------------- prediction
    def _scores(self, X: Any) -> torch.Tensor:
        check_is_fitted(self, "memory_")
        self._check_design_params("predict")
        keys = self._keys(X, reset=False)
        weight = self._weight(keys.dtype, keys.device)  # (C, D′)
        features = self._expand(keys)
        pred = self._design_times(features, weight.T)  # (q, C): learned one-hot scores
        return self._class_scores(pred, keys)

    def _class_scores(self, pred: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        """Class scores (q, C) from one-hot predictions ``pred`` (q, C): through the class
        embeddings, the prior (on the features ``keys`` (q, d), needed only with one) and the
        similarity."""
        emb = None if self.embeddings_ is None else self.embeddings_.to(pred.dtype)
        if emb is not None:
            pred = pred @ emb  # (q, m): value-space prediction
        solved = self._solve_params_  # as the last solve read them, not a later set_params
        if solved["prior"] is not None:
            n = self.memory_.stats.weight_sum
            r = n / (solved["n0"] + n)
            pred = r * pred + (1.0 - r) * self._prior(keys, pred.shape[1])
        target = emb
        if solved["similarity"] == "cosine":
            pred = unit_rows(pred)
            target = None if target is None else unit_rows(target)
        return pred if target is None else pred @ target.T

    def _prior(self, keys: torch.Tensor, value_dim: int) -> torch.Tensor:
        prior = self._solve_params_["prior"]
        if isinstance(prior, str):
            if keys.shape[1] != value_dim:
                raise ValueError(
                    "prior='identity' needs keys and values of one dimension, "
                    f"got {keys.shape[1]} and {value_dim}"
                )
            return keys
        if callable(prior):
            out = torch.as_tensor(prior(keys), device=keys.device, dtype=keys.dtype)
        else:
            mat = torch.as_tensor(_to_numpy(prior)).to(device=keys.device, dtype=keys.dtype)
            if mat.shape != (value_dim, keys.shape[1]):
                raise ValueError(
                    f"prior matrix: expected shape {(value_dim, keys.shape[1])}, got {tuple(mat.shape)}"
                )
            out = keys @ mat.T
        if out.shape != (keys.shape[0], value_dim):
            raise ValueError(
                f"prior returned shape {tuple(out.shape)}, expected {(keys.shape[0], value_dim)}"
            )
        return out

    def decision_function(self, X: Any) -> Any:
        """Class scores of shape (n_samples, n_classes); for two classes, score(class 1) −
        score(class 0) of shape (n_samples,)."""
        scores = self._scores(X)
        if len(self.classes_) == 2:
            scores = scores[:, 1] - scores[:, 0]
        return _like_input(scores, X)

    def predict_proba(self, X: Any) -> Any:
        """softmax(T · scores), shape (n_samples, n_classes), T = ``logit_scale_``: ``logit_scale``,
        or the T ``"auto"`` found, as the last fit (or ``solve``) set them; softmax(scores) after a
        ``loss="logistic"`` fit (the scores are then fitted logits). A later ``set_params`` of
        ``logit_scale`` or ``loss`` acts from the next fit, as in scikit-learn."""
        scores = self._scores(X)  # first: refuses a set_params of the design before T is found through it
        proba = torch.softmax(self._probability_scale() * scores, dim=1)
        return _like_input(proba, X)

    def predict_log_proba(self, X: Any) -> Any:
        """log softmax(T · scores), shape (n_samples, n_classes): the log of :meth:`predict_proba`,
        computed without forming it (finite where a probability underflows to 0)."""
        scores = self._scores(X)  # first, as in predict_proba
        log_proba = torch.log_softmax(self._probability_scale() * scores, dim=1)
        return _like_input(log_proba, X)

    def _probability_scale(self) -> float:
        """T of the probabilities: the fitted ``logit_scale_`` (``logit_scale``, the one ``"auto"``
        found, or 1 after a ``loss="logistic"`` fit), not the parameters as ``set_params`` left
        them since."""
        check_is_fitted(self, "memory_")
        return self.logit_scale_

    def predict(self, X: Any) -> np.ndarray:
        """Labels from ``classes_``, shape (n_samples,)."""
        best = torch.argmax(self._scores(X), dim=1).cpu().numpy()
        return self.classes_[best]

    def save(self, path: Any, metadata: dict[str, Any] | None = None) -> Any:
        """Write the fitted classifier to the directory ``path`` (safetensors + JSON, no pickle;
        see :mod:`faast.classifier_io`), as it predicts: the parameters of the last fit or solve,
        not those ``set_params`` changed since. Refused, before anything is written, after a
        ``set_params`` of a parameter that built the statistics (as ``predict`` refuses it), of an
        invalid value, or for labels or ``metadata`` the JSON cannot hold. Returns the directory."""
        from faast.classifier_io import save_classifier

        return save_classifier(self, path, metadata)

    @classmethod
    def load(cls, path: Any) -> FaastClassifier:
        """A classifier written by :meth:`save` (its statistics too: it can learn and forget more)."""
        from faast.classifier_io import load_classifier

        return load_classifier(path)[0]

    @property
    def stats_(self) -> GramStats:
        """The float64 statistics (deprecated alias of ``memory_.stats``)."""
        warnings.warn(
            "FaastClassifier.stats_ is deprecated; use memory_.stats", DeprecationWarning, stacklevel=2
        )
        check_is_fitted(self, "memory_")
        return self.memory_.stats

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


def _same_param(a: Any, b: Any) -> bool:
    """Whether two parameter values are equal (dicts of class weights compared by value)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays and the like: compared by identity only
        return a is b


def _weighted_rows(
    keys: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The rows (keys (n, d), one-hot (n, C), weights (n,)) whose weight is not zero; all of them
    (no copy) when none is."""
    if weights is None:
        return keys, onehot, weights
    nonzero = weights != 0
    if bool(nonzero.all()):
        return keys, onehot, weights
    return keys[nonzero], onehot[nonzero], weights[nonzero]


def _per_class(onehot: torch.Tensor) -> np.ndarray:
    """Examples per class (C,) int64 of a one-hot batch (n, C), exact: summed in float64 (the
    one-hot rows are in the features' dtype, whose sums round — bfloat16 past 256 examples of a
    class, float16 past 2048 — where float64 counts exactly to 2⁵³)."""
    return onehot.sum(dim=0, dtype=torch.float64).round().to(torch.int64).cpu().numpy()


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _class_weights(class_weight: dict[Any, float] | None, classes: np.ndarray) -> np.ndarray:
    """Per-class weights (C,) float64 of a ``class_weight`` dict (or None: ones), in the order
    of ``classes``; a label that is not a class, or a weight that is not a finite number ≥ 0,
    is refused."""
    out = np.ones(len(classes), dtype=np.float64)
    if class_weight is None:
        return out
    for label, value in class_weight.items():
        where = np.flatnonzero(classes == label) if len(classes) else np.empty(0, dtype=np.int64)
        if where.size == 0:
            raise ValueError(f"class_weight names the label {label!r}, which is not a class ({classes[:10]})")
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise ValueError(f"class_weight[{label!r}] must be a finite number ≥ 0, got {value!r}")
        out[where[0]] = number
    return out


def _labels_to_numpy(y: Any) -> np.ndarray:
    if y is None:
        raise ValueError("FaastClassifier requires y to be passed, but the target y is None")
    y_np = _to_numpy(y)
    if y_np.ndim == 2 and y_np.shape[1] == 1:
        y_np = column_or_1d(y_np, warn=True)
    elif y_np.ndim == 2 and type_of_target(y_np) == "multilabel-indicator":
        raise ValueError(
            f"y is an indicator matrix {y_np.shape} of several labels per example: FaastClassifier "
            "learns one label per example; for multilabel targets wrap it, "
            "sklearn.multiclass.OneVsRestClassifier(FaastClassifier()) (one fit per label)"
        )
    if y_np.dtype.kind in "fc":  # NaN / inf labels: refused here, before NumPy casts them to int
        assert_all_finite(y_np, input_name="y")
    if y_np.dtype.kind == "O":  # e.g. strings with None / NaN for missing labels (a pandas column)
        _check_object_labels(y_np)
    return y_np


#: Squared norm of the features' mean over their total variance above which ``fit`` warns: the
#: data the defaults were checked on lie below 15 (Fashion-MNIST embeddings 0.7, scikit-learn's
#: raw tables 2–13: benchmarks/feature_offset.py); a column of years (2000 ± 10) gives 4·10⁴.
FAR_FROM_ORIGIN = 1e3
#: Relative rounding error of a column's centred statistics, ε·(μⱼ/σⱼ)² (ε of float64, μⱼ the
#: column's mean, σⱼ its standard deviation), above which ``center_features=True`` is not trusted
#: on the primal route (n ≥ D): there the solve centres the float64 Gram of the uncentred features,
#: G − g sᵀ − s gᵀ + γ s sᵀ, whose terms are (μⱼ/σⱼ)² times the centred entries, so the centred
#: statistics keep that relative error (coef_ 4·10⁻⁴ off scikit-learn's Ridge at μ/σ = 10⁶, 4 %
#: at 10⁷, ×131 at 10⁸; this threshold is reached at μ/σ ≈ 7·10⁴: timestamps in seconds, prices
#: in cents).
CENTRING_PRECISION = 1e-6
#: Rows of the sample whose random expansion (``random_features``) gives the design's columns for
#: the centring-precision warning: the expansion costs a product per row.
CENTRING_SAMPLE_EXPANDED = 256


def _warn_far_from_origin(
    keys: torch.Tensor,
    *,
    centred: bool = False,
    primal: bool = True,
    expand: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rows: int = 2048,
) -> None:
    """Warn about features (n, d) that sit far from the origin for their spread, judged on
    ``rows`` rows taken evenly across them (every ⌈n / rows⌉-th: data sorted by a column show its
    spread; one float64 copy, one pass: :func:`_column_moments`).

    Without centring (``centred`` False): when ‖mean‖² exceeds :data:`FAR_FROM_ORIGIN` times the
    summed variances, the penalised intercept cannot absorb the offset, whose direction dominates
    the spectrum, and the fit loses accuracy that ``center_features=True`` keeps — unless the
    offset is so large that the centring itself loses precision (below), when the warning says to
    standardise instead. With centring (``centred``), on the primal route (``primal``: n ≥ D, where
    the solve centres the uncentred Gram): when some design column's centred statistics keep a
    relative error ε·(μⱼ/σⱼ)² above :data:`CENTRING_PRECISION`. ``expand``: the random expansion
    (``random_features``), applied to :data:`CENTRING_SAMPLE_EXPANDED` of those rows to judge the
    design's columns, whose centring it is."""
    sample = keys[:: -(-keys.shape[0] // rows)] if keys.shape[0] > rows else keys
    if centred:
        if primal:
            _warn_centring_precision(sample, expand)
        return
    moments = _column_moments(sample)
    if moments is None:
        return
    ratio = _ratio_of_moments(*moments)
    if not (ratio > FAR_FROM_ORIGIN and math.isfinite(ratio)):
        return
    lost = None
    if primal:  # would center_features=True keep its precision? (the rare warning path alone)
        lost = _centring_loss(*moments) if expand is None else _centring_loss_of(sample, expand)
    if lost is not None and lost[0] > CENTRING_PRECISION:
        remedy = (
            f"center_features=True would not help either: {_describe_loss(lost, expand)}; subtract "
            "the features' mean (standardise them) before fit"
        )
    else:
        remedy = "pass center_features=True, or standardise the features"
    warnings.warn(
        f"the features lie far from the origin for their spread (their mean's squared norm is "
        f"{ratio:.3g} times their summed variances): the intercept cannot absorb such an offset and "
        f"accuracy suffers; {remedy}",
        UserWarning,
        stacklevel=caller_stacklevel(),
    )


def _warn_centring_precision(
    sample: torch.Tensor, expand: Callable[[torch.Tensor], torch.Tensor] | None
) -> None:
    """Warn when ``center_features=True`` loses the centred statistics of the design columns of
    ``sample`` (rows (k, d) of the keys; ``expand``: their random expansion) to float64 rounding
    (:func:`_centring_loss` above :data:`CENTRING_PRECISION`)."""
    lost = _centring_loss_of(sample, expand)
    if lost is not None and lost[0] > CENTRING_PRECISION:
        warnings.warn(
            "center_features=True centres the features through their float64 Gram (n ≥ the design's "
            f"width), which loses precision on columns far from the origin for their spread: "
            f"{_describe_loss(lost, expand)} and coef_ may be off from scikit-learn's Ridge by as much "
            "or more; subtract the features' mean (standardise them) before fit",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )


def _describe_loss(lost: tuple[float, int, float, float], expand: Any) -> str:
    """What :func:`_centring_loss` found, in words."""
    error, column, mean, std = lost
    what = "random feature" if expand is not None else "feature column"
    return (
        f"{what} {column} has mean {mean:.6g} and standard deviation {std:.3g} (in the first rows), "
        f"so its centred statistics carry a relative rounding error of about {error:.1e} (ε·(mean/std)²)"
    )


def _centring_loss_of(
    sample: torch.Tensor, expand: Callable[[torch.Tensor], torch.Tensor] | None
) -> tuple[float, int, float, float] | None:
    """:func:`_centring_loss` of the design columns of ``sample`` (k, d): the keys', or those of
    their random expansion (``expand``) of :data:`CENTRING_SAMPLE_EXPANDED` rows taken evenly
    across ``sample``."""
    if expand is not None:
        step = -(-sample.shape[0] // CENTRING_SAMPLE_EXPANDED)
        sample = expand(sample[::step] if step > 1 else sample)
    moments = _column_moments(sample)
    return None if moments is None else _centring_loss(*moments)


def _centring_loss(mean: np.ndarray, var: np.ndarray) -> tuple[float, int, float, float] | None:
    """The largest relative rounding error ε·μⱼ²/σⱼ² (ε of float64) of a column's statistics
    centred through the uncentred Gram, from the columns' means and variances (d,), with that
    column and its mean and standard deviation; a column constant in the sample (σⱼ = 0) is
    measured against the largest variance (its centred statistics are then noise of size ε·μⱼ²
    among the other columns'). None when every column is constant."""
    top = float(var.max(initial=0.0))
    if not top > 0:
        return None
    ratio = np.square(mean) / np.where(var > 0, var, top)
    column = int(np.argmax(ratio))
    error = float(np.finfo(np.float64).eps * ratio[column])
    return error, column, float(mean[column]), math.sqrt(float(var[column]))


def _column_moments(keys: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """The columns' means and sample variances (d,) float64 of rows (n, d), or None for fewer than
    2 rows: one float64 copy, centred in place, its squares summed per column in one pass."""
    sample = keys.detach().cpu()
    if sample.shape[0] < 2:
        return None
    if sample.dtype not in (torch.float32, torch.float64):  # float16, bfloat16: NumPy takes float64
        sample = sample.to(torch.float64)
    # in NumPy (torch's float64 copy and temporaries took several times as long for 640 rows of
    # 1280 features): one float64 copy, centred in place; einsum sums the squares per column in
    # one pass (as fast as the BLAS dot of every entry it replaced, 2048 × 1280)
    centred = sample.resolve_neg().numpy().astype(np.float64)
    mean = centred.mean(axis=0)
    centred -= mean
    return mean, np.einsum("ij,ij->j", centred, centred) / (centred.shape[0] - 1)


def _offset_ratio(keys: torch.Tensor) -> float | None:
    """‖mean‖² / Σⱼ var(x[:, j]) of rows (n, d) (sample variances, float64 sums; +inf when every
    row is the same), or None for fewer than 2 rows."""
    moments = _column_moments(keys)
    return None if moments is None else _ratio_of_moments(*moments)


def _ratio_of_moments(mean: np.ndarray, var: np.ndarray) -> float:
    """‖mean‖² / Σⱼ varⱼ of the columns' means and variances (d,); +inf when every variance is 0."""
    spread = float(var.sum())
    return float(mean @ mean) / spread if spread > 0 else math.inf


def _check_object_labels(y: np.ndarray, name: str = "y") -> None:
    """Refuse missing labels (None, NaN, pandas' NA and NaT) and labels of types that cannot be
    ordered together (``np.unique`` would fail deep inside NumPy with "'<' not supported");
    ``name``: what holds them."""
    flat = y.ravel()
    pandas = sys.modules.get("pandas")  # its missing values (pd.NA, pd.NaT) exist only once it is loaded
    if pandas is not None:
        missing = np.flatnonzero(pandas.isna(flat))
    else:
        missing = np.flatnonzero([v is None or (isinstance(v, float) and math.isnan(v)) for v in flat])
    if missing.size:
        raise ValueError(
            f"{name} holds {missing.size} missing label(s) (None or NaN), the first at index {missing[0]}: "
            "drop those examples or give them a label"
        )
    try:
        np.unique(flat)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in flat})
        raise ValueError(
            f"{name} mixes labels of types that cannot be ordered together ({', '.join(kinds)}): "
            "give every label one type, e.g. y.astype(str)"
        ) from None


def _like_input(t: torch.Tensor, X: Any) -> Any:
    return t if isinstance(X, torch.Tensor) else t.cpu().numpy()
