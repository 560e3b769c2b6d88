"""faast.encoders.pooling: the sentence-transformers recipes a SentenceEncoder follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.encoders.pooling import Recipe, pool, read_recipe
from faast.encoders.text import SentenceEncoder
from tests.test_classify_text_cli import tiny_text_encoder


def _reference(hidden: torch.Tensor, lengths: list[int], mode: str) -> torch.Tensor:
    """One sentence at a time: its first ``length`` token states, pooled by hand."""
    rows = []
    for states, n in zip(hidden, lengths, strict=True):
        real = states[:n]
        rows.append(
            {"mean": real.mean(0), "cls": real[0], "max": real.max(0).values, "lasttoken": real[-1]}[mode]
        )
    return torch.stack(rows)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    width=st.integers(1, 6),
    mode=st.sampled_from(["mean", "cls", "max", "lasttoken"]),
    normalize=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_pool_equals_pooling_each_sentence_alone(lengths, width, mode, normalize, seed):
    """Right-padded (B, T, D) states, padding filled with large values that must not leak in."""
    gen = torch.Generator().manual_seed(seed)
    steps = max(lengths) + 2
    hidden = torch.full((len(lengths), steps, width), 1e6, dtype=torch.float64)
    mask = torch.zeros(len(lengths), steps, dtype=torch.long)
    for i, n in enumerate(lengths):
        hidden[i, :n] = torch.randn(n, width, generator=gen, dtype=torch.float64)
        mask[i, :n] = 1
    want = _reference(hidden, lengths, mode)
    if normalize:
        want = F.normalize(want, dim=-1)
    torch.testing.assert_close(pool(hidden, mask, Recipe(mode, normalize)), want, rtol=1e-12, atol=1e-12)


def _sentence_transformers(
    folder: Path, config: dict, modules: tuple[str, ...] = ("Pooling", "Normalize")
) -> Path:
    """Write ``modules.json`` (Transformer, then ``modules``) and the Pooling ``config``."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    for i, kind in enumerate(modules, 1):
        path = f"{i}_{kind}"
        entries.append(
            {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        )
        if kind == "Pooling":
            (folder / path).mkdir(parents=True, exist_ok=True)
            (folder / path / "config.json").write_text(json.dumps({"word_embedding_dimension": 16, **config}))
    (folder / "modules.json").write_text(json.dumps(entries))
    return folder


def test_read_recipe_follows_the_folder_and_names_what_it_cannot_follow(tmp_path):
    assert read_recipe(tmp_path) == Recipe("mean", True)  # a plain folder: MiniLM's recipe
    cases = {
        "cls": ({"pooling_mode_cls_token": True}, ("Pooling", "Normalize"), Recipe("cls", True)),
        "last": ({"pooling_mode_lasttoken": True}, ("Pooling",), Recipe("lasttoken", False)),
        "max": (
            {"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False},
            ("Pooling",),
            Recipe("max", False),
        ),
    }
    for name, (config, modules, want) in cases.items():
        assert read_recipe(_sentence_transformers(tmp_path / name, config, modules)) == want, name
    refused = {
        "dense": ({"pooling_mode_mean_tokens": True}, ("Pooling", "Dense"), r"modules \['Dense'\]"),
        "two": (
            {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True},
            ("Pooling",),
            "exactly one",
        ),
        "sqrt": (
            {"pooling_mode_mean_sqrt_len_tokens": True},
            ("Pooling",),
            "pooling_mode_mean_sqrt_len_tokens",
        ),
        "none": ({}, ("Pooling",), "pooling modes none"),
        "nopool": ({}, ("Normalize",), "expected one Pooling module, found 0"),
    }
    for name, (config, modules, message) in refused.items():
        with pytest.raises(ValueError, match=message):
            read_recipe(_sentence_transformers(tmp_path / name, config, modules))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "modules.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a sentence-transformers module list"):
        read_recipe(tmp_path / "bad")


def test_a_cls_pooled_encoder_reads_the_first_token_and_keys_its_identity(tmp_path):
    """A folder that pools the [CLS] state (as BGE does): each sentence's vector is the normalised
    first-token state of the model run on it alone; the identity differs from the mean recipe's."""
    from transformers import AutoModel, AutoTokenizer

    folder = tiny_text_encoder(tmp_path / "enc")
    mean = SentenceEncoder(folder)
    _sentence_transformers(folder, {"pooling_mode_cls_token": True})
    cls = SentenceEncoder(folder)
    assert cls.recipe == Recipe("cls", True) and cls.identity()["pooling"] == "cls pooling, L2-normalised"
    assert cls.identity()["weights_sha256"] != mean.identity()["weights_sha256"]  # modules.json counts
    texts = ["a good film", "so dull and boring it was the plot"]
    model, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        first = torch.cat(
            [model(**tokenizer([t], return_tensors="pt")).last_hidden_state[:, 0] for t in texts]
        )
    torch.testing.assert_close(
        cls.encode(texts, progress=False), F.normalize(first, dim=-1), rtol=0, atol=1e-6
    )
    assert not torch.allclose(cls.encode(texts, progress=False), mean.encode(texts, progress=False))


@pytest.mark.assets("minilm")
def test_the_minilm_asset_pools_the_mean_and_normalises():
    assert SentenceEncoder("minilm", fetch=False).recipe == Recipe("mean", True)
