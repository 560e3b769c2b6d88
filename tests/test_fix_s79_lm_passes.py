"""Passes over a text and over examples that did no work of their own: `faast lm learn` read its text
file three times whole (a scan for the digest and the checks, a tokenizing count, the learning) and
now twice (the count gathers the digest and the checks; before the model loads only the file's start
is read); `faast lm perplexity --fast-weights` tokenized the text three times (the count, then once per
scoring pass) and now twice (each batch is scored with the fast weights off and on from the same ids);
`TaskModel.forget` checked its examples twice and `TaskModel.fit`'s length check encoded each prompt
twice. The outputs are those of before (the other tests of these commands pin them)."""

from __future__ import annotations

import json

import pytest
import torch

import faast.lm.task
import faast.lm.text
import faast.lm.text_blocks
import faast.text_files
from faast.cli import main
from faast.lm.examples import Example
from faast.lm.task import TaskModel, TaskSpec
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import WORDS, save_tiny_model, word_tokenizer
from tests.test_lm_task import TEMPLATE, rule_examples

#: Characters read from the file at a time, per tokenized block, and each side of a cut.
READ, BLOCK, CONTEXT = 64, 100, 40


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny Llama with the word tokenizer putting <s> (id 1) before a text."""
    folder = save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
    word_tokenizer(bos=True).save_pretrained(folder)
    return folder


def _text(path, words: int, seed: int = 1):
    picks = [WORDS[(i * 7 + seed * 13 + i // 5) % 40] for i in range(words)]
    lines = [" ".join(picks[i : i + 6]) for i in range(0, len(picks), 6)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class _Reads:
    """Counts what is read of the text files (characters, through ``iter_user_text``) and the
    tokenizing passes (``iter_token_blocks`` calls), in small pieces and blocks."""

    def __init__(self, monkeypatch) -> None:
        self.chars = 0
        self.passes = 0
        monkeypatch.setattr(faast.text_files, "TEXT_BLOCK_CHARS", READ)
        monkeypatch.setattr(faast.lm.text_blocks, "BLOCK_CHARS", BLOCK)
        monkeypatch.setattr(faast.lm.text_blocks, "CONTEXT_CHARS", CONTEXT)
        read, blocks = faast.text_files.iter_user_text, faast.lm.text_blocks.iter_token_blocks

        def counted_read(*args, **kwargs):
            for piece in read(*args, **kwargs):
                self.chars += len(piece)
                yield piece

        def counted_blocks(*args, **kwargs):
            self.passes += 1
            yield from blocks(*args, **kwargs)

        monkeypatch.setattr(faast.text_files, "iter_user_text", counted_read)
        monkeypatch.setattr(faast.lm.text_blocks, "iter_token_blocks", counted_blocks)


def _learn(model, text, out, *extra) -> int:
    argv = ["lm", "learn", "--model", str(model), "--text", str(text), "--out", str(out), "--task", "t"]
    return main([*argv, "--window", "16", "--batch-size", "3", "--threads", "1", *extra])


def test_learn_reads_the_text_twice_and_tokenizes_it_twice(model, tmp_path, monkeypatch, capsys):
    """One pass counts the tokens (and hashes the text, and checks it is text), one learns it;
    before the model loads only the file's first piece is read (it was read whole, a third time)."""
    text = _text(tmp_path / "a.txt", 600)
    size = len(text.read_text(encoding="utf-8"))
    reads = _Reads(monkeypatch)
    assert _learn(model, text, tmp_path / "fw.safetensors") == 0
    assert "learning 600 tokens" in capsys.readouterr().out
    assert reads.passes == 2
    assert reads.chars <= 2 * size + READ, (reads.chars, size)  # was 3 * size


def test_learn_append_reads_the_text_twice_and_still_warns_of_a_text_learned_before(
    model, tmp_path, monkeypatch, capsys
):
    text, out = _text(tmp_path / "a.txt", 300), tmp_path / "fw.safetensors"
    assert _learn(model, text, out) == 0
    size = len(text.read_text(encoding="utf-8"))
    reads = _Reads(monkeypatch)
    capsys.readouterr()
    assert _learn(model, text, out, "--append") == 0
    assert "already learned this text" in capsys.readouterr().err
    assert reads.passes == 2 and reads.chars <= 2 * size + READ


def test_learn_refuses_bytes_that_are_not_text_past_the_files_start_before_learning(
    model, tmp_path, monkeypatch, capsys
):
    """Bytes that are not text past the first piece: refused by the counting pass, after the model
    loads but before anything is learned; the fast-weight file is left as it was."""
    out = tmp_path / "fw.safetensors"
    assert _learn(model, _text(tmp_path / "a.txt", 100), out) == 0
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"w3 w4\n" * 40 + b"\xff\xfe w5\n")  # line 41, past the first 64 characters
    before = out.read_bytes()
    _Reads(monkeypatch)
    monkeypatch.setattr(
        faast.lm.FaastModel, "learn", lambda *a, **k: pytest.fail("learned from a file that is not text")
    )
    capsys.readouterr()
    assert _learn(model, bad, out, "--append") == 1
    assert "bad.txt:41: not UTF-8 text" in capsys.readouterr().err
    assert out.read_bytes() == before


@pytest.mark.parametrize(("content", "message"), [(b"", "is empty"), (b" \n\t\n" * 40, "only whitespace")])
def test_learn_refuses_a_file_without_text_before_the_model_loads(
    model, tmp_path, monkeypatch, capsys, content, message
):
    text = tmp_path / "blank.txt"
    text.write_bytes(content)
    _Reads(monkeypatch)
    monkeypatch.setattr(faast.lm.text, "load_causal_lm", lambda *a, **k: pytest.fail("the model loaded"))
    capsys.readouterr()
    assert _learn(model, text, tmp_path / "fw.safetensors") == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "fw.safetensors").exists()


@pytest.mark.parametrize("max_windows", [None, 5])
def test_perplexity_with_fast_weights_tokenizes_the_text_twice(
    model, tmp_path, monkeypatch, capsys, max_windows
):
    """The count, then one scoring pass scoring each batch by the base model and with the fast
    weights from the same ids (it was one tokenizing pass per score); the same forward passes, and
    the JSON of two separate scorings of the windows."""
    from faast.cli.lm_cmd import _file_windows, _load_with_fast_weights, _read_args
    from faast.cli.threads import cpu_threads
    from faast.lm.text import perplexity

    a, b = _text(tmp_path / "a.txt", 300), _text(tmp_path / "b.txt", 600, seed=2)
    out = tmp_path / "fw.safetensors"
    assert _learn(model, a, out) == 0
    argv = ["lm", "perplexity", "--model", str(model), "--text", str(b), "--window", "16", "--threads", "1"]
    argv += ["--fast-weights", str(out), "--task", "t"]
    argv += [] if max_windows is None else ["--max-windows", str(max_windows)]
    reads = _Reads(monkeypatch)
    forwards: list[bool] = []
    call = faast.lm.FaastModel.forward

    def counted(self, *args, **kwargs):
        forwards.append(self._ctx.enabled)
        return call(self, *args, **kwargs)

    monkeypatch.setattr(faast.lm.FaastModel, "forward", counted)
    capsys.readouterr()
    assert main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    assert reads.passes == 2  # was 3
    batches = 11 if max_windows is None else 2  # 37 windows of 16 in 10 batches, the last 8 tokens alone
    assert forwards.count(False) == forwards.count(True) == batches  # base, with fast weights
    # the JSON of the base model's and the fast weights' scoring, each pass on its own
    import argparse

    parser = argparse.ArgumentParser()
    _read_args(parser)
    args = parser.parse_args([])
    for key, value in {
        "model": str(model),
        "adapter": None,
        "dtype": "float32",
        "device": None,
        "fast_weights": str(out),
        "task": "t",
    }.items():
        setattr(args, key, value)
    monkeypatch.undo()
    with cpu_threads(1):
        fm, tok = _load_with_fast_weights(args)
        windows = _file_windows(tok, str(b), 16, "scored", limit=max_windows)
        with fm.disabled():
            base = perplexity(fm, windows)
        fast = perplexity(fm, windows)
    assert got == {"tokens": base.tokens, "base": base.to_dict(), "fast_weights": fast.to_dict()}


def test_perplexity_without_fast_weights_scores_the_base_model_once(model, tmp_path, monkeypatch, capsys):
    text = _text(tmp_path / "b.txt", 200)
    reads = _Reads(monkeypatch)
    argv = ["lm", "perplexity", "--model", str(model), "--text", str(text), "--window", "16"]
    capsys.readouterr()
    assert main([*argv, "--threads", "1"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"tokens", "base"} and got["tokens"] == 200
    assert reads.passes == 2


# ------------------------------------------------------------------------------------- TaskModel


def _task() -> TaskModel:
    torch.manual_seed(0)
    base = tiny_model("llama", dtype=torch.float64)
    return TaskModel.create(base, word_tokenizer(), TaskSpec(TEMPLATE, "answer", None))


def test_task_forget_checks_its_examples_once(monkeypatch):
    task = _task()
    examples = rule_examples(20)
    task.learn(examples, progress=False)
    calls: list[int] = []
    checked = faast.lm.task.checked_examples

    def counted(*args, **kwargs):
        calls.append(1)
        return checked(*args, **kwargs)

    monkeypatch.setattr(faast.lm.task, "checked_examples", counted)
    assert task.forget(examples[:5], progress=False) > 0
    assert len(calls) == 1  # was 2
    with pytest.raises(ValueError, match=r"example 0 \('w3'\) has no output"):
        task.forget([("w3", " ")], progress=False)
    with pytest.raises(ValueError, match="never learned by this task"):
        task.forget([Example("w3", "w40")], progress=False)


def test_fit_length_check_encodes_each_prompt_once(monkeypatch):
    """``_check_lengths`` scored each prompt with the longest label from the prompt it had just
    encoded with the example's answer, tokenizing it again; the refusal is the same."""
    task = _task()
    examples = rule_examples(12)
    calls: list[str] = []
    prompt_ids = task.codec.prompt_ids

    def counted(text, *args, **kwargs):
        calls.append(text)
        return prompt_ids(text, *args, **kwargs)

    monkeypatch.setattr(task.codec, "prompt_ids", counted)
    task._check_lengths(examples, ["w40", "w41"])
    assert len(calls) == len(examples)  # was twice as many
    calls.clear()
    long_label = " ".join(["w40"] * 30)
    longer = [*examples, Example(" ".join(["w5"] * 40), "w41")]
    with pytest.raises(ValueError, match=r"the prompt of example 13 \('w5 w5.*with a label"):
        task._check_lengths(longer, ["w40", "w41", long_label])
    assert len(calls) == len(longer)


def test_stream_chunks_and_stream_text_share_their_options():
    """``stream_chunks`` runs ``stream_text`` on its ids as one block, forwarding its options: the two
    public signatures keep one list of them (same names, kinds and defaults)."""
    import inspect

    from faast.lm.stream import stream_chunks, stream_text

    def options(fn):
        return {
            name: (p.kind, p.default)
            for name, p in inspect.signature(fn).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    chunks, text = options(stream_chunks), options(stream_text)
    assert {k: v for k, v in chunks.items() if k not in ("chunk", "start_ids")} == text


def test_stream_reads_the_text_twice_and_records_the_digest_forget_checks(
    model, tmp_path, monkeypatch, capsys
):
    """`lm stream --out` scanned the whole text before the model loaded, for its digest, then read
    it to count and to stream (three reads); the count now takes the digest. `lm forget` of the
    same text finds it in the task by that digest (the task's only text: refused, as it would leave
    the task empty, where a text never learned is refused as such)."""
    text, out = _text(tmp_path / "a.txt", 400), tmp_path / "fw.safetensors"
    size = len(text.read_text(encoding="utf-8"))
    reads = _Reads(monkeypatch)
    argv = ["lm", "stream", "--model", str(model), "--text", str(text), "--chunk", "20", "--threads", "1"]
    assert main([*argv, "--out", str(out), "--task", "t"]) == 0
    assert reads.passes == 2
    assert reads.chars <= 2 * size + READ, (reads.chars, size)  # was 3 * size
    capsys.readouterr()
    forget = ["lm", "forget", "--model", str(model), "--text", str(text), "--fast-weights", str(out)]
    assert main([*forget, "--task", "t", "--window", "20", "--batch-size", "1", "--threads", "1"]) != 0
    # found as the task's only text (by its digest), so forgetting it would leave the task empty
    assert "leaves task 't' empty" in capsys.readouterr().err


def test_stream_refuses_bytes_that_are_not_text_before_writing(model, tmp_path, monkeypatch, capsys):
    text, out = _text(tmp_path / "a.txt", 400), tmp_path / "fw.safetensors"
    with open(text, "ab") as fh:
        fh.write(b"\xff\xfe bad bytes\n")
    _Reads(monkeypatch)
    argv = ["lm", "stream", "--model", str(model), "--text", str(text), "--chunk", "20", "--threads", "1"]
    assert main([*argv, "--out", str(out), "--task", "t", "--csv", str(tmp_path / "rows.csv")]) != 0
    assert "UTF-8" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "rows.csv").exists()
