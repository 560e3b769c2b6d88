"""all_reduce over torch.distributed (gloo, two CPU processes) equals one process seeing all data."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from faast.solver import GramStats


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        gen = torch.Generator().manual_seed(0)
        keys, values = torch.randn(101, 9, generator=gen), torch.randn(101, 3, generator=gen)
        shard = slice(rank, None, world)
        stats = GramStats(9, 3).add(keys[shard], values[shard])
        stats.all_reduce()
        stats.save(os.path.join(out_dir, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_equals_single_process(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    gen = torch.Generator().manual_seed(0)
    keys, values = torch.randn(101, 9, generator=gen), torch.randn(101, 3, generator=gen)
    single = GramStats(9, 3).add(keys, values)
    for rank in range(world):
        reduced = GramStats.load(tmp_path / f"rank{rank}.safetensors")
        assert reduced.count == 101
        assert torch.allclose(reduced.gram, single.gram, atol=1e-10)
        assert torch.allclose(reduced.solve(0.01), single.solve(0.01), atol=1e-5)


def test_all_reduce_without_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="initialised torch.distributed process group"):
        GramStats(2, 2).all_reduce()
