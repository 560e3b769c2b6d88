"""Fixes from a second bug hunt on `faast lm`: generate reads its prompt as text (as learn reads a
text), forget refuses a text the task never learned (streamed texts included), stream refuses
outputs that are the same file as an input or as each other, and learn reports the text's own
token count. Each test fails before its fix."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from faast.cli import main
from faast.lm.fastweights import read_task
from faast.lm.text import chat_prompt_ids, encode, prompt_ids
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import save_tiny_model, word_tokenizer

#: The word tokenizer's end token ("</s>", id 2) and start token ("<s>", id 1); their strings read
#: as text are three unknown tokens each ("<", "s", ">" or "</", "s", ">": id 0).
EOS, BOS, UNK = 2, 1, 0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny llama and the word tokenizer (no start token)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def bos_model_dir(tmp_path_factory):
    """A tiny llama and the word tokenizer that puts <s> before every text (as Gemma's <bos>)."""
    path = tmp_path_factory.mktemp("tiny-bos") / "model"
    tiny_model("llama", dtype=torch.float32).save_pretrained(path)
    word_tokenizer(bos=True).save_pretrained(path)
    return path


def _words(n: int, step: int = 5, first: int = 3) -> str:
    return " ".join(f"w{first + (step * i) % 90}" for i in range(n))


@pytest.fixture
def generated_from(monkeypatch):
    """The input ids every FaastModel.generate call is given."""
    from faast.lm.model import FaastModel

    read: list[list[int]] = []
    generate = FaastModel.generate

    def recording(self, *args, **kwargs):
        read.append(kwargs["input_ids"][0].tolist())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(FaastModel, "generate", recording)
    return read


# ----------------------------------------------------------------- 1. generate reads the prompt as text
def test_generate_reads_special_token_strings_in_the_prompt_as_text(bos_model_dir, generated_from, capsys):
    """``--prompt "w7 </s> w8"`` was tokenized with "</s>" as the end token (id 2) while learn reads
    "</s>" in a text as text: a learned text quoting it could not be continued from a prompt
    quoting it. The prompt is now the start token, then the text as learn encodes it."""
    from transformers import AutoTokenizer

    prompt = "w7 </s> w8"
    args = ["lm", "generate", "--model", str(bos_model_dir), "--threads", "1", "--max-new-tokens", "1"]
    assert main([*args, "--prompt", prompt]) == 0
    tok = AutoTokenizer.from_pretrained(bos_model_dir)
    assert generated_from == [[BOS, *encode(tok, prompt).tolist()]] == [[BOS, 7, UNK, UNK, UNK, 8]]
    assert prompt_ids(tok, "w7 w8") == tok("w7 w8").input_ids  # an ordinary prompt: as before


def test_generate_chat_keeps_the_templates_special_tokens_and_reads_the_prompt_as_text(
    bos_model_dir, tmp_path, generated_from, capsys
):
    """With --chat the rendered template was tokenized in one call: "</s>" in the user's prompt
    became the end token, like the template's own. Now only the template's stay special."""
    chat = tmp_path / "chat"
    shutil.copytree(bos_model_dir, chat)
    config = json.loads((chat / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}<s>w5 {{ m['content'] }} w6</s>{% endfor %}"
    (chat / "tokenizer_config.json").write_text(json.dumps(config))
    args = ["lm", "generate", "--model", str(chat), "--threads", "1", "--max-new-tokens", "1", "--chat"]
    assert main([*args, "--prompt", "w7 </s> w8"]) == 0
    assert generated_from == [[BOS, 5, 7, UNK, UNK, UNK, 8, 6, EOS]]  # old: [1, 5, 7, 2, 8, 6, 2]


def test_chat_prompt_ids_find_a_trimmed_prompt_and_refuse_a_template_that_repeats_it():
    tok = word_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<s>w5 {{ m['content'] | trim }}</s>{% endfor %}"
        "{% if add_generation_prompt %}w6{% endif %}"
    )
    assert chat_prompt_ids(tok, "  w7 <s> w8  ") == [BOS, 5, 7, UNK, UNK, UNK, 8, EOS, 6]
    assert chat_prompt_ids(tok, "w7 w8") == [BOS, 5, 7, 8, EOS, 6]  # no special string: one call
    tok.chat_template = "{% for m in messages %}<s>{{ m['content'] }} w5 {{ m['content'] }}</s>{% endfor %}"
    assert chat_prompt_ids(tok, "w7") == [BOS, 7, 5, 7, EOS]
    with pytest.raises(ValueError, match="does not write the prompt once"):
        chat_prompt_ids(tok, "w7 </s>")


# ----------------------------------------------------------------- 2. forget refuses what was not learned
def _learn(folder, text, out, *more: str) -> list[str]:
    return [
        "lm",
        "learn",
        "--model",
        str(folder),
        "--threads",
        "1",
        "--text",
        str(text),
        "--out",
        str(out),
        *more,
    ]


def _forget(folder, text, path, *more: str) -> list[str]:
    cmd = ["lm", "forget", "--model", str(folder), "--threads", "1", "--text", str(text)]
    return [*cmd, "--fast-weights", str(path), *more]


def test_forget_refuses_a_text_the_tasks_records_do_not_name(model_dir, tmp_path, capsys, monkeypatch):
    """A text with no learning record in a task that records its texts was subtracted (its tokens
    were learned as values, so nothing noticed), the file rewritten and success reported."""
    a, b, swapped = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "a_swap.txt"
    a.write_text(_words(60))
    b.write_text(_words(40, step=7))
    words = _words(60).split()
    words[2], words[3] = words[3], words[2]  # the same tokens, another text
    swapped.write_text(" ".join(words))
    path = tmp_path / "fw.safetensors"
    assert main(_learn(model_dir, a, path, "--window", "16")) == 0
    assert main(_learn(model_dir, b, path, "--window", "16", "--append")) == 0
    before = path.read_bytes()
    capsys.readouterr()
    import faast.cli.lm_cmd as lm_cmd

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(lm_cmd, "_load", no_model)
    assert main(_forget(model_dir, swapped, path, "--window", "16")) == 1
    err = capsys.readouterr().err
    assert "a_swap.txt is not a text learned into task 'default'" in err
    assert "a.txt (--window 16, --batch-size 4" in err and "b.txt (--window 16" in err
    assert path.read_bytes() == before


def test_stream_out_records_the_text_so_that_forget_checks_it(model_dir, tmp_path, capsys):
    """`stream --out` saved no learning record: forget of the streamed text (or of any other) with
    any windows was subtracted unchecked. It now records the chunks as windows of batch size 1."""
    a, b, other = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_text(_words(60))
    b.write_text(_words(40, step=7))
    other.write_text(_words(50, step=11))
    path = tmp_path / "fw.safetensors"
    stream = ["lm", "stream", "--model", str(model_dir), "--threads", "1", "--no-base"]
    assert main([*stream, "--text", str(a), "--chunk", "16", "--max-chunks", "3", "--out", str(path)]) == 0
    (record,) = read_task(path, None)[2]["info"]["learned"]
    assert {k: record[k] for k in ("text", "window", "batch_size", "pairs", "windows")} == {
        "text": "a.txt",
        "window": 16,
        "batch_size": 1,
        "pairs": 45,
        "windows": 3,
    }
    assert main(_learn(model_dir, b, path, "--window", "16", "--append")) == 0
    b_pairs = read_task(path, None)[2]["info"]["learned"][1]["pairs"]
    before = path.read_bytes()
    capsys.readouterr()
    assert main(_forget(model_dir, other, path, "--window", "16", "--batch-size", "1")) == 1
    assert "c.txt is not a text learned into task" in capsys.readouterr().err
    assert main(_forget(model_dir, a, path)) == 1  # the default windows and batches
    assert "learned into this task with --window 16, --batch-size 1" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(_forget(model_dir, a, path, "--window", "16", "--batch-size", "1")) == 0
    out = capsys.readouterr().out
    assert "the first 3 of the text's 4 windows" in out and f"forgot 45 pairs of {a}" in out
    assert f"{b_pairs} pairs remain" in out
    assert [r["text"] for r in read_task(path, None)[2]["info"]["learned"]] == ["b.txt"]


def _records_free_file(model_dir, text, path, window: int) -> None:
    """Fast weights of ``text`` learned in windows of ``window``, batch size 1, saved without
    learning records (a file of `faast lm stream --out` before the records, or of an older faast)."""
    from faast.lm import FaastConfig, get_faast_model
    from faast.lm.text import learn_windows, load_causal_lm, text_windows

    model, tok = load_causal_lm(str(model_dir))
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    learn_windows(fm, text_windows(encode(tok, text.read_text()), window), batch_size=1, progress=False)
    fm.learned_rows = None  # an older file: no record of the rows learned either (faast.lm.learned_rows)
    fm.save_fast_weights(path)
    assert "info" not in read_task(path, None)[2]


@pytest.mark.parametrize("subtract_check", [True, False], ids=["subtract", "load"])
def test_forget_without_records_refuses_statistics_that_would_not_load(
    model_dir, tmp_path, capsys, monkeypatch, subtract_check
):
    """A records-free task forgot a streamed text with other windows (their tokens were all learned
    as values; past d pairs no key is checked): the file was rewritten with a Gram matrix of
    negative diagonal, "malformed state" at the next load. Refused now, the file unchanged: by the
    statistics' own check (GramStats.subtract refuses pairs whose squares exceed G's diagonal)
    and, with that check switched off (as where rounding lets pairs through), by the load check
    before writing (``_check_statistics_load``)."""
    from faast.solver import GramStats

    if not subtract_check:
        monkeypatch.setattr(GramStats, "_check_removable", lambda self, k, v, w: None)
    text = tmp_path / "a.txt"
    text.write_text(_words(60))
    path = tmp_path / "fw.safetensors"
    _records_free_file(model_dir, text, path, window=16)
    before = path.read_bytes()
    assert main(_forget(model_dir, text, path, "--window", "8", "--batch-size", "1")) == 1
    err = capsys.readouterr().err
    if subtract_check:
        assert "cannot subtract these pairs: they were never added" in err
    else:
        assert "negative diagonal entry" in err and "holds no record of this text's learning" in err
    assert path.read_bytes() == before


def test_forget_without_records_goes_through_subtract_and_a_refusal_writes_nothing(
    model_dir, tmp_path, capsys, monkeypatch
):
    """Not a fix: the statistics' own refusal (GramStats.subtract) reaches the CLI before the file
    is rewritten, and a refused forget leaves the file as it was."""
    from faast.solver import GramStats

    text = tmp_path / "a.txt"
    text.write_text(_words(60))
    path = tmp_path / "fw.safetensors"
    _records_free_file(model_dir, text, path, window=16)
    before = path.read_bytes()
    calls: list[int] = []

    def refusing(self, keys, values, weights=None):
        calls.append(len(keys))
        if len(calls) == 2:
            raise ValueError("subtract refused these pairs")
        return subtract(self, keys, values, weights)

    subtract = GramStats.subtract
    monkeypatch.setattr(GramStats, "subtract", refusing)
    assert main(_forget(model_dir, text, path, "--window", "16", "--batch-size", "1")) == 1
    assert "subtract refused these pairs" in capsys.readouterr().err
    assert path.read_bytes() == before
    monkeypatch.setattr(GramStats, "subtract", subtract)
    # A text learned with a record after a.txt, learned without one: a.txt is still forgotten (the
    # records do not account for every pair held), with a warning.
    learned_again = tmp_path / "b.txt"
    learned_again.write_text(_words(30, step=7))
    assert main(_learn(model_dir, learned_again, path, "--window", "16", "--append")) == 0
    assert main(_forget(model_dir, text, path, "--window", "16", "--batch-size", "1")) == 0
    captured = capsys.readouterr()
    assert "56 of its pairs were learned without a record" in captured.err
    assert "forgot 56 pairs" in captured.out and "28 pairs remain" in captured.out


# ----------------------------------------------------------------- 3. outputs that are inputs or each other
def _stream(model_dir, text, *more: str) -> list[str]:
    cmd = ["lm", "stream", "--model", str(model_dir), "--threads", "1", "--no-base", "--chunk", "16"]
    return [*cmd, "--text", str(text), "--max-chunks", "1", *more]


@pytest.fixture
def no_model(monkeypatch):
    import faast.cli.lm_cmd as lm_cmd

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(lm_cmd, "_load", refuse)


def test_stream_refuses_a_csv_that_is_the_text(model_dir, tmp_path, capsys, monkeypatch, no_model):
    text = tmp_path / "t.txt"
    text.write_text(_words(40))
    before = text.read_bytes()
    link = tmp_path / "link.txt"
    link.symlink_to(text)
    monkeypatch.chdir(tmp_path)
    for csv in (str(text), "./t.txt", str(link)):
        assert main(_stream(model_dir, "t.txt", "--csv", csv)) == 1
        err = capsys.readouterr().err
        assert f"--csv {csv} is the same file as --text t.txt" in err and "replace that input" in err
    assert text.read_bytes() == before


def test_stream_refuses_a_csv_whose_plot_is_itself_or_an_out_that_is_the_csv(
    model_dir, tmp_path, capsys, no_model
):
    text = tmp_path / "t.txt"
    text.write_text(_words(40))
    png = tmp_path / "r.png"
    assert main(_stream(model_dir, text, "--csv", str(png))) == 1
    err = capsys.readouterr().err
    assert f"the plot written beside --csv (its suffix .png): {png} is the same file as --csv {png}" in err
    same = tmp_path / "same.out"
    assert main(_stream(model_dir, text, "--csv", str(same), "--out", str(same))) == 1
    assert f"--out {same} is the same file as --csv {same}" in capsys.readouterr().err
    plot = tmp_path / "r.png"
    assert main(_stream(model_dir, text, "--csv", str(tmp_path / "r.csv"), "--out", str(plot))) == 1
    assert f"--out {plot} is the same file as the plot written beside --csv (its suffix .png): {plot}" in (
        capsys.readouterr().err
    )
    assert not png.exists() and not same.exists()


def test_learn_refuses_an_out_that_is_the_text(model_dir, tmp_path, capsys, no_model):
    text = tmp_path / "t.txt"
    text.write_text(_words(40))
    before = text.read_bytes()
    hard = tmp_path / "hard.txt"
    os.link(text, hard)
    for out in (text, hard):
        assert main(_learn(model_dir, text, out)) == 1
        assert f"--out {out} is the same file as --text {text}" in capsys.readouterr().err
    assert text.read_bytes() == before


# ----------------------------------------------------------------- 4. learn counts the text's own tokens
def test_learn_reports_the_texts_own_tokens_not_the_start_tokens(bos_model_dir, tmp_path, capsys):
    """With a start token before each window (Gemma's <bos>), 574 tokens were reported as 576 in
    2 windows."""
    text = tmp_path / "t.txt"
    text.write_text(_words(40))
    assert main(_learn(bos_model_dir, text, tmp_path / "fw.safetensors", "--window", "16")) == 0
    assert f"learning 40 tokens of {text} in 3 windows" in capsys.readouterr().out
