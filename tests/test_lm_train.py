"""Readout pre-training: the differentiable solve matches inference, and training moves the readout."""

from __future__ import annotations

import pytest
import torch

from faast.lm import FaastConfig, get_faast_model
from faast.lm.readouts import next_pairs
from faast.lm.train import TrainConfig, differentiable_fast_weight, train_readout
from faast.solver import PairBuffer
from tests.lm_tiny import random_batch, tiny_model
from tests.test_lm_model import with_random_readout


def test_differentiable_solve_equals_the_inference_solve():
    fm = with_random_readout(get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1)))
    ids, _ = random_batch([30, 30, 30], seed=4)
    fm.learn(input_ids=ids)
    mem = fm.memories["block1"]
    captured = fm.capture(input_ids=ids)
    keys, values = next_pairs(captured.states["block1"], captured.valid)
    w = differentiable_fast_weight(mem, keys, values)
    expected = mem.fast_weight(torch.float64, torch.device("cpu"))
    assert torch.allclose(w, expected, rtol=1e-8, atol=1e-10 * float(expected.abs().max()))
    w.sum().backward()  # the gradient reaches the scorer
    assert mem.scorer.weight.grad is not None and bool(mem.scorer.weight.grad.abs().sum() > 0)


@pytest.mark.parametrize("cut", ["gcv", "ridge=gcv", "auto", "ridge=auto"])
def test_a_cut_chosen_from_the_values_is_refused(cut):
    """Its filter would move with the values the gradient flows through."""
    fm = with_random_readout(get_faast_model(tiny_model("llama"), FaastConfig(num_memories=1)))
    ids, _ = random_batch([30, 30], seed=5)
    fm.learn(input_ids=ids)
    mem = fm.memories["block1"]
    mem.memory.set_cut(cut)
    captured = fm.capture(input_ids=ids)
    keys, values = next_pairs(captured.states["block1"], captured.valid)
    with pytest.raises(ValueError, match="does not depend on the values"):
        differentiable_fast_weight(mem, keys, values)


def test_bank_is_fifo():
    bank = PairBuffer(5)
    bank.append(torch.arange(4.0)[:, None], torch.arange(4.0)[:, None])
    bank.append(torch.arange(4.0, 7.0)[:, None], -torch.arange(4.0, 7.0)[:, None])
    keys, values = bank.tensors()
    assert len(bank) == 5 and keys[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert values[:, 0].tolist() == [2.0, 3.0, -4.0, -5.0, -6.0]
    with pytest.raises(ValueError):
        PairBuffer(0)


def test_training_moves_readout_and_scorer_only():
    model = tiny_model("gpt2", dtype=torch.float32)
    fm = get_faast_model(model, FaastConfig(num_memories=1, readout_dropout=0.0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    windows = random_batch([16] * 12, seed=6)[0]
    log = train_readout(
        fm, windows, TrainConfig(steps=4, batch_windows=2, bank_tokens=64, lr=1e-2), progress=False
    )
    assert len(log) == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert "base_loss" in log[0]
    mem = fm.memories["block1"]
    assert bool(mem.out_proj.weight.abs().sum() > 0) and bool(mem.scorer.weight.abs().sum() > 0)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name  # the backbone is frozen
    assert mem.train_weight is None and not mem.training
    fm.learn(input_ids=windows[:2])  # after training the model learns and reads as usual
    assert mem.active
    with fm.disabled():
        base = fm(input_ids=windows[:1]).logits
    assert not torch.allclose(fm(input_ids=windows[:1]).logits, base)
    with pytest.raises(ValueError, match="no middle memories"):
        train_readout(get_faast_model(tiny_model("llama"), FaastConfig(num_memories=0)), windows)


def test_training_resumes_after_an_interruption_and_is_deterministic(tmp_path, monkeypatch):
    import faast.lm.train as train

    windows = random_batch([16] * 16, seed=6)[0]
    cfg = TrainConfig(steps=6, batch_windows=2, bank_tokens=64, lr=1e-2, checkpoint_every=2)

    def fresh():
        return get_faast_model(tiny_model("gpt2", dtype=torch.float32), FaastConfig(num_memories=1))

    whole = fresh()
    log_whole = train_readout(whole, windows, cfg, progress=False)
    again = fresh()
    assert train_readout(again, windows, cfg, progress=False) == log_whole  # deterministic for a seed
    for p, q in zip(whole.memories.parameters(), again.memories.parameters(), strict=True):
        assert torch.equal(p, q)

    ckpt = tmp_path / "train.safetensors"
    real_step, calls = train._step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "_step", interrupted)
    part = fresh()
    with pytest.raises(KeyboardInterrupt):
        train_readout(part, windows, cfg, progress=False, checkpoint=ckpt)
    monkeypatch.setattr(train, "_step", real_step)
    resumed = fresh()  # a new process would start from fresh weights and the checkpoint
    log = train_readout(resumed, windows, cfg, progress=False, checkpoint=ckpt)
    assert log == log_whole
    for p, q in zip(whole.memories.parameters(), resumed.memories.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="another training run"):
        train_readout(fresh(), windows[:-2], cfg, progress=False, checkpoint=ckpt)


def test_each_step_reads_only_the_pairs_of_earlier_batches(monkeypatch):
    """The learn/score split: the memory that predicts batch b is solved from the pairs of batches
    0 … b−1 (the last ``bank_tokens`` of them), never from b's own; the first batch is only learned."""
    import faast.lm.train as train

    windows = random_batch([16] * 10, seed=3)[0]
    fm = get_faast_model(tiny_model("gpt2", dtype=torch.float32), FaastConfig(num_memories=1))
    mem = fm.middle_memories[0]
    with torch.no_grad():  # the keys of each batch, from the frozen backbone before training
        per_batch = []
        for i in range(0, len(windows), 2):
            captured = fm.capture(input_ids=windows[i : i + 2])
            per_batch.append(next_pairs(captured.states[mem.key_point], captured.valid)[0].float())
    seen: list[torch.Tensor] = []
    real = train.differentiable_fast_weight

    def spy(memory, keys, values):
        seen.append(keys.detach().clone())
        return real(memory, keys, values)

    monkeypatch.setattr(train, "differentiable_fast_weight", spy)
    bank = 3 * per_batch[0].shape[0]  # holds three batches: older pairs leave it
    train_readout(fm, windows, TrainConfig(steps=4, batch_windows=2, bank_tokens=bank), progress=False)
    assert len(seen) == 4  # batches 1 … 4 are predicted; batch 0 only fills the bank
    for b, keys in enumerate(seen, start=1):
        expected = torch.cat(per_batch[:b])[-bank:]
        torch.testing.assert_close(keys, expected, rtol=1e-5, atol=1e-5)
        with_own = torch.cat(per_batch[: b + 1])[-bank:]  # what a leak of b's own pairs would hold
        assert keys.shape != with_own.shape or not torch.allclose(keys, with_own, rtol=1e-5, atol=1e-5)
