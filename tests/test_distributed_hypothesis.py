"""Distributed paths against one process seeing all the data, on random inputs of many shapes.

The project's standard (every fast path tested against a plain reference on random inputs drawn by
hypothesis) for the data-parallel code: ``GramStats.all_reduce`` (raw and through
``Dist.all_reduce_stats``), ``Dist.gather_digests`` / ``gather_any_rows`` / ``all_gather_json`` /
``union_labels`` and the record ``reduce_learning`` unites, ``FaastClassifier(distributed=True)``
``fit`` / ``partial_fit``, and a ``FaastModel`` learning inside ``Dist.reduce_learning``.

Starting a process group is slow, so one group of two gloo processes (spawned once for the
module, joined through :func:`faast.distributed.init` as under ``torchrun``) serves every example:
the parent draws each example with hypothesis (derandomised: reproducible in CI; failures shrink),
sends each rank its shard through a queue, and compares what every rank returns with a plain
reference computed in the parent (numpy sums, or the same library in a single process). Shards
are uneven and a rank with no rows at all is drawn often. Two ranks, not three: on one shared core
(``taskset -c 1``) a third process made every collective about four times slower (start-up 13 s
instead of 6 s), and the sums, gathers and refusals take the same code paths with two.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import queue
import socket
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from faast import FaastClassifier
from faast.digest_multiset import DigestMultiset
from faast.solver import GramStats

WORLD = 2
#: Seconds a collective waits for the other processes (a rank that fails ends the others' wait).
TIMEOUT_S = "30"
#: Seconds the parent waits for every rank's answer to one example.
ANSWER_S = 120.0
EPS = float(np.finfo(np.float64).eps)

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------- the workers
def _stats_case(d: Any, case: dict[str, Any]) -> dict[str, Any]:
    """Add this rank's rows (in one or two batches), subtract its first ``forget`` rows, all-reduce."""
    keys, values, weights = (torch.from_numpy(case[k]) if case[k] is not None else None for k in "kvw")
    stats = GramStats(case["key_dim"], case["value_dim"], dual_max_pairs=case["dual_max_pairs"])
    n, cut = keys.shape[0], case["split"]
    for part in (slice(0, min(cut, n)), slice(min(cut, n), n)):
        if part.stop > part.start:
            stats.add(keys[part], values[part], None if weights is None else weights[part])
    f = case["forget"]
    if f:
        stats.subtract(keys[:f], values[:f], None if weights is None else weights[:f])
    if case["via_dist"]:
        d.all_reduce_stats(stats)
    else:
        stats.all_reduce()
    rows = stats.kept_rows()
    out = {
        "count": stats.count,
        "weight_sum": stats.weight_sum,
        "value_sq_sum": stats.value_sq_sum,
        "gram": stats.gram.numpy().copy(),
        "cross": stats.cross.numpy().copy(),
        "dtype": str(stats.input_dtype),
        "kept": stats.kept_row_count,
        "rows": None if rows is None else [t.numpy().copy() for t in rows],
    }
    if stats.weight_sum > 0:
        out["w"] = stats.solve(ridge=0.5).double().numpy().copy()
    return out


def _gather_case(d: Any, case: dict[str, Any]) -> dict[str, Any]:
    mine = case["digests"][d.rank]
    united = DigestMultiset(case["before"])
    record = united.copy()
    record.add(mine)
    rows = torch.from_numpy(case["rows"][d.rank])
    return {
        "digests": d.gather_digests(mine, "digests"),
        "united": d._united_record(record, united).digests,
        "rows": d.gather_any_rows(rows, "rows").numpy(),
        "json": d.all_gather_json(case["json"][d.rank]),
        "labels": d.union_labels(case["labels"][d.rank]),
        "sum": d.sum(case["numbers"][d.rank]),
    }


def _classifier_summary(clf: FaastClassifier, x_test: np.ndarray) -> dict[str, Any]:
    return {
        "coef": np.asarray(clf.coef_),
        "intercept": np.asarray(clf.intercept_),
        "classes": clf.classes_,
        "class_count": np.asarray(clf.class_count_),
        "proba": clf.predict_proba(x_test),
        "decision": np.asarray(clf.decision_function(x_test)),
        "record": None if clf._record is None else clf._record.digests,
    }


def _classifier_case(d: Any, case: dict[str, Any]) -> dict[str, Any]:
    del d
    x, y, w = case["x"], case["y"], case["w"]
    clf = FaastClassifier(distributed=True, **case["params"]).fit(x, y, sample_weight=w)
    out = {"fit": _classifier_summary(clf, case["x_test"])}
    inc = FaastClassifier(distributed=True, **case["params"])
    for part in (slice(0, case["split"]), slice(case["split"], None)):
        sw = None if w is None else w[part]
        inc.partial_fit(x[part], y[part], classes=case["classes"], sample_weight=sw)
    out["partial_fit"] = _classifier_summary(inc, case["x_test"])
    return out


def _lm_model(case: dict[str, Any]) -> Any:
    from faast.lm import FaastConfig, ReadConfig, get_faast_model
    from tests.lm_tiny import tiny_model

    layout = FaastConfig(num_memories=case["middles"], output_mix=case["mix"], readout_dropout=0.0)
    return get_faast_model(tiny_model("llama"), layout, ReadConfig(cut="alpha=0.9,c=1.5"))


def lm_learned(fm: Any) -> dict[str, Any]:
    """What a FaastModel learned: each memory's statistics, fast weights and extra state, and rows."""
    out: dict[str, Any] = {"rows": fm.learned_rows.digests}
    for name, readout in fm.memories.items():
        out[f"{name}/count"] = readout.stats.count
        if readout.stats.count:
            out[f"{name}/gram"] = readout.stats.gram.numpy().copy()
            out[f"{name}/cross"] = readout.stats.cross.numpy().copy()
            out[f"{name}/W"] = readout.memory.weight(torch.float64).numpy().copy()
        for key, value in readout.extra_state().items():
            out[f"{name}/{key}"] = value.numpy().copy()
    return out


def lm_learn_batches(fm: Any, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for ids, mask in batches:
        fm.learn(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))


def _lm_case(d: Any, case: dict[str, Any]) -> dict[str, Any]:
    fm = _lm_model(case)
    lm_learn_batches(fm, case["before"])  # the same on every process: counted once
    with d.reduce_learning(fm):
        lm_learn_batches(fm, case["batches"])
    return lm_learned(fm)


HANDLERS: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    "stats": _stats_case,
    "gather": _gather_case,
    "classifier": _classifier_case,
    "lm": _lm_case,
}


def _worker(rank: int, world: int, port: int, inbox: Any, outbox: Any) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port), FAAST_DIST_TIMEOUT=TIMEOUT_S, FAAST_DIST_BACKEND="gloo",
        OMP_NUM_THREADS="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    from faast import distributed

    d = distributed.init()
    outbox.put((rank, 0, "ready", None))
    while True:
        tag, kind, case = inbox.get()
        if kind == "stop":
            break
        try:
            outbox.put((rank, tag, "ok", HANDLERS[kind](d, case)))
        except BaseException:  # the parent reports it with the example
            outbox.put((rank, tag, "error", traceback.format_exc()))
    os._exit(0)  # the group is torn down with the processes (a failed example may have broken it)


class Group:
    """``WORLD`` processes of one gloo group, each running the examples it is sent."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(WORLD)]
        self.procs = [
            ctx.Process(target=_worker, args=(r, WORLD, port, self.inboxes[r], self.outbox), daemon=True)
            for r in range(WORLD)
        ]
        for p in self.procs:
            p.start()
        self.tag = 0
        self._collect("start-up", 0)

    def _collect(self, what: str, tag: int) -> list[Any]:
        """Every rank's answer to example ``tag`` (answers to earlier examples, left over when one
        failed, are dropped); an AssertionError naming each rank that failed, once all answered."""
        got: dict[int, tuple[str, Any]] = {}
        waited = 0.0
        while len(got) < WORLD:
            try:
                rank, seen, status, value = self.outbox.get(timeout=1.0)
            except queue.Empty:
                waited += 1.0
                dead = [r for r, p in enumerate(self.procs) if not p.is_alive()]
                if dead or waited > ANSWER_S:
                    missing = sorted(set(range(WORLD)) - set(got))
                    raise AssertionError(f"{what}: no answer from ranks {missing} (dead: {dead})") from None
                continue
            if seen == tag:
                got[rank] = (status, value)
        failed = [f"rank {r} failed:\n{v}" for r, (s, v) in sorted(got.items()) if s == "error"]
        if failed:
            raise AssertionError(f"{what}: " + "\n".join(failed))
        return [got[r][1] for r in range(WORLD)]

    def run(self, kind: str, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each rank's result of ``HANDLERS[kind]`` on its own case (``cases[rank]``)."""
        self.tag += 1
        for inbox, case in zip(self.inboxes, cases, strict=True):
            inbox.put((self.tag, kind, case))
        return self._collect(kind, self.tag)

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put((-1, "stop", None))
        for p in self.procs:
            p.join(timeout=20)
            if p.is_alive():
                p.kill()
                p.join()


@pytest.fixture(scope="module")
def group() -> Iterator[Group]:
    g = Group()
    try:
        yield g
    finally:
        g.close()


def _shards(counts: list[int]) -> list[slice]:
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(starts)]


rank_rows = st.lists(st.integers(0, 9) | st.just(0), min_size=WORLD, max_size=WORLD)


def _settings(examples: int) -> settings:
    """Derandomised (the same examples in every run, CI included), no deadline, no database."""
    return settings(derandomize=True, deadline=None, database=None, max_examples=examples)


# ---------------------------------------------------------------------------- GramStats.all_reduce
@_settings(150)
@given(
    counts=rank_rows,
    key_dim=st.integers(1, 7),
    value_dim=st.integers(1, 4),
    weighted=st.sampled_from(["none", "positive", "zeros"]),
    dtype=st.sampled_from(["float64", "float32"]),
    dual=st.sampled_from([None, 0, 5, 100]),
    forget=st.lists(st.floats(0, 1), min_size=WORLD, max_size=WORLD),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    split=st.integers(0, 9),
    via_dist=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_all_reduced_statistics_equal_one_process_over_every_row(
    group, counts, key_dim, value_dim, weighted, dtype, dual, forget, scale, split, via_dist, seed
):
    """Summed over the processes (some without rows; each streamed in two batches, then forgetting
    its first rows), G, B, n, Σw, Σw‖v‖² equal the plain float64 sums over every row left, and equal
    one GramStats fed everything; the kept rows travel (in rank order) exactly when every process
    kept its own and their total stays within dual_max_pairs; the ridge solve equals one process's."""
    rng = np.random.default_rng(seed)
    total = sum(counts)
    keys = (rng.standard_normal((total, key_dim)) * scale).astype(dtype).astype(np.float64)
    values = rng.standard_normal((total, value_dim)).astype(dtype).astype(np.float64)
    weights = None
    if weighted != "none":
        weights = rng.uniform(0.2, 3.0, total)
        if weighted == "zeros":
            weights[rng.random(total) < 0.4] = 0.0
    shards = _shards(counts)
    forgets = [int(f * c) for f, c in zip(forget, counts, strict=True)]
    cases = [
        {
            "k": keys[s].astype(dtype),
            "v": values[s].astype(dtype),
            "w": None if weights is None else weights[s],
            "key_dim": key_dim,
            "value_dim": value_dim,
            "dual_max_pairs": dual,
            "split": split,
            "forget": f,
            "via_dist": via_dist,
        }
        for s, f in zip(shards, forgets, strict=True)
    ]
    results = group.run("stats", cases)

    # the plain reference: float64 sums over the rows each process keeps after forgetting
    left = np.concatenate([np.arange(s.start + f, s.stop) for s, f in zip(shards, forgets, strict=True)])
    left = left.astype(int)
    w = np.ones(total) if weights is None else weights
    k, v, wl = keys[left], values[left], w[left]
    gram, cross = (k * wl[:, None]).T @ k, (k * wl[:, None]).T @ v
    # rounding: every entry is a sum of at most `total` products (plus as many removed), each
    # bounded by the rows' Σw‖k‖‖·‖; float64 summation errs by at most ~2·total·ε of that bound
    bound_k = float((w * (keys**2).sum(1)).sum()) + 1.0
    bound_v = float((w * (values**2).sum(1)).sum()) + 1.0
    tol_g = 4 * (total + 1) * EPS * bound_k
    tol_b = 4 * (total + 1) * EPS * np.sqrt(bound_k * bound_v)
    single = GramStats(key_dim, value_dim, dual_max_pairs=dual)
    if total:
        single.add(torch.from_numpy(keys.astype(dtype)), torch.from_numpy(values.astype(dtype)),
                   None if weights is None else torch.from_numpy(weights))  # fmt: skip
        gone = np.setdiff1d(np.arange(total), left)
        if gone.size:
            single.subtract(torch.from_numpy(keys[gone].astype(dtype)),
                            torch.from_numpy(values[gone].astype(dtype)),
                            None if weights is None else torch.from_numpy(weights[gone]))  # fmt: skip
    dual_max = key_dim if dual is None else dual
    each_kept = [c <= dual_max or c == f for c, f in zip(counts, forgets, strict=True)]
    travel = all(each_kept) and len(left) <= dual_max
    for rank, got in enumerate(results):
        where = f"rank {rank}"
        assert got["count"] == len(left) == single.count, where
        assert got["weight_sum"] == pytest.approx(
            float(wl.sum()), rel=0, abs=4 * (total + 1) * EPS * (w.sum() + 1)
        )
        assert got["value_sq_sum"] == pytest.approx(float((wl * (v**2).sum(1)).sum()), rel=0, abs=tol_b)
        np.testing.assert_allclose(got["gram"], gram, rtol=0, atol=tol_g, err_msg=where)
        np.testing.assert_allclose(got["cross"], cross, rtol=0, atol=tol_b, err_msg=where)
        np.testing.assert_allclose(got["gram"], single.gram.numpy(), rtol=0, atol=tol_g, err_msg=where)
        if left.size:
            assert got["dtype"] == f"torch.{dtype}", where
        assert got["kept"] == (len(left) if travel else 0), (where, counts, forgets, dual_max)
        if travel and left.size:  # √w-scaled float64 rows, the shards' rows in rank order
            rk, rv = got["rows"]  # one rounding of the product by √w (bit-exact without weights)
            root = np.sqrt(wl)[:, None]
            np.testing.assert_allclose(rk, k * root, rtol=4 * EPS, atol=0, err_msg=where)
            np.testing.assert_allclose(rv, v * root, rtol=4 * EPS, atol=0, err_msg=where)
        if single.weight_sum > 0:
            expected = single.solve(ridge=0.5).double().numpy()
            # ridge 0.5 bounds the conditioning by (‖G‖ + 0.5)/0.5; float32 solves round to float32
            cond = (np.linalg.norm(gram, 2) + 0.5) / 0.5
            rel = 1e-5 if dtype == "float32" else 1e3 * cond * total * EPS
            atol = rel * (np.abs(expected).max() + 1e-300)
            np.testing.assert_allclose(got["w"], expected, rtol=0, atol=atol, err_msg=where)


# ------------------------------------------------------------------------- gathers and unions
@_settings(100)
@given(
    sizes=rank_rows,
    width=st.integers(1, 4),
    before=st.lists(st.integers(0, 2**64 - 1), max_size=5),
    labels=st.sampled_from(["int", "str"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gathers_equal_the_concatenation_in_rank_order(group, sizes, width, before, labels, seed):
    """gather_digests (uint64 with the high bit set, empty ranks), gather_any_rows, all_gather_json,
    union_labels, sum and the record reduce_learning unites equal their plain counterparts."""
    rng = np.random.default_rng(seed)
    digests = [rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True) for n in sizes]
    if sizes[0]:  # a digest learned on two processes is held twice
        digests[-1] = np.append(digests[-1], digests[0][:1])
    rows = [rng.standard_normal((n, width)) for n in sizes]
    pool = np.arange(6) if labels == "int" else np.array([f"c{i}" * (i + 1) for i in range(6)])
    label_parts = [pool[rng.integers(0, 6, n)] for n in sizes]
    numbers = rng.standard_normal(WORLD).tolist()
    payloads = [{"rank": r, "values": rows[r].tolist(), "text": "é" * sizes[r]} for r in range(WORLD)]
    before_arr = np.array(before, dtype=np.uint64)
    case = {"digests": digests, "before": before_arr, "rows": rows, "json": payloads,
            "labels": label_parts, "numbers": numbers}  # fmt: skip
    results = group.run("gather", [case] * WORLD)
    every = np.concatenate(digests)
    united = DigestMultiset(np.concatenate([before_arr, every]))
    union = np.unique(np.concatenate(label_parts)) if any(sizes) else np.unique(label_parts[0])
    for got in results:
        assert got["digests"].dtype == np.uint64
        np.testing.assert_array_equal(got["digests"], every)
        np.testing.assert_array_equal(got["united"], united.digests)
        np.testing.assert_array_equal(got["rows"], np.concatenate(rows))
        assert got["json"] == payloads
        np.testing.assert_array_equal(got["labels"], union)
        assert got["labels"].dtype == np.result_type(*[p for p in label_parts if p.size] or label_parts)
        assert got["sum"] == pytest.approx(sum(numbers), rel=1e-15, abs=1e-15)


# ------------------------------------------------------------------------- the classifier
PARAMS = {
    "auto": {},  # the default: ridge by exact leave-one-out (GCV beyond the kept rows), temperature too
    "alpha": {"alpha": 1.0},
    "tau": {"tau": 1e-2},
    "ridge": {"ridge": 0.3},
    "no-intercept": {"alpha": 1.0, "fit_intercept": False},
    "centred": {"ridge": 0.3, "center_features": True},
    "class-weight": {"alpha": 1.0, "class_weight": {0: 2.0, 2: 0.5}},
    "logit-scale": {"alpha": 1.0, "logit_scale": 2.0},
}


@_settings(40)
@given(
    counts=rank_rows,
    features=st.integers(1, 6),
    classes=st.integers(2, 4),
    params=st.sampled_from(sorted(PARAMS)),
    weighted=st.sampled_from(["none", "positive", "zeros"]),
    labels=st.sampled_from(["int", "str"]),
    split=st.floats(0.2, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_distributed_classifier_equals_one_fit_on_the_concatenated_data(
    group, counts, features, classes, params, weighted, labels, split, seed
):
    """fit(distributed=True) on each process's shard (some empty) and two partial_fit calls, each
    sharded, equal one process fitting (or partial-fitting) the concatenation: coef_, intercept_,
    classes_, class counts, probabilities, decision scores and the record of examples learned."""
    rng = np.random.default_rng(seed)
    total = sum(counts)
    x = rng.standard_normal((total, features))
    y_idx = rng.integers(0, classes, total)
    if total:
        y_idx[0] = 0
    if total > 1:
        y_idx[-1] = 1  # at least two classes in the union (when there are two rows)
    pool = np.arange(classes) if labels == "int" else np.array([f"c{i}" for i in range(classes)])
    y = pool[y_idx]
    w = None
    if weighted != "none":
        w = rng.uniform(0.2, 3.0, total)
        if weighted == "zeros":
            w[rng.random(total) < 0.3] = 0.0
    kwargs = dict(PARAMS[params])
    if "class_weight" in kwargs:
        present = set(y_idx.tolist())  # fit refuses a class_weight naming a label it does not see
        kwargs["class_weight"] = {
            pool[c].item(): v for c, v in kwargs["class_weight"].items() if c in present
        }
    x_test = rng.standard_normal((5, features))
    assume(total >= 2)  # a single process fits two classes at least: refusals are tested elsewhere
    shards = _shards(counts)
    splits = [math.ceil(split * (s.stop - s.start)) for s in shards]
    # partial_fit: every process passes its first `split` share, then the rest
    first = np.concatenate([np.arange(s.start, s.start + k) for s, k in zip(shards, splits, strict=True)])
    second = np.setdiff1d(np.arange(total), first)
    for part in (first.astype(int), second.astype(int)):
        if w is not None and part.size and not w[part].any():
            w[part[0]] = 1.0  # a call whose every example weighs 0 is refused (one process, or all)
    cases = [
        {"x": x[s], "y": y[s], "w": None if w is None else w[s], "params": kwargs, "x_test": x_test,
         "split": k, "classes": pool}
        for s, k in zip(shards, splits, strict=True)
    ]  # fmt: skip
    results = group.run("classifier", cases)
    one = _classifier_summary(FaastClassifier(**kwargs).fit(x, y, sample_weight=w), x_test)
    inc = FaastClassifier(**kwargs)
    for part in (first.astype(int), second.astype(int)):
        if not part.size:  # one process refuses an empty call; every shard empty is accepted
            continue
        inc.partial_fit(x[part], y[part], classes=pool, sample_weight=None if w is None else w[part])
    both = {"fit": one, "partial_fit": _classifier_summary(inc, x_test)}
    for rank, got in enumerate(results):
        for call, expected in both.items():
            where = f"rank {rank} {call}"
            mine = got[call]
            scale = np.abs(expected["coef"]).max() + np.abs(expected["intercept"]).max() + 1e-300
            # the statistics are the same sums in another order: ~1e-12 relative, amplified by the
            # solve's conditioning at most 1e3 here (ridge 0.3 or cuts τ ≥ 1e-2·λmax)
            for key in ("coef", "intercept", "decision"):
                np.testing.assert_allclose(mine[key], expected[key], rtol=0, atol=1e-9 * scale, err_msg=where)
            np.testing.assert_allclose(mine["proba"], expected["proba"], rtol=0, atol=1e-8, err_msg=where)
            np.testing.assert_array_equal(mine["classes"], expected["classes"], err_msg=where)
            assert mine["classes"].dtype == expected["classes"].dtype, where
            np.testing.assert_array_equal(mine["class_count"], expected["class_count"], err_msg=where)
            if expected["record"] is None:
                assert mine["record"] is None, where
            else:
                np.testing.assert_array_equal(mine["record"], expected["record"], err_msg=where)


# ------------------------------------------------------------------------- a language model
def _lm_batches(rng: np.random.Generator, lengths: list[int], side: str) -> tuple[np.ndarray, np.ndarray]:
    from tests.lm_tiny import VOCAB

    width = max(lengths)
    ids, mask = np.zeros((len(lengths), width), np.int64), np.zeros((len(lengths), width), np.int64)
    for i, n in enumerate(lengths):
        row = slice(0, n) if side == "right" else slice(width - n, width)
        ids[i, row], mask[i, row] = rng.integers(3, VOCAB, n), 1
    return ids, mask


@_settings(12)
@given(
    per_rank=st.lists(
        st.lists(st.lists(st.integers(2, 9), min_size=1, max_size=3), max_size=2),
        min_size=WORLD,
        max_size=WORLD,
    ),
    before=st.lists(st.integers(2, 9), max_size=2),
    mix=st.sampled_from(["prob", "logit", "correction"]),
    middles=st.integers(0, 1),
    side=st.sampled_from(["left", "right"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_learning_inside_reduce_learning_equals_one_process_learning_everything(
    group, per_rank, before, mix, middles, side, seed
):
    """A tiny float64 model learns padded batches of random lengths on each process (some none)
    inside reduce_learning, after a batch every process learned before (counted once): every
    memory's statistics, fast weights, token counts (and the correction's float64 sums) and the
    record of rows learned equal one process learning every batch."""
    rng = np.random.default_rng(seed)
    shared = [_lm_batches(rng, before, side)] if before else []
    batches = [[_lm_batches(rng, lengths, side) for lengths in rank] for rank in per_rank]
    case = {"mix": mix, "middles": middles, "before": shared}
    results = group.run("lm", [{**case, "batches": batches[r]} for r in range(WORLD)])
    fm = _lm_model(case)
    lm_learn_batches(fm, shared + [b for rank in batches for b in rank])
    expected = lm_learned(fm)
    for rank, got in enumerate(results):
        assert got.keys() == expected.keys(), rank
        for key, value in expected.items():
            if key.endswith(("/count", "/counts", "rows")):
                np.testing.assert_array_equal(got[key], value, err_msg=f"rank {rank} {key}")
            else:  # float64 sums in another order (states ~1, ≤ 60 pairs); W through a τ ≥ 1e-3 cut
                scale = np.abs(value).max() + 1e-300
                np.testing.assert_allclose(
                    got[key], value, rtol=0, atol=1e-9 * scale, err_msg=f"rank {rank} {key}"
                )
