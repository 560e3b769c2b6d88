"""The gated output memory warns when it learned too few distinct next tokens for its recall gate
to shut on new text (a one-token text, a repeated phrase): W·z then lies near a learned token's
LM-head row whatever z is, the gate opens on any text, and unseen text moved by up to ×10
perplexity without a word."""

from __future__ import annotations

import warnings

import pytest
import torch

from faast.lm import FaastConfig, NarrowRecallWarning, get_faast_model
from faast.lm.output_readouts import NARROW_SUPPORT, effective_tokens
from tests.lm_tiny import tiny_model

UNSEEN = torch.randint(3, 97, (1, 24), generator=torch.Generator().manual_seed(11))


def _read_warnings(fm) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            fm.base_model(input_ids=UNSEEN)
    return [w for w in caught if issubclass(w.category, NarrowRecallWarning)]


def test_effective_tokens_is_the_exponential_of_the_entropy():
    counts = torch.zeros(10, dtype=torch.int64)
    assert effective_tokens(counts) == 0.0
    counts[3] = 7
    assert effective_tokens(counts) == pytest.approx(1.0)
    counts[[1, 2, 3, 4]] = 5
    assert effective_tokens(counts) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "text",
    [torch.tensor([[5, 6]]), torch.tensor([[5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6]])],
    ids=["one-pair", "repeated"],
)
def test_a_narrow_memory_warns_once_when_read_with_the_gate(text):
    fm = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=0))
    fm.learn(text)
    first = _read_warnings(fm)
    assert len(first) == 1 and "recall gate cannot tell text it never learned" in str(first[0].message)
    assert first[0].filename == __file__  # points at the user's forward call
    assert _read_warnings(fm) == []  # once per learned state
    fm.learn(text)  # a new state: warned again
    assert len(_read_warnings(fm)) == 1
    fm.set_read(fm.read_config.replace(gate=None))  # without a gate: the read-out's other defaults
    assert _read_warnings(fm) == []


def test_a_varied_memory_or_none_does_not_warn():
    fm = get_faast_model(tiny_model("llama", dtype=torch.float32), FaastConfig(num_memories=0))
    assert _read_warnings(fm) == []  # nothing learned: nothing read
    varied = torch.arange(3, 97).repeat(2)[None]  # 187 pairs over 94 next tokens
    fm.learn(varied)
    assert effective_tokens(fm.output_memory.counts) >= NARROW_SUPPORT
    assert _read_warnings(fm) == []


def test_lm_learn_says_so_when_the_text_is_too_narrow_for_the_gate(tmp_path, capsys):
    """`faast lm learn` of a repeated phrase warns when it learns (not only when the file is read);
    a varied text learns without the warning."""
    from faast.cli import main
    from tests.lm_wordlevel import save_tiny_model

    folder = save_tiny_model(tmp_path / "model")
    common = ["lm", "learn", "--model", str(folder), "--threads", "1", "--window", "16"]
    narrow, varied = tmp_path / "narrow.txt", tmp_path / "varied.txt"
    narrow.write_text(" ".join(["w5 w6"] * 20))
    varied.write_text(" ".join(f"w{3 + (7 * i) % 90}" for i in range(200)))
    assert main([*common, "--text", str(narrow), "--out", str(tmp_path / "n.st")]) == 0
    assert "[faast] warning: the output memory learned" in capsys.readouterr().err
    assert main([*common, "--text", str(varied), "--out", str(tmp_path / "v.st")]) == 0
    assert "recall gate cannot tell" not in capsys.readouterr().err
