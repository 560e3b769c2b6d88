"""OSIS verse markup (SWORD Bible modules) → plain text, without the artefacts of naive tag stripping.

SWORD modules store each verse as OSIS XML fragments: words in ``<w lemma=...>``, footnotes and
cross references in ``<note>``, poetry lines and paragraphs as milestones (``<l sID=.../>``,
``<div type="x-p" .../>``), headings in ``<title>``. Removing the tags naively (as
``pysword``'s ``clean=True`` does) glues words together wherever a footnote sat between two
words with no space around it: ``God<note>…</note><w>created</w>`` becomes "Godcreated" (about
440 places in the World English Bible). ``osis_to_text`` instead:

* keeps the text of canonical titles (``<title canonical="true">``, the Psalm superscriptions,
  which the Reina-Valera 1909 module has as ordinary text of verse 1) and drops other headings;
* drops notes, cross references, alternative readings and other non-verse elements with their
  content, and line/paragraph/list milestones, leaving a *gap* where each one was;
* turns a gap into one space when it sits between a word (or closing punctuation) and the start
  of the next word, and into nothing before punctuation, so "God created", "sold for two assaria
  coins?" (not "coins ?");
* cuts the verse at the end-of-book milestone (the WEB module appends its whole glossary, 26 kB,
  to Revelation 22:21), unescapes XML entities (``&amp;``) and collapses runs of whitespace.
"""

from __future__ import annotations

import html
import re

#: Where the book ends; anything after it (a glossary, an appendix) is not part of the verse.
_BOOK_END = re.compile(r'<div\b(?=[^>]*\btype="book")(?=[^>]*\beID=)[^>]*>')
_CANONICAL_TITLE = re.compile(r'<title\b(?=[^>]*\bcanonical="true")[^>]*>(.*?)</title>', re.S)
#: Elements removed with their content (notes, headings, readings, speaker labels, ...).
_DROPPED = "note|title|rdg|rdgGroup|catchWord|milestone|figure|index|abbr|speaker"
_DROP = re.compile(rf"<({_DROPPED})\b[^>]*/>|<({_DROPPED})\b[^>]*>.*?</\2>", re.S)
#: Structural tags that separate text (lines, paragraphs, list items, tables).
_BREAK = re.compile(r"</?(?:l|lb|lg|div|item|list|p|head|row|cell|table|chapter)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_GAP = "\x1f"
_OPENING = "“‘([{¡¿"
#: A gap between a visible character and the start of a word (or an opening quote) is a space.
_GAP_AS_SPACE = re.compile(rf"(?<=[^\s{re.escape(_OPENING)}{_GAP}]){_GAP}+(?=[^\W_]|[{re.escape(_OPENING)}])")
#: Whitespace left around a gap before punctuation is not text.
_GAP_BEFORE_PUNCT = re.compile(rf"\s*{_GAP}[\s{_GAP}]*(?=[,.;:!?)\]])")


def osis_to_text(raw: str) -> str:
    """Plain text of one OSIS verse fragment (see the module docstring for the rules)."""
    end = _BOOK_END.search(raw)
    if end is not None:
        raw = raw[: end.start()]
    raw = _CANONICAL_TITLE.sub(lambda m: m.group(1) + " ", raw)
    raw = _DROP.sub(_GAP, raw)
    raw = _BREAK.sub(_GAP, raw)
    raw = html.unescape(_TAG.sub("", raw))
    raw = _GAP_BEFORE_PUNCT.sub("", raw)
    raw = _GAP_AS_SPACE.sub(" ", raw).replace(_GAP, "")
    return re.sub(r"\s+", " ", raw).strip()
