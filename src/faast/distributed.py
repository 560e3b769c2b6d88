"""Data parallelism over ``torch.distributed``: one all-reduce of the statistics per learning pass.

FAAST's statistics (G, B, n, Σw, Σw‖v‖²) are sums over examples, so each process can run the
frozen model on its own shard of the data and one all-reduce gives every process the statistics
of all of it; the solve that follows is then identical everywhere. This module holds the little
machinery that needs:

- :func:`init` joins the process group described by the ``torchrun`` environment (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) with a timeout, or returns a
  single-process context when there is none, so the same code runs with and without a launcher;
- :class:`Dist` knows the rank and world size, shards a sequence (uneven splits and empty shards
  are fine), all-reduces :class:`~faast.solver.GramStats` and small values, gathers rows,
  compares what the processes read (:meth:`Dist.check_same`: inputs or options that differ are an
  :class:`InputsDifferError` on every process; :func:`model_fingerprint` for the model loaded)
  and says which process writes files and prints (rank 0);
- :meth:`Dist.reduce_learning` wraps the learning of a :class:`~faast.lm.FaastModel` (or a
  :class:`~faast.lm.task.TaskModel`) so that only what is learned inside the block is summed across
  processes, and :meth:`Dist.learn_shard` shards a sequence, learns this process's block inside it
  and returns the total pair count;
- every collective turns a failure or a timeout (another process crashed or is stuck) into a
  :class:`DistributedError` naming this rank and the operation, instead of hanging; statistics
  that cannot be summed (other dimensions, ``dual_max_pairs`` or key dtypes) are refused on every
  process at once, before anything is summed.

Environment: ``FAAST_DIST_TIMEOUT`` (seconds a collective waits for the other processes, default
1800), ``FAAST_DIST_BACKEND`` (``gloo`` or ``nccl``; default nccl when CUDA is available, else gloo).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import os
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from faast.digest_multiset import DigestMultiset
from faast.solver import GramStats
from faast.solver.stats import StatsMismatchError

__all__ = [
    "Dist",
    "DistributedError",
    "InputsDifferError",
    "current",
    "digest",
    "init",
    "model_fingerprint",
    "shard_range",
    "shutdown",
]

T = TypeVar("T")

#: Seconds a collective waits for the other processes before failing (``FAAST_DIST_TIMEOUT``).
DEFAULT_TIMEOUT_S = 1800.0
_CPU = torch.device("cpu")
_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A collective failed or timed out: another process probably failed, see its own error."""


class InputsDifferError(ValueError):
    """The processes of a launch read different inputs or were given different options
    (:meth:`Dist.check_same`): raised on every process, before anything is written."""


def digest(*parts: Any) -> str:
    """A short SHA-256 (16 hex digits) of ``parts``, to compare what each process read
    (:meth:`Dist.check_same`) without sending it: arrays and tensors by dtype, shape and bytes,
    anything else by its JSON (lists, dicts, strings, numbers; other objects by ``str``)."""
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"\0tensor {t.dtype} {tuple(part.shape)}\0".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(part, np.ndarray) and part.dtype != object:
            h.update(f"\0array {part.dtype.str} {part.shape}\0".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            if isinstance(part, np.ndarray):
                part = part.tolist()
            h.update(b"\0json\0" + json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:16]


#: Keys of a model's configuration that say where it was loaded from or which library wrote it,
#: not what it computes: left out of :func:`model_fingerprint` (a node's copy may lie elsewhere).
_CONFIG_WHEREABOUTS = ("_name_or_path", "_model_name_or_path", "_commit_hash", "transformers_version")
#: The text whose token ids :func:`model_fingerprint` takes of a tokenizer (several scripts, digits,
#: punctuation, runs of spaces, a tab and a newline).
_TOKENIZER_PROBE = (
    "The quick brown fox jumps over the lazy dog. 0123456789 -- Ünïcødé, 中文, русский, العربية, "
    "ελληνικά!?  \t(x+y)**2 == 3.14\nend"
)


def model_fingerprint(model: Any, tokenizer: Any = None) -> str:
    """A cheap fingerprint (16 hex digits) of a loaded model, and of its tokenizer when given, so
    that the processes of a launch can compare (:meth:`Dist.check_same`) whether they loaded the
    same snapshot, without hashing or sending every weight. It is the SHA-256 of:

    - the model's configuration (``config.to_dict()``, without the keys that name where it was
      loaded from or which ``transformers`` wrote it: ``_name_or_path``, ``_commit_hash``,
      ``transformers_version``, ...);
    - the name, shape and dtype of every floating parameter of ``model`` (a
      :class:`~faast.lm.FaastModel`: the base model's and a trained read-out's, ``--adapter``) and
      its exact values at 16 fixed positions (those a fast-weight file samples to check the model
      it is loaded into: :func:`faast.lm.fastweights.weight_samples`); parameters on the ``meta``
      device (offloaded) by name and shape only;
    - with ``tokenizer``: its length, its special tokens, its chat template and the ids it gives
      a fixed probe text (several scripts, digits, spaces).

    What it catches: another architecture, configuration, size or dtype; a fine-tune, a merged
    adapter, a re-quantised or re-rounded copy (each changes the values at nearly every sampled
    position); a tokenizer with another vocabulary size, other special tokens or template, or one
    that splits the probe otherwise. What it does not catch: a change confined to a few values on
    which no sampled position falls (one edited row of one matrix, say), buffers (tensors that are
    not parameters, such as rotary frequencies: the configuration sets them), tokens outside the
    probe of a vocabulary of the same size, and anything in the files that loading did not keep.
    The same files loaded with the same dtype give the same fingerprint on every machine; the
    fingerprint is not a digest of the files (their bytes are not read)."""
    from faast.lm import fastweights as fw

    config = getattr(model, "config", None)
    if config is None:  # a FaastModel hands other attributes to its base model; a plain module has none
        config = getattr(getattr(model, "base_model", None), "config", None)
    told = config.to_dict() if hasattr(config, "to_dict") else None
    parts: list[Any] = [_without_whereabouts(told)]
    if isinstance(model, torch.nn.Module):
        offloaded = [[n, list(p.shape)] for n, p in model.named_parameters() if p.device.type == "meta"]
        weights = fw.sampled_weights(model)
        samples, _ = fw.weight_samples(weights)
        parts += [[[n, list(p.shape), str(p.dtype)] for n, p in weights], offloaded, samples]
    if tokenizer is not None:
        encode = getattr(tokenizer, "encode", None)
        special = getattr(tokenizer, "all_special_tokens", None)
        parts.append(
            {
                "length": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
                "special": list(special) if special is not None else None,
                "template": getattr(tokenizer, "chat_template", None),
                "probe": list(encode(_TOKENIZER_PROBE)) if callable(encode) else None,
            }
        )
    return digest(*parts)


def _without_whereabouts(config: Any) -> Any:
    """A model's configuration (``to_dict()``, nested ones too) without :data:`_CONFIG_WHEREABOUTS`."""
    if isinstance(config, dict):
        return {k: _without_whereabouts(v) for k, v in config.items() if k not in _CONFIG_WHEREABOUTS}
    if isinstance(config, list):
        return [_without_whereabouts(v) for v in config]
    return config


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The indices of ``n`` items that process ``rank`` of ``world_size`` handles.

    Contiguous blocks whose sizes differ by at most one (the first ``n % world_size`` ranks get
    one more); a rank gets an empty range when there are fewer items than processes.
    """
    if n < 0:
        raise ValueError(f"cannot shard a negative number of items ({n})")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _timeout_from_env() -> float:
    raw = os.environ.get("FAAST_DIST_TIMEOUT", "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"FAAST_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if seconds <= 0:
        raise ValueError(f"FAAST_DIST_TIMEOUT must be positive, got {seconds}")
    return seconds


@dataclass(frozen=True)
class Dist:
    """Where this process stands in a data-parallel run (a single process when ``world_size`` is 1).

    Attributes
    ----------
    rank, world_size, local_rank : int
        This process's index, the number of processes, and its index on its machine.
    backend : str or None
        ``"gloo"`` or ``"nccl"`` (None for a single process).
    device : torch.device
        Where collectives run: ``cuda:<local_rank>`` with nccl, else the CPU.
    timeout_s : float
        How long a collective waits for the other processes.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = _CPU
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def active(self) -> bool:
        """Whether there is more than one process (collectives do something)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints progress (rank 0)."""
        return self.rank == 0

    def __str__(self) -> str:
        return f"rank {self.rank}/{self.world_size}"

    # ----------------------------------------------------------------- sharding
    def shard_range(self, n: int) -> range:
        """This process's indices among ``n`` items (see :func:`shard_range`)."""
        return shard_range(n, self.rank, self.world_size)

    def shard(self, items: Sequence[T]) -> Sequence[T]:
        """This process's contiguous block of ``items`` (a list, tuple, array or tensor; may be empty)."""
        r = self.shard_range(len(items))
        return items[r.start : r.stop]

    # ----------------------------------------------------------------- collectives
    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        """Turn a failed or timed-out collective into a DistributedError naming rank and operation
        (a Dist of several processes without an initialised process group: a DistributedError
        saying so, before anything is sent)."""
        if not (dist.is_available() and dist.is_initialized()):
            raise DistributedError(
                f"{self}: {what}: the torch.distributed process group is not initialised; a Dist of "
                f"{self.world_size} processes needs one (faast.distributed.init() under torchrun, or "
                "torch.distributed.init_process_group)"
            )
        try:
            yield
        except DistributedError:
            raise
        except StatsMismatchError as exc:  # the processes agreed that they disagree: not a failure
            raise DistributedError(str(exc)) from exc
        except (RuntimeError, ValueError) as exc:  # DistBackendError is a RuntimeError
            raise DistributedError(
                f"{self}: {what} failed; another process probably failed or is stuck (collectives "
                f"wait up to {self.timeout_s:g} s, FAAST_DIST_TIMEOUT): see the other processes' "
                f"errors. Cause: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
            ) from exc

    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum", what: str = "all_reduce") -> torch.Tensor:
        """Reduce ``tensor`` in place over every process (``op``: ``"sum"`` or ``"max"``)."""
        if not self.active:
            return tensor
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
        if op not in ops:
            raise ValueError(f"op must be 'sum' or 'max', got {op!r}")
        work = tensor if tensor.device == self.device else tensor.to(self.device)
        with self._collective(what):
            dist.all_reduce(work, op=ops[op])
        if work is not tensor:
            tensor.copy_(work)
        return tensor

    def sum(self, value: float) -> float:
        """The sum of a number over every process."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        return float(self.all_reduce_(t, what="sum of a number")[0])

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every process (an agreement, so every process takes one branch)."""
        t = torch.tensor([0 if flag else 1], dtype=torch.int64, device=self.device)
        return int(self.all_reduce_(t, "max", what="agreement")[0]) == 0

    def barrier(self) -> None:
        """Wait until every process gets here (a small all-reduce, so it obeys the timeout)."""
        self.all_true(True)

    def all_gather_json(self, obj: Any) -> list[Any]:
        """Every process's JSON-able ``obj``, in rank order (sent as UTF-8 JSON, never pickled)."""
        data = json.dumps(obj).encode("utf-8")
        if not self.active:
            return [json.loads(data)]
        sizes = self._gather_counts([len(data)])
        width = int(sizes.max())
        local = torch.zeros(1, width, dtype=torch.uint8)
        local[0, : len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        rows = self._gather_blocks(local, [1] * self.world_size, "all_gather of values")
        return [json.loads(bytes(rows[i, : int(sizes[i, 0])].tolist())) for i in range(self.world_size)]

    def gather_rows(self, local: torch.Tensor, total: int) -> torch.Tensor:
        """Concatenate every process's rows in rank order: ``local`` (k, ...) holds this process's
        block of :meth:`shard_range` (``total``) → (total, ...) on ``local``'s device, everywhere.
        The processes' totals (and row counts) are exchanged first: processes that disagree on
        ``total`` (they read inputs of other lengths) are a :class:`DistributedError` on every
        process naming each one's total, not sizes that do not match inside the backend."""
        sizes = [len(shard_range(total, r, self.world_size)) for r in range(self.world_size)]
        if not self.active:
            if local.shape[0] != sizes[self.rank]:
                raise ValueError(f"{self}: expected {sizes[self.rank]} rows of {total}, got {local.shape[0]}")
            return local
        every = self._gather_counts([int(total), int(local.shape[0])])
        totals, counts = every[:, 0].tolist(), every[:, 1].tolist()
        if any(t != totals[0] for t in totals):
            raise DistributedError(
                f"{self}: the processes gather rows of different totals ("
                + ", ".join(f"rank {r}: {t}" for r, t in enumerate(totals))
                + "): they read inputs of other lengths; every process must read the same inputs"
            )
        wrong = [r for r, k in enumerate(counts) if k != sizes[r]]
        if wrong:
            raise DistributedError(
                f"{self}: expected each process's block of the {total} rows ("
                + ", ".join(f"rank {r}: {sizes[r]} rows, got {counts[r]}" for r in wrong)
                + ")"
            )
        return self._gather_blocks(local, sizes, "all_gather of rows").to(local.device)

    def _gather_counts(self, counts: list[int]) -> torch.Tensor:
        """Every process's ``counts`` (k integers, the same k everywhere) → (world size, k) int64 on
        the CPU, in rank order: one row each, so the sizes agree whatever the processes hold."""
        told = torch.tensor([counts], dtype=torch.int64)
        return self._gather_blocks(told, [1] * self.world_size, "all_gather of rows").cpu()

    def check_same(self, values: dict[str, Any], shown: dict[str, str] | None = None) -> None:
        """Refuse, on every process, ``values`` (name → a JSON-able value: an option's value, or a
        :func:`digest` of what an input file held) that differ between the processes: an
        :class:`InputsDifferError` naming each differing name and every process's value (or what
        ``shown`` gives for it: e.g. the file a digest was taken of, whose path may differ between
        processes). One all-gather; nothing at all with a single process. Call it after the inputs
        are read and before anything is written, so that no process works on a mixture of them."""
        if not self.active:
            return
        mine = json.loads(json.dumps(values, default=str))  # as the others receive it
        every = self.all_gather_json([mine, dict(shown or {})])
        names = list(dict.fromkeys(name for part, _ in every for name in part))
        differ = [n for n in names if any(p.get(n) != every[0][0].get(n) for p, _ in every)]
        if not differ:
            return

        def told_as(part: dict[str, Any], labels: dict[str, str], name: str) -> str:
            if name in labels:
                return labels[name]
            text = json.dumps(part[name]) if name in part else "not given"
            return text if len(text) <= 60 else text[:57] + "..."

        told = "; ".join(
            f"{n} ("
            + ", ".join(f"rank {r}: {told_as(part, labels, n)}" for r, (part, labels) in enumerate(every))
            + ")"
            for n in differ[:4]
        )
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise InputsDifferError(
            f"{self}: the processes read different inputs or were given different options: {told}{more}; "
            "every process of a torchrun launch must read the same files (on shared storage, or the same "
            "copy on every node) with the same options. Nothing was written"
        )

    def gather_any_rows(self, local: torch.Tensor, what: str) -> torch.Tensor:
        """Concatenate every process's rows in rank order, each process holding any number
        (``local`` (k, ...), k ≥ 0): their counts are gathered first → (Σk, ...) everywhere."""
        if not self.active:
            return local
        counts = self._gather_counts([local.shape[0]])
        return self._gather_blocks(local, counts[:, 0].tolist(), what).to(local.device)

    def gather_digests(self, local: np.ndarray, what: str) -> np.ndarray:
        """Every process's digests (k,) uint64 in rank order, each process holding any number
        (a record of examples or rows learned, :mod:`faast.digest_multiset`) → (Σk,) everywhere."""
        bits = torch.from_numpy(np.ascontiguousarray(local, dtype=np.uint64).view(np.int64).copy())
        return self.gather_any_rows(bits, what).cpu().numpy().view(np.uint64)

    def _gather_blocks(self, local: torch.Tensor, sizes: list[int], what: str) -> torch.Tensor:
        width = max(max(sizes), 1)
        padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=self.device)
        padded[: local.shape[0]] = local.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        with self._collective(what):
            dist.all_gather(parts, padded)
        return torch.cat([p[:k] for p, k in zip(parts, sizes, strict=True)])

    def all_reduce_stats(self, stats: GramStats) -> GramStats:
        """Sum ``stats`` over every process in place (every process must call it, empty or not).

        Afterwards every process holds the statistics of all the data, so solving gives the same
        fast weights everywhere. :meth:`GramStats.all_reduce` first checks that the processes'
        statistics can be summed — the same dimensions and ``dual_max_pairs``, one key dtype
        among the processes with data (a process with none adopts it) — and a mismatch is a
        :class:`DistributedError` on every process at once.
        """
        if not self.active:
            return stats
        home = stats.device
        if home != self.device:
            stats.to(self.device)
        try:
            with self._collective("all_reduce of the statistics"):
                stats.all_reduce()
        finally:
            if home != self.device:
                stats.to(home)
        return stats

    def union(self, values: Sequence[Any]) -> list[Any]:
        """The sorted distinct values seen by any process (JSON-able scalars: labels, names)."""
        merged = {v for part in self.all_gather_json(list(values)) for v in part}
        return sorted(merged)

    def union_labels(self, labels: np.ndarray) -> np.ndarray:
        """The sorted distinct labels (JSON-able scalars) of every process's ``labels`` (n,), in the
        dtype NumPy gives their arrays together (int32 labels stay int32; strings widen to the
        longest); processes without labels do not take part in the dtype unless none has any.
        Labels that cannot be put together (numbers on one process, strings on another) are a
        :class:`DistributedError` on every process, naming each process's kind of labels."""
        parts = self.all_gather_json([labels.dtype.str, labels.tolist()])
        held = [np.dtype(kind) for kind, values in parts if values] or [np.dtype(k) for k, _ in parts]
        kinds = {_label_kind(dtype) for dtype in held}
        if len(kinds) > 1:  # e.g. 1 and "1": no order, no dtype (and JSON would keep both)
            told = ", ".join(
                f"rank {r}: {_label_kind(np.dtype(kind)) if values else 'none'} ({np.dtype(kind)})"
                for r, (kind, values) in enumerate(parts)
            )
            raise DistributedError(
                f"{self}: the processes' labels are of different kinds ({told}): every process must "
                "pass labels of one kind (all numbers, or all strings), e.g. y.astype(str) everywhere"
            )
        merged = sorted({v for _, values in parts for v in values})
        return np.asarray(merged, dtype=np.result_type(*held))

    # ----------------------------------------------------------------- learning
    @contextlib.contextmanager
    def reduce_learning(self, model: Any) -> Iterator[Any]:
        """Sum what each process learns inside the block across processes, on exit.

        ``model`` is a :class:`~faast.lm.FaastModel` (or a :class:`~faast.lm.task.TaskModel`, or
        anything with ``readouts``). Statistics held before the block (the same on every process,
        e.g. loaded fast weights) are kept once, not multiplied: they are set aside, the block
        learns into empty statistics, these are all-reduced and the earlier ones added back.
        Learned-token counts (the output memory's ``counts``) and float64 sums (the correction
        read-out's curvature sums) are reduced the same way (what the block added summed, the
        earlier ones kept once); boolean learned-token sets are united. If the block raises, or
        the reduction fails (another process failed: a :class:`DistributedError`), every
        read-out's earlier statistics and extra state are restored before the error propagates.
        First the processes compare the model they learn with (:func:`model_fingerprint` of a
        FaastModel's weights and configuration, without the tokenizer; taken again only when its
        parameters were replaced or changed in place, a change made through ``.data`` is not
        seen): another snapshot on one process is an :class:`InputsDifferError` on every process,
        before anything is learned.

        Examples
        --------
        >>> d = faast.distributed.init()
        >>> with d.reduce_learning(fm):
        ...     learn_windows(fm, d.shard(windows))
        """
        readouts = _readouts(model)
        if self.active:  # one model everywhere, before anything is changed
            held = _learning_fingerprint(model)
            self.check_same({"the model": held}, {"the model": f"weights and configuration {held}"})
        before = [r.stats.copy() for r in readouts]
        extras = [{k: v.clone() for k, v in r.extra_state().items()} for r in readouts]
        counts = self.all_gather_json([b.count for b in before])
        if any(c != counts[0] for c in counts):
            raise DistributedError(
                f"{self}: the processes start from different statistics (pair counts {counts}); "
                "reduce_learning needs the same starting point everywhere"
            )
        for r in readouts:
            r.stats.reset()
        records = _learning_records(model)
        recorded = [(owner, name, record.copy()) for owner, name, record in records]
        try:
            yield model
            for r, b, extra in zip(readouts, before, extras, strict=True):
                self._reduce_readout(r, b, extra)
            for (owner, name, record), (_, _, earlier) in zip(records, recorded, strict=True):
                if getattr(owner, name, None) is record:  # not replaced inside the block
                    setattr(owner, name, self._united_record(record, earlier))
        except BaseException:  # the block, or the reduction (another process failed): roll back
            for r, b, extra in zip(readouts, before, extras, strict=True):
                r.stats.restore(b)
                if extra:
                    r.load_extra_state(extra, "the learned-token state before the block")
            for owner, name, earlier in recorded:
                setattr(owner, name, earlier)
            raise

    def _united_record(self, record: DigestMultiset, before: DigestMultiset) -> DigestMultiset:
        """After a :meth:`reduce_learning` block: a record of what was learned (a TaskModel's
        examples, :mod:`faast.lm.task_record`; a FaastModel's rows, :mod:`faast.lm.learned_rows`)
        holding, on every process, what it held ``before`` (the same everywhere) and what every
        process learned in the block."""
        united = before.copy()
        united.add(self.gather_digests(record.minus(before), "digests of what was learned"))
        return united

    def _reduce_readout(self, readout: Any, before: GramStats, extra: dict[str, torch.Tensor]) -> None:
        """Sum what ``readout`` learned in a :meth:`reduce_learning` block over every process and
        add back what it held ``before`` (statistics) and ``extra`` (its extra state) once."""
        self.all_reduce_stats(readout.stats)
        reduced: dict[str, torch.Tensor] = {}
        for name, tensor in readout.extra_state().items():
            if tensor.dtype in (torch.int64, torch.float64):  # counts, sums: the block's increments summed
                delta = tensor - extra[name]
                reduced[name] = extra[name] + self.all_reduce_(delta, "sum", what=f"sum of {name}")
            elif tensor.dtype in (torch.bool, torch.uint8):
                united = self.all_reduce_(tensor.to(torch.int32), "max", what=f"union of {name}")
                reduced[name] = united.to(tensor.dtype)
            else:
                raise TypeError(
                    f"{type(readout).__name__}: cannot reduce extra state {name!r} of dtype {tensor.dtype} "
                    "across processes (only int64 counts, float64 sums and boolean masks are reduced)"
                )
        if reduced:
            readout.load_extra_state(reduced, "the all-reduced learned-token state")
        if before.count:  # the earlier statistics first, then the block's: kept rows in data order
            block = readout.stats.copy()
            readout.stats.restore(before)
            readout.stats.merge(block)

    def learn_shard(self, model: Any, items: Sequence[T], learn: Callable[[Sequence[T]], int]) -> int:
        """Learn this process's block of ``items`` into ``model`` and sum the result across processes.

        ``learn(block)`` learns a non-empty block and returns its pair count (it is not called on
        an empty block: a process with no data only joins the reduction). Runs inside
        :meth:`reduce_learning`; returns the number of pairs learned by all processes.

        Examples
        --------
        >>> pairs = d.learn_shard(task, examples, lambda part: task.learn(part, progress=d.is_main))
        """
        part = self.shard(items)
        with self.reduce_learning(model):
            pairs = learn(part) if len(part) else 0
        return round(self.sum(pairs))


def _label_kind(dtype: np.dtype) -> str:
    """What labels of ``dtype`` are, as far as putting processes' labels together goes."""
    if dtype.kind in "biuf":
        return "numbers"
    if dtype.kind in "USO":
        return "strings"
    return dtype.name


def _learning_records(model: Any) -> list[tuple[Any, str, DigestMultiset]]:
    """(owner, attribute, record) of each record of what ``model`` learned that
    :meth:`Dist.reduce_learning` unites: a TaskModel's examples (``learned``) and its FaastModel's
    rows (``learned_rows``), or a FaastModel's rows. Records that are None (fast weights saved
    before them) are left alone."""
    owners = [(model, "learned"), (model, "learned_rows")]
    inner = model.__dict__.get("model")  # a TaskModel's FaastModel (not a base model's attribute)
    if inner is not None:
        owners.append((inner, "learned_rows"))
    found = [(owner, name, owner.__dict__.get(name)) for owner, name in owners]
    return [(owner, name, record) for owner, name, record in found if isinstance(record, DigestMultiset)]


#: The fingerprint of each module :meth:`Dist.reduce_learning` took one of, with the state of its
#: parameters then (their identities and in-place versions): taken again only when they changed.
_FINGERPRINTS: weakref.WeakKeyDictionary[Any, tuple[tuple[tuple[int, int], ...], str]] = (
    weakref.WeakKeyDictionary()
)


def _learning_fingerprint(model: Any) -> str | None:
    """The :func:`model_fingerprint` of what ``model`` learns with (a TaskModel's FaastModel, a
    FaastModel: the base model and any trained read-out), for :meth:`Dist.reduce_learning`; None
    for anything else with ``readouts``. Kept while the module's parameters are the same tensors,
    unchanged in place (a stream learns chunk after chunk with one model)."""
    inner = vars(model).get("model") if hasattr(model, "__dict__") else None
    module = next((m for m in (inner, model) if isinstance(m, torch.nn.Module)), None)
    if module is None:
        return None
    try:
        state = tuple((id(p), p._version) for p in module.parameters())
    except RuntimeError:  # parameters made under inference_mode keep no version: not kept
        return model_fingerprint(module)
    kept = _FINGERPRINTS.get(module)
    if kept is not None and kept[0] == state:
        return kept[1]
    held = model_fingerprint(module)
    _FINGERPRINTS[module] = (state, held)
    return held


def _readouts(model: Any) -> list[Any]:
    inner = getattr(model, "model", model) if not hasattr(model, "readouts") else model
    readouts = getattr(inner, "readouts", None)
    if readouts is None:
        raise TypeError(f"reduce_learning needs a FaastModel or TaskModel, got {type(model).__name__}")
    return list(readouts)


def _env_int(name: str) -> int | None:
    """The integer in environment variable ``name`` (None when it is not set)."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer (set by torchrun), got {raw!r}") from None


def _local_rank(rank: int) -> int:
    """``LOCAL_RANK`` (this process's index on its machine; ``rank`` when it is not set), a
    ValueError naming the variable when it is not a non-negative integer."""
    local = _env_int("LOCAL_RANK")
    if local is None:
        return rank
    if local < 0:
        raise ValueError(f"LOCAL_RANK must be a non-negative integer (set by torchrun), got {local}")
    return local


def _launch_from_env() -> tuple[int, int] | None:
    """(rank, world size) of the ``torchrun`` launch the environment describes, or None for a plain
    run (neither ``RANK`` nor ``WORLD_SIZE`` set, or a world of one process). A partial launch
    environment (``RANK``/``WORLD_SIZE`` without ``MASTER_ADDR``/``MASTER_PORT``, or one of them
    without the other) or a rank outside ``[0, WORLD_SIZE)`` is a ValueError naming what is wrong:
    such a process would otherwise run alone as rank 0, beside the others."""
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    if rank is None and world is None:
        return None
    if world is not None and world < 1:
        raise ValueError(f"WORLD_SIZE must be at least 1, got {world}")
    if (rank or 0) == 0 and (world or 1) == 1:
        return None  # a world of one process: nothing to join
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        told = ", ".join(f"{k}={os.environ[k]}" for k in _ENV if k in os.environ)
        raise ValueError(
            f"a torchrun launch ({told}) needs {', '.join(_ENV)}, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: start the processes with torchrun, or "
            "set every one of these variables (unset RANK and WORLD_SIZE for a single process)"
        )
    assert rank is not None and world is not None
    if not 0 <= rank < world:
        raise ValueError(
            f"RANK={rank} is not in a world of WORLD_SIZE={world} processes (0 ≤ RANK < WORLD_SIZE)"
        )
    return rank, world


def _check_nccl(local_rank: int) -> None:
    """Refuse the nccl backend without a CUDA device for ``local_rank`` (a ValueError naming the
    remedy: the gloo backend on the CPU)."""
    if not torch.cuda.is_available():
        raise ValueError(
            "the nccl backend (FAAST_DIST_BACKEND or backend=) needs CUDA, which this torch does not "
            "see; use gloo on the CPU (FAAST_DIST_BACKEND=gloo)"
        )
    if local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"the nccl backend uses cuda:LOCAL_RANK, but LOCAL_RANK={local_rank} and only "
            f"{torch.cuda.device_count()} CUDA device(s) are visible: start at most one process per GPU"
        )


_CURRENT: Dist | None = None
_OWNS_GROUP = False  # whether init() initialised the process group (shutdown destroys only that one)


def init(
    backend: str | None = None, *, timeout_s: float | None = None, device: str | torch.device | None = None
) -> Dist:
    """Join the process group of a ``torchrun`` launch, or return a single-process context.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by
    ``torchrun``, on one machine or many). Without them (a plain ``python`` run) nothing is
    initialised and the context has ``world_size`` 1. A process group that is already
    initialised is adopted as it is. Calling it again returns the same context. A group joined
    here is left when the process exits (or at :func:`shutdown`), so several commands can run
    one after the other in the same processes. A partial launch environment (``RANK`` or
    ``WORLD_SIZE`` without the others), a ``RANK`` outside ``[0, WORLD_SIZE)`` and nccl without
    CUDA are refused at once (ValueError), not run as a lone rank 0 or left to time out.

    Parameters
    ----------
    backend : {"gloo", "nccl"}, optional
        Default ``FAAST_DIST_BACKEND``, else nccl when CUDA is available, else gloo.
    timeout_s : float, optional
        How long collectives wait for the other processes (default ``FAAST_DIST_TIMEOUT`` or 1800).
    device : str or torch.device, optional
        Where collectives run (default ``cuda:<LOCAL_RANK>`` with nccl, else the CPU).

    Returns
    -------
    Dist
    """
    global _CURRENT, _OWNS_GROUP
    initialized = dist.is_available() and dist.is_initialized()
    launched = not initialized and _launch_from_env() is not None  # a group given: adopted as it is
    if _CURRENT is not None and (_CURRENT.active or not (initialized or launched)):
        return _CURRENT  # the group this module joined or adopted, or still a single process
    timeout = _timeout_from_env() if timeout_s is None else float(timeout_s)
    if initialized:
        backend = dist.get_backend()
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _local_rank(rank)
    elif launched:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])  # checked above
        local = _local_rank(rank)
        backend = (
            backend
            or os.environ.get("FAAST_DIST_BACKEND")
            or ("nccl" if torch.cuda.is_available() else "gloo")
        )
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
        if backend == "nccl":
            _check_nccl(local)
            torch.cuda.set_device(local)
        try:
            dist.init_process_group(
                backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout)
            )
            _OWNS_GROUP = True
            _leave_at_exit()  # commands need not leave the group themselves
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(
                f"rank {rank}/{world}: could not join the process group at "
                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within {timeout:g} s "
                f"(did every process start?): {exc}"
            ) from exc
    else:
        _CURRENT = Dist(timeout_s=timeout, device=torch.device(device or "cpu"))
        return _CURRENT
    default_device = f"cuda:{local}" if backend == "nccl" else "cpu"
    _CURRENT = Dist(rank, world, local, backend, torch.device(device or default_device), timeout)
    return _CURRENT


_FAILED = False  # whether this process failed (then it leaves the group without waiting)
_EXIT_HOOKED = False


def mark_failed() -> None:
    """Record that this process failed: at exit it leaves the group without waiting for the
    others at a barrier (they may be stuck in a collective it never reached)."""
    global _FAILED
    _FAILED = True


def _leave_at_exit() -> None:
    """At exit, leave the group: together with the others (a barrier) after a normal run, at once
    after a failure (an uncaught exception, or :func:`mark_failed`, which the CLI calls)."""
    global _EXIT_HOOKED
    if _EXIT_HOOKED:
        return
    _EXIT_HOOKED = True
    previous = sys.excepthook

    def hook(*info: Any) -> None:
        mark_failed()
        previous(*info)

    sys.excepthook = hook
    atexit.register(lambda: shutdown(sync=not _FAILED))


def end_process(code: int) -> None:
    """End a process of a ``torchrun`` launch after its work: leave the group (together with the
    others at a barrier after a success, at once after a failure), flush the output, then end the
    process with ``code`` at once (``os._exit``). Without a group joined by :func:`init`
    (a plain run), return and let the caller exit normally.

    Why not a normal exit: after the group is destroyed, interpreter finalization and C++ static
    destructors still tear down what Gloo left (threads, pending work holding Python tensors); on a
    loaded machine that teardown can abort ("terminate called without an active exception",
    SIGABRT) although every result was written, and torchrun then reports the launch as failed.
    Nothing is left to do at that point, so the process skips it. ``faast`` and ``python -m faast``
    end this way; :func:`shutdown` alone is for code that keeps running.
    """
    if not (_OWNS_GROUP and dist.is_initialized()):
        return
    if code != 0:
        mark_failed()
    try:
        shutdown(sync=not _FAILED)
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def current() -> Dist:
    """The context of this process: :func:`init`'s, made on first use (so code that asks for
    distributed work under ``torchrun`` joins the group even if nobody called :func:`init`)."""
    return init()


def shutdown(sync: bool = False) -> None:
    """Leave the process group if :func:`init` joined it (one the caller initialised is left
    alone) and forget the context.

    sync: wait at a barrier first, so that every process tears the group down together (a
    process that destroys its group while another still holds the connection can abort in
    Gloo's threads: "terminate called without an active exception"). Use it where every process
    ends normally (the CLI does after a command succeeds); an error path leaves without waiting.
    """
    global _CURRENT, _OWNS_GROUP
    if _OWNS_GROUP and dist.is_initialized():
        if sync:
            with contextlib.suppress(Exception):  # a peer that failed: leave anyway
                dist.barrier()
        dist.destroy_process_group()
    _OWNS_GROUP = False
    _CURRENT = None
