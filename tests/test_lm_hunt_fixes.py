"""Fixes from a bug hunt on Gemma-3 and Qwen2.5 text learning: start-token pairs are not learned,
learning in another dtype than the held pairs is refused, and special-token strings in a text are
learned as text. Each test fails before its fix."""

from __future__ import annotations

import pytest
import torch

from faast.lm import FaastConfig, get_faast_model
from faast.lm.text import encode
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer

BOS = 1  # tiny_model's config.bos_token_id


def fresh(dtype=torch.float64):
    return get_faast_model(tiny_model("llama", dtype=dtype), FaastConfig(num_memories=0))


def test_pairs_keyed_on_a_start_token_are_not_learned():
    """The start token's state is the same before every text: its pair (start → the learned text's
    first token) was read at the start of every new text (Gemma-3 paid ln 10 nats there)."""
    fm = fresh()
    assert fm.learn(input_ids=torch.tensor([[BOS, 5, 6, 7]])) == 2  # 5→6 and 6→7, not BOS→5
    assert int(fm.output_memory.counts.sum()) == 2
    assert int(fm.output_memory.counts[5]) == 0  # the first token is not a learned value
    more = torch.tensor([[5, 6, 7, BOS, 8, 9]])  # a start token inside a row: its pair is left out too
    assert fm.learn(input_ids=more) == 4  # 5→6, 6→7, 7→BOS, 8→9
    with pytest.raises(ValueError, match="only padding and start tokens"):
        fm.learn(input_ids=torch.tensor([[BOS, 5]]))
    assert fm.forget(input_ids=torch.tensor([[BOS, 5, 6, 7]])) == 2
    assert fm.forget(input_ids=more) == 4 and fm.num_pairs == 0


def test_learning_in_another_dtype_than_the_held_pairs_is_refused(tmp_path):
    fm = fresh()
    ids = torch.tensor([[5, 6, 7, 8]])
    fm.learn(input_ids=ids)
    fm.to(torch.float32)
    with pytest.raises(ValueError, match="learned with the model in float64 and it now runs in float32"):
        fm.learn(input_ids=torch.tensor([[9, 10, 11]]))
    assert fm.num_pairs == 3  # nothing added
    fm.to(torch.float64)
    path = tmp_path / "fw.safetensors"
    fm.save_fast_weights(path)
    other = fresh(torch.float32).load_fast_weights(path)  # loaded: the dtype is recorded with them
    with pytest.raises(ValueError, match="mix the two"):
        other.learn(input_ids=torch.tensor([[9, 10, 11]]))
    fm.forget(input_ids=ids)  # nothing held any more: any dtype may learn next
    fm.to(torch.float32)
    assert fm.learn(input_ids=torch.tensor([[9, 10, 11]])) == 2


def test_special_token_strings_in_a_text_are_tokenized_as_text():
    tok = word_tokenizer(bos=True)
    ids = encode(tok, "w3 </s> w4 <s> w5").tolist()
    assert ids[0] == 3 and ids[-1] == 5
    assert tok.eos_token_id not in ids and tok.bos_token_id not in ids


def test_cli_forget_with_other_windows_than_learned_is_refused(tmp_path, capsys):
    """Other windows give other pairs: past d pairs they were subtracted silently and the file
    rewritten with wrong statistics. The task now records each text's windows and batches."""
    from faast.cli import main
    from faast.lm.fastweights import read_task
    from tests.lm_wordlevel import save_tiny_model

    folder = save_tiny_model(tmp_path / "model")
    text_a, text_b = tmp_path / "a.txt", tmp_path / "b.txt"
    text_a.write_text(" ".join(f"w{3 + i % 31}" for i in range(40)))
    text_b.write_text(" ".join(f"w{3 + (7 * i) % 50}" for i in range(30)))
    path = tmp_path / "fw.safetensors"
    common = ["--model", str(folder), "--threads", "1"]
    assert main(["lm", "learn", *common, "--window", "16", "--out", str(path), "--text", str(text_a)]) == 0
    learn_b = ["lm", "learn", *common, "--window", "16", "--batch-size", "2", "--out", str(path)]
    assert main([*learn_b, "--text", str(text_b), "--append"]) == 0
    records = read_task(path, None)[2]["info"]["learned"]
    assert [(r["text"], r["window"], r["batch_size"]) for r in records] == [
        ("a.txt", 16, 4),
        ("b.txt", 16, 2),
    ]
    capsys.readouterr()
    before = path.read_bytes()
    forget = ["lm", "forget", *common, "--fast-weights", str(path), "--text", str(text_b)]
    assert main([*forget, "--window", "8", "--batch-size", "2"]) == 1
    assert "b.txt was learned into this task with --window 16 (not --window 8)" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main([*forget, "--window", "16", "--batch-size", "2"]) == 0
    left = read_task(path, None)[2]["info"]["learned"]
    assert [r["text"] for r in left] == ["a.txt"]  # b is no longer learned


def test_perplexity_and_stream_refuse_sequences_beyond_the_context_window():
    """Positions a model never encoded gave numbers, not an error (learn and generate checked)."""
    from faast.lm.stream import stream_chunks
    from faast.lm.text import perplexity

    fm = fresh()
    fm.base_model.config.max_position_embeddings = 16
    ids = torch.arange(3, 40)
    with pytest.raises(ValueError, match=r"perplexity: windows \(--window\) of 20 tokens exceed .* of 16"):
        perplexity(fm, [ids[:20]])
    assert perplexity(fm, [ids[:16]]).tokens == 15
    with pytest.raises(ValueError, match=r"--chunk\) and the text before it \(--context\) of 18 tokens"):
        stream_chunks(fm, ids[:30], chunk=10, context=8, progress=False)
    rows = stream_chunks(fm, ids[:30], chunk=10, context=6, progress=False)
    assert len(rows) == 3


@pytest.mark.parametrize(
    ("mix", "option"),
    [
        ("logit", ["--temperature", "3"]),
        ("logit", ["--gate", "0.5"]),
        ("prob", ["--damping", "0.5"]),
        ("correction", ["--no-gate"]),
    ],
)
def test_cli_refuses_read_options_the_mix_does_not_read(tmp_path, capsys, mix, option):
    from faast.cli import main
    from tests.lm_wordlevel import save_tiny_model

    folder = save_tiny_model(tmp_path / "model")
    text = tmp_path / "a.txt"
    text.write_text(" ".join(f"w{3 + i % 31}" for i in range(40)))
    learn = ["lm", "learn", "--model", str(folder), "--threads", "1", "--text", str(text)]
    assert main([*learn, "--out", str(tmp_path / "fw.safetensors"), "--mix", mix, *option]) == 1
    assert f"{option[0]} does not apply to the {mix!r} mix" in capsys.readouterr().err
    assert not (tmp_path / "fw.safetensors").exists()


def test_a_model_whose_own_logits_overflow_is_named_as_such():
    """Gemma-3 in float16 returns NaN logits on any input: the error blamed a head step faast does
    not reproduce and advised another model, not another dtype."""
    model = tiny_model("llama", dtype=torch.float16)
    with torch.no_grad():
        model.model.norm.weight.fill_(6e4)  # the final norm's output overflows float16
    with pytest.raises(ValueError, match=r"own logits are NaN or infinite in float16.*--dtype bfloat16"):
        get_faast_model(model, FaastConfig(num_memories=0))


def test_fast_weights_saved_before_start_token_pairs_were_left_out_still_forget_exactly(tmp_path):
    """A file saved before (its signature has no ``start_token_pairs``) was built with the start
    token's pairs: forgetting from it, or adding to it, must compute the pairs it was built with."""
    import json

    from faast.io import load_tensors, save_tensors

    text = torch.tensor([[BOS, 5, 6, 7]])
    old = fresh()
    old._start_token_pairs = True  # how every model learned before the change
    assert old.learn(input_ids=text) == 3
    path = tmp_path / "old.safetensors"
    old.save_fast_weights(path, "t")
    tensors, meta = load_tensors(path, kind="fast_weights")
    tasks = json.loads(meta["tasks"])
    del tasks["t"]["start_token_pairs"]  # as written before the field existed
    save_tensors(path, tensors, {"tasks": json.dumps(tasks)}, kind="fast_weights")

    fm = fresh().load_fast_weights(path)
    assert fm.learn(input_ids=torch.tensor([[BOS, 8, 9]])) == 2  # the file's way: BOS→8 and 8→9
    assert fm.forget(input_ids=text) == 3 and fm.forget(input_ids=torch.tensor([[BOS, 8, 9]])) == 2
    assert fm.num_pairs == 0
    fm.reset_projection()  # new fast weights: start-token pairs left out again
    assert fm.learn(input_ids=text) == 2
    new = tmp_path / "new.safetensors"
    fm.save_fast_weights(new)
    assert fresh().load_fast_weights(new).forget(input_ids=text) == 2
