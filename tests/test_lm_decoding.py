"""The no-repeat constraint counts the answer alone, for FAAST tasks and in-context learning alike."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import ReadConfig
from faast.lm.decoding import NoRepeatInAnswer, decoding_kwargs
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.prompts import PromptCodec, PromptTemplate
from faast.lm.task import ReadCandidate, TaskModel, TaskSpec
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer

TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")


def ngrams(seq: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def has_repeat(seq: list[int], n: int) -> bool:
    grams = ngrams(seq, n)
    return len(grams) != len(set(grams))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4),
    prompt=st.lists(st.integers(0, 5), max_size=8),
    steps=st.integers(1, 20),
    seed=st.integers(0, 10_000),
)
def test_greedy_decoding_under_the_constraint_never_repeats_an_answer_ngram(n, prompt, steps, seed):
    """Greedy steps on random scores over a small vocabulary (so repeats are tempting): every
    answer n-gram is new, and a token is banned only when it would repeat one (brute force)."""
    vocab = 6
    proc = NoRepeatInAnswer(n, start=len(prompt))
    gen = torch.Generator().manual_seed(seed)
    ids = list(prompt)
    for _ in range(steps):
        scores = torch.rand(1, vocab, generator=gen)
        out = proc(torch.tensor([ids]), scores)
        answer = ids[len(prompt) :]
        for tok in range(vocab):
            repeats = len(answer) >= n - 1 and tuple([*answer, tok][-n:]) in set(ngrams(answer, n))
            assert (out[0, tok] == -float("inf")) == repeats
        if torch.isinf(out).all():
            break
        ids.append(int(out.argmax()))
    assert not has_repeat(ids[len(prompt) :], n)


def test_prompt_ngrams_stay_allowed_and_bad_sizes_are_refused():
    proc = NoRepeatInAnswer(2, start=3)
    # the prompt holds the bigram (7, 8); the answer [7] may continue with 8
    out = proc(torch.tensor([[7, 8, 1, 7]]), torch.zeros(1, 10))
    assert not torch.isinf(out).any()
    out = proc(torch.tensor([[7, 8, 1, 7, 8, 7]]), torch.zeros(1, 10))  # answer [7, 8, 7]: 8 is banned
    assert torch.isinf(out[0]).tolist() == [i == 8 for i in range(10)]
    assert decoding_kwargs(0, 5) == {} and decoding_kwargs(None, 5) == {}
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            NoRepeatInAnswer(bad, start=0)


def test_a_task_and_in_context_learning_generate_without_repeats():
    """A memory that learned a looping answer makes greedy decoding loop; with the constraint
    neither the task nor in-context learning repeats a bigram of its answer."""
    torch.manual_seed(0)
    task = TaskModel.create(tiny_model("llama", dtype=torch.float64), word_tokenizer(), TaskSpec(TEMPLATE))
    loop = Example("w5", " ".join(["w40", "w41"] * 6))
    task.learn([loop] * 3, progress=False)
    task.use(ReadCandidate("prob", ReadConfig(weight=1.0, temperature=0.01, gate=None)))
    tok = word_tokenizer()
    plain = task.generate(["w5"], max_new_tokens=10, progress=False)[0]
    assert has_repeat(tok(plain)["input_ids"], 2)  # the learned loop
    free = task.generate(["w5"], max_new_tokens=10, progress=False, no_repeat_ngram=2)[0]
    assert free and not has_repeat(tok(free)["input_ids"], 2)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    icl = InContextModel(
        tiny_model("llama", dtype=torch.float64), codec, [("w5", "w40 w41 w40 w41")], reserve=16
    )
    for text in icl.generate(["w5", "w6"], max_new_tokens=12, no_repeat_ngram=2):
        assert not has_repeat(tok(text)["input_ids"], 2)
