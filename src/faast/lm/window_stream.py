"""A long text's token windows and batches one at a time, as they are learned.

:class:`TextWindows` stands for the windows of a text file (``faast lm learn``'s
:func:`faast.lm.text.text_windows` of the whole text: every token in windows of ``length``, the
last shorter if it holds 2 tokens, each after the start tokens) without holding them: it knows how
many there are (one tokenizing pass counts them) and tokenizes the text again, block by block
(:mod:`faast.lm.text_blocks`), each time it is iterated. A slice of it (a process's share,
:meth:`faast.distributed.Dist.shard`, ``faast lm perplexity --max-windows``) is one too;
:func:`faast.lm.text.learn_windows`, :func:`~faast.lm.text.capture_windows` and
:func:`~faast.lm.text.perplexity` read it one batch at a time, :func:`faast.lm.stream.stream_text`
one window at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

#: Makes the text's id blocks anew: (n_i,) int64 tensors, the whole text's ids when joined.
BlockSource = Callable[[], Iterable[torch.Tensor]]


def iter_token_windows(blocks: Iterable[torch.Tensor], length: int) -> Iterator[torch.Tensor]:
    """Consecutive (length,) windows of the joined 1-D ``blocks``, then the rest as a last shorter
    window when it holds at least 2 tokens (a last token alone is left out): the windows of
    :func:`faast.lm.text.text_windows` (without start tokens) and the chunks of
    :func:`faast.lm.stream.chunk_stream`, holding one block at a time."""
    if length < 2:
        raise ValueError(f"windows need at least 2 tokens, got length={length}")
    carry = torch.zeros(0, dtype=torch.long)
    for block in blocks:
        ids = torch.cat([carry, block.long()]) if carry.numel() else block.long()
        whole = ids.numel() // length * length
        for start in range(0, whole, length):
            yield ids[start : start + length]
        carry = ids[whole:].clone()
    if carry.numel() >= 2:
        yield carry


class TextWindows(Sequence[torch.Tensor]):
    """The windows ``lo`` … ``hi − 1`` of a text (see the module): ``len``, slices (a
    ``TextWindows``) and iteration (1-D int64 windows, start tokens first); not indexable by
    position (use a slice).

    blocks: makes the text's id blocks anew for each pass. tokens: the text's token count (counted
    once with :meth:`from_blocks`)."""

    def __init__(
        self,
        blocks: BlockSource,
        length: int,
        start_ids: Sequence[int],
        tokens: int,
        lo: int = 0,
        hi: int | None = None,
    ) -> None:
        if length < 2:
            raise ValueError(f"windows need at least 2 tokens, got length={length}")
        self.blocks, self.length, self.start_ids, self.tokens = blocks, length, list(start_ids), tokens
        full, rest = divmod(tokens, length)
        self.total = full + (1 if rest >= 2 else 0)  # every window of the text
        self.lo, self.hi = lo, self.total if hi is None else hi

    @classmethod
    def from_blocks(
        cls,
        blocks: BlockSource,
        length: int,
        start_ids: Sequence[int] = (),
        *,
        counted: Iterable[torch.Tensor] | None = None,
    ) -> TextWindows:
        """Every window of the text, its tokens counted by one pass over ``blocks()`` (or over
        ``counted``, the same blocks made once by the caller, e.g. from the text's pieces as they are
        hashed: ``faast lm learn`` gathers the text's digest in this pass); a text of fewer than 2
        tokens is a ``ValueError`` (a window needs 2)."""
        tokens = sum(int(block.numel()) for block in (blocks() if counted is None else counted))
        if tokens < 2:
            own = (
                f" of the text's own (the start token ids {list(start_ids)} put in front of each window "
                "are not counted)"
                if start_ids
                else ""
            )
            raise ValueError(f"the text is too short: {tokens} token(s), a window needs 2{own}")
        return cls(blocks, length, start_ids, tokens)

    @property
    def left_out(self) -> int:
        """Tokens of the text in no window: a last token alone (it has no pair)."""
        return self.tokens - min(self.tokens, self.total * self.length)

    @property
    def longest(self) -> int:
        """Tokens of the longest of these windows, start tokens included (0 when there are none)."""
        if not len(self):
            return 0
        whole = self.tokens // self.length  # the text's whole windows; a shorter one may follow
        body = self.length if self.lo < whole else self.tokens - whole * self.length
        return len(self.start_ids) + body

    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, slice):
            raise TypeError("TextWindows are read in order: slice them, or iterate")
        lo, hi, step = index.indices(len(self))
        if step != 1:
            raise ValueError("TextWindows slices take consecutive windows (step 1)")
        hi = max(lo, hi)
        return TextWindows(self.blocks, self.length, self.start_ids, self.tokens, self.lo + lo, self.lo + hi)

    def __iter__(self) -> Iterator[torch.Tensor]:
        start = torch.tensor(self.start_ids, dtype=torch.long)
        for i, window in enumerate(iter_token_windows(self.blocks(), self.length)):
            if i >= self.hi:
                return
            if i >= self.lo:
                yield torch.cat([start, window]) if self.start_ids else window

    def batches(self, batch_size: int) -> int:
        """How many batches of ``batch_size`` :func:`faast.lm.text.iter_window_batches` makes of these
        windows."""
        shorter = 1 if self.hi == self.total and self.tokens % self.length >= 2 else 0
        full = len(self) - shorter
        return -(-full // batch_size) + shorter
