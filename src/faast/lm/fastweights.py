"""Fast-weight files: the float64 statistics of every memory, for one or several named tasks.

Layout of a file (a faast safetensors file of kind ``fast_weights``, written atomically, no pickle):

* tensors ``"{task}/{memory}/{gram|cross|count|weight_sum|value_sq_sum}"`` (float64 / int64), a
  memory's kept pairs while it holds at most d (``kept_keys``, ``kept_values``: float64), the
  read-outs' extra state (``"{task}/output/counts"``; files written before 2026-11-30 hold only
  ``"{task}/output/seen"``), a middle memory's scorer
  (``"{task}/{memory}/scorer_values"``, ``scorer_resolution``), ``"{task}/fingerprint"`` (a projection of
  the model's embedding matrix) and ``"{task}/weight_samples"``, ``"{task}/weight_resolution"``
  (values sampled from every floating weight tensor of the model, and the resolution of each
  tensor's dtype: what tells a fine-tune of the same base model apart);
* metadata ``tasks``: a JSON object task → signature (model type, sizes, memory layout, scorer
  hash, the layout config, the read config the task is read with, and a digest of the sampled
  tensors' names and shapes) checked when loading, so the statistics of another model or another
  readout fail with a clear error.

Several commands may write one file at once (two ``lm learn --task x`` / ``--task y``): every
write reads the file, changes one task and replaces the file under an exclusive lock of its folder
(:func:`faast.locks.parent_lock`), so no write loses another's task. A command that loads a task,
works for minutes and writes it back (``lm learn --append``, ``lm forget``, ``task forget``) holds
no lock meanwhile: it passes the :func:`task_digest` of the task it loaded, and :func:`write_task`
refuses (:class:`TaskChangedError`, nothing written) when the task in the file is no longer that
one. Readers take no lock: a file is only ever replaced whole (a new file moved over the old one),
and one read opens it once, so it sees either the old file or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faast.io import check_writable, load_tensors, save_tensors
from faast.lm.config import FaastConfig, ReadConfig
from faast.locks import parent_lock

STAT_KEYS = ("gram", "cross", "count", "weight_sum", "value_sq_sum")
#: Names of a memory's kept float64 pairs (keys (n, d), values (n, m)), saved while it keeps every
#: pair's row (n ≤ d), so that forgetting after a load still checks each pair against them.
KEPT_KEYS, KEPT_VALUES = "kept_keys", "kept_values"
#: Cosine similarity of embedding fingerprints above which two models count as the same weights.
FINGERPRINT_MIN_COSINE = 0.99
#: Names of a middle memory's scorer weights (1, 2d) float64 and its dtype's resolution (1, 2), saved
#: so that loading compares them up to dtype rounding (the signature's scorer hash cannot).
SCORER_VALUES, SCORER_RESOLUTION = "scorer_values", "scorer_resolution"
#: Values sampled from each floating weight tensor of a model for the weights check.
WEIGHT_SAMPLES_PER_TENSOR = 16


def check_task_name(task: str) -> str:
    """``task`` if it names a task: a non-empty string without '/', without spaces around it (" "
    or "a " would be told apart from "a" only by them), and not "." or ".."."""
    if (
        not isinstance(task, str)
        or not task.strip()
        or "/" in task
        or task != task.strip()
        or task in (".", "..")
    ):
        raise ValueError(
            f"task names must be non-empty strings without '/' or spaces around them, "
            f"and not '.' or '..', got {task!r}"
        )
    return task


def check_output_file(path: str | os.PathLike[str], task: str, *, warn_replace: bool = True) -> None:
    """Refuse, before a long job, a bad ``task`` name, a ``path`` that cannot be written, or an
    existing ``path`` that is not a fast-weight file (the task is added to it). ``warn_replace``:
    warn, before the work, when the file already holds ``task``, which the job will replace."""
    check_task_name(task)
    check_writable(path)
    if Path(path).exists():
        _, tasks = read_file(path)
        if warn_replace and task in tasks:
            warnings.warn(
                f"{path} already holds task {task!r}: it will be replaced (its other tasks are kept; "
                "--task NAME learns beside it)",
                UserWarning,
                stacklevel=2,
            )


def read_file(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, tasks) of a fast-weight file; tasks maps task → signature."""
    tensors, meta = load_tensors(path, kind="fast_weights")
    try:
        tasks = json.loads(meta["tasks"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: malformed fast-weight metadata ({exc})") from exc
    if not isinstance(tasks, dict) or not all(isinstance(v, dict) for v in tasks.values()):
        raise ValueError(f"{path}: malformed fast-weight metadata (tasks is not an object of objects)")
    return tensors, tasks


def list_tasks(path: str | os.PathLike[str]) -> list[str]:
    """Names of the tasks stored in a fast-weight file."""
    return sorted(read_file(path)[1])


class TaskChangedError(ValueError):
    """The task a command loaded was rewritten (or removed) by another command before this one
    saved it: saving would lose that command's change, so nothing is written."""


def task_digest(tensors: Mapping[str, torch.Tensor], signature: Mapping[str, Any]) -> str:
    """A SHA-256 of one task as stored: its signature (notes and learning records included) and
    the names, dtypes, shapes and bytes of its tensors (``tensors`` without the task prefix, as
    :func:`read_task` returns them). Any save of the task changes it (its records or statistics)."""
    digest = hashlib.sha256(json.dumps(signature, sort_keys=True, default=str).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\0{name}\0{t.dtype}\0{tuple(tensors[name].shape)}\0".encode())
        digest.update(t.view(torch.uint8).numpy())  # the bytes, not copied
    return digest.hexdigest()


def _task_tensors(tensors: Mapping[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    prefix = f"{task}/"
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def write_task(
    path: str | os.PathLike[str],
    task: str,
    tensors: dict[str, torch.Tensor],
    signature: dict[str, Any],
    *,
    expect: str | None = None,
) -> Path:
    """Add or replace ``task`` in the file at ``path`` (created if missing), atomically, the other
    tasks kept. The file is read and replaced under an exclusive lock of its folder, so two
    commands writing tasks into one file at once both keep theirs. ``expect``: the
    :func:`task_digest` of the task this write extends (as loaded); when the file no longer holds
    that task (another command rewrote or removed it since), :class:`TaskChangedError` and
    nothing is written."""
    check_task_name(task)
    with parent_lock(path, purpose="writing a file in"):
        existing: dict[str, torch.Tensor] = {}
        tasks: dict[str, Any] = {}
        if Path(path).is_file():
            existing, tasks = read_file(path)
        if expect is not None:
            _check_unchanged(path, task, existing, tasks, expect)
        existing = {k: v for k, v in existing.items() if not k.startswith(f"{task}/")}
        tasks[task] = signature
        out = {**existing, **{f"{task}/{k}": v for k, v in tensors.items()}}
        meta = {"tasks": json.dumps(tasks, sort_keys=True)}
        return save_tensors(path, out, meta, kind="fast_weights")


def _check_unchanged(
    path: str | os.PathLike[str],
    task: str,
    tensors: Mapping[str, torch.Tensor],
    tasks: Mapping[str, Any],
    expect: str,
) -> None:
    """:class:`TaskChangedError` unless ``task`` in the file read (``tensors``, ``tasks``) has the
    digest ``expect``."""
    if task not in tasks:
        raise TaskChangedError(
            f"{path}: task {task!r} was removed while this command ran (another faast command rewrote the "
            "file); nothing was written: run again"
        )
    if task_digest(_task_tensors(tensors, task), tasks[task]) != expect:
        raise TaskChangedError(
            f"{path}: task {task!r} changed while this command ran (another faast command wrote it); "
            "nothing was written: run again"
        )


def read_task(
    path: str | os.PathLike[str], task: str | None
) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(task, tensors without the task prefix, signature); ``task=None`` needs a one-task file."""
    tensors, tasks = read_file(path)
    if task is None:
        if len(tasks) != 1:
            raise ValueError(
                f"{path} holds {len(tasks)} tasks {sorted(tasks)}; name one "
                "(task=NAME, or --task NAME on the command line)"
            )
        task = next(iter(tasks))
    if task not in tasks:
        raise ValueError(f"{path} has no task {task!r}; it holds {sorted(tasks)}")
    return task, _task_tensors(tensors, task), tasks[task]


def read_task_and_digest(
    path: str | os.PathLike[str], task: str | None
) -> tuple[str, dict[str, torch.Tensor], dict[str, Any], str]:
    """:func:`read_task` and the :func:`task_digest` of the task as read: (task, tensors without the
    task prefix, signature, digest). A command that loads a task to rewrite it passes the digest
    to :func:`write_task` (``expect``), so that another command's save in between is not lost."""
    name, tensors, signature = read_task(path, task)
    return name, tensors, signature, task_digest(tensors, signature)


def read_config(path: str | os.PathLike[str], task: str | None = None) -> dict[str, Any]:
    """The ``FaastConfig`` fields a task was learned with (to rebuild the same layout)."""
    _, _, signature = read_task(path, task)
    if "config" not in signature:
        raise ValueError(f"{path}: task {task!r} records no FaastConfig")
    return dict(signature["config"])


class LegacyReadWarning(UserWarning):
    """A fast-weight task written before read configs were stored (2026-11-25, the file tag
    ``faast.lm.fast_weights``): its read settings meant other things then (:data:`LEGACY_READ`)."""


#: What :func:`task_read_config` warns of a task written before 2026-11-25 (no ``read`` in its
#: signature: 7917574 began storing it, and the layout family's tag, and changed what the output
#: memory's weight, temperature and gate mean). Its statistics are read as they were; their reading
#: is this faast's.
LEGACY_READ = (
    "fast weights written by a faast from before 2026-11-25 (file tag 'faast.lm.fast_weights'), whose "
    "read settings of the output memory (weight, temperature, gate) meant other things then, so their "
    "outputs now differ from those they gave then (the statistics are read as they were, the settings "
    "as this faast means them); to get this version's documented behaviour, learn the text again"
)


def task_read_config(signature: dict[str, Any]) -> ReadConfig:
    """The read config a task is read with: the one stored with it, or (files written before
    read configs were stored, 2026-11-25) the read fields of its layout config, with a
    :class:`LegacyReadWarning` (:data:`LEGACY_READ`): the same text from the same place, so a
    command that reads the task twice says it once."""
    if "read" in signature:
        return ReadConfig.from_dict(signature["read"])
    warnings.warn(LEGACY_READ, LegacyReadWarning, stacklevel=1)  # here, not the caller: said once
    legacy = FaastConfig.from_dict(signature.get("config", {})).legacy_read
    return ReadConfig().replace(**legacy)


def embedding_fingerprint(weight: torch.Tensor, rows: int = 512) -> torch.Tensor:
    """A dtype-robust fingerprint of an embedding matrix: E[:rows] · u for a fixed random u → (rows,)."""
    gen = torch.Generator().manual_seed(20240605)
    u = torch.randn(weight.shape[1], generator=gen, dtype=torch.float64)
    return (weight[:rows].detach().to("cpu", torch.float64) @ u).contiguous()


def same_fingerprint(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    cos = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0)
    return bool(cos >= FINGERPRINT_MIN_COSINE)


def sampled_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The (name, tensor) pairs the weights check samples: every floating parameter of ``model``
    that holds values (not on the ``meta`` device), in ``named_parameters`` order."""
    return [
        (name, p)
        for name, p in model.named_parameters()
        if p.is_floating_point() and p.device.type != "meta" and p.numel() > 0
    ]


def weights_digest(weights: list[tuple[str, torch.Tensor]]) -> str:
    """A digest of the names and shapes of ``weights`` (16 hex digits)."""
    text = json.dumps([[name, list(p.shape)] for name, p in weights])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dtype_resolution(dtype: torch.dtype) -> list[float]:
    """[eps, eps · tiny] of a floating ``dtype``: its relative spacing and smallest positive step,
    what rounding to it can change a value by (:func:`differing_weights`)."""
    info = torch.finfo(dtype)
    return [info.eps, info.eps * info.tiny]


def weight_samples(weights: list[tuple[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(samples, resolution)`` of ``weights`` (T tensors): samples (T, k) float64, the values at k =
    WEIGHT_SAMPLES_PER_TENSOR fixed positions of each flattened tensor (drawn from a fixed seed and
    the tensor's size, so the same on every load), and resolution (T, 2) float64, each tensor
    dtype's relative spacing (eps) and smallest positive step (eps · tiny)."""
    gen = torch.Generator().manual_seed(20261206)
    k = WEIGHT_SAMPLES_PER_TENSOR
    rows, res = [], []
    for _, p in weights:
        idx = torch.randint(p.numel(), (k,), generator=gen)
        rows.append(p.detach().reshape(-1)[idx.to(p.device)].to("cpu", torch.float64))
        res.append(dtype_resolution(p.dtype))
    samples = torch.stack(rows) if rows else torch.empty(0, k, dtype=torch.float64)
    return samples, torch.tensor(res, dtype=torch.float64).reshape(-1, 2)


def differing_weights(
    stored: torch.Tensor, stored_resolution: torch.Tensor, samples: torch.Tensor, resolution: torch.Tensor
) -> list[int]:
    """Indices of the tensors whose samples differ between ``stored`` and ``samples`` (both (T, k)
    float64) by more than rounding to the coarser of the two dtypes can explain (relative spacing
    and smallest step: (T, 2) each). Values infinite or NaN on either side are not compared (a
    float16 copy of a large weight overflows)."""
    if stored.shape != samples.shape or stored_resolution.shape != resolution.shape:
        raise ValueError(
            f"weight samples of shape {tuple(stored.shape)} cannot be compared with {tuple(samples.shape)}"
        )
    rel = torch.maximum(stored_resolution[:, :1], resolution[:, :1])
    step = torch.maximum(stored_resolution[:, 1:], resolution[:, 1:])
    finite = torch.isfinite(stored) & torch.isfinite(samples)
    a, b = torch.where(finite, stored, 0.0), torch.where(finite, samples, 0.0)
    within = (a - b).abs() <= rel * torch.maximum(a.abs(), b.abs()) + step
    return torch.nonzero(~within.all(dim=1)).flatten().tolist()
