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

from collections.abc import Sequence
from typing import Any

#: How a user's text is tokenized: no start or end tokens added, and the strings of special tokens
#: in it ("<|endoftext|>", "<eos>", "<start_of_turn>") read as the text they are, not as control
#: tokens (Gemma-3 then generated its end token when recalling a text that mentions "<eos>", and
#: Qwen dropped a learned "<|endoftext|>" from its recall).
TEXT_AS_TEXT = {"add_special_tokens": False, "split_special_tokens": True}


def special_strings(tokenizer: Any) -> list[str]:
    """The strings of the tokenizer's special added tokens (those ``split_special_tokens`` reads as
    text), longest first; empty for a tokenizer that lists none."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    strings = {t.content for t in decoder.values() if getattr(t, "special", False) and t.content}
    return sorted(strings, key=lambda s: (-len(s), s))


def touches_special(text: str, start: int, end: int, specials: Sequence[str]) -> bool:
    """Whether a special-token string of ``specials`` occurs in ``text`` overlapping the span
    ``text[start:end]`` (inside it, or across one of its ends)."""
    for s in specials:
        at = text.find(s, max(0, start - len(s) + 1))
        while 0 <= at < end:
            if at + len(s) > start:
                return True
            at = text.find(s, at + 1)
    return False


def ids_around_text(
    tokenizer: Any, before: str, content: str, after: str, specials: Sequence[str] | None = None
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
    if not content or not touches_special(whole, len(before), len(before) + len(content), specials):
        return controls(whole)
    head = max((before.rfind(s) + len(s) for s in specials if s in before), default=0)
    tail = min((after.find(s) for s in specials if s in after), default=len(after))
    middle = before[head:] + content + after[:tail]
    return [
        *controls(before[:head]),
        *(tokenizer(middle, **TEXT_AS_TEXT).input_ids if middle else []),
        *controls(after[tail:]),
    ]
