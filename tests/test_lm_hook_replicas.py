"""faast's hooks on modules that share a hooked module's hook dicts.

``nn.DataParallel``'s replicas (``Module._replicate_for_data_parallel``) and ``copy.copy`` of a hooked
module are new objects whose ``__dict__`` is a shallow copy of the original's: they share its hook
dicts, so faast's hooks act there as on the original (the replica reads the memories), and
``strip_inert_hooks`` on a model holding such a copy keeps them. A ``copy.deepcopy`` has hook dicts of
its own and stays the plain model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from faast.lm import FaastConfig, get_faast_model, inject
from tests.lm_tiny import VOCAB, tiny_model

TEXT = torch.randint(3, VOCAB, (1, 20), generator=torch.Generator().manual_seed(5))


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=TEXT).logits


def learned(num_memories: int):
    """(base, fm, the plain logits of TEXT) with TEXT learned; the memories change the output."""
    base = tiny_model("llama", dtype=torch.float32)
    plain = logits(base)
    fm = get_faast_model(base, FaastConfig(num_memories=num_memories))
    if num_memories:
        with torch.no_grad():
            fm.middle_memories[0].out_proj.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    fm.learn(input_ids=TEXT)
    assert not torch.allclose(logits(fm), plain, atol=1e-4)
    return base, fm, plain


def replicate_like_data_parallel(network: nn.Module) -> nn.Module:
    """What ``torch.nn.parallel.replicate`` does on one device, without broadcasting the parameters."""
    modules = list(network.modules())
    replicas = {id(m): m._replicate_for_data_parallel() for m in modules}
    for m in modules:
        r = replicas[id(m)]
        r._modules = {k: (None if c is None else replicas[id(c)]) for k, c in m._modules.items()}
        for k, p in m._parameters.items():
            r._parameters[k] = p
    return replicas[id(network)]


def faast_hooks(module: nn.Module) -> list[inject.FaastHook]:
    hooks = [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
    return [h for h in hooks if isinstance(h, inject.FaastHook)]


def test_a_data_parallel_replica_reads_the_memories():
    base, fm, plain = learned(num_memories=1)
    read = logits(fm)
    replica = replicate_like_data_parallel(base)
    assert replica is not base and replica.lm_head is not base.lm_head
    out = logits(replica)
    assert torch.allclose(out, read, atol=1e-5)
    assert not torch.allclose(out, plain, atol=1e-4)
    assert inject.strip_inert_hooks(replica) == 0 and torch.allclose(logits(fm), read, atol=1e-6)


def test_a_shallow_copy_serves_the_shared_hooks_and_stripping_it_keeps_the_originals():
    base, fm, plain = learned(num_memories=0)
    read = logits(fm)
    hooked = [m for m in base.modules() if faast_hooks(m)]
    assert hooked
    for module in hooked:
        twin = copy.copy(module)
        assert twin._forward_hooks is module._forward_hooks
        assert inject.strip_inert_hooks(nn.Sequential(twin)) == 0
        assert all(h.serves(twin) and h.serves(module) for h in faast_hooks(twin))
        assert faast_hooks(module) and faast_hooks(twin)
    out = logits(fm)
    assert torch.allclose(out, read, atol=1e-6) and not torch.allclose(out, plain, atol=1e-4)
    fm.unload()
    assert torch.allclose(logits(base), plain, atol=1e-6)


def test_a_deep_copy_stays_the_plain_model():
    base, fm, plain = learned(num_memories=1)
    read = logits(fm)
    twin = copy.deepcopy(base)
    hooks = [h for m in twin.modules() for h in faast_hooks(m)]
    assert hooks and not any(h.serves(m) for m in twin.modules() for h in faast_hooks(m))
    assert torch.allclose(logits(twin), plain, atol=1e-6)
    assert inject.strip_inert_hooks(twin) == len(hooks)
    assert torch.allclose(logits(twin), plain, atol=1e-6)
    assert torch.allclose(logits(fm), read, atol=1e-6)
