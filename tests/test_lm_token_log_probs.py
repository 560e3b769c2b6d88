"""Label scores and answer NLLs at the scored tokens only: the "prob" mix read at chosen tokens
(``FaastModel.output_token_log_probs``, from the base model's log-probabilities there) equals the
same mix computed over the whole vocabulary and then gathered, for every read configuration the
candidates use (weight, temperature, gate, support, cut), single- and multi-token label sets and
free-text answers, in float64 and float32; read-outs that need the whole head say so (None)."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import ReadConfig
from faast.lm.calibration import CONTENT_FREE_INPUTS
from faast.lm.examples import Example
from faast.lm.output_readouts import HEAD_ROWS, head_row_chunks
from faast.lm.prompts import PromptTemplate
from faast.lm.task import ReadCandidate, TaskModel
from faast.lm.task_scoring import ScoredBatch
from faast.lm.task_spec import TaskSpec
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer

TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")
LABEL_SETS = (["w40", "w41"], ["w40", "w41", "w42"], ["w40 w43", "w41", "w42 w44 w45"])
INPUTS = ["w3", "w4 w5", "w6 w7 w8", "w9", "w10 w3", "w11"]


@functools.cache
def learned(dtype: torch.dtype, mix: str) -> TaskModel:
    torch.manual_seed(0)
    task = TaskModel.create(tiny_model("llama", dtype=dtype), word_tokenizer(), TaskSpec(TEMPLATE), mix=mix)
    examples = [Example(f"w{a}", "w40" if a % 2 else "w41 w43") for a in range(3, 15)]
    task.learn(examples * 2, progress=False)
    return task


def both_paths(task: TaskModel, labels: list[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(through the whole head, at the tokens only) label scores of INPUTS, or with no labels the
    NLL of each INPUTS' answer (free text, every answer token scored)."""
    whole, tokens = [], []
    if labels is None:
        answers = [Example(x, f"w{40 + i % 5} w4{i % 3}") for i, x in enumerate(INPUTS)]
        for batch in task._answer_batches(answers, batch_size=4):
            states = task._states(batch)
            base = task._base_log_probs(batch, states)
            whole.append(task._answer_nll_per_sequence(batch, states)[0])
            tokens.append(task._answer_nll_per_sequence(batch, states, base)[0])
        return torch.cat(whole), torch.cat(tokens)
    for batch in task._label_batches(INPUTS, labels, batch_size=4):
        states = task._states(batch)
        base = task._base_log_probs(batch, states)
        whole.append(task._label_log_probs(batch, states))
        tokens.append(task._label_log_probs(batch, states, base))
    return torch.cat(whole), torch.cat(tokens)


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from([torch.float64, torch.float32]),
    labels=st.sampled_from([*LABEL_SETS, None]),
    weight=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    temperature=st.sampled_from([0.02, 0.3, 1.0]),
    gate=st.sampled_from([None, 0.0, 0.6]),
    support=st.sampled_from(["learned", "vocab"]),
    cut=st.sampled_from([None, "gcv", "alpha=0.5"]),
)
def test_prob_mix_at_the_label_tokens_equals_the_whole_vocabulary(
    dtype, labels, weight, temperature, gate, support, cut
):
    task = learned(dtype, "prob")
    read = ReadConfig(cut=cut, weight=weight, temperature=temperature, gate=gate, support=support)
    task.use(ReadCandidate("prob", read))
    whole, tokens = both_paths(task, labels)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(tokens, whole, rtol=tol, atol=tol)  # -inf alike (λ = 1, unlearned)


def test_read_outs_that_need_the_whole_head_take_it():
    """The logit mix has no token-level path (None): its scores come through the whole head,
    the same with or without the base log-probabilities."""
    task = learned(torch.float64, "prob")
    task.use(ReadCandidate("logit", ReadConfig(weight=3.0)))
    batch = task._label_batches(INPUTS, LABEL_SETS[0])[0]
    states = task._states(batch)
    base = task._base_log_probs(batch, states)
    assert task.model.output_token_log_probs(states, task._target_tokens(batch), base) is None
    torch.testing.assert_close(
        task._label_log_probs(batch, states, base), task._label_log_probs(batch, states)
    )
    task.use(ReadCandidate("prob", ReadConfig(weight=0.5)))
    assert task.model.output_token_log_probs(states, task._target_tokens(batch), base) is not None
    with task.model.disabled():  # the memory not read: the base log-probabilities themselves
        assert task.model.output_token_log_probs(states, task._target_tokens(batch), base) is base


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_a_fit_scores_its_candidates_as_label_scores_do(labels):
    """After a fit, the chosen read-out's validation scores come from the token path; the label
    scores of a new input (the whole head) agree with it."""
    task = learned(torch.float64, "prob")
    task.use(ReadCandidate("prob", ReadConfig(weight=0.8, temperature=0.05, gate=None)))
    whole = task.label_scores(INPUTS, labels)
    _, tokens = both_paths(task, labels)
    torch.testing.assert_close(tokens, whole.double(), rtol=1e-10, atol=1e-10)


def test_switching_the_output_mix_keeps_the_head_scale():
    """ρ² (a pass over the whole LM head) is computed once, not again each time the fit switches
    between the "prob" and "logit" candidates; it is still recomputed when the head changes."""
    task = learned(torch.float32, "prob")
    head = task.model.base_model.get_output_embeddings()
    task.use(ReadCandidate("prob", ReadConfig(weight=0.5)))
    rho2 = task.model.output_memory.head_scale(head)
    task.use(ReadCandidate("logit", ReadConfig(weight=3.0)))
    assert task.model.output_memory._scale is not None
    assert task.model.output_memory.head_scale(head) == rho2
    with torch.no_grad():
        head.weight.mul_(2.0)  # a new version of the head: ρ² four times larger
    try:
        assert task.model.output_memory.head_scale(head) == pytest.approx(4 * rho2, rel=1e-5)
    finally:
        with torch.no_grad():
            head.weight.div_(2.0)


def fresh_task() -> TaskModel:
    torch.manual_seed(0)
    return TaskModel.create(tiny_model("llama"), word_tokenizer(), TaskSpec(TEMPLATE))


@pytest.mark.parametrize("outputs", [("w40", "w41"), ("w40 w43", "w41 w42 w44")])
def test_a_fit_scores_held_out_examples_on_the_states_it_learned(monkeypatch, outputs):
    """Validation reads the head inputs learning captured (the prompt's for single-token labels,
    the whole example's for free text): the only sequences run again are the first fold's (no fold
    before it learned them) and the content-free inputs of the calibrated candidates, once; the
    choice and every score are those of a fit that runs its own forward passes (float64: to
    rounding)."""
    examples = [Example(f"w{a}", outputs[a % 2]) for a in range(3, 19)]
    labels = "auto" if outputs == ("w40", "w41") else None
    task, rows = fresh_task(), []
    run = task.model.head_inputs
    monkeypatch.setattr(
        task.model, "head_inputs", lambda ids, *a, **k: rows.append(len(ids)) or run(ids, *a, **k)
    )
    report = task.fit(examples, labels=labels, progress=False)
    first_fold = -(-len(examples) // 5)  # every example held out, in 5 folds
    assert sum(rows) == first_fold + (len(CONTENT_FREE_INPUTS) if labels else 0)
    monkeypatch.setattr(TaskModel, "_share_head_inputs", lambda *a: None)
    own = fresh_task().fit(examples, labels=labels, progress=False)
    assert report.chosen == own.chosen and report.criterion.keys() == own.criterion.keys()
    for name, value in own.criterion.items():
        assert report.criterion[name] == pytest.approx(value, rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------- the "logit" mix, many β at once
def random_batch(rows: int, width: int, vocab: int, seed: int) -> ScoredBatch:
    """A batch of ``rows`` scored positions, each scoring ``width`` random tokens (the states are
    the caller's: only the targets matter to the read-out)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (rows, width), generator=gen).tolist()
    return ScoredBatch([[0]] * rows, [[(0, toks)] for toks in tokens], rows, width, True)


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from([torch.float64, torch.float32]),
    rows=st.integers(1, 600),  # more than 256 rows: the head is read a few rows at a time
    width=st.integers(1, 5),
    weights=st.lists(st.sampled_from([0.0, 0.3, 1.0, 3.0, 30.0]), min_size=1, max_size=4),
    cut=st.sampled_from([None, "gcv", "alpha=0.5"]),
    seed=st.integers(0, 2**16),
)
def test_the_logit_mix_for_many_weights_equals_a_head_pass_per_weight(dtype, rows, width, weights, cut, seed):
    """The "logit" read-out's log-probabilities for several β from one head pass and one memory
    pass (head(z) + β·memory) equal those of the whole head read with each β, on random head
    inputs of many shapes."""
    task = learned(dtype, "prob")
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(rows, task.model.base_model.config.hidden_size, generator=gen, dtype=dtype)
    batch = random_batch(rows, width, task.tokenizer.vocab_size, seed)
    task.use(ReadCandidate("logit", ReadConfig(cut=cut, weight=1.0)))
    many = task._picked_for_weights(batch, states, weights)
    assert many is not None and len(many) == len(weights)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for weight, got in zip(weights, many, strict=True):
        task.use(ReadCandidate("logit", ReadConfig(cut=cut, weight=weight)))
        torch.testing.assert_close(got, task._picked_log_probs(batch, states), rtol=tol, atol=tol)


def test_only_a_read_logit_memory_has_logit_parts():
    task = learned(torch.float64, "prob")
    states = torch.randn(3, task.model.base_model.config.hidden_size, dtype=torch.float64)
    task.use(ReadCandidate("prob", ReadConfig(weight=0.5)))
    assert task.model.output_logit_parts(states) is None
    task.use(ReadCandidate("logit", ReadConfig(weight=3.0)))
    base, memory = task.model.output_logit_parts(states)
    assert base.shape == memory.shape == (3, task.tokenizer.vocab_size)
    with task.model.disabled():
        assert task.model.output_logit_parts(states) is None


@pytest.mark.parametrize("outputs", [("w40", "w41"), ("w40 w43", "w41 w42 w44")])
def test_a_fit_scores_its_logit_candidates_as_one_head_pass_each_does(monkeypatch, outputs):
    """Cross-validation scores the "logit" candidates of one cut from one head pass for all their β;
    every criterion equals that of a fit scoring each candidate through the whole head (float64:
    to rounding), for labels and for free-text answers."""
    examples = [Example(f"w{a}", outputs[a % 2]) for a in range(3, 19)]
    labels = "auto" if outputs == ("w40", "w41") else None
    calls = []
    shared = TaskModel._picked_for_weights
    monkeypatch.setattr(TaskModel, "_picked_for_weights", lambda *a: calls.append(1) or shared(*a))
    report = fresh_task().fit(examples, labels=labels, progress=False)
    assert calls  # the shared path was taken
    monkeypatch.setattr(TaskModel, "_logit_mix_picks", lambda *a: {})
    own = fresh_task().fit(examples, labels=labels, progress=False)
    assert report.chosen == own.chosen and report.criterion.keys() == own.criterion.keys()
    assert any(name.startswith("logit") for name in own.criterion)
    for name, value in own.criterion.items():
        assert report.criterion[name] == pytest.approx(value, rel=1e-9, abs=1e-12)


@given(rows=st.integers(0, 3 * HEAD_ROWS + 5))
def test_head_row_chunks_cover_the_rows_once_in_order(rows: int) -> None:
    chunks = list(head_row_chunks(rows))
    covered = [i for c in chunks for i in range(rows)[c]]
    assert covered == list(range(rows))
    assert all(0 < c.stop - c.start <= HEAD_ROWS for c in chunks)
