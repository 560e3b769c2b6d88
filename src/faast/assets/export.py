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


def _check_outside_assets(option: str, path: Path, name: str, cache: str | None) -> None:
    """ValueError when ``path`` lies in the cache folder of ``name`` or of another registered
    asset: the export would overwrite the asset's data, which would still count as fetched."""
    from faast.assets.core import all_assets, asset_root

    where = path.resolve()
    for asset in dict.fromkeys([name, *sorted(all_assets())]):
        folder = asset_root(asset, cache, create=False).resolve()
        if folder == where or folder in where.parents:
            raise ValueError(
                f"{option} {path} lies in the cache folder of the asset {asset} ({folder}): writing there "
                "would damage the asset; write it elsewhere"
            )


def _read_rows(name: str, cache: str | None) -> list[dict[str, Any]]:
    """The rows of ``name`` (fetched first when missing); an AssetError naming the asset's folder
    when its cached file holds no examples or records without the expected fields."""
    from faast.assets.core import AssetError, asset_root

    try:
        rows = EXPORTS[name][1](cache)
    except KeyError as exc:
        folder = asset_root(name, cache)
        raise AssetError(
            f"the cached asset {name} has a record without the field {exc}: it is damaged; fetch it again "
            f"with `faast assets fetch --force {name}` (or delete the folder {folder} and fetch it)"
        ) from None
    if not rows:
        folder = asset_root(name, cache)
        raise AssetError(
            f"the cached asset {name} holds no examples (its file in {folder} has no records): fetch it "
            f"again with `faast assets fetch --force {name}` (or delete the folder {folder} and fetch it)"
        )
    return rows


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
    for option, path in zip(("--out", "--test-out"), paths, strict=False):
        _check_outside_assets(option, path, name, cache)
    rows = _read_rows(name, cache)
    if test >= len(rows):
        raise ValueError(f"--test {test}: {name} has only {len(rows)} examples")
    if test:
        pool, held = random_holdout(rows, test, seed, key=lambda r: normalize_text(r["input"]))
    else:
        pool, held = list(range(len(rows))), []
        random.Random(seed).shuffle(pool)
    if not pool:  # every row not held out repeats a held-out text (such rows are dropped)
        left = len(rows) - len(held)
        which = (
            f"the one example of {name} not held out repeats"
            if left == 1
            else f"all {left:,} examples of {name} not held out repeat"
        )
        raise ValueError(
            f"--test {test} --seed {seed}: {which} a held-out text (those are dropped, so no test text is "
            f"learned): {out} would hold no examples; hold out fewer"
        )
    pool = pool[:limit] if limit is not None else pool
    columns = list(rows[0])
    for path, picked in zip(paths, (pool, held), strict=False):
        shown = ["input", "output"] if file_format(path) == "tsv" else columns  # CSV, JSONL: every field
        write_rows(path, [rows[i] for i in picked], shown)
    return len(pool), len(held)
