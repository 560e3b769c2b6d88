"""Prompts for supervised tasks: a template with ``{input}``, the answer that follows it, demonstrations.

A labelled example becomes the token sequence ``prompt ids + answer ids``, where

* prompt = the tokenizer's start tokens (e.g. Gemma's ``<bos>``) + ``template`` with ``{input}``
  replaced by the example's input;
* answer = ``answer_prefix + output + answer_end`` (default ``" " + output + "\\n"``): the model
  learns to end its answer with ``answer_end``, and generation stops there.

Both parts are encoded separately and concatenated, the same way when learning, scoring and
generating, so an answer's tokens never depend on what precedes them. The user's text (an input, an
output, a label) is read as the text it is: a ``"<|im_end|>"`` or ``"<eos>"`` in it is not the
control token (a model taught such an answer learned to stop there), while the template's own
strings (chat markup written in ``--template``) stay control tokens
(:func:`faast.lm.special_tokens.ids_around_text`); text holding no such string encodes as before.
The answer, the end marker and the separator continue a line, so they are encoded as text that
follows other text (:meth:`PromptCodec.continuation_ids`): a tokenizer whose normaliser prepends
SentencePiece's dummy prefix to every text (the legacy ``tokenizer.json`` of Llama-2-era
checkpoints: ``Prepend("▁")`` then spaces to ``"▁"``; transformers 5's own ``LlamaTokenizer`` no
longer does it) writes ``" positive"`` alone as ``"▁" + "▁positive"`` but after other text as the
``"▁positive"`` the model read in training; byte-level BPE tokenizers (SmolLM2, Qwen) and Gemma's
encode both alike, so nothing changes for them. A prompt or demonstration that follows another
demonstration continues the text too (after the separator), so it is encoded the same way; the first
one after the start tokens is encoded alone, as a document's first line. An in-context
prompt is
the start tokens, then whole demonstrations (prompt + answer + ``separator``), then the query's
prompt; demonstrations are dropped from the end when the context window is short, the query never
is (:meth:`PromptCodec.icl_prompt`).

A codec can also carry **lead demonstrations** (``PromptCodec(..., demonstrations=...)``): whole
demonstrations written after the start tokens of *every* prompt (:attr:`PromptCodec.lead_ids`), so a
task learns and is read on states conditioned on a few in-context examples — in-context learning
and the fast weights together. They are never truncated: a prompt they leave no room for is an error.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import InitVar, dataclass
from itertools import pairwise
from typing import Any

import torch

from faast._checks import caller_stacklevel
from faast.lm.special_tokens import ids_around_text, special_strings

DEFAULT_TEMPLATE = "Input: {input}\nOutput:"
#: What a piece of text that continues other text is encoded after, then cut off
#: (:meth:`PromptCodec.continuation_ids`).
CONTINUATION_CONTEXT = "\n"


def adds_text_prefix(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` writes something in front of every text it encodes, so that a text
    encodes differently alone and after other text: SentencePiece's dummy prefix (a legacy Llama-2
    ``tokenizer.json`` encodes ``"a"`` as ``"▁a"`` alone but as ``"a"`` after a newline). False for
    byte-level BPE (SmolLM2, Qwen) and for Gemma's tokenizer."""

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False).input_ids)

    context, alone = ids(CONTINUATION_CONTEXT), ids("a")
    after = ids(CONTINUATION_CONTEXT + "a")
    return after[: len(context)] == context and after[len(context) :] != alone


def start_token_ids(tokenizer: Any) -> list[int]:
    """The tokens the tokenizer puts before a text by default (e.g. Gemma's ``<bos>``; none for
    SmolLM2): models trained with them need them in front of every sequence they read."""
    with_special = tokenizer("x", add_special_tokens=True).input_ids
    plain = tokenizer("x", add_special_tokens=False).input_ids
    cut = _find_sub(with_special, plain)
    return list(with_special[:cut]) if cut >= 0 else []


@dataclass(frozen=True)
class PromptTemplate:
    """How an example is written as text (see the module docstring).

    ``strict`` (not stored) refuses a template holding ``{label}``, ``{output}``, ``{answer}`` or
    ``{target}``, which nothing fills in, and moves spaces that end the template into the answer
    prefix (``"Sentiment: "`` then ``" positive"`` read ``"Sentiment:  positive"``, two spaces
    and a lone space token, which cost SmolLM2 much of its zero-shot sentiment accuracy): with an
    answer prefix that starts with a space they are dropped (with a warning: the text changes), else
    they begin the prefix (the text is the same, the space now goes with the answer's first word,
    as tokenizers write it). :meth:`from_dict` turns it off, so a task saved before these checks
    loads with the prompt it was learned with.
    """

    template: str = DEFAULT_TEMPLATE
    answer_prefix: str = " "
    answer_end: str = "\n"
    separator: str = "\n"
    strict: InitVar[bool] = True

    def __post_init__(self, strict: bool) -> None:
        for name in ("template", "answer_prefix", "answer_end", "separator"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a string, got {type(getattr(self, name)).__name__}")
        if self.template.count("{input}") != 1:
            raise ValueError(
                f"the prompt template must contain {{input}} exactly once, got {self.template!r}"
            )
        if strict:
            self._move_trailing_space()
        stray = re.search(r"\{(output|label|answer|target)\}", self.template)
        if stray and strict:  # left in the prompt as literal text: the model would read "{label}" every time
            raise ValueError(
                f"the prompt template holds {stray.group()}, which nothing fills in: only {{input}} is "
                "replaced, and the output follows the prompt (after the answer prefix "
                f"{self.answer_prefix!r}); end the template where the answer starts, e.g. "
                "'Review: {input}\\nSentiment:'"
            )

    def _move_trailing_space(self) -> None:
        """Spaces and tabs that end the template go to the answer prefix (see the class docstring)."""
        kept = self.template.rstrip(" \t")
        tail = self.template[len(kept) :]
        if not tail:
            return
        if self.answer_prefix[:1] in (" ", "\t"):
            shown = kept.rsplit("\n", 1)[-1][-24:] + self.answer_prefix + "<answer>"
            warnings.warn(
                f"the prompt template ends with {tail!r} and the answer prefix {self.answer_prefix!r} "
                f"starts with a space: the template's {tail!r} is dropped, so that answers read "
                f"{shown!r}, not with the spaces doubled",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
            prefix = self.answer_prefix
        else:
            prefix = tail + self.answer_prefix
        object.__setattr__(self, "template", kept)
        object.__setattr__(self, "answer_prefix", prefix)

    def prompt(self, text: str) -> str:
        return self.template.replace("{input}", text)

    def around_input(self) -> tuple[str, str]:
        """(before, after): the template's text before and after ``{input}``."""
        before, after = self.template.split("{input}")
        return before, after

    def answer(self, output: str) -> str:
        return f"{self.answer_prefix}{output}{self.answer_end}"

    def to_dict(self) -> dict[str, str]:
        return {
            "template": self.template,
            "answer_prefix": self.answer_prefix,
            "answer_end": self.answer_end,
            "separator": self.separator,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptTemplate:
        unknown = set(data) - {"template", "answer_prefix", "answer_end", "separator"}
        if unknown:
            raise ValueError(f"unknown prompt template fields {sorted(unknown)}")
        return cls(**data, strict=False)


@dataclass(frozen=True)
class Encoded:
    """An example as token ids: ``prompt`` (with the start tokens) then ``answer``."""

    prompt: list[int]
    answer: list[int]

    @property
    def ids(self) -> list[int]:
        return self.prompt + self.answer


class PromptCodec:
    """A template bound to a tokenizer: text ↔ token ids for prompts, answers and demonstrations.

    context: the most tokens the model reads at once; the smaller of it and the tokenizer's
    ``model_max_length`` is used (2048 when neither is a real bound).
    demonstrations: (input, output) pairs written, whole and in order, after the start tokens of
    every prompt (:attr:`lead_ids`; none by default).
    """

    def __init__(
        self,
        tokenizer: Any,
        template: PromptTemplate | None = None,
        context: int | None = None,
        *,
        demonstrations: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template or PromptTemplate()
        self.start_ids: list[int] = start_token_ids(tokenizer)
        limit = getattr(tokenizer, "model_max_length", None)
        bounds = [int(x) for x in (context, limit) if isinstance(x, int) and 0 < x < 1_000_000]
        self.context = min(bounds) if bounds else 2048
        #: Whether text that continues other text is encoded after it (:meth:`continuation_ids`).
        self.adds_prefix = adds_text_prefix(tokenizer)
        #: The tokenizer's special-token strings, read as text in the user's text (:meth:`filled_ids`).
        self._specials = special_strings(tokenizer)
        self._context_ids = self.text_ids(CONTINUATION_CONTEXT)
        self._end = self.continuation_ids(self.template.answer_end)
        self._holding_end: list[int] | None = None  # tokens_holding_end, found on first use
        self._separator = self.continuation_ids(self.template.separator)
        self._warned: set[str] = set()  # the kinds of warning given already (once per codec)
        #: How many lead demonstrations every prompt begins with.
        self.num_lead = len(demonstrations)
        #: The start tokens, then the lead demonstrations: what every prompt begins with.
        self.lead_ids: list[int] = list(self.start_ids)
        for i, (demo_input, demo_output) in enumerate(demonstrations):
            self.lead_ids += self.demonstration_ids(demo_input, demo_output, after_demonstration=i > 0)
        if len(self.lead_ids) >= self.context:
            raise ValueError(
                f"the {len(demonstrations)} lead demonstrations take {len(self.lead_ids)} tokens, which "
                f"leaves no room in the context of {self.context}; pass fewer or shorter ones"
            )

    def text_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False).input_ids) if text else []

    def continuation_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as it is encoded after other text: :meth:`text_ids`, except for a
        tokenizer that writes a prefix in front of every text (:func:`adds_text_prefix`), where
        ``text`` is encoded after :data:`CONTINUATION_CONTEXT`, whose tokens are then cut off (when
        they come out whole; else the text is encoded alone). ``text`` is the template's own (an end
        marker, a separator): :meth:`filled_ids` with no user's text in it."""
        return self.filled_ids(text, "", "", continuation=True)

    def filled_ids(self, before: str, text: str, after: str, *, continuation: bool) -> list[int]:
        """Token ids of ``before + text + after``, a user's ``text`` written between the template's
        pieces: the special-token strings of ``text`` read as text, the template's as control tokens
        (:func:`~faast.lm.special_tokens.ids_around_text`). ``continuation``: encoded as text that
        follows other text (:meth:`continuation_ids`), else alone (:meth:`text_ids`); text holding
        no special-token string gets exactly their ids."""

        def ids(head: str) -> list[int]:
            return ids_around_text(self.tokenizer, head, text, after, self._specials)

        if not (continuation and self.adds_prefix) or not before + text + after:
            return ids(before)
        context = self._context_ids
        joined = ids(CONTINUATION_CONTEXT + before)
        return joined[len(context) :] if joined[: len(context)] == context else ids(before)

    def prompt_ids(self, text: str, *, start: bool = True, after_demonstration: bool = False) -> list[int]:
        """The prompt of input ``text``, after the start tokens and lead demonstrations
        (:attr:`lead_ids`) when ``start``. A prompt that follows a demonstration (a lead one, or
        ``after_demonstration``) continues its text and is encoded as such (:meth:`continuation_ids`);
        otherwise it is encoded alone, as the first text after the start tokens."""
        follows = after_demonstration or (start and self.num_lead > 0)
        before, after = self.template.around_input()
        body = self.filled_ids(before, text, after, continuation=follows)
        ids = (self.lead_ids if start else []) + body
        if start and not ids:  # position −1 would wrap to the end of whatever follows
            raise ValueError(
                f"input {text!r} makes an empty prompt (the template writes nothing around it and the "
                "model has no start token): there is no state to predict its answer from; give text, "
                "or a template with words around {input}"
            )
        return ids

    def demonstration_ids(self, text: str, output: str, *, after_demonstration: bool = False) -> list[int]:
        """One demonstration: the prompt of ``text`` (no start tokens; continuing the text of the
        one before when ``after_demonstration``), the answer ``output``, the separator."""
        prompt = self.prompt_ids(text, start=False, after_demonstration=after_demonstration)
        return prompt + self.answer_ids(output) + self._separator

    def answer_ids(self, output: str) -> list[int]:
        """The answer ``output`` with its prefix and end marker, as it follows the prompt
        (:meth:`continuation_ids`; spaces that begin it after a prefix ending in one are dropped:
        :meth:`_after_prefix`)."""
        prefix, end = self.template.answer_prefix, self.template.answer_end
        return self.filled_ids(prefix, self._after_prefix(output), end, continuation=True)

    def encode(self, text: str, output: str) -> Encoded:
        return Encoded(self.prompt_ids(text), self.answer_ids(output))

    def label_ids(self, label: str) -> list[int]:
        """The tokens of a label: the answer without its end marker (spaces that begin it after a
        prefix ending in one dropped: :meth:`_after_prefix`)."""
        return self.filled_ids(self.template.answer_prefix, self._after_prefix(label), "", continuation=True)

    def _after_prefix(self, answer: str) -> str:
        """``answer`` as it follows the answer prefix: without the spaces and tabs that begin it
        when the prefix already ends in one (labels " positive" / " negative", as a TSV written
        ``text<TAB> positive`` gives them, read "Sentiment:  positive", two spaces, which cost
        SmolLM2 as much zero-shot accuracy as a template ending in a space), with a warning once
        per codec; spaces and tabs that end it are dropped too (they would stand between the
        answer and its end marker), with a warning once per codec; outputs and labels keep their
        spelling as names."""
        if answer[-1:] in (" ", "\t") and answer.strip(" \t"):
            # spaces that end an answer would be read before the end marker (" positive " then
            # "\n" is " positive", " \n" for SmolLM2): scores and learning would differ from the
            # label's own tokens, so they are dropped too
            self._warn_once(
                "trailing space",
                f"an answer ends with a space: {answer[-20:]!r} is read without it (labels and outputs "
                "keep their spelling)",
            )
            answer = answer.rstrip(" \t")
        prefix = self.template.answer_prefix
        if prefix[-1:] not in (" ", "\t") or answer[:1] not in (" ", "\t"):
            return answer
        self._warn_once(
            "doubled space",
            f"an answer begins with a space after the answer prefix {prefix!r}: it is dropped, so "
            f"{answer[:20]!r} follows the prompt after one space, not two (labels and outputs keep "
            "their spelling)",
        )
        return answer.lstrip(" \t")

    def _warn_once(self, kind: str, message: str) -> None:
        """A UserWarning pointing at the caller's line, the first time this codec meets ``kind``."""
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(message, UserWarning, stacklevel=caller_stacklevel())

    def scored_label_ids(self, labels: Sequence[str]) -> list[list[int]]:
        """The tokens scored for each of ``labels`` (L lists of ids): :meth:`label_ids`, or, when
        one label's tokens begin another's, or a label's tokens are not how its answer begins (a
        tokenizer that merges its last token with the end marker: Qwen's ``:)`` then ``\\n`` is
        the one token ``:)\\n``, so what the examples taught would never be scored), every label's
        whole answer with its end marker (:meth:`answer_ids`, as the examples were learned).

        Without the end marker the score of a longer label is the shorter one's times the
        probability of the tokens after it, so it could never win: with labels ``1`` … ``10``
        (`` 10`` is `` 1`` then ``0`` for many tokenizers) ``10`` would never be predicted. Labels
        that encode to no tokens or to the same tokens are refused, and so is a label set whose
        labels still begin one another with the end marker (a template with no end marker).
        """
        ids = [self.label_ids(label) for label in labels]
        empty = [label for label, x in zip(labels, ids, strict=True) if not x]
        if empty:
            raise ValueError(f"a label encodes to no tokens: {empty[0]!r}")
        answers = [self.answer_ids(label) for label in labels]
        begins_answer = all(a[: len(x)] == x for x, a in zip(ids, answers, strict=True))
        if begins_answer and _first_prefix_pair(ids) is None:
            return ids
        ids = answers
        pair = _first_prefix_pair(ids)
        if pair is not None:
            short, long = labels[pair[0]], labels[pair[1]]
            same = ids[pair[0]] == ids[pair[1]]
            raise ValueError(
                f"labels {short!r} and {long!r} encode to the same tokens"
                if same
                else f"label {short!r}'s tokens begin those of {long!r} even with the answer's end "
                f"marker {self.template.answer_end!r} after them, so their scores cannot be compared: "
                "give the template an end marker (--answer-end) or rename a label"
            )
        return ids

    def decode_answer(self, ids: Sequence[int]) -> str:
        """Generated ids → the answer text: cut at the end marker, the prefix stripped."""
        text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        end = self.template.answer_end
        if end and end in text:
            text = text[: text.index(end)]
        prefix = self.template.answer_prefix
        return text[len(prefix) :] if prefix and text.startswith(prefix) else text.strip()

    def stop_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Hugging Face ``generate`` that stop at the template's answer end:
        when it is one token, that token, every token whose text holds it (:meth:`tokens_holding_end`)
        and EOS; the end string when it is several; ``{}`` when the template has no end marker or
        the tokenizer drops it (generation then stops at EOS only)."""
        end_ids = self._end
        if not end_ids:
            return {}
        if len(end_ids) == 1:
            eos = self.tokenizer.eos_token_id
            return {"eos_token_id": self.tokens_holding_end() + ([eos] if eos is not None else [])}
        return {"stop_strings": [self.template.answer_end], "tokenizer": self.tokenizer}

    def tokens_holding_end(self) -> list[int]:
        """The one-token end marker's id, then the ids of every other token whose text holds it
        (for a newline: ``\\n\\n``, SmolLM2's newline and indent, Qwen's ``.\\n``): an answer ends
        at any of them (:meth:`decode_answer` cuts there), so generation stops there too instead of
        running on to ``max_new_tokens``. Found once per codec by decoding the vocabulary."""
        if self._holding_end is None:
            end = self.template.answer_end
            texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            own = self._end[0]
            self._holding_end = [own, *(i for i, text in enumerate(texts) if end in text and i != own)]
        return self._holding_end

    def demonstrations(self, demonstrations: Sequence[tuple[str, str]], budget: int) -> tuple[list[int], int]:
        """(ids, used): the start tokens and lead demonstrations (:attr:`lead_ids`), then as many
        whole demonstrations (prompt + answer + separator, in order) as fit in ``budget`` tokens."""
        ids, used = list(self.lead_ids), 0
        budget -= len(ids)
        for demo_input, demo_output in demonstrations:
            demo = self.demonstration_ids(
                demo_input, demo_output, after_demonstration=self.follows_demonstration(used)
            )
            if len(demo) > budget:
                break
            ids += demo
            budget -= len(demo)
            used += 1
        return ids, used

    def icl_prompt(
        self, demonstrations: Sequence[tuple[str, str]], text: str, *, reserve: int = 0
    ) -> tuple[list[int], int]:
        """(ids, demonstrations used): the start tokens and lead demonstrations, as many whole
        demonstrations as fit in ``context − reserve`` tokens (in order), then the query's prompt,
        never truncated."""
        alone, after = (self.prompt_ids(text, start=False, after_demonstration=a) for a in (False, True))
        query = max(len(alone), len(after))
        budget = self.context - reserve - query
        if budget < len(self.lead_ids):
            raise ValueError(
                f"the prompt of this input is {query + len(self.lead_ids)} tokens, more than the "
                f"{self.context - reserve} the context window leaves (context {self.context}, {reserve} kept "
                "for the answer); shorten the input or the template"
            )
        prefix, used = self.demonstrations(demonstrations, budget)
        return prefix + (after if self.follows_demonstration(used) else alone), used

    def follows_demonstration(self, used: int) -> bool:
        """Whether what comes after the start tokens, the lead demonstrations and ``used`` more
        demonstrations follows a demonstration (continues text) rather than the start tokens."""
        return self.num_lead + used > 0

    def check_fits(self, ids: Sequence[int], what: str) -> None:
        if len(ids) > self.context:
            raise ValueError(f"{what} is {len(ids)} tokens, more than the model's context of {self.context}")


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, *, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (B, T) long, of ``sequences`` padded on ``side``."""
    if not sequences:
        raise ValueError("no sequences to batch")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        n = len(seq)
        if side == "right":
            ids[i, :n], mask[i, :n] = torch.as_tensor(list(seq)), 1
        else:
            ids[i, width - n :], mask[i, width - n :] = torch.as_tensor(list(seq)), 1
    return ids, mask


def answer_pair_mask(prompt_lengths: Sequence[int], lengths: Sequence[int], width: int) -> torch.Tensor:
    """(B, width−1) bool: pair t → t+1 of a right-padded row is True iff token t+1 belongs to the
    answer (positions prompt_length … length−1)."""
    mask = torch.zeros(len(lengths), width - 1, dtype=torch.bool)
    for i, (p, n) in enumerate(zip(prompt_lengths, lengths, strict=True)):
        if not 0 < p < n:
            raise ValueError(f"example {i}: empty prompt or empty answer ({p} prompt tokens of {n})")
        mask[i, p - 1 : n - 1] = True
    return mask


def _find_sub(seq: Sequence[int], sub: Sequence[int]) -> int:
    """Index of the last occurrence of ``sub`` in ``seq`` (−1 if absent)."""
    for i in range(len(seq) - len(sub), -1, -1):
        if list(seq[i : i + len(sub)]) == list(sub):
            return i
    return -1


def _first_prefix_pair(ids: Sequence[Sequence[int]]) -> tuple[int, int] | None:
    """Indices (i, j) of the first two token sequences where ``ids[i]`` begins ``ids[j]`` (equal
    sequences included), or None when no sequence begins another."""
    order = sorted(range(len(ids)), key=lambda i: list(ids[i]))
    for a, b in pairwise(order):
        x, y = list(ids[a]), list(ids[b])
        if y[: len(x)] == x:
            return a, b
    return None
