"""`faast lm forget` and `faast lm perplexity` read and tokenize the text block by block, as `lm learn`
and `lm stream` do (memory bounded in the text's length): the same windows and batches, hence the
same pairs forgotten and the same perplexities as the whole text read and tokenized in one call."""

from __future__ import annotations

import json

import pytest
import torch

import faast.lm.text
import faast.lm.text_blocks
import faast.text_files
from faast.cli import main
from faast.lm.fastweights import read_task
from faast.lm.window_stream import TextWindows
from tests.lm_wordlevel import WORDS, save_tiny_model, word_tokenizer

#: Blocks of text tokenized per call, context each side of a cut, characters read at a time: (a few
#: words, 6 characters, 5) for the short texts, (100, 40, 64) for the long ones.
SMALL_BLOCKS, LARGE_BLOCKS = (12, 6, 5), (100, 40, 64)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny Llama with the word tokenizer putting <s> (id 1) before a text: a start token in
    front of every window."""
    folder = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
    word_tokenizer(bos=True).save_pretrained(folder)
    return folder


def _text(path, seed: int, words: int):
    """Lines of 1 to 9 words (line ends every few words: many places to cut)."""
    picks = [WORDS[(i * 7 + seed * 13 + i // 5) % 40] for i in range(words)]
    lines, i = [], 0
    while i < len(picks):
        n = (i + seed) % 9 + 1
        lines.append(" ".join(picks[i : i + n]))
        i += n
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _small_blocks(monkeypatch, sizes) -> list[int]:
    """Tokenize in blocks of ``sizes`` (block, context, read) characters; the text may no longer be
    read whole (``read_text``). Returns the sizes of the blocks made, as they are made."""
    block, context, read = sizes
    monkeypatch.setattr(faast.lm.text_blocks, "BLOCK_CHARS", block)
    monkeypatch.setattr(faast.lm.text_blocks, "CONTEXT_CHARS", context)
    monkeypatch.setattr(faast.text_files, "TEXT_BLOCK_CHARS", read)
    monkeypatch.setattr(faast.lm.text, "read_user_text", lambda *a, **k: pytest.fail("read the text whole"))
    made: list[int] = []
    blocks = faast.lm.text_blocks.iter_token_blocks

    def counted(*args, **kwargs):
        for ids in blocks(*args, **kwargs):
            made.append(ids.numel())
            yield ids

    monkeypatch.setattr(faast.lm.text_blocks, "iter_token_blocks", counted)
    return made


def _whole_windows(tok, path, window: int) -> list[torch.Tensor]:
    """The windows of the whole-text path: the file read whole, tokenized in one call, cut."""
    from faast.lm.prompts import start_token_ids
    from faast.lm.text import read_text, text_windows

    ids = torch.tensor(tok(read_text(path), **faast.lm.text.TEXT_AS_TEXT).input_ids)
    return text_windows(ids, window, start_token_ids(tok))


def _loaded(folder, path=None, task=None):
    """The model as the command builds it, with the fast weights of ``task`` in ``path``."""
    from faast.lm import FaastConfig, get_faast_model
    from faast.lm.fastweights import read_config, task_read_config

    model, tok = faast.lm.text.load_causal_lm(str(folder))
    if path is None:
        return get_faast_model(model, FaastConfig.from_dict({"num_memories": 0})), tok
    read = task_read_config(read_task(path, task)[2])
    fm = get_faast_model(model, FaastConfig.from_dict(read_config(path, task)), read)
    fm.load_fast_weights(path, task)
    return fm, tok


def _reference_forget(folder, path, task, text, window, batch_size, first=None):
    """Forget ``text`` from a copy of ``task`` the whole-text way: (pairs, its tensors after)."""
    from faast.cli.threads import cpu_threads
    from faast.lm.text import window_batches

    with cpu_threads(1):  # as the command runs with --threads 1 (the same sums in the same order)
        fm, tok = _loaded(folder, path, task)
        windows = _whole_windows(tok, text, window)[:first]
        pairs = sum(fm.forget(input_ids=b) for b in window_batches(windows, batch_size))
        out = path.with_name("reference.safetensors")
        fm.save_fast_weights(out, task=task)
    return pairs, read_task(out, task)[1]


def _learn(folder, text, out, task, window, batch, *extra):
    argv = ["lm", "learn", "--model", str(folder), "--text", str(text), "--out", str(out), "--task", task]
    assert main([*argv, "--window", str(window), "--batch-size", str(batch), "--threads", "1", *extra]) == 0


def _forget(folder, text, path, task, window, batch):
    argv = ["lm", "forget", "--model", str(folder), "--text", str(text), "--fast-weights", str(path)]
    return main(
        [*argv, "--task", task, "--window", str(window), "--batch-size", str(batch), "--threads", "1"]
    )


STATISTICS = ("output/gram", "output/cross")


@pytest.mark.parametrize(
    ("words", "sizes", "window", "batch"),
    [(8, SMALL_BLOCKS, 4, 2), (500, LARGE_BLOCKS, 16, 3)],
    ids=["rows-kept", "rows-dropped"],
)
def test_learn_then_forget_leaves_what_never_learned_it(
    model, tmp_path, monkeypatch, capsys, words, sizes, window, batch
):
    """A round trip on texts of many blocks: the pairs and statistics forgotten are those of the
    whole-text path, bit for bit, and the task is the one that learned only the rest (bit for bit
    while the memory keeps its d = 32 rows, to 1e-10 past them)."""
    a, b = _text(tmp_path / "a.txt", 1, words), _text(tmp_path / "b.txt", 2, words + words // 2)
    made = _small_blocks(monkeypatch, sizes)
    path = tmp_path / "fw.safetensors"
    _learn(model, a, path, "rest", window, batch)
    _learn(model, a, path, "both", window, batch)
    _learn(model, b, path, "both", window, batch, "--append")
    monkeypatch.undo()
    pairs, want = _reference_forget(model, path, "both", b, window, batch)
    made = _small_blocks(monkeypatch, sizes)
    capsys.readouterr()
    assert _forget(model, b, path, "both", window, batch) == 0
    assert f"forgot {pairs} pairs of {b}" in capsys.readouterr().out
    assert len(made) > 5  # b was read in many blocks
    _, got, signature = read_task(path, "both")
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want), [
        k for k in want if not torch.equal(got[k], want[k])
    ]
    assert [r["text"] for r in signature["info"]["learned"]] == ["a.txt"]
    rest = read_task(path, "rest")[1]
    assert torch.equal(got["output/counts"], rest["output/counts"])
    assert int(got["output/count"]) == int(rest["output/count"])
    rtol = 0.0 if int(rest["output/count"]) <= 32 else 1e-10
    for key in STATISTICS:
        assert float((got[key] - rest[key]).abs().max()) <= rtol * float(rest[key].abs().max()), key


def test_forget_after_stream_max_chunks_forgets_the_chunks_streamed(model, tmp_path, monkeypatch, capsys):
    """`lm stream --max-chunks 7` learned the first 7 chunks: forget, block by block, removes those."""
    a, b = _text(tmp_path / "a.txt", 1, 200), _text(tmp_path / "b.txt", 2, 400)
    _small_blocks(monkeypatch, LARGE_BLOCKS)
    path = tmp_path / "fw.safetensors"
    stream = ["lm", "stream", "--model", str(model), "--text", str(b), "--chunk", "12", "--max-chunks", "7"]
    assert main([*stream, "--out", str(path), "--task", "s", "--no-base", "--threads", "1"]) == 0
    _learn(model, a, path, "s", 16, 3, "--append")
    _learn(model, a, path, "rest", 16, 3)
    monkeypatch.undo()
    pairs, want = _reference_forget(model, path, "s", b, 12, 1, first=7)
    streamed = read_task(path, "s")[2]["info"]["learned"][0]
    assert (streamed["text"], streamed["windows"], streamed["pairs"]) == ("b.txt", 7, pairs)
    made = _small_blocks(monkeypatch, LARGE_BLOCKS)
    capsys.readouterr()
    assert _forget(model, b, path, "s", 12, 1) == 0
    out = capsys.readouterr().out
    assert "forgetting the first 7 of the text's" in out and f"forgot {pairs} pairs" in out
    assert len(made) > 5
    _, got, _ = read_task(path, "s")
    assert all(torch.equal(got[k], want[k]) for k in want)
    rest = read_task(path, "rest")[1]
    assert torch.equal(got["output/counts"], rest["output/counts"])
    for key in STATISTICS:
        assert float((got[key] - rest[key]).abs().max()) <= 1e-10 * float(rest[key].abs().max()), key


@pytest.mark.parametrize("max_windows", [None, 5])
def test_perplexity_block_by_block_is_the_whole_texts(model, tmp_path, monkeypatch, capsys, max_windows):
    """The JSON of `lm perplexity`, blocks of 100 characters, equals that of the whole text's
    windows (the first --max-windows of them), with and without fast weights."""
    from faast.cli.threads import cpu_threads
    from faast.lm.text import perplexity

    a, b = _text(tmp_path / "a.txt", 1, 300), _text(tmp_path / "b.txt", 2, 600)
    path = tmp_path / "fw.safetensors"
    _learn(model, a, path, "a", 16, 4)
    with cpu_threads(1):
        fm, tok = _loaded(model, path, "a")
        windows = _whole_windows(tok, b, 16)
        cut = windows[:max_windows]
        with fm.disabled():
            base = perplexity(fm, cut)
        want = {"tokens": base.tokens, "base": base.to_dict(), "fast_weights": perplexity(fm, cut).to_dict()}
    left = sum(w.numel() - 1 for w in windows[len(cut) :])  # tokens past --max-windows (<s> not counted)
    made = _small_blocks(monkeypatch, LARGE_BLOCKS)
    argv = ["lm", "perplexity", "--model", str(model), "--text", str(b), "--window", "16", "--threads", "1"]
    argv += ["--fast-weights", str(path), "--task", "a"]
    capsys.readouterr()
    assert main(argv + ([] if max_windows is None else ["--max-windows", str(max_windows)])) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == want and len(made) > 5
    if max_windows is not None:
        assert f"the last {left} of the text's" in captured.err and "--max-windows 5" in captured.err


@pytest.mark.parametrize("command", ["forget", "perplexity"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\t\n", "holds only whitespace"),
        (b"w3 w4\n\xff\xfe w5", ":2: not UTF-8 text"),
    ],
)
def test_a_file_without_text_is_refused_before_the_model_loads(
    model, tmp_path, monkeypatch, capsys, command, content, message
):
    path = tmp_path / "fw.safetensors"
    _learn(model, _text(tmp_path / "a.txt", 1, 40), path, "a", 16, 4)
    text = tmp_path / "bad.txt"
    text.write_bytes(content)
    monkeypatch.setattr(faast.lm.text, "load_causal_lm", lambda *a, **k: pytest.fail("the model loaded"))
    argv = ["lm", command, "--model", str(model), "--text", str(text), "--fast-weights", str(path)]
    before = path.read_bytes()
    capsys.readouterr()
    assert main([*argv, "--task", "a", "--window", "16", "--threads", "1"]) == 1
    assert message in capsys.readouterr().err
    assert path.read_bytes() == before


def test_text_windows_longest_is_that_of_the_windows():
    ids = torch.arange(3, 3 + 37)
    for length in (4, 5, 36, 37, 40):
        windows = TextWindows.from_blocks(lambda: [ids[:10], ids[10:]], length, [1])
        for lo, hi in ((0, len(windows)), (len(windows) - 1, len(windows)), (0, 0)):
            part = windows[lo:hi]
            assert part.longest == max((w.numel() for w in part), default=0), (length, lo, hi)
