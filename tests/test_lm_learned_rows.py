"""A FaastModel's record of the rows it learned (:mod:`faast.lm.learned_rows`): ``forget`` refuses
a row never learned at any size. Beyond d pairs only the per-token counts were checked before, so a
text never learned whose next tokens were all learned was subtracted without a word."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faast.digest_multiset import DigestMultiset
from faast.distributed import Dist
from faast.lm.learned_rows import TENSOR_KEY, row_digests
from faast.lm.readouts import Captured
from tests.lm_tiny import random_batch
from tests.test_lm_forget import assert_same_state, make, state


def _beyond_d(mix: str = "prob", middle: bool = False):
    """A model holding 3 rows of 20 tokens (57 pairs, past the d = 32 rows the memories keep)."""
    fm = make("llama", mix, middle)
    rows = [random_batch([20], seed=s)[0] for s in (1, 2, 3)]
    for row in rows:
        fm.learn(input_ids=row)
    assert all(r.stats.kept_row_count < r.stats.count for r in fm.readouts)
    return fm, rows


def _unlearned_with_learned_tokens(rows: list[torch.Tensor]) -> torch.Tensor:
    """Another row whose next tokens were all learned: the first row with its first token changed."""
    other = rows[0].clone()
    other[0, 0] = 3 if int(other[0, 0]) != 3 else 4
    return other


@pytest.mark.parametrize("mix", ["prob", "logit", "correction"])
@pytest.mark.parametrize("middle", [False, True], ids=["no-middle", "middle"])
def test_a_row_never_learned_is_refused_beyond_d_pairs_and_nothing_changes(mix, middle):
    fm, rows = _beyond_d(mix, middle)
    before = state(fm)
    with pytest.raises(ValueError, match=r"1 of the 1 rows to forget were never learned .*: row 0\."):
        fm.forget(input_ids=_unlearned_with_learned_tokens(rows))
    assert_same_state(state(fm), before)
    assert len(fm.learned_rows) == 3
    fm.forget(input_ids=rows[1])  # a learned row still goes
    assert len(fm.learned_rows) == 2
    with pytest.raises(ValueError, match="never learned"):  # and only once
        fm.forget(input_ids=rows[1])


def test_rows_learned_in_one_batch_are_forgotten_one_by_one():
    fm = make("llama", "prob", False)
    ids, mask = random_batch([20, 14, 17], seed=4)
    fm.learn(input_ids=ids, attention_mask=mask)
    for b, n in enumerate([20, 14, 17]):
        fm.forget(input_ids=ids[b : b + 1, :n])
    assert fm.num_pairs == 0 and len(fm.learned_rows) == 0


def test_the_digest_names_a_rows_tokens_and_learned_pairs_not_its_padding():
    right = random_batch([9, 5], seed=2, side="right")
    left = random_batch([9, 5], seed=2, side="left")

    def captured(ids, mask, valid=None):
        real = mask.bool()
        pairs = real[:, :-1] & real[:, 1:] if valid is None else valid
        return Captured(ids, mask, pairs, int(pairs.sum()))

    a, rows = row_digests(captured(*right))
    assert rows.tolist() == [0, 1]
    assert a.tolist() == row_digests(captured(*left))[0].tolist()
    alone = row_digests(captured(right[0][1:, :5], right[1][1:, :5]))[0]
    assert alone.tolist() == a[1:].tolist()
    fewer = captured(*right).valid.clone()
    fewer[0, 0] = False  # the same tokens, one pair not learned: another row
    assert row_digests(captured(*right, fewer))[0][0] != a[0]
    none = torch.zeros_like(fewer)
    none[1] = fewer[1]
    assert row_digests(captured(*right, none))[1].tolist() == [1]  # a row learning no pair: none


def test_save_and_load_keep_the_record_and_older_files_check_the_pairs_only(tmp_path):
    fm, rows = _beyond_d()
    path = fm.save_fast_weights(tmp_path / "fw.safetensors")
    loaded = make("llama", "prob", False).load_fast_weights(path)
    assert loaded.learned_rows is not None
    assert loaded.learned_rows.digests.tolist() == fm.learned_rows.digests.tolist()
    with pytest.raises(ValueError, match="never learned"):
        loaded.forget(input_ids=_unlearned_with_learned_tokens(rows))
    fm.learned_rows = None  # as fast weights saved before the record
    older = make("llama", "prob", False).load_fast_weights(fm.save_fast_weights(tmp_path / "old.safetensors"))
    assert older.learned_rows is None
    older.forget(input_ids=_unlearned_with_learned_tokens(rows))  # unverifiable past d pairs: subtracted
    older.reset_projection()
    assert older.learned_rows is not None and len(older.learned_rows) == 0  # a fresh start records


def test_a_malformed_record_is_named_on_load(tmp_path):
    from faast.lm.fastweights import read_file, write_task

    fm, _ = _beyond_d()
    path = fm.save_fast_weights(tmp_path / "fw.safetensors")
    tensors, tasks = read_file(path)
    signature = tasks["default"]
    task_tensors = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("default/")}
    task_tensors[TENSOR_KEY] = torch.zeros(2, 2)
    write_task(path, "default", task_tensors, {k: v for k, v in signature.items()})
    with pytest.raises(ValueError, match="malformed record of learned rows"):
        make("llama", "prob", False).load_fast_weights(path)


def test_a_refused_forget_of_several_batches_puts_the_record_back():
    fm, rows = _beyond_d()
    caps = [fm.capture(input_ids=rows[2]), fm.capture(input_ids=_unlearned_with_learned_tokens(rows))]
    before = fm.learned_rows.digests.tolist()
    with pytest.raises(ValueError, match=r"row 0 of batch 1"):
        fm.forget_captured(caps)
    assert fm.learned_rows.digests.tolist() == before


def test_reduce_learning_on_one_process_keeps_the_record_and_restores_it_on_error():
    fm, _ = _beyond_d()
    before = fm.learned_rows.digests.tolist()
    with Dist().reduce_learning(fm):
        fm.learn(input_ids=random_batch([6], seed=9)[0])
    assert len(fm.learned_rows) == 4 and set(before) <= set(fm.learned_rows.digests.tolist())
    kept = fm.learned_rows.digests.tolist()
    with pytest.raises(RuntimeError, match="boom"), Dist().reduce_learning(fm):
        fm.learn(input_ids=random_batch([6], seed=10)[0])
        raise RuntimeError("boom")
    assert fm.learned_rows.digests.tolist() == kept
    assert isinstance(fm.learned_rows, DigestMultiset)


# ----------------------------------------------------------------- the hunt of the new record
def _task_examples(n: int):
    from faast.lm.examples import Example

    gen = np.random.default_rng(0)
    inputs = [" ".join(f"w{k}" for k in gen.integers(3, 80, size=6)) for _ in range(n)]
    return [Example(text, f"w{80 + i % 3}") for i, text in enumerate(inputs)]


def _template():
    from faast.lm.prompts import PromptTemplate

    return PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")


def test_a_tasks_cached_states_learn_what_a_forward_pass_learns_start_tokens_left_out():
    """TaskModel(cache=True) read its kept states without leaving out the pairs keyed on a start
    token (the tokenizer's <s>): the same examples learned 10 pairs again after 8, and the task
    could not forget them (tests of the hunt: pairs='all', bos)."""
    from faast.lm.task import TaskModel, TaskSpec
    from tests.lm_tiny import tiny_model
    from tests.lm_wordlevel import word_tokenizer

    examples = _task_examples(8)
    plain = TaskModel.create(tiny_model("llama"), word_tokenizer(bos=True), TaskSpec(_template(), "all"))
    cached = TaskModel.create(
        tiny_model("llama"), word_tokenizer(bos=True), TaskSpec(_template(), "all"), cache=True
    )
    first = cached.learn(examples, batch_size=4, progress=False)  # a forward pass, states kept
    again = cached.learn(examples, batch_size=4, progress=False)  # from the kept states
    assert first == again == plain.learn(examples, batch_size=4, progress=False)
    cached.forget(examples, batch_size=4, progress=False)
    assert_same_state(state(cached.model), state(plain.model), rtol=1e-12)


@pytest.mark.parametrize(("learn_lead", "forget_lead"), [(True, False), (False, True)])
def test_a_task_learned_with_its_lead_cached_forgets_without_it_and_back(tmp_path, learn_lead, forget_lead):
    """The demonstrations before every example run from a KV cache (lead_cache) or in the row: the
    row digest takes the prefix's tokens, so the two settings record the same rows."""
    from faast.lm.task import TaskModel, TaskSpec
    from tests.lm_tiny import tiny_model
    from tests.lm_wordlevel import word_tokenizer

    spec = TaskSpec(_template(), "all", demonstrations=[("w10 w11", "w80"), ("w12 w13", "w81")])
    examples = _task_examples(12)
    task = TaskModel.create(tiny_model("llama"), word_tokenizer(), spec, lead_cache=learn_lead)
    task.learn(examples, batch_size=4, progress=False)
    assert all(r.stats.kept_row_count < r.stats.count for r in task.model.readouts)  # beyond d
    path = task.save(tmp_path / "t.safetensors")
    other = TaskModel.load(tiny_model("llama"), word_tokenizer(), path, lead_cache=forget_lead)
    other.forget(examples[:3], batch_size=4, progress=False)
    assert other.model.learned_rows is not None and len(other.model.learned_rows) == 9


def test_the_digest_of_a_row_after_a_prefix_cache_is_that_of_the_whole_row():
    full_ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    learned = torch.tensor([[False, False, True, True, True]])  # pairs after the 3 context tokens
    whole = Captured(full_ids, torch.ones_like(full_ids), learned, 3)
    tail_ids = full_ids[:, 2:]  # the prefix cache holds 5, 6; the row starts at the last context token
    after = Captured(tail_ids, torch.ones_like(tail_ids), learned[:, 2:], 3, prefix_ids=(5, 6))
    assert row_digests(whole)[0].tolist() == row_digests(after)[0].tolist()
    elsewhere = Captured(tail_ids, torch.ones_like(tail_ids), learned[:, 2:], 3, prefix_ids=(5, 4))
    assert row_digests(elsewhere)[0][0] != row_digests(after)[0][0]  # another context: another row


def test_a_forget_matching_pairs_but_not_rows_warns_that_the_record_is_dropped():
    """While the rows are kept a forget is checked pair by pair; a learned row forgotten in two
    parts (pair_mask halves) passes that check but is no row learned: the record is dropped, with
    a warning (silently before), and saves then carry none."""
    fm = make("llama", "prob", False)
    row = random_batch([12], seed=3)[0]
    fm.learn(input_ids=row)
    first = torch.zeros(1, 11, dtype=torch.bool)
    first[0, :5] = True
    with pytest.warns(RuntimeWarning, match="record of learned rows no longer says what is held"):
        fm.forget(input_ids=row, pair_mask=first)
    assert fm.learned_rows is None
    fm.forget(input_ids=row, pair_mask=~first)
    assert fm.num_pairs == 0
