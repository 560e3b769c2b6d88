"""Fixes from a second bug hunt on ``FaastClassifier(distributed=True)``: each test failed before
its fix.

One group of two gloo processes (``torch.multiprocessing.spawn``, joined through
:func:`faast.distributed.init`, as ``tests/test_distributed_hunt_fixes.py``) runs every scenario once,
one after the other, and writes what each rank saw as JSON; the tests read those files and compare
with one process fitting all the data. Scenarios that hung or desynchronised the processes before
their fix run last.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch.multiprocessing as mp

from faast import FaastClassifier, distributed
from faast.distributed import Dist
from tests.test_distributed_hunt_fixes import _free_port, _record, _results, _succeeded

WORLD = 2
#: Collectives give up after this many seconds (a hang before the fixes ends here, not in 30 minutes).
TIMEOUT_S = "30"


def _data(n: int = 40, d: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float64, y (n,) of 3 classes), seeded."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    return x, np.argmax(x[:, :3] + 0.3 * rng.normal(size=(n, 3)), axis=1)


def _shard(d: Dist, *arrays: np.ndarray) -> list[np.ndarray]:
    part = d.shard_range(len(arrays[0]))
    return [a[part.start : part.stop] for a in arrays]


#: Class embeddings (3 classes × 4) and a prior matrix (4 × 7) that every process passes alike.
EMBEDDINGS = np.random.default_rng(5).normal(size=(3, 4))
PRIOR = np.random.default_rng(6).normal(size=(4, 7))


def _fitted(clf: FaastClassifier, x: np.ndarray) -> dict[str, Any]:
    return {
        "coef": clf.coef_.tolist(),
        "classes": [clf.classes_.dtype.str, clf.classes_.tolist()],
        "proba": clf.predict_proba(x[:5]).tolist(),
    }


# ----------------------------------------------------------------- set-ups that differ (item 1)
def _differ(d: Dist, **kwargs: Any) -> Callable[[], dict[str, Any]]:
    """A fit on this process's shard with ``kwargs`` (``name: (rank 0's value, rank 1's value)``)."""

    def run() -> dict[str, Any]:
        x, y = _shard(d, *_data())
        params = {k: v[d.rank] for k, v in kwargs.items() if k != "width"}
        if "width" in kwargs:
            x = x[:, : kwargs["width"][d.rank]]
        clf = FaastClassifier(distributed=True, **params)
        clf.fit(x, y)
        return {"fitted": True}

    return run


def _columns(d: Dist) -> dict[str, Any]:
    """Data frames whose columns come in another order on rank 1: the same width, other features."""
    pd = pytest.importorskip("pandas")
    x, y = _shard(d, *_data())
    names = [f"f{j}" for j in range(x.shape[1])]
    FaastClassifier(distributed=True).fit(pd.DataFrame(x, columns=names if d.rank == 0 else names[::-1]), y)
    return {}


def _columns_beside_an_empty_array(d: Dist) -> dict[str, Any]:
    """A data frame on rank 0, an empty plain array on rank 1: not refused."""
    pd = pytest.importorskip("pandas")
    x, y = _data()
    names = [f"f{j}" for j in range(x.shape[1])]
    xs, ys = (pd.DataFrame(x, columns=names), y) if d.rank == 0 else (x[:0], y[:0])
    return _fitted(FaastClassifier(distributed=True).fit(xs, ys), x)


def _partial_fit_differs(d: Dist) -> dict[str, Any]:
    x, y = _shard(d, *_data())
    clf = FaastClassifier(distributed=True, tau=(1e-3, 1e-2)[d.rank])
    try:
        clf.partial_fit(x, y, classes=[0, 1, 2])
    finally:
        (_OUT / f"partial_fit_tau.fitted.rank{d.rank}.json").write_text(json.dumps(hasattr(clf, "classes_")))
    return {}


def _classes_of_other_kinds(d: Dist) -> dict[str, Any]:
    x, y = _shard(d, *_data())
    clf = FaastClassifier(distributed=True)
    try:
        clf.partial_fit(x, y, classes=[0, 1, 2] if d.rank == 0 else [0.0, 1.0, 2.0])
    finally:
        (_OUT / f"classes_kinds.fitted.rank{d.rank}.json").write_text(json.dumps(hasattr(clf, "classes_")))
    return {"classes": [clf.classes_.dtype.str, clf.classes_.tolist()]}


def _same_setup(d: Dist) -> dict[str, Any]:
    """Equal parameters given in other forms on each process (a list or an array, numpy or Python
    keys of class_weight): not refused."""
    x, y = _shard(d, *_data())
    emb = EMBEDDINGS if d.rank == 0 else EMBEDDINGS.tolist()
    weight = {0: 2.0, 2: 0.5} if d.rank == 0 else {np.int64(2): 0.5, np.int64(0): np.float64(2.0)}
    clf = FaastClassifier(
        distributed=True, class_embeddings=emb, prior=PRIOR, n0=3.0, class_weight=weight, random_state=d.rank
    )  # random_state acts only with random_features
    return _fitted(clf.fit(x, y), _data()[0])


# ----------------------------------------------------------------- weights (item 2)
def _rank0_weighs_nothing(d: Dist) -> dict[str, Any]:
    x, y = _data()
    w = np.ones(len(y))
    w[: len(distributed.shard_range(len(y), 0, d.world_size))] = 0.0  # rank 0's block weighs 0
    xs, ys, ws = _shard(d, x, y, w)
    return _fitted(FaastClassifier(distributed=True).fit(xs, ys, sample_weight=ws), x)


def _empty_shard_with_weights(d: Dist) -> dict[str, Any]:
    x, y = _data()
    xs, ys = (x[:0], y[:0]) if d.rank == 0 else (x, y)
    out = _fitted(FaastClassifier(distributed=True).fit(xs, ys, sample_weight=np.ones(len(ys))), x)
    number = FaastClassifier(distributed=True).fit(xs, ys, sample_weight=2.0)  # one number for each
    return {**out, "number": number.coef_.tolist()}


def _every_example_weighs_nothing(d: Dist) -> dict[str, Any]:
    x, y = _shard(d, *_data())
    clf = FaastClassifier(distributed=True)
    clf.fit(x, y, sample_weight=np.zeros(len(y)))
    return {}


def _every_partial_fit_example_weighs_nothing(d: Dist) -> dict[str, Any]:
    x, y = _shard(d, *_data())
    clf = FaastClassifier(distributed=True)
    try:
        clf.partial_fit(x, y, classes=[0, 1, 2], sample_weight=0.0)
    finally:
        (_OUT / f"zero_partial_fit.fitted.rank{d.rank}.json").write_text(json.dumps(hasattr(clf, "classes_")))
    return {}


# ----------------------------------------------------------------- clear errors (item 3)
def _labels_of_other_kinds(d: Dist) -> dict[str, Any]:
    x, y = _shard(d, *_data())
    FaastClassifier(distributed=True).fit(x, y if d.rank == 0 else y.astype(str))
    return {}


def _no_examples_fit(d: Dist) -> dict[str, Any]:
    x, y = _data()
    FaastClassifier(distributed=True).fit(x[:0], y[:0])
    return {}


def _no_examples_partial_fit(d: Dist) -> dict[str, Any]:
    x, y = _data()
    clf = FaastClassifier(distributed=True)
    try:
        clf.partial_fit(x[:0], y[:0], classes=[0, 1, 2])
    finally:
        (_OUT / f"empty_partial_fit.fitted.rank{d.rank}.json").write_text(
            json.dumps(hasattr(clf, "classes_"))
        )
    return {}


# ----------------------------------------------------------------- documented (item 4)
def _later_partial_fit_after_set_params(d: Dist) -> dict[str, Any]:
    """A distributed fit, then ``set_params(alpha=...)`` on rank 1 only and a partial_fit: the
    second call's statistics would be summed and solved with other cuts on the two processes."""
    x, y = _shard(d, *_data())
    clf = FaastClassifier(distributed=True, alpha=1.0).fit(x, y)
    if d.rank == 1:
        clf.set_params(alpha=2.0)
    clf.partial_fit(x, y)
    return _fitted(clf, x)


def _forget_keeps_the_temperature(d: Dist) -> dict[str, Any]:
    x, y = _data(40, 5)
    xs, ys = _shard(d, x, y)
    clf = FaastClassifier(distributed=True).fit(xs, ys)
    fitted = clf.logit_scale_
    clf.forget(x[[0, 30]], y[[0, 30]])  # every process forgets the same two examples
    forgotten = clf.logit_scale_
    xm, ym = _shard(d, x[:10] + 0.5, y[:10])
    clf.partial_fit(xm, ym)
    return {"fit": fitted, "forget": forgotten, "partial_fit": clf.logit_scale_}


_OUT = Path()

SCENARIOS: dict[str, Callable[[Dist], Callable[[], dict[str, Any]]]] = {
    "same_setup": lambda d: lambda: _same_setup(d),
    "rank0_weighs_nothing": lambda d: lambda: _rank0_weighs_nothing(d),
    "empty_shard_weights": lambda d: lambda: _empty_shard_with_weights(d),
    "zero_fit": lambda d: lambda: _every_example_weighs_nothing(d),
    "zero_partial_fit": lambda d: lambda: _every_partial_fit_example_weighs_nothing(d),
    "labels_kinds": lambda d: lambda: _labels_of_other_kinds(d),
    "empty_fit": lambda d: lambda: _no_examples_fit(d),
    "empty_partial_fit": lambda d: lambda: _no_examples_partial_fit(d),
    "forget_temperature": lambda d: lambda: _forget_keeps_the_temperature(d),
    "width_rf": lambda d: _differ(d, width=(5, 7), random_features=(16, 16)),
    "random_state": lambda d: _differ(d, random_features=(16, 16), random_state=(0, 1)),
    "normalize_keys": lambda d: _differ(d, normalize_keys=(False, True)),
    "intercept_scaling": lambda d: _differ(d, intercept_scaling=(1.0, 10.0)),
    "class_weight": lambda d: _differ(d, class_weight=({0: 1.0}, {0: 2.0})),
    "alpha": lambda d: _differ(d, alpha=(1.0, 2.0)),
    "center_features": lambda d: _differ(d, center_features=(False, True)),
    "class_embeddings": lambda d: _differ(d, class_embeddings=(EMBEDDINGS, EMBEDDINGS + 1)),
    "columns": lambda d: lambda: _columns(d),
    "columns_empty_array": lambda d: lambda: _columns_beside_an_empty_array(d),
    "partial_fit_tau": lambda d: lambda: _partial_fit_differs(d),
    "classes_kinds": lambda d: lambda: _classes_of_other_kinds(d),
    # before the fix, rank 1 refused loss="logistic" alone and rank 0 waited for it: near the end
    "loss": lambda d: _differ(d, loss=("squared", "logistic")),
    # before the fix, rank 1 skipped the temperature's gather that rank 0 waited in: last
    "logit_scale": lambda d: _differ(d, logit_scale=("auto", 2.0)),
    "later_set_params": lambda d: lambda: _later_partial_fit_after_set_params(d),
}


def _group(rank: int, world: int, port: int, out: str) -> None:
    global _OUT
    _OUT = Path(out)
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port), FAAST_DIST_TIMEOUT=TIMEOUT_S, FAAST_DIST_BACKEND="gloo",
        OMP_NUM_THREADS="1",
    )  # fmt: skip
    d = distributed.init()
    for name, scenario in SCENARIOS.items():
        result = _record(scenario(d))
        (_OUT / f"{name}.rank{rank}.json").write_text(json.dumps(result))
    os._exit(0)  # a scenario may have broken the group (before the fixes): no teardown


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Run the group once; a group that dies leaves the files it wrote (the tests that lack theirs
    fail)."""
    out = tmp_path_factory.mktemp("dist_hunt2")
    try:
        mp.spawn(_group, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, join=True)
    except Exception as exc:  # the tests name what is missing
        (out / "group.failed").write_text(repr(exc))
    return out


def _refused(out: Path, name: str, error: str, *told: str) -> list[dict[str, Any]]:
    """Each rank's record of ``name``: refused with ``error`` naming ``told``, the same message
    on every rank (but for its own rank), within half the collectives' timeout (no hang)."""
    results = _results(out, name)
    for rank, got in enumerate(results):
        assert got["error"] == error, (rank, got)
        for text in told:
            assert text in got["message"], (rank, text, got["message"])
        assert got["seconds"] < float(TIMEOUT_S) / 2, (rank, got["seconds"])
    bare = {re.sub(r"^rank \d+/\d+: ", "", got["message"]) for got in results}
    assert len(bare) == 1, bare
    return results


def _fitted_flags(out: Path, name: str) -> list[bool]:
    return [json.loads((out / f"{name}.fitted.rank{r}.json").read_text()) for r in range(WORLD)]


def _assert_as_one_process(got: dict[str, Any], one: FaastClassifier, x: np.ndarray) -> None:
    tol = 1e-10 * np.abs(one.coef_).max()
    np.testing.assert_allclose(np.asarray(got["coef"]), one.coef_, rtol=0, atol=tol)
    np.testing.assert_allclose(np.asarray(got["proba"]), one.predict_proba(x[:5]), rtol=0, atol=1e-8)
    assert got["classes"] == [one.classes_.dtype.str, one.classes_.tolist()]


# ----------------------------------------------------------------- item 1
SETUPS = {
    "width_rf": "n_features_in_ (rank 0: 5; rank 1: 7)",
    "random_state": "random_state (rank 0: 0; rank 1: 1)",
    "normalize_keys": "normalize_keys (rank 0: False; rank 1: True)",
    "intercept_scaling": "intercept_scaling (rank 0: 1.0; rank 1: 10.0)",
    "class_weight": "class_weight (rank 0: [[0, 1.0]]; rank 1: [[0, 2.0]])",
    "alpha": "alpha (rank 0: 1.0; rank 1: 2.0)",
    "center_features": "center_features (rank 0: False; rank 1: True)",
    "class_embeddings": "class_embeddings (rank 0: 'array (3, 4) sha256:",
    "loss": "loss (rank 0: 'squared'; rank 1: 'logistic')",
    "logit_scale": "logit_scale (rank 0: 'auto'; rank 1: 2.0)",
}


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_processes_set_up_differently_are_refused_on_every_process(runs, name):
    """Item 1: another raw width that ``random_features`` expands to one, another design
    parameter or another solve parameter was summed without error into a different classifier on
    each process (``logit_scale``: one process waited 30 minutes in the temperature's gather;
    ``loss``: one process refused alone); now the first distributed fit compares them and every
    process refuses, naming the parameter and each rank's value."""
    _refused(
        runs, name, "ValueError", "fit(distributed=True): the processes were not set up alike", SETUPS[name]
    )


def test_a_later_partial_fit_compares_the_parameters_again(runs):
    """A ``set_params`` on one process after the first call: the next distributed partial_fit is
    refused on every process (until 2026-12-06 only the first call was compared)."""
    _refused(
        runs,
        "later_set_params",
        "ValueError",
        "partial_fit(distributed=True)",
        "alpha (rank 0: 1.0; rank 1: 2.0)",
    )


def test_first_distributed_partial_fit_compares_the_parameters_too(runs):
    """Item 1, ``partial_fit``: another ``tau`` on each process; the refused call leaves the
    classifier unfitted everywhere."""
    _refused(
        runs,
        "partial_fit_tau",
        "ValueError",
        "partial_fit(distributed=True)",
        "tau (rank 0: 0.001; rank 1: 0.01)",
    )
    assert _fitted_flags(runs, "partial_fit_tau") == [False, False]


def test_equal_parameters_in_other_forms_are_not_refused(runs):
    """Item 1, no false refusal: class embeddings as a list on one process and an array on the
    other, class_weight keys as NumPy or Python ints, and a random_state that acts on nothing
    (no random_features) fit as one process does."""
    x, y = _data()
    one = FaastClassifier(class_embeddings=EMBEDDINGS, prior=PRIOR, n0=3.0, class_weight={0: 2.0, 2: 0.5})
    one.fit(x, y)
    for got in _succeeded(runs, "same_setup"):
        _assert_as_one_process(got, one, x)


def test_data_frames_with_columns_in_another_order_are_refused(runs):
    """Item 1: the same width with the columns in another order summed one feature into another;
    a process passing a plain (empty) array beside data frames is not refused."""
    pytest.importorskip("pandas")
    _refused(runs, "columns", "ValueError", "feature_names_in_ (rank 0: ['f0', ")
    x, y = _data()
    one = FaastClassifier().fit(x, y)
    for got in _succeeded(runs, "columns_empty_array"):
        _assert_as_one_process(got, one, x)


# ----------------------------------------------------------------- item 2
def test_a_shard_whose_weights_are_all_zero_is_accepted(runs):
    """Item 2: rank 0's block weighs 0; scikit-learn's check refused it on rank 0 ("at least one
    non-zero") and rank 1 then failed in the all-reduce; one process fits the same weights."""
    x, y = _data()
    w = np.ones(len(y))
    w[:20] = 0.0  # rank 0's block
    one = FaastClassifier().fit(x, y, sample_weight=w)
    for got in _succeeded(runs, "rank0_weighs_nothing"):
        _assert_as_one_process(got, one, x)


def test_an_empty_shard_with_sample_weight_is_accepted(runs):
    """Item 2: an empty shard passing ``sample_weight`` (an empty array, or a number) was refused
    on its process ("0 sample(s)")."""
    x, y = _data()
    one = FaastClassifier().fit(x, y, sample_weight=np.ones(len(y)))
    twice = FaastClassifier().fit(x, y, sample_weight=2.0)
    for got in _succeeded(runs, "empty_shard_weights"):
        _assert_as_one_process(got, one, x)
        np.testing.assert_allclose(np.asarray(got["number"]), twice.coef_, rtol=0, atol=1e-10)


def test_every_example_weighing_zero_is_still_refused_on_every_process(runs):
    """Item 2: the union weighing nothing stays refused, by every process together (fit, and a
    first partial_fit, which leaves the classifier unfitted)."""
    told = "every example of every process weighs 0"
    _refused(runs, "zero_fit", "ValueError", told)
    _refused(runs, "zero_partial_fit", "ValueError", told)
    assert _fitted_flags(runs, "zero_partial_fit") == [False, False]


# ----------------------------------------------------------------- item 3
def test_labels_of_other_kinds_name_each_rank(runs):
    """Item 3: int labels on one process and strings on another failed in ``sorted`` with a bare
    TypeError ("'<' not supported")."""
    _refused(
        runs, "labels_kinds", "DistributedError", "labels are of different kinds",
        "rank 0: numbers (int64), rank 1: strings (<U21)",
    )  # fmt: skip


def test_no_examples_on_any_process_says_so(runs):
    """Item 3: every process passing an empty shard failed with "key_dim and value_dim must be
    positive" (fit) or an error of the solve (partial_fit)."""
    _refused(runs, "empty_fit", "ValueError", "no examples on any process")
    _refused(runs, "empty_partial_fit", "ValueError", "no examples on any process")
    assert _fitted_flags(runs, "empty_partial_fit") == [False, False]


def test_partial_fit_classes_of_other_dtype_kinds_are_refused(runs):
    """Item 3: classes [0, 1, 2] on one process and [0.0, 1.0, 2.0] on another compared equal
    (JSON) and left classes_ of other dtypes on the processes."""
    _refused(
        runs, "classes_kinds", "ValueError", "different classes (dtype kinds f, i)",
        "rank 0: [0, 1, 2]; rank 1: [0.0, 1.0, 2.0]",
    )  # fmt: skip
    assert _fitted_flags(runs, "classes_kinds") == [False, False]


# ----------------------------------------------------------------- item 4 (documented)
def test_forget_beyond_the_kept_rows_keeps_the_temperature_until_the_next_partial_fit(runs):
    """Item 4 pins what docs/distributed.md says: beyond 2·D examples ``forget`` makes no
    collective call, so a distributed classifier keeps the fit's temperature where one process
    finds it again; the next ``partial_fit`` (every process together) finds it as one process
    whose sample kept the forgotten examples (one process alone takes them out of it: each
    process's sample is its own, so a distributed forget leaves them in)."""
    x, y = _data(40, 5)
    one = FaastClassifier().fit(x, y)
    # the sample as a distributed forget keeps it
    with mock.patch.object(FaastClassifier, "_forget_from_sample"):
        one.forget(x[[0, 30]], y[[0, 30]])
    forgotten = one.logit_scale_
    one.partial_fit(x[:10] + 0.5, y[:10])
    for got in _succeeded(runs, "forget_temperature"):
        assert got["forget"] == got["fit"] and abs(got["forget"] - forgotten) > 1e-3
        assert abs(got["partial_fit"] - one.logit_scale_) <= 1e-10 * one.logit_scale_
