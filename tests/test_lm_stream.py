"""Streaming mode: each chunk is scored before it is learned, with exactly the chunks before it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.stream import chunk_stream, stream_chunks, summarize
from tests.lm_tiny import VOCAB, tiny_model

READ = ReadConfig(weight=0.8, temperature=0.05, gate=None)


def make(family: str = "llama"):
    return get_faast_model(tiny_model(family, dtype=torch.float64), FaastConfig(num_memories=0), READ)


def stream_ids(n: int, seed: int = 0) -> torch.Tensor:
    """A repetitive stream (a 20-token phrase with noise) that the memory can learn."""
    gen = torch.Generator().manual_seed(seed)
    phrase = torch.randint(3, VOCAB, (20,), generator=gen)
    ids = phrase.repeat(n // 20 + 1)[:n]
    noise = torch.rand(n, generator=gen) < 0.1
    ids[noise] = torch.randint(3, VOCAB, (int(noise.sum()),), generator=gen)
    return ids


@torch.no_grad()
def plain_nll(model, prefix: list[int], piece: torch.Tensor, score_first: bool) -> float:
    seq = torch.tensor([*prefix, *piece.tolist()])[None]
    logp = F.log_softmax(model(input_ids=seq).logits[0].double(), -1)
    first = len(prefix) + (0 if score_first else 1)
    return float(-sum(logp[t - 1, seq[0, t]] for t in range(first, seq.shape[1])))


@pytest.mark.parametrize("start", [[], [1]])
def test_each_chunk_is_scored_with_the_fast_weights_of_the_chunks_before_it(start):
    ids = stream_ids(100)
    fm = make()
    rows = stream_chunks(fm, ids, chunk=24, start_ids=start, context=30, progress=False)
    pieces = chunk_stream(ids, 24)
    assert [r.start for r in rows] == [s for s, _ in pieces] == [0, 24, 48, 72, 96]
    for i, (row, (offset, piece)) in enumerate(zip(rows, pieces, strict=True)):
        ref = make()  # a fresh model that learned exactly chunks 0 … i−1
        for _, before in pieces[:i]:
            ref.learn(input_ids=torch.tensor([[*start, *before.tolist()]]))
        n = len(piece) - (0 if start else 1)
        assert row.tokens == n
        assert row.nll == pytest.approx(plain_nll(ref, start, piece, bool(start)) / n, rel=1e-6)
        with ref.disabled():
            assert row.base_nll == pytest.approx(plain_nll(ref, start, piece, bool(start)) / n, rel=1e-6)
            context = ids[max(0, offset - 30) : offset].tolist()
            expect = plain_nll(ref, start + context, piece, bool(start)) / n
            assert row.context_nll == pytest.approx(expect, rel=1e-6)
    assert rows[0].nll == pytest.approx(rows[0].base_nll)  # nothing learned before the first chunk
    assert fm.output_memory.memory.num_pairs == sum(r.pairs_learned for r in rows)


def test_streaming_learns_a_repetitive_text():
    rows = stream_chunks(make(), stream_ids(400), chunk=40, start_ids=[1], progress=False)
    parts = summarize(rows, parts=2)
    assert parts[-1]["ppl"] < parts[-1]["base_ppl"]  # the later half is predicted better
    assert parts[0]["tokens"] + parts[1]["tokens"] == sum(r.tokens for r in rows)
    assert math.isclose(rows[3].ppl, math.exp(rows[3].nll))


def test_without_learning_every_chunk_reads_the_same_fast_weights():
    fm = make()
    ids = stream_ids(80)
    fm.learn(input_ids=ids[None])
    before = fm.output_memory.memory.num_pairs
    rows = stream_chunks(fm, ids, chunk=20, learn=False, score_base=False, progress=False)
    assert fm.output_memory.memory.num_pairs == before and all(r.pairs_learned == 0 for r in rows)
    assert all(r.base_nll is None and r.context_nll is None for r in rows)


def test_bad_streams_are_refused():
    with pytest.raises(ValueError, match="1-D"):
        chunk_stream(torch.zeros(2, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        chunk_stream(torch.arange(10), 1)
    with pytest.raises(ValueError, match="too short"):
        chunk_stream(torch.arange(1), 4)
    with pytest.raises(ValueError, match="max_chunks"):
        chunk_stream(torch.arange(10), 4, max_chunks=0)
    with pytest.raises(ValueError, match="context"):
        stream_chunks(make(), torch.arange(3, 20), chunk=4, context=-1, progress=False)
    with pytest.raises(ValueError, match="no chunks"):
        summarize([])


def test_stream_command_writes_chunks_plot_and_fast_weights(tmp_path, capsys):
    import csv
    import json

    from faast.cli import main
    from faast.lm.fastweights import read_file
    from tests.test_lm_cli import WORDS

    folder = tmp_path / "tiny"
    import torch as _torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tiny_model("llama", dtype=_torch.float32).save_pretrained(folder)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>").save_pretrained(folder)
    text = tmp_path / "book.txt"
    text.write_text(" ".join(WORDS[i % 30] for i in range(200)))
    out_csv, out_fw = tmp_path / "stream.csv", tmp_path / "fw.safetensors"
    argv = ["lm", "stream", "--model", str(folder), "--text", str(text), "--chunk", "40", "--context", "40"]
    assert main([*argv, "--csv", str(out_csv), "--out", str(out_fw), "--weight", "0.8", "--no-gate"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["chunks"] == 5 and len(summary["parts"]) == 4
    with open(out_csv) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["start"]) for r in rows] == [0, 40, 80, 120, 160]
    assert float(rows[-1]["ppl"]) < float(rows[-1]["base_ppl"])  # the text repeats: later chunks are learned
    assert out_csv.with_suffix(".png").stat().st_size > 1000
    assert set(read_file(out_fw)[1]) == {"default"}


def test_stream_command_checks_its_result_paths_before_reading(tmp_path, capsys, monkeypatch):
    """An unwritable --csv or an --out that is not fast weights failed after the whole text was
    streamed; now before the model is loaded."""
    from faast.cli import lm_cmd, main

    monkeypatch.setattr(lm_cmd, "_load", lambda *a, **k: pytest.fail("loaded before the check"))
    text = tmp_path / "book.txt"
    text.write_text("some words to read")
    (tmp_path / "notes").write_text("x")
    argv = ["lm", "stream", "--text", str(text)]
    for extra, message in (
        (["--csv", str(tmp_path / "notes" / "s.csv")], "notes is a file, not a folder"),
        (["--out", str(tmp_path / "notes")], "is not a readable safetensors file"),
        (["--out", str(tmp_path / "fw.safetensors"), "--task", "a/b"], "task name"),
    ):
        assert main([*argv, *extra]) == 1
        assert message in capsys.readouterr().err
