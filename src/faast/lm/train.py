"""Pre-training the middle memories' readout (``out_proj``) and scorer, with the backbone frozen.

The paper trains these once on diverse text; the model then learns new text at test time without
gradients. A training step here, for a batch X of windows read in order:

1. the memory of each middle layer holds the pairs of the *previous* batches (a FIFO bank of
   ``bank_tokens`` rows; X's own pairs are not in it, unlike the reference code, which predicts
   tokens it has just memorised);
2. its fast weight is solved as in inference, W = (P·B)ᵀ with P = G⁺ the spectrally cut inverse
   of the bank's Gram matrix (a constant) and B = Σ kᵢ (wᵢ vᵢ)ᵀ, which carries the gradient to
   the scorer through the value weights wᵢ = σ(s·[kᵢ; vᵢ]);
3. X is scored by the model reading h + out_proj(dropout(W·h)) before each middle block, and the
   next-token loss is back-propagated into ``out_proj`` and the scorer only;
4. X's pairs (from a forward with the memories off, exactly as ``learn`` records them) enter
   the bank.

Training is deterministic for a seed (and a thread count) and resumable: with ``checkpoint=``, the
readout, the optimizer, the random state, the banks and the log are saved atomically every
``checkpoint_every`` steps, and a later call with the same arguments continues from there,
ending with the same weights as an uninterrupted run.

Under ``torchrun`` (:mod:`faast.distributed`) every process takes its block of each batch, the
readout is wrapped in ``DistributedDataParallel`` and each process's loss is weighted by its share
of the batch's tokens, so the averaged gradient is the gradient of the whole batch; the pairs of
the batch are gathered into every process's bank in batch order. The loss curve is then that of
one process with the same batch, to rounding (with ``readout_dropout`` = 0: dropout masks are
drawn per process). Rank 0 alone writes checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

import faast.distributed
from faast.io import load_tensors, save_tensors
from faast.lm.model import FaastModel
from faast.lm.readouts import MiddleMemory, next_pairs
from faast.rng import seeded_rng
from faast.solver import PairBuffer, SpectralFactor
from faast.solver.cut import DATA_CHOSEN


@dataclass
class TrainConfig:
    """steps: optimizer steps (batches); batch_windows: windows per batch; bank_tokens: pairs in the
    memory while training; lr, weight_decay, grad_clip: AdamW and clipping; log_every: how often
    the base model's loss on the same batch is also computed (for the log); checkpoint_every:
    steps between checkpoints (when a checkpoint path is given)."""

    steps: int = 100
    batch_windows: int = 4
    bank_tokens: int = 8192
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 10
    seed: int = 0
    checkpoint_every: int = 25


def differentiable_fast_weight(mem: MiddleMemory, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """W (d, d) solved from (n, d) bank pairs with the memory's inference cut.

    Gradient flows into the scorer through B = Σ kᵢ (wᵢ vᵢ)ᵀ; the filtered inverse of G is a
    constant. The cut must not depend on the values (GCV and leave-one-out cuts are refused).
    """
    cut = mem.memory.cut
    if cut.kind in DATA_CHOSEN:
        raise ValueError(f"readout training needs a cut that does not depend on the values, got {cut}")
    w = mem.value_weights(keys, values)
    v = values if w is None else values * w[:, None].to(values.dtype)
    k64 = keys.double()
    gram = k64.T @ k64
    factor = SpectralFactor.from_stats(
        gram, torch.zeros(gram.shape[0], 1, dtype=torch.float64), float(len(k64)), 0.0
    )
    phi, _, _ = cut.apply(factor)
    cross = k64.T @ v.double()  # (d, d): carries the gradient to the scorer
    return (factor.inverse(phi) @ cross).T.to(keys.dtype)


def train_readout(
    fm: FaastModel,
    windows: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
) -> list[dict[str, float]]:
    """Train ``out_proj`` and the scorer of every middle memory of ``fm`` on (n, T) token windows.

    Windows are read in order (consecutive windows of one text share a document, so the bank
    holds the recent context of each predicted batch). Returns one log row per optimizer step:
    ``loss`` with the memories and, every ``log_every`` steps, ``base_loss`` of the same batch.
    The statistics learned before are cleared (the scorer changes what they would hold).

    checkpoint: a file to save the training state to every ``checkpoint_every`` steps and at the
    end; if it exists, training resumes from it (it must come from the same windows, config and
    layout, which is checked).

    Seeded by ``config.seed``: torch's global random streams are seeded for the training and given
    back as they were after it (:func:`faast.rng.seeded_rng`), so the caller's own stream goes on.
    """
    config = config or TrainConfig()
    with seeded_rng(config.seed):  # seeded, and the caller's own random stream given back after
        return _train_readout(fm, windows, config, progress, checkpoint)


def _train_readout(
    fm: FaastModel,
    windows: torch.Tensor,
    config: TrainConfig,
    progress: bool,
    checkpoint: str | os.PathLike[str] | None,
) -> list[dict[str, float]]:
    """:func:`train_readout` with torch's random streams seeded."""
    dist = faast.distributed.current()
    mids = fm.middle_memories
    if not mids:
        raise ValueError("the model has no middle memories to train (FaastConfig.num_memories = 0)")
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be a (n, T >= 2) tensor of token ids, got {tuple(windows.shape)}")
    params = [p for m in mids for p in m.parameters()]
    frozen = [(p, p.requires_grad) for p in fm.base_model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    banks = {m.layer: PairBuffer(config.bank_tokens) for m in mids}
    device = next(fm.base_model.parameters()).device
    fm.reset_projection()
    fm.memories.train()
    log: list[dict[str, float]] = []
    batches = list(
        range(0, min(len(windows), (config.steps + 1) * config.batch_windows), config.batch_windows)
    )
    identity = _run_identity(fm, windows, config)
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        start, log = _resume(checkpoint, identity, fm, opt, banks)
    loss_of = _data_parallel(_BatchLoss(fm), dist, device)
    show = progress and dist.is_main
    bar = tqdm(batches[start:], desc="train readout", unit="batch", disable=not show, initial=start)
    bar.total = len(batches)
    try:
        for n, i in enumerate(batches[start:], start):
            whole = windows[i : i + config.batch_windows]
            mine = dist.shard(whole)
            share = len(mine) / len(whole)  # of the batch's tokens (windows have one length)
            x = (mine if len(mine) else whole[:1]).to(device)  # an empty block runs a dummy, weight 0
            captured = fm.capture(input_ids=x)
            if all(len(b) for b in banks.values()):
                log.append(_step(fm, mids, banks, x, opt, params, config, len(log), loss_of, share, dist))
                bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
            for m in mids:
                keys, values = next_pairs(captured.states[m.key_point], captured.valid)
                keys, values = keys.detach().float(), values.detach().float()
                if dist.active:  # every process's pairs, in batch order
                    keys, values = (_gather_windows(dist, t, len(mine), len(whole)) for t in (keys, values))
                banks[m.layer].append(keys, values)
            bar.update(1)
            done = n + 1
            if (
                checkpoint is not None
                and dist.is_main
                and (done % max(1, config.checkpoint_every) == 0 or done == len(batches))
            ):
                _save_checkpoint(checkpoint, identity, done, log, fm, opt, banks)
    finally:
        bar.close()
        for m in mids:
            m.train_weight = None
        fm.memories.eval()
        for p, flag in frozen:
            p.requires_grad_(flag)
    return log


class _BatchLoss(torch.nn.Module):
    """The next-token loss of a batch read through the middle memories. Only the memories are
    registered (so DistributedDataParallel synchronises the readout, not the frozen backbone)."""

    def __init__(self, fm: FaastModel) -> None:
        super().__init__()
        self.memories = fm.memories
        self._fm = [fm]  # not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fm[0](input_ids=x, labels=x, use_cache=False).loss


def _data_parallel(loss: _BatchLoss, dist: faast.distributed.Dist, device: torch.device) -> torch.nn.Module:
    """``loss`` wrapped in DistributedDataParallel when there are several processes."""
    if not dist.active:
        return loss
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(loss, device_ids=ids, broadcast_buffers=False)


def _gather_windows(dist: faast.distributed.Dist, rows: torch.Tensor, mine: int, whole: int) -> torch.Tensor:
    """(mine·P, d) pairs of this process's windows (P per window) → (whole·P, d) of the batch.

    A process with no window holds the pairs of its dummy window (one window's worth), sends none."""
    per = rows.shape[0] // max(mine, 1)
    if mine == 0:
        rows = rows[:0]
    elif rows.shape[0] != mine * per:
        raise ValueError("readout training under torchrun needs windows without padding")
    blocks = rows.reshape(mine, per, *rows.shape[1:])
    return dist.gather_rows(blocks, whole).reshape(-1, *rows.shape[1:])


def _run_identity(fm: FaastModel, windows: torch.Tensor, config: TrainConfig) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the windows, the config and the layout."""
    digest = hashlib.sha256(
        windows.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
    ).hexdigest()
    layout = fm.faast_config.to_dict()
    layout.pop("base_model_name_or_path", None)
    return {
        "windows_sha256": digest,
        "train_config": json.dumps(asdict(config), sort_keys=True),
        "layout": json.dumps(layout, sort_keys=True),
        "hidden_size": str(fm._layout.hidden_size),
    }


def _save_checkpoint(
    path: str | os.PathLike[str],
    identity: dict[str, str],
    done: int,
    log: list[dict[str, float]],
    fm: FaastModel,
    opt: torch.optim.Optimizer,
    banks: dict[int, PairBuffer],
) -> None:
    tensors: dict[str, torch.Tensor] = {
        f"param/{name}": p.detach() for name, p in fm.memories.named_parameters()
    }
    state = opt.state_dict()
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"opt/{index}/{key}"] = torch.as_tensor(value)
    for layer, bank in banks.items():
        if len(bank):
            keys, values = bank.tensors()
            tensors[f"bank/{layer}/keys"], tensors[f"bank/{layer}/values"] = keys, values
    tensors["rng"] = torch.get_rng_state()
    meta = {
        **identity,
        "batches_done": str(done),
        "log": json.dumps(log),
        "param_groups": json.dumps(state["param_groups"]),
    }
    save_tensors(path, tensors, meta, kind="train_state")


def _resume(
    path: str | os.PathLike[str],
    identity: dict[str, str],
    fm: FaastModel,
    opt: torch.optim.Optimizer,
    banks: dict[int, PairBuffer],
) -> tuple[int, list[dict[str, float]]]:
    tensors, meta = load_tensors(path, kind="train_state")
    for key, value in identity.items():
        if meta.get(key) != value:
            raise ValueError(
                f"checkpoint {path} belongs to another training run ({key} differs); "
                "use another checkpoint path or the same windows, config and layout"
            )
    with torch.no_grad():
        for name, p in fm.memories.named_parameters():
            p.copy_(tensors[f"param/{name}"])
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, index, name = key.split("/", 2)
            slots.setdefault(int(index), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": json.loads(meta["param_groups"])})
    for layer, bank in banks.items():
        if f"bank/{layer}/keys" in tensors:
            bank.append(tensors[f"bank/{layer}/keys"], tensors[f"bank/{layer}/values"])
    torch.set_rng_state(tensors["rng"])
    return int(meta["batches_done"]), json.loads(meta["log"])


def _step(
    fm: FaastModel,
    mids: list[MiddleMemory],
    banks: dict[int, PairBuffer],
    x: torch.Tensor,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    config: TrainConfig,
    step: int,
    loss_of: torch.nn.Module,
    share: float = 1.0,
    dist: faast.distributed.Dist | None = None,
) -> dict[str, float]:
    """One optimizer step on batch x (B, T) with every memory solved from its bank.

    ``loss_of(x)`` is the mean loss of x (DistributedDataParallel under torchrun, which averages
    the gradients of the processes); ``share`` is x's part of the batch's tokens, so weighting the
    loss by world size × share makes that average the gradient of the whole batch."""
    dist = dist or faast.distributed.Dist()
    for m in mids:
        m.train_weight = differentiable_fast_weight(m, *banks[m.layer].tensors())
    loss = loss_of(x)
    opt.zero_grad(set_to_none=True)
    (loss * (dist.world_size * share) if dist.active else loss).backward()
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
    opt.step()
    for m in mids:
        m.train_weight = None
    row = {
        "step": float(step),
        "loss": dist.sum(float(loss.detach()) * share),
        "grad_norm": grad_norm,
        "bank": float(len(banks[mids[0].layer])),
    }
    if config.log_every and step % config.log_every == 0:
        with torch.no_grad(), fm.disabled():
            row["base_loss"] = dist.sum(float(fm(input_ids=x, labels=x, use_cache=False).loss) * share)
    if not math.isfinite(row["loss"]):
        raise FloatingPointError(f"readout training diverged at step {step} (loss {row['loss']})")
    return row


def config_dict(config: TrainConfig) -> dict[str, float]:
    return asdict(config)
