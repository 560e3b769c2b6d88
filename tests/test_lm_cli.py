"""`faast lm` end to end on a tiny local model folder (random weights, word-level tokenizer)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from faast.cli import main
from faast.cli.lm_cmd import _layout_and_read, _read_args
from faast.lm import ReadConfig
from faast.solver import Cut
from tests.lm_tiny import VOCAB, tiny_model

WORDS = [f"w{i}" for i in range(VOCAB - 3)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    import torch

    tiny_model("llama", dtype=torch.float32).save_pretrained(path)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(path)
    return path


def test_learn_tasks_generate_perplexity(model_dir, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[i % 40] for i in range(300)))
    out = tmp_path / "fw.safetensors"
    base = ["--model", str(model_dir), "--threads", "1"]
    assert (
        main(["lm", "learn", *base, "--text", str(text), "--out", str(out), "--task", "a", "--window", "64"])
        == 0
    )
    assert (
        main(["lm", "learn", *base, "--text", str(text), "--out", str(out), "--task", "b", "--weight", "1.0"])
        == 0
    )
    assert "wrote task 'b'" in capsys.readouterr().out
    assert main(["lm", "tasks", str(out)]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("a: llama") and "\nb: llama" in listed
    args = ["lm", "generate", *base, "--fast-weights", str(out), "--task", "b", "--prompt", "w1 w2 w3"]
    assert main([*args, "--max-new-tokens", "5", "--compare"]) == 0
    printed = capsys.readouterr().out
    assert "--- base:" in printed and "--- faast:" in printed
    # Statistics learned with the prob mix can be read with the logit mix.
    assert main([*args, "--max-new-tokens", "3", "--mix", "logit", "--weight", "1.0"]) == 0
    assert capsys.readouterr().out.strip()
    ppl_args = ["lm", "perplexity", *base, "--text", str(text), "--fast-weights", str(out), "--task", "b"]
    assert main([*ppl_args, "--window", "64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fast_weights"]["ppl"] < result["base"]["ppl"]  # it learned this very text
    assert main([*ppl_args, "--window", "64", "--gate", "0.5"]) == 0
    gated = json.loads(capsys.readouterr().out)
    assert gated["base"] == result["base"] and gated["fast_weights"] != result["fast_weights"]


def _read_options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _read_args(parser, ("prob", "logit", "paper", "correction"))
    return parser.parse_args(list(argv))


def test_read_options_update_the_stored_config():
    layout = {"output_mix": "prob", "num_memories": 0}
    stored = ReadConfig(cut="alpha=0.5", weight=0.9, gate=0.8)
    assert _layout_and_read(_read_options(), layout, stored) == (layout, stored)
    assert _layout_and_read(_read_options("--no-gate"), layout, stored)[1].gate is None
    got = _layout_and_read(_read_options("--gate", "0.6", "--weight", "0.3", "--cut", "gcv"), layout, stored)
    assert got[1] == ReadConfig(cut=Cut.gcv(), weight=0.3, gate=0.6)
    assert _layout_and_read(_read_options("--alpha", "0.7"), layout, stored)[1].cut == Cut.power(0.7)
    # Another mix takes its own defaults (the cut is kept).
    assert _layout_and_read(_read_options("--mix", "logit"), layout, stored) == (
        {"output_mix": "logit", "num_memories": 0},
        ReadConfig(cut="alpha=0.5"),
    )
    with pytest.raises(ValueError, match="paper"):
        _layout_and_read(_read_options("--mix", "paper"), layout, stored)
    with pytest.raises(ValueError, match="'correction' mix can only be read with it"):
        _layout_and_read(_read_options("--mix", "correction"), layout, stored)
    corr = {"output_mix": "correction", "num_memories": 0}
    got = _layout_and_read(_read_options("--damping", "0.3", "--weight", "0.8"), corr, ReadConfig())
    assert got == (corr, ReadConfig(weight=0.8, damping=0.3))


def test_learning_text_with_the_correction_mix_lowers_its_perplexity(model_dir, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[(7 * i) % 50] for i in range(400)))
    out = tmp_path / "fw.safetensors"
    base = ["--model", str(model_dir), "--threads", "1"]
    learn = ["lm", "learn", *base, "--text", str(text), "--out", str(out), "--window", "64"]
    assert main([*learn, "--mix", "correction", "--damping", "0.2"]) == 0
    capsys.readouterr()
    ppl_args = ["lm", "perplexity", *base, "--text", str(text), "--fast-weights", str(out), "--window", "64"]
    assert main(ppl_args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fast_weights"]["ppl"] < result["base"]["ppl"]
    assert main([*ppl_args, "--mix", "prob"]) == 1
    assert "'correction' mix can only be read with it" in capsys.readouterr().err
    # two closed-form steps (two passes over the text) lower it further
    two = tmp_path / "two.safetensors"
    learn2 = ["lm", "learn", *base, "--text", str(text), "--out", str(two), "--window", "64"]
    assert main([*learn2, "--mix", "correction", "--damping", "0.2", "--steps", "2"]) == 0
    capsys.readouterr()
    assert main([*ppl_args[:-4], "--fast-weights", str(two), "--window", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["fast_weights"]["ppl"] < result["fast_weights"]["ppl"]
    assert main([*learn2, "--steps", "2"]) == 1
    assert "--steps > 1 needs --mix correction" in capsys.readouterr().err


def test_steps_keep_the_states_or_rerun_the_model_alike(model_dir, tmp_path, monkeypatch):
    """`--steps 3` learns from states captured once (short texts) or from a forward pass per step
    (texts whose states exceed KEEP_STATES_BYTES): the same fast weights either way."""
    from safetensors.torch import load_file

    from faast.cli import lm_cmd

    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[(3 * i) % 50] for i in range(300)))
    base = ["lm", "learn", "--model", str(model_dir), "--threads", "1", "--text", str(text), "--window", "48"]
    kept, rerun = tmp_path / "kept.safetensors", tmp_path / "rerun.safetensors"
    assert main([*base, "--out", str(kept), "--mix", "correction", "--steps", "3", "--batch-size", "2"]) == 0
    monkeypatch.setattr(lm_cmd, "KEEP_STATES_BYTES", 0)
    assert main([*base, "--out", str(rerun), "--mix", "correction", "--steps", "3", "--batch-size", "2"]) == 0
    a, b = load_file(str(kept)), load_file(str(rerun))
    assert a.keys() == b.keys() and any("folded" in k for k in a)
    for k in a:
        assert torch.allclose(a[k].double(), b[k].double(), rtol=1e-9, atol=1e-12), k


def test_cli_errors_are_reported(model_dir, tmp_path, capsys):
    base = ["--model", str(model_dir)]
    assert main(["lm", "learn", *base, "--text", str(tmp_path / "missing.txt"), "--out", "x"]) == 1
    assert "no such text file" in capsys.readouterr().err
    args = ["lm", "generate", *base, "--fast-weights", str(tmp_path / "none.safetensors"), "--prompt", "w1"]
    assert main(args) == 1
    assert "error" in capsys.readouterr().err


def test_chat_needs_a_chat_template(model_dir, tmp_path, capsys, monkeypatch):
    """--chat on a base model's tokenizer failed inside transformers; with a template the prompt
    is wrapped in it (the ids generated from are the template's text, no start tokens added)."""
    import shutil

    from faast.lm.model import FaastModel

    read: list[list[int]] = []
    generate = FaastModel.generate

    def recording(self, *args, **kwargs):
        read.append(kwargs["input_ids"][0].tolist())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(FaastModel, "generate", recording)

    base = ["lm", "generate", "--threads", "1", "--prompt", "w1 w2", "--max-new-tokens", "2", "--chat"]
    assert main([*base, "--model", str(model_dir)]) == 1
    assert "has no chat template (a base model" in capsys.readouterr().err
    chat = tmp_path / "chat"
    shutil.copytree(model_dir, chat)
    config = json.loads((chat / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}w5 {{ m['content'] }} w6{% endfor %}"
    (chat / "tokenizer_config.json").write_text(json.dumps(config))
    assert main([*base, "--model", str(chat)]) == 0
    assert capsys.readouterr().out.strip()
    from transformers import AutoTokenizer

    wrapped = AutoTokenizer.from_pretrained(chat)("w5 w1 w2 w6", add_special_tokens=False).input_ids
    assert read == [list(wrapped)]  # the template's "w5 ... w6" around the prompt "w1 w2"


def test_learning_over_a_task_of_the_file_warns_before_the_work(model_dir, tmp_path, capsys):
    """A task of the same name was replaced without a word (a learned text by a task, say)."""
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[i % 40] for i in range(120)))
    out = tmp_path / "fw.safetensors"
    learn = [
        "lm",
        "learn",
        "--model",
        str(model_dir),
        "--threads",
        "1",
        "--text",
        str(text),
        "--out",
        str(out),
    ]
    assert main([*learn, "--task", "a"]) == 0
    assert "already holds" not in capsys.readouterr().err
    assert main([*learn, "--task", "a"]) == 0
    assert f"{out} already holds task 'a': it will be replaced" in capsys.readouterr().err
    for beside in (["--task", "a", "--append"], ["--task", "b"]):
        assert main([*learn, *beside]) == 0
        assert "already holds" not in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "-3"])
def test_max_new_tokens_below_one_is_refused_before_the_model_loads(tmp_path, capsys, count):
    """transformers refused it only after the model had loaded, in its own words; the model path here
    does not exist, so only a check before loading can name the option."""
    inputs = tmp_path / "in.tsv"
    inputs.write_text("input\nw1 w2\n", encoding="utf-8")
    missing = ["--model", str(tmp_path / "no-model")]
    commands = [
        ["lm", "generate", *missing, "--prompt", "w1"],
        ["task", "generate", *missing, "--inputs", str(inputs), "--out", str(tmp_path / "g.tsv")],
        ["task", "evaluate", *missing, "--examples", str(inputs)],
    ]
    for command in commands:
        assert main([*command, "--max-new-tokens", count]) == 1
        assert f"--max-new-tokens must be an integer >= 1, got {count}" in capsys.readouterr().err


def test_generation_functions_refuse_max_new_tokens_below_one():
    from faast.lm.decoding import check_max_new_tokens

    assert check_max_new_tokens(5) == 5
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 1"):
            check_max_new_tokens(bad)


def test_threads_limit_torch_and_blas_for_the_command_only(model_dir, tmp_path, capsys, monkeypatch):
    """``faast lm`` / ``faast task --threads N``: torch and the BLAS libraries run N threads while the
    command runs (as ``faast classify`` and ``faast demo``), and torch's count is restored after."""
    import threadpoolctl
    import torch

    import faast.lm.text

    seen = []
    load = faast.lm.text.load_causal_lm

    def recording_load(*args, **kwargs):
        blas = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
        seen.append((torch.get_num_threads(), blas))
        return load(*args, **kwargs)

    monkeypatch.setattr(faast.lm.text, "load_causal_lm", recording_load)
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[i % 40] for i in range(100)))
    before = torch.get_num_threads()
    assert main(["lm", "perplexity", "--model", str(model_dir), "--threads", "1", "--text", str(text)]) == 0
    assert seen[0][0] == 1 and seen[0][1] and all(n == 1 for n in seen[0][1])
    assert torch.get_num_threads() == before
    capsys.readouterr()
    assert main(["lm", "perplexity", "--model", str(model_dir), "--threads", "0", "--text", str(text)]) == 1
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_a_shorter_last_window_is_learned_forgotten_and_scored(model_dir, tmp_path, capsys):
    """300 tokens in windows of 64: four whole windows and a tail of 44 tokens, which is learned,
    forgotten and scored too (it was dropped without a word: 380 of a text's 892 tokens once);
    the tokens --max-windows leaves out are named."""
    from faast.lm import FaastConfig, get_faast_model
    from faast.lm.fastweights import read_task
    from faast.lm.text import load_causal_lm

    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[i % 40] for i in range(300)))
    out = tmp_path / "fw.safetensors"
    base = ["--model", str(model_dir), "--threads", "1", "--text", str(text)]
    assert main(["lm", "learn", *base, "--out", str(out), "--window", "64", "--task", "a"]) == 0
    assert "learning 300 tokens" in capsys.readouterr().out
    tensors = read_task(out, "a")[1]
    model, tok = load_causal_lm(str(model_dir))
    ids = tok(text.read_text(), return_tensors="pt").input_ids[0]
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    for i in range(0, 300, 64):  # each window alone: the tail's 43 pairs included
        fm.learn(input_ids=ids[None, i : i + 64])
    assert fm.num_pairs == 4 * 63 + 43
    reference = fm.output_memory.stats.state_dict()["gram"]
    assert torch.allclose(tensors["output/gram"], reference, rtol=1e-9, atol=1e-9)
    assert main(["lm", "perplexity", *base, "--window", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 4 * 63 + 43
    assert main(["lm", "perplexity", *base, "--window", "64", "--max-windows", "2"]) == 0
    assert "the last 172 of the text's 300 tokens are not scored (--max-windows 2" in capsys.readouterr().err
    assert main(["lm", "learn", *base, "--out", str(out), "--window", "64", "--task", "b"]) == 0
    forget = ["lm", "forget", *base, "--window", "64", "--fast-weights", str(out), "--task", "a"]
    assert main(forget) == 1  # the whole text, tail included, was all task a held
    assert "leaves task 'a' empty" in capsys.readouterr().err
