"""Tokenizing a long text block by block, with the ids of one call on the whole text.

``faast lm learn`` and ``faast lm stream`` read texts of any length: the text is read about
:data:`BLOCK_CHARS` characters at a time (:func:`faast.text_files.iter_user_text`) and each
block is tokenized alone, so memory holds one block of text and of ids whatever the text's length.

A block ends at a cut (preferably just after a line end, else before a space, else anywhere) that is
checked to be safe: the :data:`CONTEXT_CHARS` characters before the cut, tokenized alone, give the
first ids of those characters and the ones after the cut tokenized together (so no BPE merge, added
token or pre-tokenizer piece spans the cut, and the tokens before the cut do not depend on what
follows). The next block is tokenized after the same characters before the cut, whose ids are then
dropped (checked to be the same ids again): a tokenizer's dummy prefix (SentencePiece's "▁" in
front of a text) then falls on those characters, as it falls on the start of the whole text, not on
the block's first word. A cut that fails is passed over for the next candidate. The check looks
:data:`CONTEXT_CHARS` characters to each side, which holds for tokenizers whose choices do not reach
further (a cut whose context on a side is a run of one class of characters, whitespace, letters,
digits or other, is never taken: the run may go on further than the check looks).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from faast.lm.text import TEXT_AS_TEXT, quiet_tokenizer

#: Characters of text tokenized per block (64 KiB of ASCII text): a tokenizer call holds offsets and
#: token strings, hundreds of bytes per token (a block of 1 MiB of text cost 90 MB more at its peak).
BLOCK_CHARS = 1 << 16
#: Characters on each side of a cut that the safety check tokenizes.
CONTEXT_CHARS = 512
#: Cut candidates: just after a line end, then just before a space, then anywhere.
_CANDIDATES = (re.compile(r"(?<=\n)"), re.compile(r"(?= )"), re.compile(r"(?s)(?<=.)"))
#: Candidates of one kind tried per block before the next kind is tried.
_TRIES = 64


def _ids(tokenizer: Any, text: str) -> list[int]:
    """The ids of ``text`` read as text (:data:`faast.lm.text.TEXT_AS_TEXT`)."""
    return list(tokenizer(text, **TEXT_AS_TEXT).input_ids) if text else []


def _after(tokenizer: Any, before: str, text: str) -> list[int] | None:
    """The ids of ``text`` tokenized after ``before`` (the ids of ``before`` alone dropped), or None
    when tokenizing them together does not start with the ids of ``before`` alone."""
    head = _ids(tokenizer, before)
    both = _ids(tokenizer, before + text)
    return both[len(head) :] if both[: len(head)] == head else None


def _kind(char: str) -> int:
    """The class of a character: whitespace, letter, number (digits, and "½", "²": a pre-tokenizer's
    ``\\p{N}``) or other."""
    return 0 if char.isspace() else 1 if char.isalpha() else 2 if char.isnumeric() else 3


def _has_break(side: str) -> bool:
    """Whether ``side`` changes class somewhere (whitespace, letter, digit, other): a pre-tokenizer's
    piece or a run of merges that started before it ends inside it. A side of one class alone (a
    run of spaces, of letters) may be the middle of a longer run the check cannot see the end of."""
    kinds = {_kind(ch) for ch in side}
    return len(kinds) > 1


class _Cutter:
    """Finds safe cuts in ``text`` (``before`` holds the characters before it, up to the context)."""

    def __init__(self, tokenizer: Any, context: int) -> None:
        self.tokenizer = tokenizer
        self.context = context

    def _normalized(self, side: str) -> str:
        """``side`` as the tokenizer's normalizer gives it to the model (Gemma's writes every space
        as "▁": a run of spaces and "▁" is then one run of one symbol, which the raw characters'
        classes would have split); ``side`` itself without a normalizer."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        normalizer = getattr(backend, "normalizer", None)
        return side if normalizer is None else normalizer.normalize_str(side)

    def safe(self, before: str, text: str, cut: int, final: bool, first: bool) -> bool:
        """Whether ``text[:cut]`` may end a block (``before + text`` is the text around it; ``final``:
        ``text`` runs to the end of the whole text; ``first``: ``before`` starts the whole text)."""
        c = self.context
        at = len(before) + cut
        # the c characters each side of the cut in ``before + text``, without joining the two (a
        # candidate is tried at each of many places of a long buffer)
        left = text[max(0, cut - c) : cut]
        if len(left) < c and before:
            left = before[max(0, len(before) - (c - len(left))) :] + left
        right = text[cut : cut + c]
        if not left or not right or (not final and len(right) < c):
            return False
        seen_left, seen_right = self._normalized(left), self._normalized(right)
        if ((at > c or not first) and not _has_break(seen_left)) or (
            len(right) >= c and not _has_break(seen_right)
        ):
            return False  # inside a run longer than the check looks
        return _after(self.tokenizer, left, right) is not None

    def find(self, before: str, text: str, start: int, final: bool, first: bool) -> int | None:
        """The first safe cut at or after ``start`` among the candidates of each kind in turn (the
        lookahead a check needs must be in ``text`` unless ``final``); None when none is."""
        for pattern in _CANDIDATES:
            for n, match in enumerate(pattern.finditer(text, start)):
                cut = match.start()
                if n >= _TRIES or (not final and cut + self.context > len(text)):
                    break
                if 0 < cut < len(text) and self.safe(before, text, cut, final, first):
                    return cut
        return None


def iter_token_blocks(
    tokenizer: Any,
    pieces: Iterable[str],
    *,
    block_chars: int | None = None,
    context: int | None = None,
) -> Iterator[torch.Tensor]:
    """The ids of the text ``"".join(pieces)`` in blocks: (n_i,) int64 tensors whose concatenation
    is the ids of the whole text tokenized in one call (no special tokens added, special-token
    strings read as text); blocks end at safe cuts at or after ``block_chars`` characters (see the
    module; default :data:`BLOCK_CHARS`, ``context`` :data:`CONTEXT_CHARS`). Memory: a block of text
    and its ids (a text with no safe cut for long holds more). Empty blocks are not yielded."""
    block_chars = BLOCK_CHARS if block_chars is None else block_chars
    context = CONTEXT_CHARS if context is None else context
    if block_chars < 1:
        raise ValueError(f"block_chars must be >= 1, got {block_chars}")
    if context < 1:
        raise ValueError(f"context must be >= 1 character, got {context}")
    cutter = _Cutter(tokenizer, context)
    source = iter(pieces)
    before, buf, final, searched, emitted = "", "", False, 0, 0

    def read() -> None:
        nonlocal buf, final
        piece = next(source, None)
        final = piece is None
        buf += piece or ""

    with quiet_tokenizer():
        while True:
            while not final and len(buf) < max(block_chars, searched) + context:
                read()
            if not buf:
                return
            end = len(buf)
            if not (final and len(buf) <= block_chars):
                cut = cutter.find(before, buf, max(block_chars, searched), final, emitted <= context)
                if cut is None and not final:  # no safe cut yet: read on and look further
                    searched = max(block_chars, searched, len(buf) - context)
                    read()
                    continue
                end = len(buf) if cut is None else cut
            ids = _after(tokenizer, before, buf[:end])
            if ids is None:  # the block's start does not check out with this end: a later cut
                if end == len(buf) and final:
                    raise RuntimeError(
                        "the text could not be tokenized block by block with the ids of one call "
                        "(a tokenizer whose choices reach further than the check looks)"
                    )
                searched = end + 1
                continue
            if ids:
                yield torch.tensor(ids, dtype=torch.long)
            before = (before + buf[:end])[-context:]
            emitted += end
            buf, searched = buf[end:], 0


def concat_blocks(blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """The blocks as one (N,) stream (for tests and short texts)."""
    return torch.cat(list(blocks)) if blocks else torch.zeros(0, dtype=torch.long)
