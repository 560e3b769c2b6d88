"""The development tasks on which the defaults of ``TaskModel.fit`` are studied: labelled examples
kept out of the published test sets (one exception, below), split into a support pool (the draws
a study fits) and development examples (what each fit's choice is scored on).

* ``sentiment``: Pang & Lee movie-review sentences beside the 2,000-sentence test split
  (:func:`lm_guard.development_split`), two labels: the task every default was first chosen on.
* ``bible-books``: which of four books of the World English Bible a verse comes from (Genesis,
  Psalms, Proverbs, Matthew: narrative, poetry, sayings, gospel), four labels, from the English
  side of the offline asset ``bible-en-es``. The translation tables read the verse pairs, not the
  book; but the "Many labels" table of docs/tasks.md (2026-12-05, after the studies run on this
  task) classifies verses of all 64 books of the same asset and does not leave these out (a review
  on 2026-12-06 found some of its test verses among this task's development and support verses),
  so that table is not data these studies never saw. Verses shorter than :data:`MIN_VERSE_CHARS`
  characters and verse texts found more than once among the four books are left out; the split is
  fixed (it depends on no seed): each book gives ``dev_size / 4`` development verses and at most
  :data:`BIBLE_POOL_PER_BOOK` support verses, so both sides hold the four labels in equal shares.

How many verses of the Many labels table's export (``faast assets export bible-en-es --limit 2000
--test 500``, seed 0, as ``benchmarks/lm_many_labels.py`` runs it) are this task's development or
support verses (the same text after :func:`normalize_text`)::

    python benchmarks/dev_tasks.py --many-labels-overlap
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from faast.assets.text import bible_pairs
from faast.eval.holdout import normalize_text
from faast.lm.examples import Example
from faast.lm.prompts import PromptTemplate
from lm_guard import development_split
from lm_sentiment import LABELS, TEMPLATE

#: The books of the ``bible-books`` task (their names are the labels, as the asset spells them).
BIBLE_BOOKS = ("Genesis", "Psalms", "Proverbs", "Matthew")
BIBLE_TEMPLATE = PromptTemplate("Verse: {input}\nBook:")
#: Shorter verses ("Jesus wept.") name no book; they are left out.
MIN_VERSE_CHARS = 40
#: Support verses kept per book (Proverbs, the smallest of the four, has 914 long enough).
BIBLE_POOL_PER_BOOK = 500


@dataclass(frozen=True)
class DevTask:
    """One development task: ``support`` (the pool draws come from) and ``dev`` (the examples each
    choice is scored on), both of ``labels``; ``template`` writes a prompt; ``data`` describes the
    split for a table's header and ``title`` names the task in a plot."""

    name: str
    template: PromptTemplate
    labels: list[str]
    support: list[Example]
    dev: list[Example]
    data: str
    title: str


def sentiment_task(dev_size: int, split_seed: int, draws: int, seed: int) -> DevTask:
    """The Pang & Lee development sentences (:func:`lm_guard.development_split`)."""
    support, dev, data = development_split(dev_size, split_seed, draws, seed)
    title = "Pang & Lee development sentences"
    return DevTask("sentiment", TEMPLATE, list(LABELS), support, dev, data, title)


def bible_books_task(dev_size: int, split_seed: int, draws: int, seed: int) -> DevTask:
    """Which of :data:`BIBLE_BOOKS` a verse comes from (see the module docstring); ``split_seed`` is
    not used (the split is fixed), ``draws`` and ``seed`` only enter the description."""
    del split_seed
    each = dev_size // len(BIBLE_BOOKS)
    if each < 1:
        raise ValueError(f"dev_size must be at least {len(BIBLE_BOOKS)} (one verse per book), got {dev_size}")
    verses = {book: [] for book in BIBLE_BOOKS}
    for pair in bible_pairs():
        if pair["book"] in verses and len(pair["en"]) >= MIN_VERSE_CHARS:
            verses[pair["book"]].append(pair["en"])
    seen = Counter(normalize_text(text) for texts in verses.values() for text in texts)
    rng = random.Random("bible-books-split")
    support: list[Example] = []
    dev: list[Example] = []
    for book, texts in verses.items():
        unique = [text for text in texts if seen[normalize_text(text)] == 1]
        if len(unique) < each + 1:
            raise ValueError(f"{book}: {len(unique)} usable verses, fewer than {each} for development + 1")
        order = rng.sample(unique, len(unique))
        dev += [Example(text, book) for text in order[:each]]
        support += [Example(text, book) for text in order[each : each + BIBLE_POOL_PER_BOOK]]
    rng.shuffle(support)
    rng.shuffle(dev)
    data = (
        f"World English Bible verses (bible-en-es asset) of {', '.join(BIBLE_BOOKS)} (at least "
        f"{MIN_VERSE_CHARS} characters, each text once): {len(dev)} development verses ({each} per book), "
        f"support sets of k drawn from the other {len(support)} (at most {BIBLE_POOL_PER_BOOK} per book; "
        f"{draws} draws per k, draw seed {seed}); the Many labels table's test verses (64 books) do not "
        "exclude them"
    )
    title = "Bible book of a verse"
    return DevTask("bible-books", BIBLE_TEMPLATE, list(BIBLE_BOOKS), support, dev, data, title)


#: Task name -> its builder ``(dev_size, split_seed, draws, seed) -> DevTask``.
DEV_TASKS: dict[str, Callable[[int, int, int, int], DevTask]] = {
    "sentiment": sentiment_task,
    "bible-books": bible_books_task,
}


def dev_task(name: str, dev_size: int, split_seed: int, draws: int, seed: int) -> DevTask:
    """The development task ``name`` of :data:`DEV_TASKS` (a clear error for another name)."""
    if name not in DEV_TASKS:
        raise ValueError(f"unknown development task {name!r}; choose from {', '.join(DEV_TASKS)}")
    return DEV_TASKS[name](dev_size, split_seed, draws, seed)


def add_study_options(ap: argparse.ArgumentParser, draws: int) -> None:
    """The options of a study on a development task (``lm_calibrated_candidates.py``,
    ``lm_head_or_memory.py``): models, task, sizes, draws (default ``draws``), development size,
    seeds, batch size, threads and device; :func:`study_task` reads them."""
    ap.add_argument("--models", default="smollm2")
    ap.add_argument("--task", choices=list(DEV_TASKS), default="sentiment", help="the development task")
    ap.add_argument("--sizes", default="16,64", help="support examples per draw (comma list)")
    ap.add_argument("--draws", type=int, default=draws, help="support sets drawn per size")
    ap.add_argument("--dev", type=int, default=400, help="development examples (sentiment: the pool's last)")
    ap.add_argument("--seed", type=int, default=3, help="draws the support sets and seeds the fits")
    ap.add_argument("--split-seed", type=int, default=0, help="as benchmarks/lm_guard.py")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)


def study_task(args: argparse.Namespace) -> DevTask:
    """The development task of :func:`add_study_options`' arguments, after parsing ``--sizes`` into
    a list of ints (in ``args``), checking the counts and setting torch's threads and seed; a clear
    exit naming the option for a bad value."""
    args.sizes = [int(x) for x in args.sizes.split(",")]
    if args.draws < 1 or args.dev < 10 or min(args.sizes) < 1:
        raise SystemExit("--draws >= 1, --dev >= 10 and sizes >= 1 are required")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        return dev_task(args.task, args.dev, args.split_seed, args.draws, args.seed)
    except ValueError as err:  # e.g. more development verses than the books hold
        raise SystemExit(f"--task {args.task}: {err}") from None


def draw_groups(rows: list[dict]) -> dict[tuple[str, Any], list[dict]]:
    """A study's rows by (model, k), in the order first seen, then all of them as ("all draws", "")."""
    groups: dict[tuple[str, Any], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["k"]), []).append(r)
    groups[("all draws", "")] = rows
    return groups


def overlap(task: DevTask, rows: list[dict[str, Any]], text_field: str = "input") -> dict[str, int]:
    """How many of ``rows`` (records with a ``text_field``) are verses of ``task``'s development set
    and of its support pool, comparing texts after :func:`normalize_text`; and how many rows there
    are in all."""
    dev = {normalize_text(e.input) for e in task.dev}
    support = {normalize_text(e.input) for e in task.support}
    texts = [normalize_text(str(r[text_field])) for r in rows]
    return {
        "rows": len(texts),
        "in development": sum(t in dev for t in texts),
        "in support pool": sum(t in support for t in texts),
    }


def many_labels_overlap(limit: int, test: int, seed: int, dev_size: int) -> dict[str, dict[str, int]]:
    """:func:`overlap` of the ``bible-books`` task (``dev_size`` development verses) with the
    training and test verses the Many labels table exports (``faast assets export bible-en-es
    --limit LIMIT --test TEST --seed SEED``), each file counted on its own."""
    from faast.assets.export import export_examples

    task = bible_books_task(dev_size, 0, 1, 0)
    with tempfile.TemporaryDirectory() as tmp:
        train, held = Path(tmp) / "verses.jsonl", Path(tmp) / "verses-test.jsonl"
        export_examples("bible-en-es", train, test=test, test_out=held, limit=limit, seed=seed)
        read = [
            [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x] for p in (train, held)
        ]
    return {"training verses": overlap(task, read[0]), "test verses": overlap(task, read[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="the development tasks; --many-labels-overlap counts shared verses"
    )
    ap.add_argument(
        "--many-labels-overlap",
        action="store_true",
        help="count the Many labels export's verses among bible-books' development and support verses",
    )
    ap.add_argument("--limit", type=int, default=2000, help="training verses of the export (lm_many_labels')")
    ap.add_argument("--test", type=int, default=500, help="held-out verses of the export")
    ap.add_argument("--seed", type=int, default=0, help="the export's seed")
    ap.add_argument("--dev", type=int, default=400, help="development verses of bible-books (the studies')")
    args = ap.parse_args(argv)
    if not args.many_labels_overlap:
        ap.print_help()
        return 2
    counts = many_labels_overlap(args.limit, args.test, args.seed, args.dev)
    for part, c in counts.items():
        print(
            f"{part} of the Many labels export (limit {args.limit}, test {args.test}, seed {args.seed}): "
            f"{c['rows']}; in bible-books' development verses ({args.dev}): {c['in development']}; in its "
            f"support pool: {c['in support pool']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
