"""The README's Python examples run as written, on stand-ins for the data they leave to the reader
(``batches``, ``features``, ``texts``, ...). A broken example (a renamed argument, an order of calls
the library refuses) fails here instead of in a new user's first session."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block of the README."""
    blocks, lines = [], README.read_text(encoding="utf-8").splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = number + 1
        elif start is not None and line.strip() == "```":
            blocks.append((start, "\n".join(lines[start - 1 : number - 1])))
            start = None
    return blocks


def block_using(name: str) -> tuple[int, str]:
    found = [(line, code) for line, code in python_blocks() if re.search(rf"\b{re.escape(name)}\b", code)]
    assert found, f"no ```python block of README.md uses {name}"
    return found[0]


def run(line: int, code: str, namespace: dict) -> dict:
    exec(compile(code, f"README.md (block at line {line})", "exec"), namespace)
    return namespace


def test_the_solver_memory_and_classifier_example_runs(tmp_path, monkeypatch):
    from faast import GramStats

    monkeypatch.chdir(tmp_path)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, 1024, generator=gen), torch.randn(n, 10, generator=gen)) for n in (40, 25)]
    other = GramStats(1024, 10).add(torch.randn(30, 1024, generator=gen), torch.randn(30, 10, generator=gen))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)) * 3
    labels = np.arange(60) % 3
    features = centres[labels] + rng.standard_normal((60, 16))
    namespace = {
        "batches": batches,
        "old_keys": batches[0][0][:5],  # pairs learned earlier, forgotten exactly
        "old_values": batches[0][1][:5],
        "other_shard": other,
        "queries": torch.randn(7, 1024, generator=gen),
        "features": features,
        "labels": labels,
        "test_features": centres[np.arange(9) % 3] + rng.standard_normal((9, 16)),
        "bad_features": features[:4],
        "their_labels": labels[:4],
        "text_emb": rng.standard_normal((3, 16)),
        "stream": [(features[:30], labels[:30]), (features[30:], labels[30:])],
    }
    ns = run(*block_using("GramStats"), namespace)
    assert ns["W"].shape == (10, 1024) and ns["W"].dtype == torch.float32
    assert ns["predicted"].shape == (7, 10)
    assert ns["stats"].count == 40 + 25 - 5 + 30
    assert (tmp_path / "task.safetensors").is_file() and (tmp_path / "my-model").is_dir()
    assert ns["clf"].predict(namespace["test_features"]).tolist() == (np.arange(9) % 3).tolist()


@pytest.mark.assets("smollm2-135m-instruct")
def test_the_language_model_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    namespace = {
        "texts": ["The keeper of Tessel Point lit the lamp at dusk.", "Gannets nest on the western cliff."],
        "prompt": "The keeper of Tessel Point",
    }
    ns = run(*block_using("get_faast_model"), namespace)
    fm = ns["fm"]
    assert fm.num_pairs == 0  # from the adapter: a fresh output memory, the learned texts are in the file
    assert (tmp_path / "adapter" / "faast_config.json").is_file()
    fm.load_fast_weights(tmp_path / "tasks.safetensors", task="notes")
    assert fm.num_pairs > 0
