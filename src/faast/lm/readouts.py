"""The FAAST read-outs of a causal LM: each one memory, its key state, value, hook point and read.

Every read-out holds one :class:`~faast.InverseMemory` (float64 statistics + the cut + the compiled
fast weights W) of key → value pairs taken from consecutive real tokens (t → t+1), and owns:

* ``key_point`` — the state it keys on: ``"block{i}"`` (the input of decoder block i),
  ``"pre_norm"`` (the input of the final norm) or ``"head_input"`` (what the LM head reads);
* :meth:`~ReadOut.learn` / :meth:`~ReadOut.forget` — add or remove its pairs of a captured batch
  (:class:`Captured`); :meth:`~ReadOut.check_forget` refuses, before anything changes, what
  cannot have been learned;
* :meth:`~ReadOut.attach` — the one hook through which it records its key state while learning and
  applies its read otherwise;
* :meth:`~ReadOut.configure` — its read-time knobs from a :class:`~faast.lm.config.ReadConfig`, with
  its own defaults for the knobs left ``None``;
* its signature (what fast weights must match to load) and extra state (saved with them).

So the model attaches, captures and learns with loops over read-outs, without branching on kinds.

========================  ==================  ===========================  =====================
read-out                  key                 value                        read
========================  ==================  ===========================  =====================
:class:`MiddleMemory`     block input hₜ      w·hₜ₊₁ (learned scorer w)    h + out_proj(W·h)
``ProbReadOut``           head input zₜ       LM-head row of token t+1     log((1−λ)p + λ p_mem)
``LogitReadOut``          head input zₜ       LM-head row of token t+1     head(z + β·W·z)
``PaperReadOut``          final-norm input    input embedding of t+1       (1−r)·h + r·W·h
``CorrectionReadOut``     head input zₜ       −∂CE/∂z at token t+1         head(z + (β/L)·W·z)
========================  ==================  ===========================  =====================

(The output read-outs, ``ProbReadOut``, ``LogitReadOut`` and ``PaperReadOut``, live in
:mod:`faast.lm.output_readouts`, ``CorrectionReadOut`` in :mod:`faast.lm.correction`;
:mod:`faast.lm.readout_registry` maps ``FaastConfig.output_mix`` to the class. This module holds
the base class, the middle memory and what they share.)

The plain reference of every formula is :mod:`faast.lm.naive`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from faast.lm.config import ReadConfig
from faast.lm.fastweights import differing_weights, dtype_resolution
from faast.lm.inject import HookSet, Layout, hidden_from_call, replace_hidden
from faast.memory import InverseMemory
from faast.solver import Cut

HEAD_INPUT = "head_input"
PRE_NORM = "pre_norm"


@dataclass
class Captured:
    """A validated batch and the states the read-outs key on (``FaastModel.capture``).

    input_ids, attention_mask: (B, T) long; valid: (B, T−1) bool, pair t → t+1 is learned;
    states: key point → (B, T, d) state; prefix_ids: the tokens of the prefix cache every row
    continues (context only, no pair learned from them; empty without one).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    valid: torch.Tensor
    num_pairs: int
    states: dict[str, torch.Tensor] = field(default_factory=dict)
    prefix_ids: tuple[int, ...] = ()

    def next_ids(self) -> torch.Tensor:
        """Ids (n,) of the tokens t+1 of the learned pairs."""
        return self.input_ids[:, 1:][self.valid]


class HookContext:
    """State every hook of one model reads: ``mode`` ("read" or "learn"), whether reading is
    ``enabled``, and the key states ``captured`` while learning — each **per thread**: hooks run
    in the thread that calls the model, so a ``learn`` or a ``disabled()`` block in one thread
    leaves what another thread's forwards read (the fast weights, not captured) as it was. Once
    shared, one thread's block switched the fast weights off for every thread, and blocks that
    overlapped restored each other's setting out of order, leaving them off for good. A new
    thread starts reading, enabled, capturing nothing."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def mode(self) -> str:
        return getattr(self._local, "mode", "read")

    @mode.setter
    def mode(self, value: str) -> None:
        self._local.mode = value

    @property
    def enabled(self) -> bool:
        return getattr(self._local, "enabled", True)

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._local.enabled = value

    @property
    def captured(self) -> dict[str, torch.Tensor]:
        """The key states this thread's learning pass captured (key point → (B, T, d))."""
        held = getattr(self._local, "captured", None)
        if held is None:
            held = self._local.captured = {}
        return held

    @captured.setter
    def captured(self, value: dict[str, torch.Tensor]) -> None:
        self._local.captured = value

    @property
    def reading(self) -> bool:
        return self.mode == "read" and self.enabled


def pair_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """valid[b, t] = True iff tokens t and t+1 of row b are both real. (B, T) → (B, T−1) bool.

    Requiring both ends fixes the reference code's left-padding bug (it kept the pair
    last pad → first token) and makes left and right padding give the same pairs.
    """
    real = attention_mask.bool()
    return real[:, :-1] & real[:, 1:]


def next_pairs(states: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys sₜ and values sₜ₊₁ of the valid pairs. states: (B, T, d); valid: (B, T−1) → (n, d), (n, d)."""
    return states[:, :-1][valid], states[:, 1:][valid]


def _stats_input(x: torch.Tensor) -> torch.Tensor:
    """Half-precision states are widened to float32 before entering the float64 statistics."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class ReadOut(nn.Module):
    """A memory attached to the LM. Subclasses set ``kind`` and implement learn / attach / read."""

    kind: ClassVar[str]
    #: Read knobs this read-out uses and their defaults when the ReadConfig leaves them None.
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, key_point: str, key_dim: int, value_dim: int, *, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.key_point = key_point
        self.memory = InverseMemory(key_dim=key_dim, value_dim=value_dim, device="cpu")
        self.compute_dtype = dtype

    # ----------------------------------------------------------------- state
    @property
    def stats(self):
        """The float64 statistics of the memory."""
        return self.memory.stats

    @property
    def has_pairs(self) -> bool:
        return self.memory.num_pairs > 0

    @property
    def active(self) -> bool:
        """Whether reading changes the model's output."""
        return self.has_pairs

    def reset(self) -> None:
        self.memory.reset()

    def default_cut(self) -> Cut:
        """The cut used when the ReadConfig leaves it None: the paper's τ = n⁻¹."""
        return Cut.power()

    def configure(self, read: ReadConfig) -> None:
        """Take the read-time knobs (the cut for every read-out; subclasses take more)."""
        self.memory.set_cut(self.default_cut() if read.cut is None else read.cut)

    def fast_weight(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """W (m, d) with values ≈ keys @ W.T; cached until the statistics or the cut change (the
        cached tensor itself: read only)."""
        return self.memory.weight_view(dtype, device)

    def _dtype_for(self, h: torch.Tensor) -> torch.dtype:
        return self.compute_dtype or h.dtype

    def add_pairs(self, keys: torch.Tensor, values: torch.Tensor, *, sign: int = 1) -> None:
        """keys (n, d), values (n, m) → the float64 statistics (one input dtype per memory).

        ``sign=-1`` removes pairs added earlier (:meth:`~faast.InverseMemory.forget`): afterwards
        the statistics equal those of a memory that never saw them. The keys and values must be the
        ones added, computed the same way: while the memory keeps its rows (at most d pairs) a pair
        that matches no kept row bit for bit is refused with a ``ValueError``.
        """
        if sign not in (1, -1):
            raise ValueError(f"sign must be 1 or -1, got {sign!r}")
        keys, values = _stats_input(keys), _stats_input(values)
        want = self.memory.stats.input_dtype or keys.dtype
        if sign > 0:
            self.memory.add(keys.to(want), values.to(want))
        else:
            self.memory.forget(keys.to(want), values.to(want))

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Statistics follow ``.to(device)`` (they stay float64 whatever dtype the model takes)."""
        super()._apply(fn, recurse)
        stats = self.memory.stats
        probe = fn(torch.zeros((), device=stats.device))
        if probe.device != stats.device:
            self.memory.to(probe.device)
        return self

    # ----------------------------------------------------------------- the interface
    def pairs(self, batch: Captured) -> tuple[torch.Tensor, torch.Tensor]:
        """This read-out's keys (n, d) and values (n, m) of a captured batch."""
        raise NotImplementedError

    def learn(self, batch: Captured) -> None:
        """Accumulate this read-out's pairs of a captured batch."""
        self.add_pairs(*self.pairs(batch))

    def check_forget(self, batches: list[Captured]) -> None:
        """Raise ``ValueError`` (changing nothing) if ``batches`` cannot all have been learned: more
        pairs than the memory holds (subclasses check more). Cheap: no pair is computed."""
        n = sum(b.num_pairs for b in batches)
        held = self.memory.num_pairs
        if n > held:
            raise ValueError(
                f"{self.kind} memory at {self.key_point}: cannot forget {n} pairs, it holds {held}"
            )

    def forget(self, batch: Captured) -> None:
        """Remove this read-out's pairs of a batch learned earlier (see :meth:`add_pairs`)."""
        self.add_pairs(*self.pairs(batch), sign=-1)

    def attach(self, layout: Layout, hooks: HookSet, ctx: HookContext) -> None:
        """Install the hook that records the key state (learn mode) and reads (read mode)."""
        raise NotImplementedError

    def signature(self) -> dict[str, Any]:
        """What fast weights must match to be loaded into this read-out."""
        return {"kind": self.kind, "key_dim": self.memory.key_dim, "value_dim": self.memory.value_dim}

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors saved with the statistics (besides them) by ``save_fast_weights``."""
        return {}

    def cached_nbytes(self, itemsize: int) -> int:
        """Bytes this read-out gathers and keeps while reading, besides W (e.g. LM-head rows)."""
        return 0

    def prepare(self) -> None:
        """Compute now what reading derives from the statistics besides W (nothing by default);
        called by ``FaastModel.compile_fast_weights``."""

    def read_state_nbytes(self) -> int:
        """Bytes of the :meth:`extra_state` that reading needs (besides W)."""
        return sum(t.numel() * t.element_size() for t in self.extra_state().values())

    def load_extra_state(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Restore :meth:`extra_state` (validated); ``where`` names the source in errors."""

    def _record_or_read(self, ctx: HookContext, read: Callable[[torch.Tensor], torch.Tensor]):  # type: ignore[no-untyped-def]
        """A forward pre-hook: in learn mode it records the hidden-state input under ``key_point``;
        when reading (and active) it replaces that input by ``read(input)``."""

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            h, positional = hidden_from_call(args, kwargs)
            if ctx.mode == "learn":
                ctx.captured[self.key_point] = h
                return None
            if not ctx.enabled or not self.active:
                return None
            return replace_hidden(args, kwargs, read(h), positional)

        return hook


class MiddleMemory(ReadOut):
    """Memory before decoder block ``layer``: hₜ → w·hₜ₊₁, read as h + out_proj(dropout(W·h)).

    Parameters: ``out_proj`` (d × d, zero-initialised) and ``scorer`` (2d → 1, zero-initialised,
    so w = 0.5 until trained), both trained by :mod:`faast.lm.train` with the backbone frozen.
    With ``out_proj`` zero the memory is an exact no-op.
    """

    kind = "middle"

    def __init__(
        self,
        hidden_size: int,
        layer: int,
        *,
        scorer: bool = True,
        dropout: float = 0.1,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(f"block{int(layer)}", hidden_size, hidden_size, dtype=dtype)
        self.layer = int(layer)
        self.out_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.zeros_(self.out_proj.weight)
        self.scorer = nn.Linear(2 * hidden_size, 1, bias=False) if scorer else None
        if self.scorer is not None:
            nn.init.zeros_(self.scorer.weight)
        self.dropout = nn.Dropout(dropout)
        #: A differentiable W (d, d) set by the readout trainer; overrides the compiled one.
        self.train_weight: torch.Tensor | None = None
        self._zero_key: tuple[int, int] | None = None
        self._zero = True
        self._fused: tuple[torch.Tensor, tuple, torch.Tensor] | None = None
        #: scorer_snapshot when the held pairs were first learned (None: nothing learned here).
        self._learned_scorer: ScorerSnapshot | None = None

    def reset(self) -> None:
        super().reset()
        self._fused = None
        self._learned_scorer = None

    def value_weights(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor | None:
        """Scorer weights w = σ(s·[k; v]) for (n, d) keys and values → (n,) (≥ float32), or None."""
        if self.scorer is None:
            return None
        dtype = torch.promote_types(keys.dtype, torch.float32)
        s = self.scorer.weight.to(dtype)
        return torch.sigmoid(torch.cat([keys.to(dtype), values.to(dtype)], dim=-1) @ s[0])

    def pairs(self, batch: Captured) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys hₜ (n, d) and values w·hₜ₊₁ (n, d), w from the current scorer."""
        keys, values = next_pairs(batch.states[self.key_point], batch.valid)
        w = self.value_weights(keys, values)
        if w is not None:
            values = values.to(w.dtype) * w[:, None]
        return keys, values

    def learn(self, batch: Captured) -> None:
        if not self.has_pairs:
            self._learned_scorer = scorer_snapshot(self)
        super().learn(batch)

    def check_forget(self, batches: list[Captured]) -> None:
        """Also refuses forgetting once the scorer changed since the pairs were learned: the values
        are weighted by it, so the pairs recomputed now would not be the ones added. Forgetting is
        exact only if the readout (its scorer) did not change between learning and forgetting."""
        super().check_forget(batches)
        if self._learned_scorer is not None and not same_scorer(self._learned_scorer, scorer_snapshot(self)):
            raise ValueError(
                f"middle memory at block {self.layer}: its scorer changed since the pairs were learned "
                "(values are weighted by it), so they cannot be forgotten exactly; relearn instead"
            )

    def load_extra_state(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Statistics loaded with fast weights were learned with this scorer (checked when loading)."""
        self._learned_scorer = scorer_snapshot(self)

    def learned_scorer(self) -> ScorerSnapshot | None:
        """The scorer the held pairs were learned with (the current one when none are held)."""
        return self._learned_scorer if self._learned_scorer is not None else scorer_snapshot(self)

    def attach(self, layout: Layout, hooks: HookSet, ctx: HookContext) -> None:
        hooks.pre(layout.blocks[self.layer], self._record_or_read(ctx, self.read))

    def readout_is_zero(self) -> bool:
        weight = self.out_proj.weight
        key = (weight.data_ptr(), weight._version)
        if key != self._zero_key:
            self._zero = not bool(torch.count_nonzero(weight))
            self._zero_key = key
        return self._zero

    @property
    def active(self) -> bool:
        """Whether reading changes anything (pairs learned and a non-zero readout, or training)."""
        return self.train_weight is not None or (self.has_pairs and not self.readout_is_zero())

    def fused_weight(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """out_proj · W (d, d), cached until the statistics, the cut or the readout change."""
        weight = self.out_proj.weight
        w = self.fast_weight(torch.float64, device)  # the same tensor until statistics or cut change
        key = (weight.data_ptr(), weight._version, dtype, device)
        if self._fused is None or self._fused[0] is not w or self._fused[1] != key:
            fused = (weight.detach().to(device, torch.float64) @ w).to(dtype)
            self._fused = (w, key, fused)
        return self._fused[2]

    def read(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., d) → h + out_proj(dropout(W·h))."""
        if self.train_weight is not None:
            w = self.train_weight
            delta = self.out_proj(self.dropout(F.linear(h.to(w.dtype), w)).to(self.out_proj.weight.dtype))
            return h + delta.to(h.dtype)
        dtype = self._dtype_for(h)
        return h + F.linear(h.to(dtype), self.fused_weight(dtype, h.device)).to(h.dtype)

    def signature(self) -> dict[str, Any]:
        return {**super().signature(), "layer": self.layer, "scorer": scorer_hash(self)}


#: A scorer's weights (1, 2d) float64 and its dtype's resolution (1, 2): eps and smallest step.
ScorerSnapshot = tuple[torch.Tensor, torch.Tensor]


def scorer_snapshot(mem: MiddleMemory) -> ScorerSnapshot | None:
    """The scorer's weights as float64 (1, 2d) with its dtype's resolution (1, 2), or None."""
    if mem.scorer is None:
        return None
    weight = mem.scorer.weight.detach()
    resolution = torch.tensor([dtype_resolution(weight.dtype)], dtype=torch.float64)
    return weight.to("cpu", torch.float64, copy=True).reshape(1, -1), resolution


def same_scorer(a: ScorerSnapshot | None, b: ScorerSnapshot | None) -> bool:
    """Whether two snapshots are one scorer up to rounding to the coarser of their dtypes (a float32
    scorer and its float16 copy are the same; hashes of the two could not tell that)."""
    if a is None or b is None:
        return a is None and b is None
    if a[0].shape != b[0].shape:
        return False
    return not differing_weights(a[0], a[1], b[0], b[1])


def scorer_hash(mem: MiddleMemory) -> str:
    """A short hash of the scorer weights (fast weights depend on them)."""
    import hashlib

    if mem.scorer is None:
        return "none"
    # Rounded to bfloat16 first, so the same scorer hashes alike in a float32 and a bfloat16 model.
    weight = mem.scorer.weight.detach().to("cpu", torch.bfloat16).float().contiguous()
    return hashlib.sha256(weight.numpy().tobytes()).hexdigest()[:16]
