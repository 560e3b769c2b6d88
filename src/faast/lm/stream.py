"""Streaming mode: read a long text chunk by chunk, "apply, then update".

Chunk i is scored with the fast weights of chunks 0 … i−1 only, then learned, so no token is ever
predicted by fast weights that have seen it, and the perplexity of chunk i measures what the
model has learned from the text before it. The same chunks can be scored by the base model (no
fast weights) and by the base model with the preceding ``context`` tokens of the text in its prompt
(a sliding window of in-context text), the two baselines of the streaming protocol.

    from faast.lm.prompts import start_token_ids
    from faast.lm.stream import stream_chunks
    from faast.lm.text import encode
    rows = stream_chunks(fm, encode(tok, book), chunk=512, start_ids=start_token_ids(tok))
    [(r.index, r.ppl, r.base_ppl) for r in rows]

``start_token_ids(tok)`` are the tokens ``faast lm stream`` puts before each chunk: those the
tokenizer puts before a text (Gemma's ``<bos>``), none for SmolLM2 (whose ``bos_token_id`` is
``<|im_start|>``, which no chunk of the CLI starts with).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import faast.distributed
from faast.lm.text import check_scored_length
from faast.lm.window_stream import TextWindows


@dataclass
class StreamChunk:
    """One chunk of a stream: where it starts (token offset), how many tokens were scored, and
    the mean NLL per token with the fast weights of the chunks before it (``nll``), by the base
    model alone (``base_nll``) and by the base model after ``context`` tokens of preceding text
    (``context_nll``); None where not measured."""

    index: int
    start: int
    tokens: int
    nll: float
    base_nll: float | None = None
    context_nll: float | None = None
    pairs_learned: int = 0

    @property
    def ppl(self) -> float:
        return math.exp(self.nll)

    @property
    def base_ppl(self) -> float | None:
        return None if self.base_nll is None else math.exp(self.base_nll)

    @property
    def context_ppl(self) -> float | None:
        return None if self.context_nll is None else math.exp(self.context_nll)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(ppl=self.ppl, base_ppl=self.base_ppl, context_ppl=self.context_ppl)
        return out


def chunk_stream(
    ids: torch.Tensor, chunk: int, max_chunks: int | None = None
) -> list[tuple[int, torch.Tensor]]:
    """(offset, (≤ chunk,) ids) pieces of a 1-D token stream; the last may be shorter (≥ 2 tokens)."""
    if ids.ndim != 1:
        raise ValueError(f"expected a 1-D token stream, got shape {tuple(ids.shape)}")
    if chunk < 2:
        raise ValueError(f"chunks need at least 2 tokens, got chunk={chunk}")
    if max_chunks is not None and max_chunks < 1:
        raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
    pieces = [(s, ids[s : s + chunk]) for s in range(0, ids.numel(), chunk)]
    pieces = [(s, p) for s, p in pieces if p.numel() >= 2]
    if not pieces:
        raise ValueError("the text is too short: fewer than 2 tokens")
    return pieces[:max_chunks]


@torch.no_grad()
def _chunk_nll(
    model: Any, prefix: Sequence[int], piece: torch.Tensor, score_first: bool
) -> tuple[float, int]:
    """(summed NLL, tokens) of ``piece`` after ``prefix`` (start tokens and/or context): the
    piece's tokens from the first (``score_first``, needs a prefix) or from the second on."""
    device = next(model.parameters()).device
    seq = torch.tensor([*prefix, *piece.tolist()], device=device)[None]
    logits = model(input_ids=seq, use_cache=False).logits[0].float()
    first = len(prefix) + (0 if score_first else 1)  # the first scored position of seq
    pred = logits[first - 1 : -1]
    target = seq[0, first:]
    return float(F.cross_entropy(pred, target, reduction="sum")), target.numel()


def stream_chunks(
    model: Any,
    ids: torch.Tensor,
    *,
    chunk: int = 512,
    start_ids: Sequence[int] = (),
    max_chunks: int | None = None,
    score_base: bool = True,
    context: int = 0,
    learn: bool = True,
    progress: bool = True,
    on_chunk: Callable[[StreamChunk], None] | None = None,
    distributed: bool = False,
) -> list[StreamChunk]:
    """Score then learn each chunk of ``ids`` (1-D token stream) in order: :func:`stream_text` on
    the chunks of :func:`chunk_stream` (``ids`` as one block).

    model: a :class:`~faast.lm.FaastModel` (its fast weights grow as the stream is read).
    start_ids: tokens put before every chunk (e.g. Gemma's ``<bos>``), never scored.
    score_base: also score each chunk with the fast weights switched off.
    context: also score each chunk by the base model after the ``context`` tokens of text that
    precede it (a sliding in-context window; 0: not measured).
    learn: False scores every chunk with the fast weights as they are (e.g. after a full read).
    on_chunk: called with each chunk's result as soon as it is known (progress, checkpoints).
    distributed: under ``torchrun`` (:mod:`faast.distributed`) every process scores each chunk
    (the same numbers everywhere) and learns its block of the chunk's pairs, the statistics are
    all-reduced after each chunk: every process reads the fast weights of one process.
    """
    if context < 0:
        raise ValueError(f"context must be ≥ 0 tokens, got {context}")
    chunk_stream(ids, chunk, max_chunks)  # refuses what it refuses (not 1-D, chunk < 2, too short, …)
    chunks = TextWindows(lambda: [ids], chunk, (), ids.numel())
    return stream_text(
        model,
        chunks,
        start_ids,
        max_chunks=max_chunks,
        score_base=score_base,
        context=context,
        learn=learn,
        progress=progress,
        on_chunk=on_chunk,
        distributed=distributed,
    )


def stream_text(
    model: Any,
    chunks: Any,
    start_ids: Sequence[int] = (),
    *,
    max_chunks: int | None = None,
    score_base: bool = True,
    context: int = 0,
    learn: bool = True,
    progress: bool = True,
    on_chunk: Callable[[StreamChunk], None] | None = None,
    distributed: bool = False,
) -> list[StreamChunk]:
    """Score, then learn, each chunk of ``chunks`` (a :class:`faast.lm.window_stream.TextWindows` of
    a text's windows of ``--chunk`` tokens, holding no start tokens, read block by block) after
    ``start_ids`` (never scored); see :func:`stream_chunks`, the same on a text's ids, for
    ``score_base``, ``context``, ``learn``, ``on_chunk`` and ``distributed``. Returns one
    :class:`StreamChunk` per chunk read (the first ``max_chunks``)."""
    if chunks.start_ids:
        raise ValueError("stream_text: the chunks must not hold start tokens (pass start_ids)")
    if max_chunks is not None and max_chunks < 1:
        raise ValueError(f"max_chunks must be at least 1, got {max_chunks}")
    if context < 0:
        raise ValueError(f"context must be ≥ 0 tokens, got {context}")
    dist = faast.distributed.current() if distributed else faast.distributed.Dist()
    start_ids = [int(t) for t in start_ids]
    size = chunks.length
    n = len(chunks) if max_chunks is None else min(len(chunks), max_chunks)
    chunks = chunks[:n]

    def before_at(offset: int) -> int:
        return min(context, offset) if context else 0

    # every sequence scored or learned: start tokens, a chunk and (context) the text before it
    last = min(size, chunks.tokens - (n - 1) * size) + before_at((n - 1) * size)
    longest = len(start_ids) + max(last, size + before_at((n - 2) * size) if n >= 2 else 0)
    what = "stream: start tokens, a chunk (--chunk) and the text before it (--context)"
    check_scored_length(model, longest, what)
    rows: list[StreamChunk] = []
    before = torch.zeros(0, dtype=torch.long)  # the `context` tokens before the chunk
    device = next(model.parameters()).device
    bar = tqdm(chunks, desc="stream: score, then learn", unit="chunk", total=n, disable=not progress)
    for index, piece in enumerate(bar):
        offset = index * size
        seen = before.tolist() if context else None
        row = _score_then_learn(model, index, offset, piece, start_ids, seen, score_base, learn, dist, device)
        if context:
            before = torch.cat([before.to(piece.device), piece])[-context:].clone()
        rows.append(row)
        if on_chunk is not None:
            on_chunk(row)
    return rows


def _score_then_learn(
    model: Any,
    index: int,
    offset: int,
    piece: torch.Tensor,
    start_ids: list[int],
    before: list[int] | None,
    score_base: bool,
    learn: bool,
    dist: faast.distributed.Dist,
    device: torch.device,
) -> StreamChunk:
    """The row of chunk ``index`` (``piece``: (T,) ids at ``offset`` of the text): scored after
    ``start_ids`` with the fast weights as they are, with them off (``score_base``) and after the
    text ``before`` it (None: not measured), then learned (``learn``)."""
    first = bool(start_ids)  # without start tokens a chunk's first token has nothing to go on
    total, n = _chunk_nll(model, start_ids, piece, first)
    row = StreamChunk(index, offset, n, total / n)
    if score_base or before is not None:
        with model.disabled():
            if score_base:
                row.base_nll = _chunk_nll(model, start_ids, piece, first)[0] / n
            if before is not None:
                row.context_nll = _chunk_nll(model, start_ids + before, piece, first)[0] / n
    if learn:
        seq = torch.tensor([[*start_ids, *piece.tolist()]], device=device)
        row.pairs_learned = _learn_chunk(model, seq, dist)
    return row


def _learn_chunk(model: Any, seq: torch.Tensor, dist: faast.distributed.Dist) -> int:
    """Learn the (1, T) sequence ``seq``; returns its pair count. With several processes each
    runs the forward pass and learns its contiguous block of the T − 1 pairs (a pair mask), and
    the statistics are all-reduced, so every process holds what one process learns."""
    if not dist.active:
        return model.learn(input_ids=seq)
    block = dist.shard_range(seq.shape[1] - 1)
    mask = torch.zeros(1, seq.shape[1] - 1, dtype=torch.bool, device=seq.device)
    mask[0, block.start : block.stop] = True
    record = model.learned_rows  # noted once, for the whole row (each process learns a block of it)
    model.learned_rows = None
    try:
        with dist.reduce_learning(model):
            pairs = model.learn(input_ids=seq, pair_mask=mask) if len(block) else 0
    finally:
        model.learned_rows = record
    model.note_learned_rows(seq)  # as one process learning the row notes it
    return round(dist.sum(pairs))


def summarize(rows: Sequence[StreamChunk], parts: int = 4) -> list[dict[str, float]]:
    """Token-weighted perplexities over ``parts`` consecutive stretches of the stream (the
    beginning, …, the end): how test-time learning pays off as the text goes on."""
    if not rows:
        raise ValueError("no chunks to summarize")
    parts = max(1, min(parts, len(rows)))
    bounds = [round(i * len(rows) / parts) for i in range(parts + 1)]
    out = []
    for a, b in pairwise(bounds):
        part = rows[a:b]
        tokens = sum(r.tokens for r in part)
        entry = {"first_chunk": part[0].index, "last_chunk": part[-1].index, "tokens": tokens}
        for name in ("nll", "base_nll", "context_nll"):
            vals = [getattr(r, name) for r in part]
            if all(v is not None for v in vals):
                entry[name.replace("nll", "ppl")] = math.exp(
                    sum(v * r.tokens for v, r in zip(vals, part, strict=True)) / tokens
                )
        out.append(entry)
    return out


__all__ = ["StreamChunk", "chunk_stream", "stream_chunks", "stream_text", "summarize"]
