"""faast.rng.seeded_rng and its users: a seeded step is reproducible and gives the caller's torch
random stream back (``train_readout`` and ``add_lora`` reset it with ``torch.manual_seed``: after
them the caller drew the same numbers whatever they had seeded)."""

from __future__ import annotations

import torch

from faast.lm import FaastConfig, get_faast_model, lora_baseline
from faast.lm.train import TrainConfig, train_readout
from faast.rng import seeded_rng
from tests.lm_tiny import random_batch, tiny_model


def _draws_after(step, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    torch.rand(2)
    step()
    return torch.rand(4)


def _draws_without(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    torch.rand(2)
    return torch.rand(4)


def test_seeded_rng_seeds_the_block_and_gives_the_stream_back():
    def step() -> None:
        with seeded_rng(7):
            inside.append(torch.rand(3))

    inside: list[torch.Tensor] = []
    for seed in (1, 2):
        assert torch.equal(_draws_after(step, seed), _draws_without(seed))
    assert torch.equal(inside[0], inside[1])  # the block's draws depend on its seed only


def test_train_readout_leaves_the_callers_random_stream_as_it_was():
    windows = random_batch([16] * 8, seed=6)[0]
    logs = []
    for seed in (1, 2):
        fm = get_faast_model(tiny_model("gpt2", dtype=torch.float32), FaastConfig(num_memories=1))
        torch.manual_seed(seed)
        torch.rand(2)
        config = TrainConfig(steps=2, batch_windows=2, bank_tokens=64)
        logs.append([row["loss"] for row in train_readout(fm, windows, config, progress=False)])
        assert torch.equal(torch.rand(4), _draws_without(seed))
    assert len(logs[0]) == 2 and logs[0] == logs[1]  # seeded by the config, whatever the caller's seed


def test_add_lora_leaves_the_callers_random_stream_as_it_was():
    recipe = lora_baseline.LoraRecipe(epochs=1, batch_size=2, learning_rates=(1e-3,), seed=3)
    adapters = []
    for seed in (1, 2):
        model = tiny_model("llama", dtype=torch.float32)
        torch.manual_seed(seed)
        torch.rand(2)
        peft_model = lora_baseline.add_lora(model, recipe)
        after = torch.rand(4)
        adapters.append({n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_A" in n})
        assert torch.equal(after, _draws_without(seed))
    assert adapters[0].keys() == adapters[1].keys() and adapters[0]
    assert all(torch.equal(adapters[0][n], adapters[1][n]) for n in adapters[0])  # seeded by the recipe
