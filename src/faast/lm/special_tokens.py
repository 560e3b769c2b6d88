"""Special-token strings in a user's text: read as the text they are, while a template's stay controls.

A Hugging Face tokenizer reads the strings of its special tokens (``"<|im_end|>"``, ``"<eos>"``,
``"<start_of_turn>"``) wherever they occur in what it encodes as the control tokens themselves. In
a user's text (an example's input, output or label, a prompt to continue) that is wrong: a quoted
``"<eos>"`` becomes the end token, and a model taught an answer holding it learns to stop there.
In a template the user wrote (``--template`` with chat markup), it is what they meant. The
functions here encode text written around a user's text so that only the template's strings are
control tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: How a user's text is tokenized: no start or end tokens added, and the strings of special tokens
#: in it ("<|endoftext|>", "<eos>", "<start_of_turn>") read as the text they are, not as control
#: tokens (Gemma-3 then generated its end token when recalling a text that mentions "<eos>", and
#: Qwen dropped a learned "<|endoftext|>" from its recall).
TEXT_AS_TEXT = {"add_special_tokens": False, "split_special_tokens": True}


class SpecialStrings(tuple):
    """The strings of a tokenizer's special added tokens (those ``split_special_tokens`` reads as
    text), longest first, indexed by first character and length so that :meth:`touches` costs a
    few set lookups per candidate position (Gemma-3 has 6,249 special strings, all beginning with
    ``<``: text holding ``<`` at every tag was slow when each string was tried there)."""

    def __new__(cls, strings: Iterable[str]) -> SpecialStrings:
        return super().__new__(cls, sorted(set(strings), key=lambda s: (-len(s), s)))

    def __init__(self, strings: Iterable[str]) -> None:
        del strings
        #: first character → (the lengths of its strings, longest first; the set of its strings)
        self._by_first: dict[str, tuple[list[int], set[str]]] = {}
        for s in self:
            lengths, members = self._by_first.setdefault(s[0], ([], set()))
            if len(s) not in lengths:
                lengths.append(len(s))
            members.add(s)
        self._longest = len(self[0]) if self else 0
        self._firsts = re.compile("[" + "".join(re.escape(c) for c in self._by_first) + "]") if self else None

    def touches(self, text: str, start: int, end: int) -> bool:
        """Whether one of the strings occurs in ``text`` overlapping the span ``text[start:end]``
        (inside it, or across one of its ends)."""
        if self._firsts is None:
            return False
        for found in self._firsts.finditer(text, max(0, start - self._longest + 1), end):
            at = found.start()
            lengths, members = self._by_first[text[at]]
            if any(start < at + n <= len(text) and text[at : at + n] in members for n in lengths):
                return True
        return False


def special_strings(tokenizer: Any) -> SpecialStrings:
    """The :class:`SpecialStrings` of ``tokenizer`` (none for a tokenizer that lists none)."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return SpecialStrings(t.content for t in decoder.values() if getattr(t, "special", False) and t.content)


def ids_around_text(
    tokenizer: Any, before: str, content: str, after: str, specials: SpecialStrings | None = None
) -> list[int]:
    """The ids of ``before + content + after`` (no start or end tokens added), the special-token
    strings of ``before`` and ``after`` read as control tokens and those of ``content`` (a user's
    text) read as text (:data:`TEXT_AS_TEXT`).

    Where no special-token string overlaps ``content`` this is the one call
    ``tokenizer(before + content + after)``. Otherwise the text is cut after the last special-token
    string wholly in ``before`` and before the first wholly in ``after``: the outer pieces are
    tokenized with the strings recognised, the middle one (template text, ``content``, template
    text) as text. A tokenizer splits what it encodes at special tokens and tokenizes the text
    between them alone, so the ids are those of one call wherever ``content`` holds no such string.
    ``specials``: :func:`special_strings` of the tokenizer, when the caller keeps them.
    """
    specials = special_strings(tokenizer) if specials is None else specials

    def controls(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []

    whole = before + content + after
    if not content or not specials.touches(whole, len(before), len(before) + len(content)):
        return controls(whole)
    head = max((before.rfind(s) + len(s) for s in specials if s in before), default=0)
    tail = min((after.find(s) for s in specials if s in after), default=len(after))
    middle = before[head:] + content + after[:tail]
    return [
        *controls(before[:head]),
        *(tokenizer(middle, **TEXT_AS_TEXT).input_ids if middle else []),
        *controls(after[tail:]),
    ]
