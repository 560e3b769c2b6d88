"""Fixes from the threads hunt of 2026-12-07: faast objects shared by several Python threads."""

from __future__ import annotations

import threading

import torch

from faast.lm import FaastConfig, get_faast_model
from tests.lm_tiny import random_batch, tiny_model


def _learned_model():
    torch.manual_seed(0)
    fm = get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1))
    ids, mask = random_batch([24, 24, 24, 24], seed=3)
    fm.learn(ids, mask)
    return fm, ids[:2, :16]


def test_a_disabled_block_in_one_thread_leaves_other_threads_reading_the_fast_weights():
    """disabled() is per thread: while one thread runs the base model in it, another thread's
    forward reads the fast weights (it read the base model: the switch was one per model), and
    blocks whose ends interleave leave the fast weights on (they were left off for good)."""
    fm, probe = _learned_model()
    with torch.no_grad():
        fast = fm(input_ids=probe).logits.clone()
        with fm.disabled():
            base = fm(input_ids=probe).logits.clone()
    assert not torch.equal(fast, base)
    inside, release = threading.Event(), threading.Event()
    seen: dict[str, torch.Tensor] = {}

    def hold_disabled() -> None:
        with fm.disabled(), torch.no_grad():
            seen["disabled thread"] = fm(input_ids=probe).logits.clone()
            inside.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_disabled)
    holder.start()
    assert inside.wait(timeout=60)
    with torch.no_grad():
        seen["other thread"] = fm(input_ids=probe).logits.clone()
    with fm.disabled():  # opened after the holder's, closed before it: the order that left it off
        release.set()
        holder.join(timeout=60)
    assert torch.equal(seen["disabled thread"], base)
    assert torch.equal(seen["other thread"], fast)
    with torch.no_grad():
        assert torch.equal(fm(input_ids=probe).logits, fast)


def test_learning_in_one_thread_captures_only_its_own_forwards():
    """learn() in one thread while another thread runs a forward in the middle of its pass: the
    learning pass captures only its own states (the other thread's hooks wrote theirs into the one
    shared capture, so the pairs learned came from the other thread's text), and the other thread
    reads the fast weights meanwhile (it ran in learning mode)."""
    reference, probe = _learned_model()
    fm, _ = _learned_model()
    ids, mask = random_batch([20, 20], seed=9)
    reference.learn(ids, mask)
    with torch.no_grad():
        fast_before = fm(input_ids=probe).logits.clone()
    at_norm, served = threading.Event(), threading.Event()
    learner: list[threading.Thread] = []

    def pause_after_the_final_norm(module, args, output):  # the learning pass's states are captured
        if learner and threading.current_thread() is learner[0] and not served.is_set():
            at_norm.set()
            served.wait(timeout=60)

    handle = fm.base_model.model.norm.register_forward_hook(pause_after_the_final_norm)
    thread = threading.Thread(target=lambda: fm.learn(ids, mask))
    learner.append(thread)
    try:
        thread.start()
        assert at_norm.wait(timeout=60)
        with torch.no_grad():
            during = fm(input_ids=probe).logits.clone()
        served.set()
        thread.join(timeout=60)
    finally:
        served.set()
        handle.remove()
    assert not thread.is_alive()
    assert torch.equal(during, fast_before)
    with torch.no_grad():
        assert torch.equal(fm(input_ids=probe).logits, reference(input_ids=probe).logits)


def test_two_threads_forming_the_sums_of_kept_rows_leave_them_right(monkeypatch):
    """G and B of kept rows are formed on first need; a second thread needing them while the first
    was forming them zeroed and refilled the same tensors under it, which went on adding: G and B
    came out doubled, for good. Each reader now forms them in tensors of its own."""
    from faast.solver import GramStats, stats

    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(12, 16, generator=gen), torch.randn(12, 3, generator=gen)
    expected = GramStats(16, 3).add(keys, values)
    expected_gram, expected_cross = expected.gram.clone(), expected.cross.clone()
    shared = GramStats(16, 3).add(keys, values)
    assert shared.kept_row_count == 12
    first_inside, second_done = threading.Event(), threading.Event()
    real = stats.accumulate
    first: list[threading.Thread] = []

    def accumulate(*args, **kwargs):
        if first and threading.current_thread() is first[0]:
            first_inside.set()
            second_done.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr(stats, "accumulate", accumulate)
    thread = threading.Thread(target=lambda: shared.gram)
    first.append(thread)
    thread.start()
    assert first_inside.wait(timeout=60)
    torch.testing.assert_close(shared.gram, expected_gram, rtol=0, atol=1e-12)
    second_done.set()
    thread.join(timeout=60)
    torch.testing.assert_close(shared.gram, expected_gram, rtol=0, atol=1e-12)
    torch.testing.assert_close(shared.cross, expected_cross, rtol=0, atol=1e-12)


def test_reading_a_config_leaves_the_warning_filters_alone():
    """FaastConfig.from_dict (every get_faast_model, every fast-weight load) silenced the legacy
    fields' DeprecationWarning with warnings.catch_warnings, which swaps the process's filters:
    two threads doing it at once could leave 'ignore DeprecationWarning' in front for good. A file's
    legacy fields are now read without touching the filters, and still without a warning."""
    import warnings

    from faast.lm import FaastConfig

    legacy = {**FaastConfig().to_dict(), "output_weight": 0.5}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        real = warnings.catch_warnings

        def refuse(*args, **kwargs):
            raise AssertionError("from_dict swapped the warning filters")

        warnings.catch_warnings = refuse
        try:
            config = FaastConfig.from_dict(legacy)
        finally:
            warnings.catch_warnings = real
        assert warnings.filters == before
    assert not caught and config._legacy_read == {"weight": 0.5}
