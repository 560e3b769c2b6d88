"""The labelled and paired text assets as example files (``faast assets export``): the
``input``/``output`` rows that ``faast task`` and ``faast classify`` read, split into a training
pool and a held-out test set when asked (:func:`faast.eval.holdout.random_holdout`: a seeded
draw; pool rows whose text equals a test row's are dropped, so no test text is learned)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _movie_reviews(cache: str | None) -> list[dict[str, Any]]:
    from faast.assets.text import movie_review_sentences

    return [{"input": r["text"], "output": r["label"]} for r in movie_review_sentences(cache)]


def _tweets(cache: str | None) -> list[dict[str, Any]]:
    from faast.assets.tweets import tweet_sentiment

    return [{"input": r["text"], "output": r["label"]} for r in tweet_sentiment(cache)]


def _bible(cache: str | None) -> list[dict[str, Any]]:
    from faast.assets.text import bible_pairs

    return [
        {"input": r["en"], "output": r["es"], "book": r["book"], "chapter": r["chapter"], "verse": r["verse"]}
        for r in bible_pairs(cache)
    ]


#: What each exportable asset becomes: (what an input and its output are, the rows' maker).
EXPORTS: dict[str, tuple[str, Callable[[str | None], list[dict[str, Any]]]]] = {
    "movie-review-sentences": ("sentence → positive / negative", _movie_reviews),
    "tweet-sentiment": ("tweet → negative / neutral / positive", _tweets),
    "bible-en-es": ("English verse → Spanish verse (JSONL also: book, chapter, verse)", _bible),
}


def export_examples(
    name: str,
    out: str | os.PathLike[str],
    *,
    test: int = 0,
    test_out: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    cache: str | None = None,
) -> tuple[int, int]:
    """Write the asset ``name``'s examples to ``out`` (``.tsv``: input<TAB>output under an
    ``input<TAB>output`` header; ``.jsonl``: objects with every field), in a seeded order; with
    ``test`` > 0, that many drawn first to ``test_out``; ``limit``: at most that many in ``out``.
    Both files are written atomically. Returns (examples in ``out``, examples in ``test_out``)."""
    from faast.eval.holdout import normalize_text, random_holdout
    from faast.lm.examples import file_format, write_rows

    if name not in EXPORTS:
        raise ValueError(f"asset {name!r} has no examples to export; exportable: {', '.join(EXPORTS)}")
    if test < 0 or (limit is not None and limit < 1):
        raise ValueError(f"--test must be >= 0 and --limit >= 1, got {test} and {limit}")
    if (test > 0) != (test_out is not None):
        raise ValueError("--test and --test-out go together: how many to hold out, and where to write them")
    paths = [Path(out)] + ([Path(test_out)] if test_out is not None else [])
    for path in paths:
        file_format(path)  # .tsv / .csv / .jsonl, named before the asset is read
    if len(paths) == 2 and paths[0].resolve() == paths[1].resolve():
        raise ValueError(f"--out and --test-out are the same file ({out})")
    rows = EXPORTS[name][1](cache)
    if test >= len(rows):
        raise ValueError(f"--test {test}: {name} has only {len(rows)} examples")
    if test:
        pool, held = random_holdout(rows, test, seed, key=lambda r: normalize_text(r["input"]))
    else:
        pool, held = list(range(len(rows))), []
        random.Random(seed).shuffle(pool)
    pool = pool[:limit] if limit is not None else pool
    columns = list(rows[0])
    for path, picked in zip(paths, (pool, held), strict=False):
        shown = ["input", "output"] if file_format(path) == "tsv" else columns  # CSV, JSONL: every field
        write_rows(path, [rows[i] for i in picked], shown)
    return len(pool), len(held)
