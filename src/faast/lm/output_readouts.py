"""The output read-outs of a causal LM: memories whose values live in the LM head's space.

Each keys on the state the LM head reads (or the final norm's input) and maps it towards the next
token's output row or embedding (:mod:`faast.lm.readouts` gives the overview table, the base
class and the middle memory):

* :class:`ProbReadOut` — a gated mixture of the LM's next-token distribution and the memory's
  (``log((1−λ)p + λ p_mem)``, :func:`combine`);
* :class:`LogitReadOut` — the head reads z + β·W·z;
* :class:`PaperReadOut` — the paper's (1−r)·h + r·W·h at the final norm's input.

:class:`OutputReadOut` holds what they share: the values (rows of the LM head or of the input
embeddings), optional random-feature keys, learning and forgetting whole tokens, and the
prediction W·φ(z).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from faast.lm.config import ReadConfig
from faast.lm.inject import HookSet, Layout, hidden_from_call, replace_hidden
from faast.lm.key_features import RandomFeatureKeys
from faast.lm.readouts import HEAD_INPUT, PRE_NORM, Captured, HookContext, ReadOut, next_pairs
from faast.solver.normal_tensors import outside_inference_mode

#: Why forgetting is refused from an output memory loaded from fast weights without token counts
#: (:attr:`OutputReadOut.uncounted`), before anything changes.
UNCOUNTED_FORGET = (
    "these fast weights were written by an older faast (before 2026-11-30), which kept only which tokens "
    "the output memory learned, not how often: forgetting needs those token counts, so nothing learned "
    "then can be forgotten, nor a text checked against it (nothing was changed); learn the task again "
    "with this faast to forget from it"
)


class OutputReadOut(ReadOut):
    """A parameter-free memory predicting the next token from the final state.

    ``value_table()`` gives the (V, m) rows that are the values (the next token's row);
    ``counts`` (V,) int64 counts how often each token was learned as a value and ``seen`` (V,)
    bool = ``counts > 0`` marks the learned tokens (the support of the "prob" mix), so forgetting
    the last occurrence of a token drops it from the support, as a refit without it would.
    """

    kind = "output"
    key_source: ClassVar[str]
    value_source: ClassVar[str]
    #: (V,) int64 0/1, or None: the part of ``counts`` that is not a count. A memory loaded from fast
    #: weights written before counts were kept (2026-11-30: the learned tokens' mask ``seen`` alone)
    #: takes each of those tokens as learned once; how often each was learned is unknown, so
    #: :meth:`check_forget` refuses to forget more than ``counts - uncounted`` (what was learned since,
    #: by this faast: nothing, right after the load) with :data:`UNCOUNTED_FORGET`. Saved as ``seen``
    #: beside the counts (:meth:`extra_state`), so it outlives a save; :meth:`reset` clears it.
    uncounted: torch.Tensor | None = None

    def __init__(
        self,
        key_point: str,
        value_table: Callable[[], torch.Tensor],
        hidden_size: int,
        *,
        dtype,
        key_features: int = 0,
        key_seed: int = 0,
    ) -> None:
        table = value_table()
        #: φ of the keys (:class:`~faast.lm.key_features.RandomFeatureKeys`), or None: the state itself.
        self.key_map = RandomFeatureKeys(hidden_size, key_features, key_seed) if key_features else None
        key_dim = self.key_map.out_dim if self.key_map is not None else hidden_size
        super().__init__(key_point, key_dim, table.shape[1], dtype=dtype)
        self.value_table = value_table  # a callable, so the model's weights are not registered twice
        self.register_buffer("counts", torch.zeros(table.shape[0], dtype=torch.int64), persistent=False)
        self.weight = 0.0
        self._scale: tuple[tuple, float] | None = None

    @property
    def active(self) -> bool:
        return self.has_pairs and self.weight > 0

    @property
    def seen(self) -> torch.Tensor:
        """(V,) bool: the tokens learned as values at least once (a new tensor: change ``counts``)."""
        return self.counts > 0

    #: Whether the weight is a mixing ratio in [0, 1] (λ, r) rather than a free scale (β).
    weight_is_ratio: ClassVar[bool] = True

    def configure(self, read: ReadConfig) -> None:
        super().configure(read)
        self.weight = self._checked_weight(self.defaults["weight"] if read.weight is None else read.weight)

    def _checked_weight(self, weight: float) -> float:
        if self.weight_is_ratio and weight > 1:
            raise ValueError(
                f"the weight of the {type(self).__name__} mix is a ratio in [0, 1], got {weight}"
            )
        return weight

    def reset(self) -> None:
        super().reset()
        self.counts.zero_()
        self.uncounted = None

    def keys_of(self, h: torch.Tensor) -> torch.Tensor:
        """The memory's keys of states h (..., d): h itself, or φ(h) (..., d + D) with key features."""
        return h if self.key_map is None else self.key_map(h)

    def pairs(self, batch: Captured) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (n, d), or (n, d + D) with key features, and the value-table rows (n, m) of the
        next tokens."""
        keys, _ = next_pairs(batch.states[self.key_point], batch.valid)
        return self.keys_of(keys), F.embedding(batch.next_ids(), self.value_table())

    def learn(self, batch: Captured) -> None:
        super().learn(batch)
        self.learn_tokens(batch.next_ids())

    def check_forget(self, batches: list[Captured]) -> None:
        """Also refuses tokens that would be forgotten more often than they were learned; after a
        load of fast weights without counts (:attr:`uncounted`), more often than they were learned
        since (any text, right after the load: the counts that would tell are not known)."""
        wanted = None  # (V,) how often each token is to be forgotten
        if batches:
            ids = torch.cat([b.next_ids().to(self.counts.device) for b in batches])
            wanted = torch.bincount(ids, minlength=self.counts.shape[0])
        if wanted is not None and self.uncounted is not None:
            uncounted = self.uncounted.to(self.counts.device)
            short = (self.counts - uncounted) < wanted
            if bool((short & (uncounted > 0)).any()):  # a token the old file learned, how often unknown
                raise ValueError(UNCOUNTED_FORGET)
        super().check_forget(batches)
        if wanted is not None:
            left = self.counts - wanted
            bad = torch.nonzero(left < 0).squeeze(1)
            if bad.numel():
                many = f"{bad.numel()} token{'s' if bad.numel() != 1 else ''} in all"
                raise ValueError(
                    f"the output memory never learned token ids {bad[:10].tolist()} as often as they are to "
                    f"be forgotten ({many}): this text was not learned"
                )

    def forget(self, batch: Captured) -> None:
        super().forget(batch)
        self.forget_tokens(batch.next_ids())

    def learn_tokens(self, token_ids: torch.Tensor) -> None:
        """Count (n,) token ids as learned values."""
        ids = token_ids.to(self.counts.device)
        self.counts.index_add_(0, ids, torch.ones_like(ids, dtype=self.counts.dtype))

    def forget_tokens(self, token_ids: torch.Tensor) -> None:
        """Uncount (n,) token ids learned earlier; ``ValueError`` (nothing changed) if a count would
        go below zero."""
        ids = token_ids.to(self.counts.device)
        left = self.counts - torch.bincount(ids, minlength=self.counts.shape[0])
        if bool((left < 0).any()):
            raise ValueError("forget_tokens: some tokens were not learned as often as they are forgotten")
        self.counts.copy_(left)

    def head_scale(self, head: nn.Module) -> float:
        """ρ² = the mean squared norm of the LM head's rows (a constant of the model), cached until
        the head changes. The "prob" and "logit" mixes divide the memory's logits rows·(W·z) by it,
        so that T and β mean the same on every model: W·z reproduces a learned token's row, whose
        score is then about 1 whatever the scale of the head (SmolLM2-135M: ρ² ≈ 10.6; Gemma-3-270M:
        ρ² ≈ 1.06)."""
        weight = head.weight
        key = (weight.data_ptr(), weight._version, weight.device)
        if self._scale is None or self._scale[0] != key:
            work = torch.promote_types(weight.dtype, torch.float32)
            rho2 = float(weight.detach().to(work).pow(2).sum(dim=-1).mean())
            self._scale = (key, max(rho2, 1e-30))
        return self._scale[1]

    def _scale_to_divide(self, head: nn.Module) -> float | torch.Tensor:
        """:meth:`head_scale`; where a backward pass could reach the head's weight (gradients on
        and the weight trainable: fine-tuning the head or tied embeddings with the memory on), the
        cached value as a tensor that carries ρ²'s gradient (:class:`_MeanRowSquare`: no pass over
        the head, no copy of it)."""
        weight = head.weight
        rho2 = self.head_scale(head)
        if not (torch.is_grad_enabled() and weight.requires_grad):
            return rho2
        work = torch.promote_types(weight.dtype, torch.float32)
        return _MeanRowSquare.apply(weight, torch.tensor(rho2, dtype=work, device=weight.device))

    def share_head_scale(self, other: OutputReadOut) -> None:
        """Take ``other``'s cached :meth:`head_scale` (a read-out of the same model that replaces it:
        ρ² is a pass over the whole head; the cache is still checked against the head)."""
        self._scale = other._scale

    def logits_from(self, states: dict[str, torch.Tensor], layout: Layout) -> torch.Tensor:
        """What the model outputs at the LM head for captured base-model ``states`` (key point →
        (..., d)), reading this memory; valid when no middle memory changes the states. Call it
        with the model's hooks disabled (``FaastModel.output_logits`` does)."""
        raise NotImplementedError

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """W·h (W·φ(h) with key features) for states h (..., d) → (..., m), in the compute dtype."""
        dtype = self._dtype_for(h)
        return F.linear(self.keys_of(h).to(dtype), self.fast_weight(dtype, h.device))

    def signature(self) -> dict[str, Any]:
        keys = {} if self.key_map is None else self.key_map.signature()
        return {**super().signature(), "key": self.key_source, "value": self.value_source, **keys}

    def extra_state(self) -> dict[str, torch.Tensor]:
        """``counts``: (V,) int64, how often each token was learned as a value; after a load of
        fast weights without counts also ``seen`` (V,) uint8, the tokens counted once for them
        (:attr:`uncounted`), which :meth:`load_extra_state` reads back as such."""
        state = {"counts": self.counts.clone()}
        if self.uncounted is not None:
            state["seen"] = self.uncounted.to(self.counts.device, torch.uint8)  # where the counts are
        return state

    def read_state_nbytes(self) -> int:
        """Reading needs only the learned-token mask ``seen``: one byte per vocabulary entry (the
        counts are kept for forgetting), and with key features R (D, d) in the compute dtype
        (float32 if unset)."""
        keys = 0 if self.key_map is None else self.key_map.nbytes(self.compute_dtype or torch.float32)
        return int(self.counts.numel()) + keys

    def load_extra_state(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Restore the per-token ``counts`` (V,) int64 ≥ 0, validated.

        Files written before counts were kept (2026-11-30) hold only ``seen`` (V,) uint8/bool: each
        seen token is taken as learned once (the support of the "prob" mix is the same either
        way) and remembered as not counted (:attr:`uncounted`), so forgetting what they learned is
        refused with that reason rather than blamed on the text. A ``seen`` beside the counts is
        that record as :meth:`extra_state` saves it (such a memory after more learning).
        """
        counts, seen = tensors.get("counts"), tensors.get("seen")
        shape = tuple(self.counts.shape)
        if seen is not None:
            if tuple(seen.shape) != shape or seen.dtype not in (torch.bool, torch.uint8):
                raise ValueError(
                    f"{where}: the learned-token set must be bool/uint8 of shape {shape}, got "
                    f"{seen.dtype} of shape {tuple(seen.shape)}"
                )
            if seen.dtype == torch.uint8 and bool((seen > 1).any()):
                raise ValueError(f"{where}: the learned-token set holds values other than 0 and 1")
        if counts is not None:
            if tuple(counts.shape) != shape or counts.dtype != torch.int64:
                raise ValueError(
                    f"{where}: the learned-token counts must be int64 of shape {shape}, got "
                    f"{counts.dtype} of shape {tuple(counts.shape)}"
                )
            if bool((counts < 0).any()):
                raise ValueError(f"{where}: the learned-token counts hold negative values (damaged file?)")
            if seen is not None and bool((counts < seen.to(counts.device, torch.int64)).any()):
                raise ValueError(
                    f"{where}: the learned-token set holds tokens the counts do not (damaged file?)"
                )
            self.counts.copy_(counts.to(self.counts.device))
        elif seen is None:
            raise ValueError(f"{where}: the learned-token counts are missing")
        else:
            self.counts.copy_(seen.to(self.counts.device).to(torch.int64))
        self.uncounted = None if seen is None else seen.to(self.counts.device, torch.int64)


class _MeanRowSquare(torch.autograd.Function):
    """ρ² = the mean squared norm of the rows of weight (V, d), its value given (a 0-d tensor, the
    cached :meth:`OutputReadOut.head_scale`): the forward costs nothing, the backward is
    ∂ρ²/∂w = 2·w/V. Keeps the weight (a parameter: no copy) for the backward."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (weight,) = ctx.saved_tensors
        return (grad * (2.0 / weight.shape[0])).to(weight.dtype) * weight, None


class _RowNorms(torch.autograd.Function):
    """‖rowᵢ‖ of rows (k, d), their values given (k,) (cached, clamped at 1e-12): the backward is
    rowᵢ/‖rowᵢ‖ (0 where the clamp held)."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, norms)
        return norms.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        rows, norms = ctx.saved_tensors
        scale = torch.where(norms > 1e-12, grad / norms, torch.zeros_like(norms))
        return (scale[:, None] * rows.to(scale.dtype)).to(rows.dtype), None


class Support(NamedTuple):
    """LM-head rows of the "prob" mix's memory distribution: rows (k, d), index (k,) of the rows in
    the vocabulary (None: the whole head), ‖row‖ (k,), and column (V,) long, each token's position
    in ``index`` (−1 for tokens outside it; None with the whole head). The head's bias is not part
    of it: the memory's scores are rows·(W·z)/ρ² alone (see :meth:`ProbReadOut.support_log_probs`)."""

    rows: torch.Tensor
    index: torch.Tensor | None
    norms: torch.Tensor
    column: torch.Tensor | None = None


#: Effective number of distinct learned next tokens (:func:`effective_tokens`) below which a gated
#: "prob" read-out also checks a context against the learned keys (:meth:`ProbReadOut.gate_weight`).
#: With so few learned tokens W·z lies near one of their LM-head rows whatever z is, so the gate's
#: cosine is near 1 on any text and λ(z) opened on text never learned (a token then cost up to
#: −log(1−λ) nats: ×10 perplexity at λ = 0.9). In a bug hunt on SmolLM2 (2026-12-07, learned texts
#: of 1 to 639 pairs read on unseen Spanish and English) every text below 36 effective tokens moved
#: unseen text by 2 to 900 %, and the texts above 96 by at most 0.7 %.
NARROW_SUPPORT = 64
#: The directions of the learned keys a narrow memory's context check keeps: the eigenvectors of
#: G = KᵀK whose eigenvalue is at least this share of the largest (singular values ≥ 0.1·σ_max).
CONTEXT_SPAN = 1e-2
#: The ridge of a narrow memory's leverage check, ρ = CONTEXT_RIDGE · trace(G) / Σwᵢ (this share of
#: a learned key's mean squared norm): a context z passes where zᵀ(G + ρI)⁻¹z ≤ 1, as every key
#: learned (weight 1) does — a ridge hat-matrix diagonal — however rare its direction among the
#: others. The dominant directions alone (:data:`CONTEXT_SPAN`) shut out a context learned once
#: beside one repeated a hundred times (hunt s83 review; the rows "after ..." of
#: ``benchmarks/lm_gate_narrow.py``). Chosen among 0.05, 0.1, 0.3 and 1 on SmolLM2 and Gemma-3-270M
#: with that benchmark's "dev" texts (a scratch study, not kept): from 0.3 up, unseen text passed
#: the check after a repeated phrase on SmolLM2. Its "held out" texts and Qwen2.5 were not looked at
#: before the value was fixed.
CONTEXT_RIDGE = 0.1


class ContextCheck(NamedTuple):
    """What the gate of a narrow memory checks a context against (:meth:`ProbReadOut._context_check`,
    :func:`context_share`), from the statistics' G = KᵀK = Σⱼ λⱼ uⱼuⱼᵀ.

    basis: (key_dim, r) the eigenvectors uⱼ above G's noise floor, by decreasing eigenvalue;
    dominant: how many of the first reach :data:`CONTEXT_SPAN` · λ_max; inverse_ridge: 1/ρ
    (:data:`CONTEXT_RIDGE`); relief: (r,) 1/ρ − 1/(λⱼ + ρ), so that
    kᵀ(G + ρI)⁻¹k = ‖k‖²/ρ − Σⱼ reliefⱼ (uⱼᵀk)²."""

    basis: torch.Tensor
    dominant: int
    inverse_ridge: float
    relief: torch.Tensor

    def to(self, device: torch.device, dtype: torch.dtype) -> ContextCheck:
        """The same check with its tensors on ``device`` in ``dtype``."""
        return self._replace(
            basis=self.basis.to(device=device, dtype=dtype), relief=self.relief.to(device=device, dtype=dtype)
        )


def context_share(keys: torch.Tensor, check: ContextCheck) -> torch.Tensor:
    """How far keys (..., key_dim) lie among the learned ones → (..., 1) in [0, 1], in the keys' dtype:
    the larger of the share ‖Pk̂‖ of the unit key in the dominant directions and 1/√max(L, 1), L =
    kᵀ(G + ρI)⁻¹k the key's leverage (at most 1 for every key learned, weight 1)."""
    proj = keys @ check.basis  # (..., r)
    square = (keys * keys).sum(dim=-1, keepdim=True)
    dominant = (
        proj[..., : check.dominant].square().sum(dim=-1, keepdim=True) / square.clamp_min(1e-30)
    ).sqrt()
    leverage = square * check.inverse_ridge - (proj.square() * check.relief).sum(dim=-1, keepdim=True)
    return torch.maximum(dominant, leverage.clamp_min(1.0).rsqrt())


def effective_tokens(counts: torch.Tensor) -> float:
    """exp(entropy) of the learned next tokens' counts (V,): 1 for one token however often it was
    learned, k for k tokens learned equally often; 0 when nothing is learned."""
    total = float(counts.sum())
    if total <= 0:
        return 0.0
    p = counts[counts > 0].to(torch.float64) / total
    return math.exp(float(-(p * p.log()).sum()))


class ProbReadOut(OutputReadOut):
    """The default output read-out: a mixture of the model's and the memory's distributions.

    log p = log((1−λ(z))·softmax(logits) + λ(z)·softmax(U·(W·z)/(ρ²·T))) over the support (the
    learned tokens by default, as a k-NN LM does over its datastore), U the head's rows (its bias,
    if any, is in the model's logits only), ρ² the mean squared norm of the head's rows
    (:meth:`head_scale`), so T is scale-free. With a gate θ, λ(z) = λ·clamp((c − θ)/(1 − θ), 0, 1)
    with c the largest cosine between W·z and a support row: near 1 where z is a context the
    memory learned, lower on new text. A narrow memory (fewer than :data:`NARROW_SUPPORT`
    effective distinct next tokens) has W·z near a learned row whatever z is: there c is also at
    most how far z's key lies among the learned ones (:func:`context_share`: its share in their
    dominant directions, or its leverage, :meth:`gate_weight`).
    Whatever the memory says, a token
    costs at most −log(1−λ) nats. The model then returns log-probabilities in ``logits``.

    Defaults chosen on SmolLM2 on held-out text (``benchmarks/lm_mix.py``, before T was made
    scale-free): gated λ = 0.9, T = 0.25 there, i.e. 0.025 in units of ρ² (SmolLM2's ρ² = 10.6),
    θ = 0.8; without a gate λ = 0.05, T = 0.01. The scale-free study on SmolLM2 and Gemma-3-270M
    (``docs/lm.md``) finds them admissible on both models (at most 5 % cost on unseen text), within
    4 % of the best recall admissible on both (λ = 0.95, T = 0.01, θ = 0.8).
    """

    key_source, value_source = "post_norm", "lm_head"
    defaults: ClassVar[dict[str, Any]] = {"weight": 0.9, "temperature": 0.025, "gate": 0.8}
    ungated_defaults: ClassVar[dict[str, Any]] = {"weight": 0.05, "temperature": 0.01}

    def __init__(
        self, layout: Layout, model: nn.Module, *, dtype: torch.dtype | None = None, **keys: int
    ) -> None:
        super().__init__(HEAD_INPUT, lambda: layout.lm_head.weight, layout.hidden_size, dtype=dtype, **keys)
        self.temperature = 1.0
        self.gate: float | None = None
        self.support = "learned"
        self._support: tuple[tuple, Support] | None = None
        #: what the gate checks a context against while the memory is narrow
        #: (:meth:`_context_check`); None otherwise
        self._context: ContextCheck | None = None

    def configure(self, read: ReadConfig) -> None:
        super().configure(read)
        self.gate = self.defaults["gate"] if read.gate == "auto" else read.gate
        table = self.defaults if self.gate is not None else self.ungated_defaults
        self.weight = self._checked_weight(table["weight"] if read.weight is None else read.weight)
        self.temperature = table["temperature"] if read.temperature is None else read.temperature
        self.support = read.support
        self._support = None

    def reset(self) -> None:
        super().reset()
        self._support = None

    def learn_tokens(self, token_ids: torch.Tensor) -> None:
        super().learn_tokens(token_ids)
        self._support = None

    def forget_tokens(self, token_ids: torch.Tensor) -> None:
        super().forget_tokens(token_ids)
        self._support = None

    def load_extra_state(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        super().load_extra_state(tensors, where)
        self._support = None

    def attach(self, layout: Layout, hooks: HookSet, ctx: HookContext) -> None:
        transform = layout.logit_transform
        stacked: list[int] = []  # the rows of z while the head multiplies [z; W·z] (see stacks_head)

        def pre(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            stacked.clear()
            if not ctx.reading or not self.active or not args or not self.stacks_head(module, args[0]):
                return None
            z = args[0]
            stacked.append(z.shape[0])
            return (torch.cat([z, self.predict(z).to(z.dtype)]), *args[1:]), kwargs

        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> Any:
            if stacked:  # the head's product of [z; W·z]: the logits, then the memory's scores
                rows = stacked.pop()
                z, output, scored = args[0][:rows], output[:rows], (args[0][rows:], output[rows:])
            elif not ctx.reading or not self.active:
                return None
            else:
                z, scored = args[0], None
            if transform.is_identity:
                return self.mix_logits(z, output, module, scored=scored)
            # the model transforms what the head returns (Cohere, Granite, Gemma 2): mix its
            # distribution, and return the head output its transform turns into the mixture
            mixed = self.mix_logits(z, transform(output.float()), module, scored=scored)
            return transform.head_output_for(mixed).to(output.dtype)

        hooks.pre(layout.lm_head, pre)
        hooks.post(layout.lm_head, hook)

    def stacks_head(self, head: nn.Module, z: torch.Tensor) -> bool:
        """Whether the memory's scores head(W·z) come from the head's own product: over the whole
        vocabulary (``support="vocab"``) a plain bias-free ``nn.Linear`` head multiplies the rows
        [z; W·z] (2B, ..., d) at once, one pass over its (V, d) weight instead of two. Generating a
        token reads the weight once per pass, so the second pass cost about as much as the head."""
        return self.support == "vocab" and type(head) is nn.Linear and head.bias is None and z.ndim >= 2

    def cached_nbytes(self, itemsize: int) -> int:
        if self.support != "learned":
            return 0
        return int((self.counts > 0).sum()) * self.memory.value_dim * itemsize

    def support_of(self, head: nn.Module) -> Support:
        """The LM-head rows the memory distribution covers (cached until the head, the learned
        tokens or ``support`` change): the learned tokens' rows, or the whole head."""
        weight = head.weight
        cached = self._cached_support(weight)
        if not (torch.is_grad_enabled() and weight.requires_grad):
            return cached
        # where a backward pass could reach the head: the rows with their graph (a view, or the
        # learned tokens' rows), the cached norms carrying their gradient (_RowNorms)
        rows = weight if cached.index is None else weight[cached.index]
        return cached._replace(rows=rows, norms=_RowNorms.apply(rows, cached.norms))

    @outside_inference_mode  # a cache: usable, and saved for backward, outside inference mode too
    def _cached_support(self, weight: torch.Tensor) -> Support:
        """The :class:`Support` of the head's weight, without a graph, cached until the head, the
        learned tokens or ``support`` change."""
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device, self.support)
        if self._support is None or self._support[0] != key:
            self._support = (key, self._support_rows(weight.detach()))
            check = self._context_check()  # in the gate's work dtype, on the head's device, once
            work = torch.promote_types(weight.dtype, torch.float32)
            self._context = None if check is None else check.to(weight.device, work)
        return self._support[1]

    def _context_check(self) -> ContextCheck | None:
        """The :class:`ContextCheck` of a gated read-out narrower than :data:`NARROW_SUPPORT`
        (:func:`effective_tokens`), from the eigendecomposition of the statistics' G = KᵀK; None
        otherwise. W·z of such a memory lies near a learned row whatever z is, so the gate also
        takes how far z's key lies among the learned ones (:func:`context_share`): 1 at a learned
        context, lower on new text. Read from the statistics alone, so a memory that forgot a text
        reads as one that never learned it."""
        if self.gate is None or not self.active or effective_tokens(self.counts) >= NARROW_SUPPORT:
            return None
        factor = self.stats.factor()
        lam = factor.eigenvalues  # decreasing
        if lam.numel() == 0 or not float(lam[0]) > 0 or not self.stats.weight_sum > 0:
            return None
        kept = lam > factor.noise_floor
        ridge = CONTEXT_RIDGE * float(lam.sum()) / self.stats.weight_sum
        return ContextCheck(
            basis=factor.basis[:, kept],
            dominant=int((lam >= CONTEXT_SPAN * float(lam[0])).sum()),
            inverse_ridge=1.0 / ridge,
            relief=1.0 / ridge - 1.0 / (lam[kept] + ridge),
        )

    def _support_rows(self, weight: torch.Tensor) -> Support:
        """The :class:`Support` of the head's weight (V, d): all its rows, or the learned tokens'."""
        column = None
        if self.support == "vocab":
            rows, index = weight, None
        else:
            index = torch.nonzero(self.seen.to(weight.device)).squeeze(1)
            rows = weight[index]
            column = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
            column[index] = torch.arange(index.numel(), device=weight.device)
        work = torch.promote_types(rows.dtype, torch.float32)
        norms = torch.linalg.vector_norm(rows.to(work), dim=-1).clamp_min(1e-12)
        return Support(rows, index, norms, column)

    def gate_weight(
        self, m: torch.Tensor, scores: torch.Tensor, row_norms: torch.Tensor, z: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-position λ(z) = λ·clamp((c − θ)/(1 − θ), 0, 1) → (..., 1), float32 or wider.

        m: (..., d) W·z; scores: (..., k) rows·(W·z); row_norms: (k,) ‖row‖; z: (..., d) the head
        inputs. c is the largest cosine of W·z with a support row; for a narrow memory
        (:meth:`_context_check`) the smaller of that and :func:`context_share` of z's key, so that
        the gate opens only at contexts like those learned.
        """
        assert self.gate is not None
        work = torch.promote_types(m.dtype, torch.float32)
        norm_m = torch.linalg.vector_norm(m.to(work), dim=-1, keepdim=True).clamp_min(1e-12)
        cos = (scores.to(work) / (norm_m * row_norms.to(work))).amax(dim=-1, keepdim=True)
        if self._context is not None and z is not None:
            keys = self.keys_of(z).to(work)
            cos = torch.minimum(
                cos, context_share(keys, self._context.to(keys.device, work))
            )  # cast when cached
        return self.weight * ((cos - self.gate) / (1.0 - self.gate)).clamp(0.0, 1.0)

    def logits_from(self, states: dict[str, torch.Tensor], layout: Layout) -> torch.Tensor:
        z = states[HEAD_INPUT]
        logits = layout_logits(z, layout)
        return self.mix_logits(z, logits, layout.lm_head) if self.active else logits

    def support_log_probs(
        self,
        z: torch.Tensor,
        head: nn.Module,
        work: torch.dtype,
        scored: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, float | torch.Tensor, Support]:
        """(the memory's log-probabilities over its support (..., S) in ``work``, the weight λ — a
        float, or per position (..., 1) with a gate — and the support) at head inputs z (..., d).

        scored: (W·z (..., d), its scores over the whole head (..., V)) when the head computed
        them (:meth:`stacks_head`); computed here otherwise."""
        sup = self.support_of(head)
        if scored is not None and sup.index is None:
            m, scores = scored
        else:
            m = self.predict(z).to(z.dtype)
            # F.linear, not head(...): calling the head would re-enter the hook that calls this.
            scores = F.linear(m, sup.rows)
        lam = self.gate_weight(m, scores, sup.norms, z) if self.gate is not None else self.weight
        # no head bias here: it is in logit units, not in units of ρ², and 1/T would multiply it
        # (by 40 at the default T) until it outweighs the match; the model's part already has it
        scaled = scores.to(work) / self._scale_to_divide(head)
        return F.log_softmax(scaled / self.temperature, -1), lam, sup

    def mix_logits(
        self,
        z: torch.Tensor,
        logits: torch.Tensor,
        head: nn.Module,
        *,
        scored: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """log((1−λ)·p_model + λ·p_memory). z: (..., d) head input; logits: (..., V) → (..., V).

        p_memory = softmax(rows·(W·z)/(ρ²·T)) over the support, ρ² = :meth:`head_scale` (the head's
        bias, if any, is in p_model only); scored: see :meth:`support_log_probs`."""
        work = torch.promote_types(logits.dtype, torch.float32)
        part, lam, sup = self.support_log_probs(z, head, work, scored)
        if sup.index is None:
            mem = part
        else:
            mem = torch.full(logits.shape, -math.inf, dtype=work, device=logits.device)
            mem.index_copy_(mem.ndim - 1, sup.index, part)
        return combine(logits, mem, lam)

    def token_log_probs(
        self, z: torch.Tensor, base_log_probs: torch.Tensor, tokens: torch.Tensor, head: nn.Module
    ) -> torch.Tensor:
        """:meth:`mix_logits` at chosen tokens only, without the (N, V) head: z (N, d) head inputs,
        tokens (N, K) long, base_log_probs (N, K) the model's log-probabilities of those tokens
        (log_softmax of the head's logits, gathered) → (N, K) log((1−λ)·p_model + λ·p_memory) there.

        The memory's distribution lives on its support (the learned tokens), so its softmax needs
        no more than the support's rows; a token outside the support has memory probability 0.
        Equal to gathering :meth:`mix_logits` up to float rounding (the tests compare them)."""
        work = torch.promote_types(base_log_probs.dtype, torch.float32)
        part, lam, sup = self.support_log_probs(z, head, work)
        if sup.column is None:
            mem = part.gather(-1, tokens)
        else:
            where = sup.column[tokens]  # (N, K): each token's column in the support, -1 outside it
            mem = part.gather(-1, where.clamp_min(0)).masked_fill(where < 0, -math.inf)
        return mix_log_probs(base_log_probs.to(work), mem, lam)


class LogitReadOut(OutputReadOut):
    """Output read-out mixed in logit space: the head reads z + (β/(ρ²·s))·W·z, i.e. logits +
    β·head(W·z)/ρ² (ρ² = :meth:`head_scale`; s the scale the model puts on the head's output,
    Cohere's ``logit_scale``, Granite's 1/``logits_scaling``, 1 for most: so β is in units of the
    model's logits on every model).

    Stronger recall for large β, but an unbounded cost on new text.
    """

    key_source, value_source = "post_norm", "lm_head"
    defaults: ClassVar[dict[str, Any]] = {"weight": 1.0}
    weight_is_ratio = False

    def __init__(
        self, layout: Layout, model: nn.Module, *, dtype: torch.dtype | None = None, **keys: int
    ) -> None:
        super().__init__(HEAD_INPUT, lambda: layout.lm_head.weight, layout.hidden_size, dtype=dtype, **keys)
        #: s, the model's scale on its head's output (``layout.logit_transform.scale``)
        self.output_scale = layout.logit_transform.scale

    def attach(self, layout: Layout, hooks: HookSet, ctx: HookContext) -> None:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            if not ctx.reading or not self.active:
                return None
            z, positional = hidden_from_call(args, kwargs)
            return replace_hidden(args, kwargs, self.read(z, module), positional)

        hooks.pre(layout.lm_head, hook)

    def logits_from(self, states: dict[str, torch.Tensor], layout: Layout) -> torch.Tensor:
        z = states[HEAD_INPUT]
        return layout_logits(self.read(z, layout.lm_head) if self.active else z, layout)

    def read(self, z: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """z (..., d) → z + (β/(ρ²·s))·W·z: the model's logits (the head's output times s) gain
        β·rows·(W·z)/ρ², β logit units for a context the memory reproduces (ρ² = :meth:`head_scale`,
        s = :attr:`output_scale`)."""
        return z + (self.weight / self._head_units(head)) * self.predict(z).to(z.dtype)

    def _head_units(self, head: nn.Module) -> float | torch.Tensor:
        """ρ²·s: what divides rows·(W·z) so that β is in units of the model's logits (a tensor with
        its graph where a backward pass could reach the head: :meth:`_scale_to_divide`)."""
        return self._scale_to_divide(head) * self.output_scale

    def memory_logits(self, z: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """rows·(W·z)/(ρ²·s) (..., V) for head inputs z (..., d): what the memory adds to the head's
        output per unit β, so that the head's output read with any β is head(z) + β·this (the head
        is linear; its bias is in head(z) only). Lets a caller compare many β on one head pass."""
        return F.linear(self.predict(z).to(z.dtype), head.weight) / self._head_units(head)


class PaperReadOut(OutputReadOut):
    """The paper's output memory: before the final norm, h' = (1−r)·h + r·W·h, with key the
    pre-norm state and value the next token's input embedding. Default r = 0.9 (the paper's);
    kept for reproduction."""

    key_source, value_source = "pre_norm", "input_embedding"
    defaults: ClassVar[dict[str, Any]] = {"weight": 0.9}

    def __init__(
        self, layout: Layout, model: nn.Module, *, dtype: torch.dtype | None = None, **keys: int
    ) -> None:
        if layout.final_norm is None:
            raise ValueError(
                f"output_mix='paper' reads the state before the final norm, but no final norm was found "
                f"on {type(model).__name__}; pass FaastConfig(final_norm_path=...)"
            )
        embeddings = model.get_input_embeddings()
        super().__init__(PRE_NORM, lambda: embeddings.weight, layout.hidden_size, dtype=dtype, **keys)

    def attach(self, layout: Layout, hooks: HookSet, ctx: HookContext) -> None:
        assert layout.final_norm is not None
        hooks.pre(layout.final_norm, self._record_or_read(ctx, self.read))

    def logits_from(self, states: dict[str, torch.Tensor], layout: Layout) -> torch.Tensor:
        assert layout.final_norm is not None
        if not self.active:
            return layout_logits(states[HEAD_INPUT], layout)
        return layout_logits(layout.final_norm(self.read(states[PRE_NORM])), layout)

    def read(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., d) → (1−r)·h + r·W·h."""
        return (1.0 - self.weight) * h + self.weight * self.predict(h).to(h.dtype)


#: Rows of head inputs put through the LM head at once where whole-vocabulary logits are formed, so a
#: large vocabulary never makes more than this many rows of logits.
HEAD_ROWS = 256


def head_row_chunks(rows: int) -> Iterator[slice]:
    """Consecutive slices of ``rows`` head-input rows, :data:`HEAD_ROWS` at most each."""
    for start in range(0, rows, HEAD_ROWS):
        yield slice(start, min(start + HEAD_ROWS, rows))


def head_logits(z: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """The LM head's output for head inputs z (..., d) without calling the module (its hooks)."""
    return F.linear(z, head.weight, getattr(head, "bias", None))


def layout_logits(z: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The model's logits (..., V) for head inputs z (..., d): the LM head's output as the model
    transforms it (``layout.logit_transform``: Cohere's scale, Granite's, Gemma 2's soft cap)."""
    return layout.logit_transform(head_logits(z, layout.lm_head))  # the identity returns its input


def combine(logits: torch.Tensor, memory_log_probs: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """log((1−λ)·softmax(logits) + λ·exp(memory_log_probs)); both (..., V).

    lam: λ, a float or a (..., 1) tensor of per-position weights; where λ = 0 the result is exactly
    log_softmax(logits), where λ = 1 exactly the memory's.
    """
    work = torch.promote_types(logits.dtype, torch.float32)
    base = F.log_softmax(logits.to(work), dim=-1)
    return mix_log_probs(base, memory_log_probs.to(work), lam).to(logits.dtype)


def mix_log_probs(base: torch.Tensor, memory: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """log((1−λ)·exp(base) + λ·exp(memory)) elementwise, for log-probabilities ``base`` and
    ``memory`` of one shape (float32 or wider); lam a float or a tensor that broadcasts to them.
    Exactly ``base`` where λ = 0 and ``memory`` where λ = 1."""
    lam = torch.as_tensor(lam, dtype=torch.float64, device=base.device)
    keep, take = torch.log1p(-lam).to(base.dtype), torch.log(lam).to(base.dtype)  # -inf where λ is 1 / 0
    return torch.logaddexp(base + keep, memory + take)
