"""A local .gguf file (llama.cpp's format) as the model of the LM API and command line."""

from __future__ import annotations

import pytest
import torch

from faast.cli import main
from faast.lm.text import load_causal_lm
from tests.lm_gguf import write_tiny_gguf


def test_a_gguf_file_loads_as_the_model_it_was_written_from(tmp_path):
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    model, tokenizer = load_causal_lm(str(tmp_path / "tiny.gguf"))
    ids = tokenizer("hello  world", return_tensors="pt").input_ids
    assert ids.shape[1] >= 10 and tokenizer.pad_token is not None
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, source(ids).logits, rtol=1e-5, atol=1e-6)


def test_a_task_is_learned_on_a_gguf_model_from_the_command_line(tmp_path, capsys):
    write_tiny_gguf(tmp_path / "tiny.gguf")
    examples = tmp_path / "ex.tsv"
    examples.write_text(
        "".join(f"item {i}\t{'yes' if i % 2 else 'no'}\n" for i in range(8)), encoding="utf-8"
    )
    out = tmp_path / "fw.safetensors"
    argv = ["task", "learn", "--model", str(tmp_path / "tiny.gguf"), "--examples", str(examples)]
    assert main([*argv, "--out", str(out), "--folds", "2"]) == 0
    assert out.is_file() and "wrote task 'default'" in capsys.readouterr().out


def test_files_that_are_not_gguf_models_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"notes.txt is a file, not a model: pass a .gguf file"):
        load_causal_lm(str(tmp_path / "notes.txt"))
    (tmp_path / "broken.gguf").write_bytes(b"GGUF but not really")
    with pytest.raises(ValueError, match=r"could not load .*broken.gguf as a GGUF causal LM"):
        load_causal_lm(str(tmp_path / "broken.gguf"))
