"""Bytes that are not text met by ``iter_user_text``: the error names the same line, byte and reason as
``read_user_text``'s, found by reading the file again in small blocks, never whole."""

from __future__ import annotations

import codecs
import pathlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faast import text_files
from faast.text_files import iter_user_text, read_user_text

#: Bytes that are not UTF-8, or not whole UTF-8 characters: a byte never in UTF-8, a lone
#: continuation byte, characters cut short, an overlong form, a surrogate, a code point past U+10FFFF.
BAD_UTF8 = (
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
)
#: The codecs of wide text, each with its byte-order mark and the bytes of one code unit.
WIDE = {
    "utf-16-le": (codecs.BOM_UTF16_LE, 2),
    "utf-16-be": (codecs.BOM_UTF16_BE, 2),
    "utf-32-le": (codecs.BOM_UTF32_LE, 4),
    "utf-32-be": (codecs.BOM_UTF32_BE, 4),
}
LETTERS = st.one_of(
    st.sampled_from("ab \n\r\té€😀"), st.characters(blacklist_categories=("Cs",), max_codepoint=0x1FFFF)
)


def outcome(read) -> tuple[str, str]:
    """``("text", <the text>)`` or ``("error", <the ValueError's message>)`` of ``read()``."""
    try:
        return "text", read()
    except ValueError as exc:
        return "error", str(exc)


def check_same_as_whole(path: Path, block_bytes: int, block_chars: int) -> tuple[str, str]:
    """What ``iter_user_text`` reads of ``path`` (the error's decoder reading ``block_bytes`` at a time)
    equals what ``read_user_text`` reads: the same text joined, or the same error message."""
    whole = outcome(lambda: read_user_text(path))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(text_files, "DECODE_BLOCK_BYTES", block_bytes)
        streamed = outcome(lambda: "".join(iter_user_text(path, block_chars=block_chars)))
    assert streamed == whole
    return whole


@st.composite
def utf8_files(draw) -> bytes:
    """UTF-8 text, maybe with its mark, with bad bytes put in at random byte offsets (maybe none,
    maybe cutting a character) and maybe a character cut short at the end."""
    data = bytearray(draw(st.text(LETTERS, max_size=60)).encode("utf-8"))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from(BAD_UTF8))
    if draw(st.booleans()):
        data += draw(st.sampled_from((b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98")))
    mark = codecs.BOM_UTF8 if draw(st.booleans()) else b""
    return mark + bytes(data)


@st.composite
def wide_files(draw) -> bytes:
    """UTF-16 or UTF-32 text with its mark, with lone surrogates (or, in UTF-32, code points past
    U+10FFFF) put in between code units, and maybe a tail cut inside a code unit."""
    codec, (mark, unit) = draw(st.sampled_from(sorted(WIDE.items())))
    data = bytearray(draw(st.text(LETTERS, max_size=40)).encode(codec))
    bad = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
    for _ in range(draw(st.integers(0, 2))):
        at = unit * draw(st.integers(0, len(data) // unit))
        wrong = draw(bad).encode(codec, "surrogatepass")
        if unit == 4 and draw(st.booleans()):
            wrong = (0x110000).to_bytes(4, "little" if codec.endswith("le") else "big")
        data[at:at] = wrong
    if draw(st.booleans()):
        del data[len(data) - draw(st.integers(0, min(unit - 1, len(data)))) :]
    return mark + bytes(data)


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(utf8_files(), wide_files()), block_bytes=st.integers(1, 17), block_chars=st.integers(1, 9)
)
def test_the_streamed_error_is_the_whole_files_error(tmp_path_factory, data, block_bytes, block_chars):
    path = tmp_path_factory.mktemp("streamed") / "text.txt"
    path.write_bytes(data)
    check_same_as_whole(path, block_bytes, block_chars)


@settings(max_examples=100, deadline=None)
@given(text=st.text(LETTERS, max_size=60), codec=st.sampled_from(["utf-8", "utf-8-sig", *WIDE]))
def test_valid_text_raises_nothing_and_joins_to_the_whole_text(tmp_path_factory, text, codec):
    mark = WIDE[codec][0] if codec in WIDE else b""
    path = tmp_path_factory.mktemp("valid") / "text.txt"
    path.write_bytes(mark + text.encode(codec))
    kind, _ = check_same_as_whole(path, 3, 4)
    if kind == "text":
        assert text_files._decode_error(path, text_files._encoding(path)) is None
    else:  # NULs in plain UTF-8 text can read as UTF-16 text without its mark
        assert "\x00" in text and codec == "utf-8"


BOM8 = codecs.BOM_UTF8


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xffabc\n", "1: not UTF-8 text (invalid start byte at byte 0)"),
        (b"ab\ncd\n\xff", "3: not UTF-8 text (invalid start byte at byte 6)"),
        (b"ab\n\xe2\x82\xac\n\xe2\x82", "3: not UTF-8 text (unexpected end of data at byte 7)"),
        (b"ab\n\xed\xa0\x80", "2: not UTF-8 text (invalid continuation byte at byte 3)"),
        # the byte of the file, counted with its mark (the codec counts from after it)
        (BOM8 + b"ab\n\xff", "2: not UTF-8 text (invalid start byte at byte 6)"),
        (BOM8 + b"\n\n\xff", "3: not UTF-8 text (invalid start byte at byte 5)"),
        (codecs.BOM_UTF16_LE + "a\n".encode("utf-16-le") + b"\x00\xdcb\x00", "2: not UTF-16 text"),
        (codecs.BOM_UTF16_BE + "ab".encode("utf-16-be") + b"\xd8\x00", "1: not UTF-16 text"),
        (codecs.BOM_UTF32_LE + "ab".encode("utf-32-le") + b"\x00\x00\x11\x00", "1: not UTF-32 text"),
        (codecs.BOM_UTF32_BE + "ab".encode("utf-32-be") + b"\x00\x00", "1: not UTF-32 text (truncated"),
    ],
)
@pytest.mark.parametrize("block_bytes", [1, 2, 3, 4, 5, 6, 7, 8, 1 << 20])
def test_errors_at_block_ends_and_after_a_mark(tmp_path, data, message, block_bytes):
    """An error in the first block, on a block's end, after a character cut by a block's end (no
    error) or by the file's end (an error), after a UTF-8 mark, in UTF-16 and UTF-32 with marks."""
    path = tmp_path / "text.txt"
    path.write_bytes(data)
    kind, got = check_same_as_whole(path, block_bytes, 2)
    assert kind == "error"
    assert got.startswith(f"{path}:{message}")


def test_the_error_is_found_without_reading_the_file_whole(tmp_path, monkeypatch):
    """Bytes that are not text near the end of a huge file raised a MemoryError: the error was found
    by reading the whole file (``read_user_text``) to name the line."""
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"a good line\n" * 5000 + b"bad \xff here\n" + b"more\n" * 10)

    def whole(*args, **kwargs):
        raise AssertionError("the whole file was read")

    monkeypatch.setattr(pathlib.Path, "read_bytes", whole)
    monkeypatch.setattr(text_files, "read_user_text", whole)
    monkeypatch.setattr(text_files, "DECODE_BLOCK_BYTES", 4096)
    with pytest.raises(ValueError) as caught:
        list(iter_user_text(path, block_chars=1000))
    assert str(caught.value) == f"{path}:5001: not UTF-8 text (invalid start byte at byte 60004)"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
