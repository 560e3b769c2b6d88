"""Decoding constraints shared by every generating model (FAAST tasks and in-context learning).

Greedy decoding of a small LM falls into loops ("y Obed, y Obed, y Obed, …"), and an output memory
that sharpens the next-token distribution makes them more likely. Hugging Face's
``no_repeat_ngram_size`` would forbid repeats, but it counts the whole input: the n-grams of the
prompt — and, for in-context learning, of every demonstration — would be banned from the answer, a
different constraint for each method. :class:`NoRepeatInAnswer` forbids only an n-gram that the
answer itself already holds, so zero-shot, in-context and FAAST answers are constrained alike.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from faast._checks import integer_at_least


class NoRepeatInAnswer(LogitsProcessor):
    """Forbid the next token that would repeat an n-gram of the generated answer.

    start: the width of the input (prompt) in the ``input_ids`` that generation passes in; the
    tokens from ``start`` on are the answer. n: the n-gram size (≥ 1; 1 forbids repeating any token).
    """

    def __init__(self, n: int, start: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"no-repeat n-gram size must be a positive integer, got {n!r}")
        if start < 0:
            raise ValueError(f"answer start must be ≥ 0, got {start}")
        self.n, self.start = n, start

    def banned(self, answer: list[int]) -> set[int]:
        """The tokens that would complete an n-gram already in ``answer`` (a list of token ids)."""
        n = self.n
        context = answer[len(answer) - n + 1 :] if n > 1 else []  # the last n - 1 tokens
        return {answer[i + n - 1] for i in range(len(answer) - n + 1) if answer[i : i + n - 1] == context}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """(B, T) ids so far and (B, V) next-token scores → scores with banned tokens at -inf."""
        out = scores.clone()
        for row, ids in enumerate(input_ids[:, self.start :].tolist()):
            ban = self.banned(ids)
            if ban:
                out[row, list(ban)] = -float("inf")
        return out


def check_max_new_tokens(max_new_tokens: int, what: str = "max_new_tokens") -> int:
    """``max_new_tokens`` if it is an integer ≥ 1 (``what`` names it in the error), before any
    model runs (transformers would refuse it only when generating, in its own words)."""
    return integer_at_least(max_new_tokens, what, 1, kinds=int)


def decoding_kwargs(no_repeat_ngram: int | None, start: int) -> dict:
    """The ``generate`` keyword arguments of a decoding constraint (none for None or 0)."""
    if not no_repeat_ngram:
        return {}
    return {"logits_processor": LogitsProcessorList([NoRepeatInAnswer(no_repeat_ngram, start)])}
