"""The passages of the two tasks of ``benchmarks/lm_authors.py``, none of which chose a default:
which of four novelists wrote a passage (``gutenberg-books``), and the First Folio genre of a
passage of a Shakespeare play, tested on plays the support passages never come from
(``shakespeare``); the prompts, labels, test / pool splits and the balanced draws of support
passages."""

from __future__ import annotations

import random

from faast.assets.text import GUTENBERG_AUTHORS, gutenberg_books, shakespeare_texts
from faast.lm.examples import Example
from faast.lm.prompts import PromptTemplate

TEMPLATE = PromptTemplate("Passage: {input}\nAuthor:")
#: The labels: each novel's author's surname, in GUTENBERG_AUTHORS order.
LABELS = [author.split()[-1] for author in GUTENBERG_AUTHORS.values()]
#: A passage: this many consecutive printed lines, each longer than MIN_CHARS characters.
LINES_PER_PASSAGE = 2
MIN_CHARS = 30


def passages(text: str) -> list[str]:
    """Non-overlapping passages of ``LINES_PER_PASSAGE`` consecutive printed lines (each longer
    than ``MIN_CHARS`` characters, stripped, tabs as spaces), in order."""
    lines = [line.strip().replace("\t", " ") for line in text.splitlines()]
    lines = [line for line in lines if len(line) > MIN_CHARS]
    step = LINES_PER_PASSAGE
    return [" ".join(lines[i : i + step]) for i in range(0, len(lines) - step + 1, step)]


def load_data(test_per_label: int, split_seed: int) -> tuple[dict[str, list[Example]], list[Example]]:
    """(support pool per label, test examples): each novel's passages shuffled by ``split_seed``,
    the first ``test_per_label`` for testing (the test list shuffled too), the rest the pool."""
    rng = random.Random(split_seed)
    pool: dict[str, list[Example]] = {}
    test: list[Example] = []
    for title, text in gutenberg_books(exclude_austen=False).items():
        label = GUTENBERG_AUTHORS[title].split()[-1]
        items = [Example(p, label) for p in passages(text)]
        rng.shuffle(items)
        test += items[:test_per_label]
        pool[label] = items[test_per_label:]
    rng.shuffle(test)
    return pool, test


#: The genre task's prompt and labels.
GENRE_TEMPLATE = PromptTemplate("Passage: {input}\nGenre:")
#: The First Folio's three genres and their plays (the ``shakespeare`` asset's names; *Pericles*,
#: not in the Folio, and the poems are left out).
FOLIO_GENRES: dict[str, tuple[str, ...]] = {
    "comedy": (
        "alls_well_that_ends_well", "as_you_like_it", "comedy_of_errors", "loves_labours_lost",
        "measure_for_measure", "merchant_of_venice", "merry_wives_of_windsor",
        "midsummer_nights_dream", "much_ado_about_nothing", "taming_of_the_shrew", "tempest",
        "twelfth_night", "two_gentlemen_of_verona", "winters_tale",
    ),
    "history": (
        "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1", "henry_vi_part_2",
        "henry_vi_part_3", "henry_viii", "john", "richard_ii", "richard_iii",
    ),
    "tragedy": (
        "antony_and_cleopatra", "coriolanus", "cymbeline", "hamlet", "julius_caesar", "lear",
        "macbeth", "othello", "romeo_and_juliet", "timon_of_athens", "tragedy_of_titus_andronicus",
        "troilus_and_cressida",
    ),
}  # fmt: skip
#: Plays of each genre held out for testing: no support passage comes from them.
TEST_PLAYS_PER_GENRE = 2


def split_genres(
    texts: dict[str, str], test_per_label: int, split_seed: int
) -> tuple[dict[str, list[Example]], list[Example], dict[str, list[str]]]:
    """(support pool per genre, test examples, the held-out plays per genre) from ``{play: text}``:
    per genre :data:`TEST_PLAYS_PER_GENRE` plays drawn by ``split_seed`` give ``test_per_label``
    passages drawn from all of theirs; the other plays' passages are the pool (shuffled)."""
    rng = random.Random(split_seed)
    pool: dict[str, list[Example]] = {}
    test: list[Example] = []
    held: dict[str, list[str]] = {}
    for genre, plays in FOLIO_GENRES.items():
        held[genre] = sorted(rng.sample(sorted(plays), TEST_PLAYS_PER_GENRE))
        tested = [Example(p, genre, {"play": play}) for play in held[genre] for p in passages(texts[play])]
        if len(tested) < test_per_label:
            raise ValueError(
                f"the held-out {genre} plays have {len(tested)} passages, fewer than {test_per_label}"
            )
        test += rng.sample(tested, test_per_label)
        pool[genre] = [
            Example(p, genre, {"play": play})
            for play in plays
            if play not in held[genre]
            for p in passages(texts[play])
        ]
        rng.shuffle(pool[genre])
    rng.shuffle(test)
    return pool, test, held


def load_genres(test_per_label: int, split_seed: int) -> tuple[dict[str, list[Example]], list[Example]]:
    """:func:`split_genres` of the ``shakespeare`` asset's plays (the pool and the test examples)."""
    pool, test, _ = split_genres(shakespeare_texts(include_poems=False), test_per_label, split_seed)
    return pool, test


def draw_support(pool: dict[str, list[Example]], k: int, seed: int, draw: int) -> list[Example]:
    """k passages, k / (number of labels) of each label, drawn from ``pool`` by (seed, k, draw)
    and shuffled: the examples every method of the draw learns."""
    per_label, rest = divmod(k, len(pool))
    if rest or per_label < 1:
        raise ValueError(f"k={k} is not a positive multiple of the {len(pool)} labels")
    rng = random.Random(f"{seed}-{k}-{draw}")
    chosen = [e for label in sorted(pool) for e in rng.sample(pool[label], per_label)]
    rng.shuffle(chosen)
    return chosen
