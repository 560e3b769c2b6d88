"""Decoding the text files users write: UTF-8 with or without a byte-order mark, or UTF-16 or
UTF-32 with one (what Windows editors save as "Unicode"); anything else is an error naming the
line. UTF-16 or UTF-32 text saved without its mark (read as UTF-8, its ASCII letters would lie
between NUL characters) is refused, naming the encoding and an ``iconv`` line that converts it.
Line ends are read as Python's text mode reads them (universal newlines): CR LF and a lone CR
become LF, so a text saved on Windows teaches a model what the same text saved elsewhere does."""

from __future__ import annotations

import codecs
import hashlib
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

#: Byte-order marks and the codec each announces (UTF-8's mark is dropped by "utf-8-sig"). UTF-32's
#: come first: the little-endian one begins with UTF-16's (read as UTF-16, letters between NULs).
_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
#: How errors name each codec of :data:`_MARKS` (and "utf-8", a file without a mark).
_CODEC_NAMES = {"utf-32": "UTF-32", "utf-16": "UTF-16"}

#: Bytes of a file's start read for its byte-order mark, and for UTF-16 or UTF-32 without one.
HEAD_BYTES = 1 << 12


def _codec(p: Path, head: bytes) -> str:
    """The codec of the file ``p`` from its first bytes ``head`` (:data:`HEAD_BYTES` of them):
    the one its byte-order mark names, else UTF-8 — unless ``head`` is UTF-16 or UTF-32 text saved
    without its mark (:func:`_unmarked_wide`; read as UTF-8, its ASCII letters lie between NULs):
    a ``ValueError`` then names that encoding and how to convert the file."""
    marked = next((codec for mark, codec in _MARKS if head.startswith(mark)), None)
    if marked is not None:
        return marked
    wide = _unmarked_wide(head)
    if wide is None:
        return "utf-8"
    converted = p.with_name(f"{p.stem}-utf8{p.suffix}")
    raise ValueError(
        f"{p}: not UTF-8 text: it holds NUL bytes, as {wide} text saved without a byte-order mark does "
        "(faast reads UTF-8, or UTF-16 or UTF-32 starting with its byte-order mark); convert it to UTF-8: "
        f"iconv -f {wide} -t UTF-8 {shlex.quote(str(p))} > {shlex.quote(str(converted))}"
    )


#: Characters of text that :func:`_unmarked_wide` needs to see to call bytes UTF-16 or UTF-32 text.
_WIDE_MIN_CHARS = 4


def _unmarked_wide(head: bytes) -> str | None:
    """ "UTF-32LE", "UTF-32BE", "UTF-16LE" or "UTF-16BE" when ``head``, the start of a file without a
    byte-order mark, is most likely text in that encoding, else None (UTF-8: a NUL character or
    two in UTF-8 text stays text, as written). UTF-32 is told by its decoding (each four bytes a
    code point of at most 0x10FFFF), UTF-16 by NULs in half the bytes of one parity at least and
    few in the other (the high byte of a Latin character: the second of two in little-endian,
    which says its byte order); either way the decoded text must be a few characters, none of them
    NUL, nearly all printable (letters, digits, punctuation, spaces, tabs and line ends)."""
    if head.count(0) < _WIDE_MIN_CHARS:
        return None
    candidates = ["UTF-32LE", "UTF-32BE"]
    for codec, high, low in (("UTF-16LE", head[1::2], head[0::2]), ("UTF-16BE", head[0::2], head[1::2])):
        if 2 * high.count(0) >= len(high) and 8 * low.count(0) <= high.count(0):
            candidates.append(codec)
    for codec in candidates:
        try:  # not final: the head may end inside a character (half a surrogate pair)
            text = codecs.getincrementaldecoder(codec)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        if len(text) >= _WIDE_MIN_CHARS and "\x00" not in text and _mostly_printable(text):
            return codec
    return None


def _mostly_printable(text: str) -> bool:
    """Whether 95 % of the characters of ``text`` at least are printable, tabs or line ends."""
    other = sum(1 for c in text if not c.isprintable() and c not in "\t\n\r")
    return 20 * other <= len(text)


def read_user_text(path: str | os.PathLike[str], *, inner_cr: str | None = None) -> str:
    """The text of ``path`` without its byte-order mark, every line end LF. Raises
    ``ValueError`` ``"<path>:<line>: not UTF-8 text (...)"`` for bytes that are neither UTF-8 nor
    marked UTF-16 or UTF-32, and ``"<path>: not UTF-8 text: it holds NUL bytes, as UTF-16LE text
    saved without a byte-order mark does..."`` for such a file (:func:`_codec`).

    inner_cr: ``None`` reads a carriage return (CR) not followed by LF as a line end (old Mac
    files); otherwise such a CR in a file whose lines end in LF (or CR LF) elsewhere is refused,
    naming its line and ending with this advice: in a line-per-record file it is a line break
    inside a record (a spreadsheet cell's), and reading it as a line end would split the record."""
    p = Path(path)
    data = p.read_bytes()
    encoding = _codec(p, data[:HEAD_BYTES])
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        start = exc.start + _decoder_skip(encoding)  # "utf-8-sig" counts from after its mark
        line = data[:start].count(b"\n") + 1
        raise _not_text(p, encoding, line, start, exc.reason) from None
    text = text.replace("\r\n", "\n")
    inner = text.find("\r")
    if inner_cr is not None and inner >= 0 and "\n" in text:
        line = text.count("\n", 0, inner) + 1
        raise ValueError(
            f"{path}:{line}: a carriage return (CR) inside the line, in a file whose lines end in LF; "
            f"{inner_cr}"
        )
    return text.replace("\r", "\n")


#: Characters of a text file read at a time by :func:`iter_user_text` (64 KiB of ASCII text).
TEXT_BLOCK_CHARS = 1 << 16


def _encoding(p: Path) -> str:
    """The codec of a user's text file from its byte-order mark (UTF-8 without one); the
    ``ValueError`` of :func:`_codec` for UTF-16 or UTF-32 text without its mark."""
    with open(p, "rb") as fh:
        head = fh.read(HEAD_BYTES)
    return _codec(p, head)


def open_user_text(path: str | os.PathLike[str]) -> TextIO:
    """``path`` open as a text stream for the ``csv`` module (``newline=""``: it reads CR LF and a
    lone CR as line ends itself), decoded as :func:`read_user_text` decodes (UTF-8, its byte-order
    mark dropped, or UTF-16 or UTF-32 where marked), so that a large file is read line by line
    rather than whole. Bytes that are not text raise ``UnicodeDecodeError`` as they are read (call
    :func:`read_user_text` then for the error naming the line); UTF-16 or UTF-32 text without its
    mark, the ``ValueError`` of :func:`read_user_text` at once."""
    p = Path(path)
    return open(p, encoding=_encoding(p), newline="")


def iter_user_text(path: str | os.PathLike[str], *, block_chars: int | None = None) -> Iterator[str]:
    """The text of ``path`` in pieces of ``block_chars`` characters (default
    :data:`TEXT_BLOCK_CHARS`; no empty piece), holding one at a time: joined, exactly
    ``read_user_text(path)`` (byte-order mark dropped, every line end LF: Python's text mode reads
    CR LF and a lone CR as LF, across the pieces' ends too). Bytes that are not text raise the
    ``ValueError`` of :func:`read_user_text`, naming the line, when the reading gets there (found
    by :func:`_decode_error`, which reads the file again in blocks, never whole)."""
    size = TEXT_BLOCK_CHARS if block_chars is None else block_chars
    if size < 1:
        raise ValueError(f"block_chars must be >= 1, got {size}")
    p = Path(path)
    encoding = _encoding(p)
    with open(p, encoding=encoding) as fh:
        try:
            while piece := fh.read(size):
                yield piece
        except UnicodeDecodeError:
            error = _decode_error(p, encoding)
            if error is None:  # the file changed while read
                raise
            raise error from None


class TextChangedError(ValueError):
    """A text file read in several passes (:class:`StableText`) held another text in a later pass."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(f"{path} changed while it was read; nothing was saved: run again once it is stable")


class StableText:
    """A user's text file read in several passes that must all read one text: a pass that counts
    its tokens (sizing the work, and taking the :attr:`digest` a task records it by), then the
    passes that learn or forget them. Each pass iterates :meth:`pieces` (:func:`iter_user_text`'s).
    The first pass read to its end records a digest of each piece and of the whole text; a later
    pass compares its pieces with those as it reads them and raises :class:`TextChangedError` at
    the first that differs, or where the file ends sooner or later (it was rewritten, grew or
    shrank meanwhile): what a pass that stops early (a process's share of the windows) read is
    checked as far as it read. :attr:`empty` and :attr:`blank` say whether the first pass read
    no text, or only whitespace, as far as it read."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.empty = self.blank = True
        self._digest: str | None = None
        self._recorded: list[bytes] | None = None  # one digest per piece, once a pass read them all

    def pieces(self) -> Iterator[str]:
        """The text's pieces, for one pass: recorded in the first pass, checked in later ones."""
        return self._record() if self._recorded is None else self._compare(self._recorded)

    @property
    def digest(self) -> str:
        """The digest of the text read by the first pass (16 hex digits of the SHA-256 of its UTF-8
        text), naming it in a task's learning records."""
        if self._digest is None:
            raise RuntimeError(f"{self.path}: the text's digest is known once a pass has read all of it")
        return self._digest

    def _record(self) -> Iterator[str]:
        """A first pass: each piece's digest (kept once the pass reaches the file's end) and the
        whole text's."""
        whole, digests = hashlib.sha256(), []
        for piece in iter_user_text(self.path):
            data = piece.encode("utf-8")
            whole.update(data)
            digests.append(_piece_digest(data))
            self.empty, self.blank = False, self.blank and not piece.strip()
            yield piece
        self._digest, self._recorded = whole.hexdigest()[:16], digests

    def _compare(self, recorded: list[bytes]) -> Iterator[str]:
        """A later pass: each piece compared with the first pass's before it is used."""
        count = 0
        for count, piece in enumerate(iter_user_text(self.path), start=1):
            if count > len(recorded) or _piece_digest(piece.encode("utf-8")) != recorded[count - 1]:
                raise TextChangedError(self.path)
            yield piece
        if count != len(recorded):
            raise TextChangedError(self.path)


def _piece_digest(data: bytes) -> bytes:
    """A 16-byte digest of one piece of a text (:class:`StableText`)."""
    return hashlib.blake2b(data, digest_size=16).digest()


#: Bytes of a file read at a time by :func:`_decode_error` while it looks for the bytes that are not text.
DECODE_BLOCK_BYTES = 1 << 20


def _not_text(p: Path, encoding: str, line: int, start: int, reason: str) -> ValueError:
    """The error for bytes of ``p`` that are not text in ``encoding``: ``"<path>:<line>: not UTF-8
    text (<reason> at byte <start>)"`` (UTF-16 or UTF-32 where that is the codec)."""
    what = _CODEC_NAMES.get(encoding, "UTF-8")
    return ValueError(f"{p}:{line}: not {what} text ({reason} at byte {start})")


def _decoder_skip(encoding: str) -> int:
    """Bytes at a file's start that the codec ``encoding`` drops before it counts error offsets:
    the UTF-8 byte-order mark for "utf-8-sig" (only chosen where the file starts with it), none
    for the other codecs (UTF-16 and UTF-32 count their mark)."""
    return len(codecs.BOM_UTF8) if encoding == "utf-8-sig" else 0


def _decode_error(p: Path, encoding: str) -> ValueError | None:
    """The ``ValueError`` of :func:`read_user_text` for the first bytes of ``p`` that are not text
    in ``encoding`` (same line, byte offset and reason), or None when all of ``p`` decodes; read in
    blocks of :data:`DECODE_BLOCK_BYTES` through an incremental decoder, one block held at a time,
    so that a huge file (binary data passed by mistake) is not read whole for its error.

    The decoder raises the error ``bytes.decode`` raises: it keeps a character cut at a block's end
    (at most 3 bytes) for the next block, and reports offsets counted from those kept bytes; a
    character cut by the file's end is an error of the final call. "utf-8-sig" is read as "utf-8"
    after its mark (its decoder drops the mark and counts from after it on the first block only)."""
    skip = _decoder_skip(encoding)
    decoder = codecs.getincrementaldecoder("utf-8" if skip else encoding)()
    newlines = 0  # b"\n" bytes in the file before the current block
    with open(p, "rb") as fh:
        offset = len(fh.read(skip))  # bytes of the file before the current block
        while True:
            block = fh.read(DECODE_BLOCK_BYTES)
            kept = decoder.getstate()[0]  # the end of the previous block, a cut character
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                start = offset - len(kept) + exc.start
                line = newlines - kept.count(b"\n") + (kept + block)[: exc.start].count(b"\n") + 1
                return _not_text(p, encoding, line, start, exc.reason)
            if not block:
                return None
            offset += len(block)
            newlines += block.count(b"\n")


def csv_delimiter(header_line: str) -> str:
    """The field separator of a CSV from its header line: the most frequent of comma, semicolon
    (spreadsheets where the comma is the decimal mark) and tab; a comma on a tie or none."""
    counts = {sep: header_line.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","
