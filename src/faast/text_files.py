"""Decoding the text files users write: UTF-8 with or without a byte-order mark, or UTF-16 with
one (what Windows editors save as "Unicode"); anything else is an error naming the line. Line ends
are read as Python's text mode reads them (universal newlines): CR LF and a lone CR become LF, so
a text saved on Windows teaches a model what the same text saved elsewhere does."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

#: Byte-order marks and the codec each announces (UTF-8's mark is dropped by "utf-8-sig").
_MARKS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_user_text(path: str | os.PathLike[str], *, inner_cr: str | None = None) -> str:
    """The text of ``path`` without its byte-order mark, every line end LF. Raises
    ``ValueError`` ``"<path>:<line>: not UTF-8 text (...)"`` for bytes that are neither UTF-8 nor
    marked UTF-16.

    inner_cr: ``None`` reads a carriage return (CR) not followed by LF as a line end (old Mac
    files); otherwise such a CR in a file whose lines end in LF (or CR LF) elsewhere is refused,
    naming its line and ending with this advice: in a line-per-record file it is a line break
    inside a record (a spreadsheet cell's), and reading it as a line end would split the record."""
    p = Path(path)
    data = p.read_bytes()
    encoding = next((codec for mark, codec in _MARKS if data.startswith(mark)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        what = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise ValueError(f"{p}:{line}: not {what} text ({exc.reason} at byte {exc.start})") from None
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
    """The codec of a user's text file from its byte-order mark (UTF-8 without one)."""
    with open(p, "rb") as fh:
        head = fh.read(4)
    return next((codec for mark, codec in _MARKS if head.startswith(mark)), "utf-8")


def open_user_text(path: str | os.PathLike[str]) -> TextIO:
    """``path`` open as a text stream for the ``csv`` module (``newline=""``: it reads CR LF and a
    lone CR as line ends itself), decoded as :func:`read_user_text` decodes (UTF-8, its byte-order
    mark dropped, or UTF-16 where marked), so that a large file is read line by line rather than
    whole. Bytes that are not text raise ``UnicodeDecodeError`` as they are read (call
    :func:`read_user_text` then for the error naming the line)."""
    p = Path(path)
    return open(p, encoding=_encoding(p), newline="")


def iter_user_text(path: str | os.PathLike[str], *, block_chars: int | None = None) -> Iterator[str]:
    """The text of ``path`` in pieces of ``block_chars`` characters (default
    :data:`TEXT_BLOCK_CHARS`; no empty piece), holding one at a time: joined, exactly
    ``read_user_text(path)`` (byte-order mark dropped, every line end LF: Python's text mode reads
    CR LF and a lone CR as LF, across the pieces' ends too). Bytes that are not text raise the
    ``ValueError`` of :func:`read_user_text`, naming the line, when the reading gets there."""
    size = TEXT_BLOCK_CHARS if block_chars is None else block_chars
    if size < 1:
        raise ValueError(f"block_chars must be >= 1, got {size}")
    p = Path(path)
    with open(p, encoding=_encoding(p)) as fh:
        try:
            while piece := fh.read(size):
                yield piece
        except UnicodeDecodeError:
            read_user_text(p)  # raises the error naming the line
            raise


def csv_delimiter(header_line: str) -> str:
    """The field separator of a CSV from its header line: the most frequent of comma, semicolon
    (spreadsheets where the comma is the decimal mark) and tab; a comma on a tie or none."""
    counts = {sep: header_line.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > counts[","] else ","
