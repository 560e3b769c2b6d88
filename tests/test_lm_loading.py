"""What ``--model`` / ``load_causal_lm`` load besides the offline assets: a local .gguf file
(llama.cpp's format), a PEFT adapter folder over a local base model, and what they refuse."""

from __future__ import annotations

import pytest
import torch

from faast.cli import main
from faast.lm.text import load_causal_lm
from tests.lm_gguf import write_tiny_gguf
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer


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


def test_a_peft_adapter_folder_loads_with_its_adapter_applied(tmp_path):
    """A LoRA adapter saved by PEFT (adapter_config.json, no config.json) over a local base
    model loads as the adapted model: FAAST then learns on top of the fine-tuned model."""
    import json

    from peft import LoraConfig, get_peft_model

    base, tokenizer = tiny_model("llama", dtype=torch.float32), word_tokenizer()
    base.save_pretrained(tmp_path / "base")
    tuned = get_peft_model(
        base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    tuned.save_pretrained(tmp_path / "adapter")
    tokenizer.save_pretrained(tmp_path / "adapter")
    config = tmp_path / "adapter" / "adapter_config.json"
    config.write_text(
        json.dumps({**json.loads(config.read_text()), "base_model_name_or_path": str(tmp_path / "base")})
    )
    model, _ = load_causal_lm(str(tmp_path / "adapter"))
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, tuned(ids).logits)
        with tuned.disable_adapter():  # the adapter is what makes them equal, not the base alone
            assert not torch.allclose(model(ids).logits, tuned(ids).logits)
