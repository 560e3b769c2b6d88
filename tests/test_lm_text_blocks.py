"""`faast lm learn` / `lm stream` read and tokenize a text block by block (memory bounded in the
text's length) with exactly the ids of one call on the whole text, hence the same fast weights."""

from __future__ import annotations

import codecs
import functools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

import faast.lm.text_blocks
import faast.text_files
from faast.cli import main
from faast.lm.stream import chunk_stream
from faast.lm.text import (
    TEXT_AS_TEXT,
    encode,
    iter_window_batches,
    learn_windows,
    read_text,
    text_windows,
    window_batches,
)
from faast.lm.text_blocks import iter_token_blocks
from faast.lm.window_stream import TextWindows, iter_token_windows
from faast.text_files import iter_user_text, read_user_text
from tests.lm_sentencepiece import SP_WORDS, dummy_prefix_tokenizer
from tests.lm_wordlevel import WORDS, save_tiny_model, word_tokenizer

#: Pieces of text: line ends of every kind, blank lines, leading and runs of spaces, tabs, unicode
#: (accents, CJK, emoji, a combining mark), special-token strings, long runs without a newline.
FRAGMENTS = [
    "\n", "\r\n", "\r", "\n\n\n", " ", "  ", "    ", "\t", " \n", "\n ", "\u00a0", "\u2028",
    "the", " the", "The", "Ünïcödé", "日本語のテキスト", "😀", "e\u0301", "—", "“quotes”", "1234567",
    "'s", "can't", ".", ",", "!?", "<eos>", "<|endoftext|>", "<bos>", "<start_of_turn>",
    "x" * 40, "ab" * 30, " " * 37, "\n" * 9, "w3", " w45", "w96", "good", " positive", "Review:",
]  # fmt: skip


def _ids(tok, text: str) -> list[int]:
    return list(tok(text, **TEXT_AS_TEXT).input_ids)


@functools.cache
def _real_tokenizer(name: str):
    from transformers import AutoTokenizer

    from faast.assets.lm import gemma3_dir, smollm2_dir

    folder = {"smollm2": smollm2_dir, "gemma3": gemma3_dir}[name]()
    return AutoTokenizer.from_pretrained(str(folder))


#: Tokenizers of several families: byte-level BPE (SmolLM2), SentencePiece-style BPE without a
#: pre-tokenizer (Gemma 3), a Unigram with a dummy prefix, whitespace words.
TOKENIZERS = [
    pytest.param("smollm2", marks=pytest.mark.assets("smollm2-135m-instruct")),
    pytest.param("gemma3", marks=pytest.mark.assets("gemma3-270m")),
    "dummy-prefix",
    "words",
]


def _tokenizer(name: str):
    if name == "dummy-prefix":
        return dummy_prefix_tokenizer()
    if name == "words":
        return word_tokenizer()
    return _real_tokenizer(name)


def _blockwise(tok, text: str, block_chars: int, piece: int, context: int | None = None) -> list[int]:
    pieces = [text[i : i + piece] for i in range(0, len(text), piece)]
    blocks = list(iter_token_blocks(tok, pieces, block_chars=block_chars, context=context))
    assert all(b.dtype == torch.long and b.ndim == 1 and b.numel() for b in blocks)
    return [i for b in blocks for i in b.tolist()]


texts = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), min_size=1, max_size=40).map("".join)


@pytest.mark.parametrize("name", TOKENIZERS)
@given(text=texts, block_chars=st.integers(1, 60), piece=st.integers(1, 50))
def test_blockwise_ids_equal_the_whole_texts(name, text, block_chars, piece):
    tok = _tokenizer(name)
    assert _blockwise(tok, text, block_chars, piece) == _ids(tok, text)


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("block_chars", [7, 300, 5000])
def test_a_long_text_cut_many_times_keeps_the_ids(name, block_chars):
    """Many cuts with a short and with the default check context: lines, long lines without a
    newline, runs of spaces and letters longer than the context."""
    tok = _tokenizer(name)
    words = " ".join(SP_WORDS + tuple(WORDS[:20]))
    text = ("It is a truth universally acknowledged,\n  that a single man\n\nin possession " * 30) + words
    text += (
        "x" * 700 + " " * 600 + "\r\n" + "of a good fortune, — “quotes” 1234567 日本語😀\n" * 40 + words * 5
    )
    whole = _ids(tok, text)
    for context in (24, None):
        assert _blockwise(tok, text, block_chars, 997, context) == whole


def test_blocks_hold_a_bounded_part_of_the_text():
    """Each tokenizer call reads at most a block and the check's context, not the whole text."""
    tok = word_tokenizer()
    calls: list[int] = []

    class Spy:
        def __call__(self, text, **kw):
            calls.append(len(text))
            return tok(text, **kw)

    text = "\n".join(" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) for i in range(2000))
    ids = [i for b in iter_token_blocks(Spy(), [text], block_chars=1000, context=100) for i in b.tolist()]
    assert ids == _ids(tok, text)
    assert max(calls) <= 1000 + 3 * 100 + 80  # a block, the context before it, a line


@given(
    text=st.lists(st.sampled_from(["a", "é", "日", "😀", "\r", "\n", "\r\n", " "]), max_size=60).map("".join),
    block_chars=st.integers(1, 16),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_the_file_read_block_by_block_is_the_file_read_whole(tmp_path_factory, text, block_chars, encoding):
    path = tmp_path_factory.mktemp("t") / "t.txt"
    path.write_bytes(text.encode(encoding))
    assert "".join(iter_user_text(path, block_chars=block_chars)) == read_user_text(path)


def test_a_file_that_is_not_text_is_refused_naming_its_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"one\ntwo\n" * 10 + b"\xff\xfe bad\n" + codecs.BOM_UTF8)
    with pytest.raises(ValueError, match=r"bad.txt:21: not UTF-8 text"):
        list(iter_user_text(path, block_chars=5))


@given(
    n=st.integers(2, 200),
    length=st.integers(2, 40),
    start=st.sampled_from([[], [1], [1, 2]]),
    cut=st.integers(1, 50),
    batch=st.integers(1, 5),
)
def test_streamed_windows_and_batches_are_the_whole_texts(n, length, start, cut, batch):
    ids = torch.arange(3, 3 + n)
    blocks = [ids[i : i + cut] for i in range(0, n, cut)]
    windows = TextWindows.from_blocks(lambda: iter(blocks), length, start)
    whole = text_windows(ids, length, start)
    assert len(windows) == len(whole) and [w.tolist() for w in windows] == [w.tolist() for w in whole]
    assert windows.left_out == n - sum(w.numel() - len(start) for w in whole)
    assert [c.tolist() for c in iter_token_windows(iter(blocks), length)] == [
        p.tolist() for _, p in chunk_stream(ids, length)
    ]
    got = [b.tolist() for b in iter_window_batches(windows, batch)]
    assert got == [b.tolist() for b in window_batches(whole, batch)] and len(got) == windows.batches(batch)
    for lo, hi in ((0, 1), (1, len(whole)), (len(whole) // 2, len(whole))):  # a process's share
        part = windows[lo:hi]
        assert [w.tolist() for w in part] == [w.tolist() for w in whole[lo:hi]]
        assert part.batches(batch) == len(window_batches(whole[lo:hi], batch)) if hi > lo else True


# ------------------------------------------------------------------ the command, end to end


def _model(tmp_path, tokenizer: str):
    folder = save_tiny_model(tmp_path / f"model-{tokenizer}")
    if tokenizer == "dummy-prefix":
        dummy_prefix_tokenizer().save_pretrained(folder)
    return folder


def _text_of(tokenizer: str) -> str:
    words = list(SP_WORDS) if tokenizer == "dummy-prefix" else WORDS[:40]
    lines = [" ".join(words[(i * 5 + j) % len(words)] for j in range(i % 9 + 1)) for i in range(120)]
    return "\r\n".join(lines[:40]) + "\n\n  " + "\n".join(lines[40:]) + "\n"


def _reference(folder, path, window: int, batch_size: int, out):
    """The fast weights of the whole-text path: the text read whole, encoded in one stream,
    cut into windows, learned in batches (as `faast lm learn` did before)."""
    from faast.cli.threads import cpu_threads
    from faast.lm import FaastConfig, get_faast_model
    from faast.lm.prompts import start_token_ids
    from faast.lm.text import learn_windows, load_causal_lm

    with cpu_threads(1):  # as the command runs with --threads 1 (the same sums in the same order)
        model, tok = load_causal_lm(str(folder))
        fm = get_faast_model(model, FaastConfig.from_dict({"num_memories": 0}))
        windows = text_windows(encode(tok, read_text(path)), window, start_token_ids(tok))
        learn_windows(fm, windows, batch_size=batch_size, progress=False)
        fm.save_fast_weights(out, task="default")
    return load_file(out)


@pytest.mark.parametrize("tokenizer", ["words", "dummy-prefix"])
def test_lm_learn_gives_the_fast_weights_of_the_whole_text(tmp_path, monkeypatch, tokenizer):
    """Blocks of 100 characters and 64-byte reads (many cuts): the same fast weights, bit for bit;
    and the text is never read whole, nor tokenized in calls much longer than a block."""
    folder, path = _model(tmp_path, tokenizer), tmp_path / "notes.txt"
    path.write_text(_text_of(tokenizer), encoding="utf-8", newline="")
    reference = _reference(folder, path, 16, 3, tmp_path / "reference.safetensors")
    monkeypatch.setattr(faast.lm.text_blocks, "BLOCK_CHARS", 100)
    monkeypatch.setattr(faast.lm.text_blocks, "CONTEXT_CHARS", 40)
    monkeypatch.setattr(faast.text_files, "TEXT_BLOCK_CHARS", 64)
    monkeypatch.setattr("faast.lm.text.read_user_text", lambda *a, **k: pytest.fail("read the text whole"))
    longest = _spy_on_tokenizer_calls(monkeypatch)
    out = tmp_path / "fw.safetensors"
    argv = ["lm", "learn", "--model", str(folder), "--text", str(path), "--out", str(out)]
    assert main([*argv, "--window", "16", "--batch-size", "3", "--threads", "1"]) == 0
    got = load_file(out)
    assert got.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(got[name], tensor), name
    assert 0 < max(longest) <= 100 + 3 * 40 + 60


def _spy_on_tokenizer_calls(monkeypatch) -> list[int]:
    """Record the length of every text the loaded tokenizer is called on."""
    import faast.lm.text

    lengths: list[int] = []
    load = faast.lm.text.load_causal_lm

    def spied(*args, **kwargs):
        model, tok = load(*args, **kwargs)
        base = type(tok)

        def call(self, text, *a, **k):
            if isinstance(text, str):
                lengths.append(len(text))
            return base.__call__(self, text, *a, **k)

        tok.__class__ = type(base.__name__, (base,), {"__call__": call})
        return model, tok

    monkeypatch.setattr(faast.lm.text, "load_causal_lm", spied)
    return lengths


def test_lm_stream_gives_the_rows_and_fast_weights_of_the_whole_text(tmp_path, monkeypatch):
    """`faast lm stream` on blocks of 80 characters: the per-chunk scores and the fast weights of
    `stream_chunks` on the whole text's ids; the text is never read or tokenized whole."""
    import csv

    from faast.cli.threads import cpu_threads
    from faast.lm import FaastConfig, get_faast_model
    from faast.lm.stream import stream_chunks
    from faast.lm.text import load_causal_lm

    folder, path = _model(tmp_path, "words"), tmp_path / "book.txt"
    path.write_text(_text_of("words"), encoding="utf-8")
    with cpu_threads(1):
        model, tok = load_causal_lm(str(folder))
        fm = get_faast_model(model, FaastConfig.from_dict({"num_memories": 0}))
        ids = encode(tok, read_text(path))
        rows = stream_chunks(fm, ids, chunk=12, context=20, max_chunks=30, progress=False)
        fm.save_fast_weights(tmp_path / "reference.safetensors", task="default")
    monkeypatch.setattr(faast.lm.text_blocks, "BLOCK_CHARS", 80)
    monkeypatch.setattr(faast.lm.text_blocks, "CONTEXT_CHARS", 40)
    monkeypatch.setattr(faast.text_files, "TEXT_BLOCK_CHARS", 50)
    monkeypatch.setattr("faast.lm.text.read_user_text", lambda *a, **k: pytest.fail("read the text whole"))
    longest = _spy_on_tokenizer_calls(monkeypatch)
    out, table = tmp_path / "fw.safetensors", tmp_path / "rows.csv"
    argv = ["lm", "stream", "--model", str(folder), "--text", str(path), "--chunk", "12", "--context", "20"]
    assert main([*argv, "--max-chunks", "30", "--out", str(out), "--csv", str(table), "--threads", "1"]) == 0
    with table.open() as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(rows) == 30
    for row, ref in zip(got, rows, strict=True):
        assert int(row["start"]) == ref.start and int(row["pairs_learned"]) == ref.pairs_learned
        for name in ("ppl", "base_ppl", "context_ppl"):
            assert float(row[name]) == float(str(getattr(ref, name))), name
    reference = load_file(tmp_path / "reference.safetensors")
    got_weights = load_file(out)
    assert all(torch.equal(got_weights[k], v) for k, v in reference.items())
    assert 0 < max(longest) <= 80 + 3 * 40 + 60


@pytest.mark.assets("gemma3-270m")
@pytest.mark.parametrize("run", [" ▁" * 150, "▁ " * 150, " " * 7 + "▁" + " " * 150])
def test_a_run_of_spaces_and_their_normalised_symbol_is_not_cut_on_gemma(run):
    """Gemma's normalizer writes every space as "▁", so a run mixing spaces and "▁" is one run of
    one symbol, which BPE groups as a whole: a cut inside it, allowed because the raw characters
    changed class, gave other ids than one call, silently (hunt of the block reading). The classes
    are now read from the normalised text."""
    tok = _real_tokenizer("gemma3")
    text = "Hello there, this is a line.\n" * 40 + "Q" + run + " end."
    want = list(tok(text, **TEXT_AS_TEXT).input_ids)
    for block_chars in (1100, 1150, 1180):  # the cut lands inside the run
        assert _blockwise(tok, text, block_chars, 997, context=64) == want


def test_learn_windows_takes_any_sequence_of_windows():
    """Tuples and generators of windows were sent down the block-reading path and failed."""

    class Counter:
        def __init__(self) -> None:
            self.batches: list[list[int]] = []
            self.anchor = torch.nn.Linear(1, 1)

        def parameters(self):
            return self.anchor.parameters()

        def learn(self, input_ids: torch.Tensor) -> int:
            self.batches.append(list(input_ids.shape))
            return input_ids.numel()

    windows = [torch.arange(4), torch.arange(4), torch.arange(3)]
    for kind in (windows, tuple(windows), iter(windows), torch.stack(windows[:2])):
        model = Counter()
        assert learn_windows(model, kind, batch_size=2, progress=False) > 0
        assert model.batches[0] == [2, 4]
