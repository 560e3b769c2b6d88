"""The two kinds of FAAST memory attached to a causal LM.

Both keep float64 statistics (:class:`faast.GramStats`) of key → value pairs taken from
consecutive real tokens (t → t+1) and compile them into a fast-weight matrix W on first use
after they change, in the dtype and on the device of the hidden states that read them.

* :class:`MiddleMemory` (before decoder block i): key hₜ, value w·hₜ₊₁ of the same block input,
  w = σ(s·[k; v]) a learned scorer; read as h + out_proj(dropout(W·h)). ``out_proj`` starts at
  exactly zero, so an untrained middle memory is an exact no-op.
* :class:`OutputMemory` (at the LM head): no trained parameters; key and value depend on the mix
  (see :class:`faast.lm.FaastConfig`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from faast.solver import GramStats


class Support(NamedTuple):
    """LM-head rows of the "prob" mix's memory distribution: rows (k, d), bias (k,) or None,
    index (k,) of the rows in the vocabulary (None: the whole head) and ‖row‖ (k,)."""

    rows: torch.Tensor
    bias: torch.Tensor | None
    index: torch.Tensor | None
    norms: torch.Tensor


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


class _Memory(nn.Module):
    """Statistics, the spectral cut and the compiled fast weights shared by both memories."""

    def __init__(self, key_dim: int, value_dim: int, *, alpha: float, c: float, dtype: torch.dtype | None):
        super().__init__()
        self.stats = GramStats(key_dim, value_dim)
        self.alpha = float(alpha)
        self.c = float(c)
        self.compute_dtype = dtype

    @property
    def has_pairs(self) -> bool:
        return self.stats.count > 0

    def reset(self) -> None:
        self.stats.reset()
        self._fused = None

    def add_pairs(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """keys (n, d), values (n, m) → float64 statistics (one dtype per statistics object)."""
        keys, values = _stats_input(keys), _stats_input(values)
        want = self.stats.input_dtype or keys.dtype
        self.stats.add(keys.to(want), values.to(want))

    def fast_weight(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """W (m, d) with values ≈ keys @ W.T, cut τ = c·n^(−α); cached until the statistics change."""
        return self.stats.solve(alpha=self.alpha, c=self.c, dtype=dtype, device=device)

    def _dtype_for(self, h: torch.Tensor) -> torch.dtype:
        return self.compute_dtype or h.dtype

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Statistics follow ``.to(device)`` (they stay float64 whatever dtype the model takes)."""
        super()._apply(fn, recurse)
        probe = fn(torch.zeros((), device=self.stats.device))
        if probe.device != self.stats.device:
            self.stats.to(probe.device)
        return self


class MiddleMemory(_Memory):
    """Memory before decoder block ``layer``: hₜ → w·hₜ₊₁, read as h + out_proj(dropout(W·h)).

    Parameters: ``out_proj`` (d × d, zero-initialised) and ``scorer`` (2d → 1, zero-initialised,
    so w = 0.5 until trained), both trained by :mod:`faast.lm.train` with the backbone frozen.
    """

    kind = "middle"

    def __init__(
        self,
        hidden_size: int,
        layer: int,
        *,
        scorer: bool = True,
        dropout: float = 0.1,
        alpha: float = 1.0,
        c: float = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(hidden_size, hidden_size, alpha=alpha, c=c, dtype=dtype)
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

    def value_weights(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor | None:
        """Scorer weights w = σ(s·[k; v]) for (n, d) keys and values → (n,) (≥ float32), or None."""
        if self.scorer is None:
            return None
        dtype = torch.promote_types(keys.dtype, torch.float32)
        s = self.scorer.weight.to(dtype)
        return torch.sigmoid(torch.cat([keys.to(dtype), values.to(dtype)], dim=-1) @ s[0])

    def learn(self, states: torch.Tensor, valid: torch.Tensor) -> int:
        """Accumulate the pairs of one batch. states: (B, T, d) block inputs; valid: (B, T−1)."""
        keys, values = next_pairs(states, valid)
        w = self.value_weights(keys, values)
        if w is not None:
            values = values.to(w.dtype) * w[:, None]
        self.add_pairs(keys, values)
        return int(keys.shape[0])

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
        """out_proj · W (d, d), cached until the statistics or the readout change."""
        weight = self.out_proj.weight
        w = self.fast_weight(torch.float64, device)  # the same tensor until the statistics change
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
        fused = self.fused_weight(dtype, h.device)
        return h + F.linear(h.to(dtype), fused).to(h.dtype)


class OutputMemory(_Memory):
    """Parameter-free memory at the LM head (mix "prob", "logit" or "paper", see FaastConfig).

    Keys are the final hidden state after the final norm ("prob"/"logit") or before it
    ("paper"); values are the next token's LM-head row ("prob"/"logit") or input embedding
    ("paper"). W is (m, d) with m = the value dimension (d for every family here).

    ``seen`` (V,) marks the tokens learned as values. With ``support="learned"`` the "prob" mix
    spreads the memory's probability over those tokens only (as a k-NN LM does over its
    datastore): it cannot recall a token it never learned, and it costs |learned| × d per
    token instead of a second full LM-head product.
    """

    kind = "output"

    def __init__(
        self,
        hidden_size: int,
        value_dim: int,
        vocab_size: int,
        *,
        mix: str,
        weight: float,
        temperature: float = 1.0,
        support: str = "learned",
        gate: float | None = None,
        alpha: float = 1.0,
        c: float = 1.0,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(hidden_size, value_dim, alpha=alpha, c=c, dtype=dtype)
        if support not in ("learned", "vocab"):
            raise ValueError(f"support must be 'learned' or 'vocab', got {support!r}")
        self.mix = mix
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.support = support
        if gate is not None and not 0.0 <= gate < 1.0:
            raise ValueError(f"gate must be a cosine threshold in [0, 1), got {gate}")
        self.gate = gate
        self.register_buffer("seen", torch.zeros(vocab_size, dtype=torch.bool), persistent=False)
        self._support: tuple[tuple, Support] | None = None

    @property
    def key_source(self) -> str:
        return "pre_norm" if self.mix == "paper" else "post_norm"

    @property
    def value_source(self) -> str:
        return "input_embedding" if self.mix == "paper" else "lm_head"

    @property
    def active(self) -> bool:
        return self.has_pairs and self.weight > 0

    def reset(self) -> None:
        super().reset()
        self.seen.zero_()
        self._support = None

    def learn_tokens(self, token_ids: torch.Tensor) -> None:
        """Mark (n,) token ids as learned values."""
        self.seen[token_ids.to(self.seen.device)] = True
        self._support = None

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """W·h for keys h (..., d) → (..., m), in the compute dtype."""
        dtype = self._dtype_for(h)
        return F.linear(h.to(dtype), self.fast_weight(dtype, h.device))

    def mix_state(self, h: torch.Tensor) -> torch.Tensor:
        """ "logit": z + β·W·z (LM-head input); "paper": (1−r)·h + r·W·h (final-norm input)."""
        m = self.predict(h).to(h.dtype)
        if self.mix == "paper":
            return (1.0 - self.weight) * h + self.weight * m
        return h + self.weight * m

    def support_of(self, head: nn.Module) -> Support:
        """The LM-head rows the "prob" mix's memory distribution covers (cached until the head,
        the learned tokens or ``support`` change): the learned tokens' rows, or the whole head."""
        weight, bias = head.weight, getattr(head, "bias", None)
        key = (weight.data_ptr(), weight._version, weight.dtype, weight.device, self.support)
        if self._support is None or self._support[0] != key:
            if self.support == "vocab":
                rows, index = weight.detach(), None
            else:
                index = torch.nonzero(self.seen.to(weight.device)).squeeze(1)
                rows = weight.detach()[index]
                bias = None if bias is None else bias[index]
            work = torch.promote_types(rows.dtype, torch.float32)
            norms = torch.linalg.vector_norm(rows.to(work), dim=-1).clamp_min(1e-12)
            self._support = (key, Support(rows, None if bias is None else bias.detach(), index, norms))
        return self._support[1]

    def gate_weight(self, m: torch.Tensor, scores: torch.Tensor, row_norms: torch.Tensor) -> torch.Tensor:
        """Per-position λ(z) = λ·clamp((c − θ)/(1 − θ), 0, 1) → (..., 1), float32 or wider.

        c = max over the support rows r of cos(W·z, r): close to 1 where W·z reproduces the
        LM-head row of a learned token (z is a learned context), lower on new text.
        m: (..., d) W·z; scores: (..., k) rows·(W·z); row_norms: (k,) ‖row‖.
        """
        assert self.gate is not None
        work = torch.promote_types(m.dtype, torch.float32)
        norm_m = torch.linalg.vector_norm(m.to(work), dim=-1, keepdim=True).clamp_min(1e-12)
        cos = (scores.to(work) / (norm_m * row_norms.to(work))).amax(dim=-1, keepdim=True)
        return self.weight * ((cos - self.gate) / (1.0 - self.gate)).clamp(0.0, 1.0)

    def mix_logits(self, z: torch.Tensor, logits: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """ "prob": log((1−λ)·p_model + λ·p_memory). z: (..., d) head input; logits: (..., V).

        p_memory = softmax(head(W·z) / T), over the learned tokens (support "learned") or the
        whole vocabulary ("vocab"). With a ``gate`` θ, λ is scaled per position by how closely
        W·z matches a support row (see :meth:`gate_weight`). Returns (..., V) log-probabilities.
        """
        m = self.predict(z).to(z.dtype)
        work = torch.promote_types(logits.dtype, torch.float32)
        sup = self.support_of(head)
        # F.linear, not head(...): calling the head would re-enter the hook that calls this.
        scores = F.linear(m, sup.rows)
        lam = self.gate_weight(m, scores, sup.norms) if self.gate is not None else self.weight
        biased = scores if sup.bias is None else scores + sup.bias
        part = F.log_softmax(biased.to(work) / self.temperature, -1)
        if sup.index is None:
            mem = part
        else:
            mem = torch.full(logits.shape, -math.inf, dtype=work, device=logits.device)
            mem.index_copy_(mem.ndim - 1, sup.index, part)
        return self.combine(logits, mem, lam)

    def combine(
        self, logits: torch.Tensor, memory_log_probs: torch.Tensor, lam: float | torch.Tensor | None = None
    ) -> torch.Tensor:
        """log((1−λ)·softmax(logits) + λ·exp(memory_log_probs)); both (..., V).

        lam: λ (default ``self.weight``), a float or a (..., 1) tensor of per-position weights;
        where λ = 0 the result is exactly log_softmax(logits), where λ = 1 exactly the memory's.
        """
        work = torch.promote_types(logits.dtype, torch.float32)
        mem = memory_log_probs.to(work)
        base = F.log_softmax(logits.to(work), dim=-1)
        lam = torch.as_tensor(self.weight if lam is None else lam, dtype=torch.float64, device=base.device)
        keep, take = torch.log1p(-lam).to(work), torch.log(lam).to(work)  # -inf where λ is 1 / 0
        return torch.logaddexp(base + keep, mem + take).to(logits.dtype)
