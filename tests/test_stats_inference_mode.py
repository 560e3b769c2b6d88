"""Statistics built or changed inside ``torch.inference_mode()`` stay normal tensors: later adds,
forgets, merges, solves and reads outside that mode work and equal the same steps run outside it
(``GramStats``, ``FaastClassifier``, and a tiny language model's ``learn``/``forget``)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast import FaastClassifier, GramStats
from faast.solver import PairBuffer
from tests.lm_tiny import VOCAB, tiny_model

#: The steps of :func:`_gram_sequence`, each run inside or outside inference mode.
_STEPS = ("build", "add", "subtract", "merge", "load")


def _mode(inside: bool) -> contextlib.AbstractContextManager[None]:
    """``torch.inference_mode()`` when ``inside``, else a plain no-grad block."""
    return torch.inference_mode() if inside else torch.no_grad()


def _made(t: torch.Tensor, inside: bool) -> torch.Tensor:
    """A copy of ``t`` (any shape) made in the mode of a step: an inference tensor when ``inside``,
    as the features a model computes under ``torch.inference_mode()``."""
    with _mode(inside):
        return t.clone()


def _batches(n: int, d: int, m: int, seed: int, weighted: bool) -> list[tuple[torch.Tensor, ...]]:
    """Three batches (keys (n, d) float32, values (n, m) float32, weights (n,) float64 or None)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        keys = torch.randn(n, d, generator=gen)
        values = torch.randn(n, m, generator=gen)
        weights = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5 if weighted else None
        out.append((keys, values, weights))
    return out


def _pairs(batch: tuple[torch.Tensor, ...], inside: bool) -> tuple[torch.Tensor | None, ...]:
    """A batch made in the mode of its step."""
    return tuple(None if t is None else _made(t, inside) for t in batch)


def _gram_sequence(
    d: int, m: int, batches: list[tuple[torch.Tensor, ...]], dual: int, inside: dict[str, bool]
) -> GramStats:
    """Build, add to, subtract from, merge into and reload one ``GramStats`` (keys d → values m),
    each step in or out of inference mode as ``inside`` says; solved after every step (so the
    factor and solve caches are also made in that step's mode). Returns the statistics."""
    first, second, third = batches
    with _mode(inside["build"]):
        stats = GramStats(d, m, dual_max_pairs=dual).add(*_pairs(first, inside["build"]))
        stats.solve("ridge=0.1")
    with _mode(inside["add"]):
        stats.add(*_pairs(second, inside["add"]))
        stats.solve("ridge=0.1")
    with _mode(inside["subtract"]):
        stats.subtract(*_pairs(first, inside["subtract"]))
        stats.solve("ridge=0.1")
    with _mode(inside["merge"]):
        shard = GramStats(d, m, dual_max_pairs=dual).add(*_pairs(third, inside["merge"]))
        stats.merge(shard)
        stats.solve("ridge=0.1")
    with _mode(inside["load"]):
        state, rows = stats.saved_state()
        loaded = GramStats(d, m, dual_max_pairs=dual)
        loaded.load_state_dict(state, input_dtype=stats.input_dtype, rows=rows)
        loaded.solve("ridge=0.1")
    return loaded


def _stored_tensors(stats: GramStats) -> list[torch.Tensor]:
    """Every tensor ``stats`` holds right now: G, B, the kept rows and the cached solves."""
    held = [t for t in (stats._gram, stats._cross) if t is not None]
    if stats._pairs is not None:
        held += stats._pairs._keys + stats._pairs._values
    held += [weights for weights, _ in stats._solve_cache.values()]
    return held


@settings(max_examples=20, deadline=None)
@given(
    d=st.integers(2, 9),
    m=st.integers(1, 3),
    n=st.integers(1, 6),
    gram_only=st.booleans(),
    weighted=st.booleans(),
    inside=st.fixed_dictionaries({step: st.booleans() for step in _STEPS}),
    seed=st.integers(0, 10_000),
)
def test_gram_stats_made_in_inference_mode_work_outside_and_equal_the_outside_run(
    d, m, n, gram_only, weighted, inside, seed
):
    dual = 0 if gram_only else 2 * d  # Gram only, or every row kept (n < 2d: dual route or rows beside G)
    batches = _batches(n, d, m, seed, weighted)
    got = _gram_sequence(d, m, batches, dual, inside)
    want = _gram_sequence(d, m, batches, dual, dict.fromkeys(_STEPS, False))
    assert not any(t.is_inference() for t in _stored_tensors(got))
    extra = _batches(n, d, m, seed + 1, weighted)[0]
    for stats in (got, want):  # outside inference mode: updates in place, solves, forgets
        stats.add(*extra)
        stats.subtract(*batches[2])
    assert torch.equal(got.solve("ridge=0.1"), want.solve("ridge=0.1"))
    assert torch.equal(got.gram, want.gram) and torch.equal(got.cross, want.cross)
    assert got.kept_row_count == want.kept_row_count
    if want.kept_row_count:
        assert all(torch.equal(a, b) for a, b in zip(got.kept_rows(), want.kept_rows(), strict=True))
    assert (got.count, got.weight_sum, got.value_sq_sum) == (want.count, want.weight_sum, want.value_sq_sum)


@pytest.mark.parametrize("n", [3, 40])  # rows kept (dual route), or past d = 8: Gram only
def test_plain_add_in_inference_mode_then_add_and_solve_outside(n):
    gen = torch.Generator().manual_seed(n)
    keys, values = torch.randn(2 * n, 8, generator=gen), torch.randn(2 * n, 2, generator=gen)
    got = GramStats(8, 2)
    with torch.inference_mode():
        got.add(keys[:n].clone(), values[:n].clone())
        inside_weights = got.solve()
    got.add(keys[n:], values[n:])  # the reproducer's failure: an in-place update of G outside
    want = GramStats(8, 2).add(keys[:n], values[:n])
    assert torch.equal(inside_weights, want.solve())
    want.add(keys[n:], values[n:])
    assert torch.equal(got.solve(), want.solve())
    assert torch.equal(got.gram, want.gram)


def test_stats_loaded_from_a_file_in_inference_mode_update_outside():
    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(30, 6, generator=gen), torch.randn(30, 2, generator=gen)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stats.safetensors"
        GramStats(6, 2).add(keys[:20], values[:20]).save(path)
        with torch.inference_mode():
            got = GramStats.load(path)
            into = GramStats(6, 2)
            into.load_file(path)
        want = GramStats.load(path)
    for stats in (got, into, want):
        stats.add(keys[20:], values[20:]).subtract(keys[:5], values[:5])
    assert torch.equal(got.gram, want.gram) and torch.equal(into.gram, want.gram)
    assert torch.equal(got.solve(), want.solve())


def test_pair_buffer_keeps_normal_tensors_from_inference_mode():
    keys, values = torch.randn(5, 3), torch.randn(5, 2)
    buffer = PairBuffer(capacity=4)
    with torch.inference_mode():
        buffer.append(keys[:3].clone(), values[:3].clone()).append(keys[3:].clone(), values[3:].clone())
        held = buffer.tensors()
        buffer.remove(torch.tensor([0]))
    assert not any(t.is_inference() for t in held)
    stored_keys, stored_values = buffer.tensors()
    assert not stored_keys.is_inference() and not stored_values.is_inference()
    assert torch.equal(stored_keys, keys[2:]) and torch.equal(stored_values, values[2:])
    stored_keys.add_(0.0)  # updatable in place outside inference mode


def _classifier_sequence(inside: bool, n: int, d: int, seed: int) -> tuple[np.ndarray, ...]:
    """Fit a classifier (in or out of inference mode), then partial_fit, predict and forget
    outside it; returns the decision scores after each step."""
    rng = np.random.default_rng(seed)
    y = np.arange(3 * n) % 3
    X = rng.standard_normal((3 * n, d)) + 2.0 * np.eye(3, d)[y]
    query = rng.standard_normal((10, d))
    with _mode(inside):
        clf = FaastClassifier(tau="auto").fit(X[:n], y[:n])
        first = clf.decision_function(query)
    clf.partial_fit(X[n : 2 * n], y[n : 2 * n])
    second = clf.decision_function(query)
    clf.forget(X[: n // 2], y[: n // 2])
    third = clf.decision_function(query)
    clf.partial_fit(X[2 * n :], y[2 * n :])
    return first, second, third, clf.decision_function(query), clf.predict(query)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(6, 40), d=st.sampled_from([5, 12]), seed=st.integers(0, 1000))
def test_classifier_fit_in_inference_mode_then_updated_outside(n, d, seed):
    got = _classifier_sequence(True, n, d, seed)
    want = _classifier_sequence(False, n, d, seed)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def _lm_sequence(inside: bool, first_tokens: int, folder: Path) -> list[torch.Tensor]:
    """A tiny Llama with an output and a middle memory: learn ``first_tokens`` tokens (in or out of
    inference mode), then outside it forward, generate, learn more, forget the first text, save
    the fast weights and load them into a fresh model. Returns every logits and token output."""
    from faast.lm import FaastConfig, get_faast_model

    config = FaastConfig(num_memories=1)
    base = tiny_model("llama", dtype=torch.float32)
    fm = get_faast_model(base, config)
    text = torch.randint(3, VOCAB, (1, 80), generator=torch.Generator().manual_seed(5))
    first, more, probe = text[:, :first_tokens], text[:, 40:70], text[:, :20]
    with _mode(inside):
        fm.learn(input_ids=first)
        out = [fm(input_ids=probe).logits.clone()]
    read: Callable[[], torch.Tensor] = lambda: fm(input_ids=probe).logits  # noqa: E731
    with torch.no_grad():
        out += [read(), fm.generate(input_ids=text[:, :4], max_new_tokens=4, do_sample=False)]
        fm.learn(input_ids=more)
        out.append(read())
        fm.forget(input_ids=first)
        out.append(read())
        path = folder / f"fast-{inside}.safetensors"
        fm.save_fast_weights(path, "task")
        loaded = get_faast_model(tiny_model("llama", dtype=torch.float32), config)
        loaded.load_fast_weights(path, "task")
        out.append(loaded(input_ids=probe).logits)
    out.append(torch.autograd.grad(read().sum(), base.get_input_embeddings().weight)[0])  # grads flow
    return out


@pytest.mark.parametrize("first_tokens", [10, 38])  # below and past the hidden width d = 32
def test_lm_learning_in_inference_mode_then_learning_and_forgetting_outside(first_tokens, tmp_path):
    got = _lm_sequence(True, first_tokens, tmp_path)
    want = _lm_sequence(False, first_tokens, tmp_path)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_random_feature_keys_cached_in_inference_mode_train_outside():
    """The random-feature map's cached copy of R, made by a first learn inside inference mode, is a
    normal tensor: a forward with gradients outside that mode (training) can save it."""
    from faast.lm import FaastConfig, get_faast_model

    fm = get_faast_model(
        tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=0, output_key_features=16)
    )
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fm.learn(input_ids=ids)
    embed = fm.get_input_embeddings()
    embed.weight.requires_grad_(True)
    loss = fm(input_ids=ids, labels=ids).loss
    loss.backward()
    assert embed.weight.grad is not None and bool(torch.isfinite(embed.weight.grad).all())
