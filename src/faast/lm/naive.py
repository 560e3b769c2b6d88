"""Plain reference of the LM path: what :class:`~faast.lm.FaastModel` computes, written out.

Slow and simple on purpose, and independent of the hooked implementation (it uses neither
:mod:`faast.lm.inject` nor :mod:`faast.lm.readouts` nor the streaming solver):

* hidden states from the model's own ``output_hidden_states`` (entry i is the input of block i,
  the last entry the final state the LM head reads); only the input of the final norm, which
  ``output_hidden_states`` does not expose, is recorded by a forward pre-hook;
* pairs (token t → t+1) gathered by explicit loops over rows and positions, kept iff both tokens
  are real (and the optional pair mask allows it);
* fast weights by the float64 SVD pseudoinverse (:func:`faast.solver.svd_reference`) with the
  power-law cut τ = c·n^(−α);
* every read-out's formula on full tensors.

The tests compare the hooked model with it across model families, read-outs and middle memories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from faast.lm.output_readouts import CONTEXT_RIDGE, CONTEXT_SPAN, NARROW_SUPPORT
from faast.solver import svd_reference


@dataclass
class NaiveMiddle:
    """A middle memory before ``block``: readout ``out_proj`` (d, d) and optional ``scorer`` (1, 2d)."""

    layer: int
    out_proj: torch.Tensor
    scorer: torch.Tensor | None = None


@dataclass
class NaiveSpec:
    """Everything the reference needs, with every knob explicit (no defaults are resolved here).

    mix: "prob", "logit", "paper", "correction" or None (no output memory); weight: λ, β, r or the
    step β of "correction"; damping: c of "correction"; temperature: T of "prob"; gate: θ of
    "prob" or None; support: "learned" or "vocab"; alpha, c: the cut τ = c·n^(−α).
    """

    mix: str | None
    weight: float = 0.0
    damping: float = 0.1
    temperature: float = 1.0
    gate: float | None = None
    support: str = "learned"
    alpha: float = 1.0
    c: float = 1.0
    middles: list[NaiveMiddle] = field(default_factory=list)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting real tokens only: (B, T) → (B, T)."""
    pos = torch.zeros_like(mask, dtype=torch.long)
    for b in range(mask.shape[0]):
        count = 0
        for t in range(mask.shape[1]):
            if mask[b, t]:
                pos[b, t] = count
                count += 1
    return pos


def run(
    model: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    final_norm: nn.Module,
    blocks: nn.ModuleList,
    edits: dict[int, callable] | None = None,
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """(hidden_states, pre-norm state) of one forward; ``edits[i]`` rewrites the input of block i."""
    recorded: list[torch.Tensor] = []
    handles = [final_norm.register_forward_pre_hook(lambda m, a: recorded.append(a[0]))]
    for i, edit in (edits or {}).items():

        def rewrite(module, args, kwargs, edit=edit):  # type: ignore[no-untyped-def]
            if args:
                return (edit(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}

        handles.append(blocks[i].register_forward_pre_hook(rewrite, with_kwargs=True))
    try:
        with torch.no_grad():
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions(mask),
                output_hidden_states=True,
                use_cache=False,
            )
    finally:
        for h in handles:
            h.remove()
    return out.hidden_states, recorded[-1]


def pairs(states: torch.Tensor, mask: torch.Tensor, pair_mask: torch.Tensor | None = None):
    """Explicit (key row, value row, next id position) triples: keys (n, d), values (n, d), (b, t+1) list."""
    keys, values, where = [], [], []
    for b in range(states.shape[0]):
        for t in range(states.shape[1] - 1):
            if mask[b, t] and mask[b, t + 1] and (pair_mask is None or pair_mask[b, t]):
                keys.append(states[b, t])
                values.append(states[b, t + 1])
                where.append((b, t + 1))
    return torch.stack(keys), torch.stack(values), where


def fast_weight(keys: torch.Tensor, values: torch.Tensor, alpha: float, c: float) -> torch.Tensor:
    """W (m, d) by the SVD pseudoinverse with τ = c·n^(−α) (capped at 1)."""
    tau = min(1.0, c * keys.shape[0] ** (-alpha))
    return svd_reference(keys.double(), values.double(), tau)


def logits(
    model: nn.Module,
    spec: NaiveSpec,
    learn: list[tuple[torch.Tensor, torch.Tensor]],
    query: tuple[torch.Tensor, torch.Tensor],
    *,
    final_norm: nn.Module,
    blocks: nn.ModuleList,
    pair_masks: list[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """The logits (log-probabilities for "prob") of ``query`` after learning the ``learn`` batches.

    learn: (input_ids, attention_mask) batches; query: one (input_ids, attention_mask) batch.
    Returns (B, T, V) in the model's dtype (float64 models give float64).
    """
    head = model.get_output_embeddings().weight
    bias = getattr(model.get_output_embeddings(), "bias", None)
    embed = model.get_input_embeddings().weight
    masks = pair_masks or [None] * len(learn)
    mid_k: dict[int, list[torch.Tensor]] = {m.layer: [] for m in spec.middles}
    mid_v: dict[int, list[torch.Tensor]] = {m.layer: [] for m in spec.middles}
    out_k: list[torch.Tensor] = []
    out_v: list[torch.Tensor] = []
    out_ids: list[torch.Tensor] = []
    learned = torch.zeros(head.shape[0], dtype=torch.bool)
    prob_sum = torch.zeros(head.shape[0], dtype=torch.float64)
    outer = torch.zeros(head.shape[1], head.shape[1], dtype=torch.float64)
    for (ids, mask), pm in zip(learn, masks, strict=True):
        hs, pre = run(model, ids, mask, final_norm, blocks)
        for m in spec.middles:
            k, v, _ = pairs(hs[m.layer], mask, pm)
            if m.scorer is not None:
                w = torch.sigmoid(torch.cat([k, v], dim=-1) @ m.scorer[0])
                v = v * w[:, None]
            mid_k[m.layer].append(k)
            mid_v[m.layer].append(v)
        if spec.mix is not None:
            key_states = pre if spec.mix == "paper" else hs[-1]
            k, _, where = pairs(key_states, mask, pm)
            next_ids = torch.tensor([int(ids[b, t]) for b, t in where])
            table = embed if spec.mix == "paper" else head
            out_k.append(k)
            out_ids.append(next_ids)
            if spec.mix == "correction":  # value: −∂CE/∂z = u_y − Uᵀ softmax(U z + b), row by row
                for i in range(k.shape[0]):
                    p = torch.softmax(k[i] @ head.T + (0 if bias is None else bias), dim=-1)
                    out_v.append((head[next_ids[i]] - p @ head)[None])
                    prob_sum += p.double()
                    outer += torch.outer((p @ head).double(), (p @ head).double())
            else:
                out_v.append(table[next_ids])
            learned[next_ids] = True
    edits = {}
    for m in spec.middles:
        w = fast_weight(torch.cat(mid_k[m.layer]), torch.cat(mid_v[m.layer]), spec.alpha, spec.c)
        read = (m.out_proj.double() @ w).to(head.dtype)
        edits[m.layer] = lambda h, read=read: h + h @ read.T
    ids, mask = query
    hs, pre = run(model, ids, mask, final_norm, blocks, edits)
    z = hs[-1]
    base = z @ head.T + (0 if bias is None else bias)
    if spec.mix is None:
        return base
    w_out = fast_weight(torch.cat(out_k), torch.cat(out_v), spec.alpha, spec.c).to(head.dtype)
    rho2 = float((head.detach().double() ** 2).sum(dim=1).mean())  # the head's scale
    if spec.mix == "logit":
        zz = z + (spec.weight / rho2) * (z @ w_out.T)
        return zz @ head.T + (0 if bias is None else bias)
    if spec.mix == "correction":  # β·(F̄ + c·L·I)⁻¹·W·z, F̄ the mean curvature Uᵀ(diag p − p pᵀ)U
        h64 = head.double()
        fisher = (h64.T @ torch.diag(prob_sum) @ h64 - outer) / sum(len(k) for k in out_k)
        bound = float(torch.linalg.eigvalsh(fisher.detach())[-1])
        step = spec.weight * torch.linalg.inv(
            fisher + spec.damping * bound * torch.eye(len(fisher), dtype=torch.float64)
        )
        zz = z + (z @ w_out.T) @ step.T.to(z.dtype)
        return zz @ head.T + (0 if bias is None else bias)
    if spec.mix == "paper":
        with torch.no_grad():
            mixed = final_norm((1 - spec.weight) * pre + spec.weight * (pre @ w_out.T))
        return mixed @ head.T + (0 if bias is None else bias)
    counts = torch.bincount(torch.cat(out_ids), minlength=head.shape[0])
    p = counts[counts > 0].double() / counts.sum()
    context = None
    if spec.gate is not None and spec.weight > 0 and math.exp(float(-(p * p.log()).sum())) < NARROW_SUPPORT:
        keys = torch.cat(out_k).double()  # a narrow memory: the learned keys' dominant directions,
        gram = keys.T @ keys  # and (G + ρI)⁻¹ for the leverage of a context
        lam, vec = torch.linalg.eigh(gram)
        ridge = CONTEXT_RIDGE * float(torch.trace(gram)) / keys.shape[0]
        inverse = torch.linalg.inv(gram + ridge * torch.eye(len(gram), dtype=torch.float64))
        context = (vec[:, lam >= CONTEXT_SPAN * lam.max()], inverse)
    return _prob_mix(base, z @ w_out.T, head, learned, spec, rho2, z, context)


def _prob_mix(
    base_logits: torch.Tensor,
    m: torch.Tensor,
    head: torch.Tensor,
    learned: torch.Tensor,
    spec: NaiveSpec,
    rho2: float,
    z: torch.Tensor | None = None,
    context: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """log((1−λ(z))·softmax(logits) + λ(z)·p_memory), p_memory = softmax(rows·m/(ρ²·T)) over
    the support (no head bias: it is in the model's part), λ(z) gated; ``context`` (the dominant
    directions (d, k) of a narrow memory's learned keys, (G + ρI)⁻¹ (d, d)): the larger of z's
    share in those directions and 1/√max(zᵀ(G + ρI)⁻¹z, 1) also bounds c."""
    support = learned if spec.support == "learned" else torch.ones_like(learned)
    rows = head[support]
    scores = m @ rows.T / rho2
    p_mem = torch.zeros_like(base_logits)
    p_mem[..., support] = torch.softmax(scores / spec.temperature, dim=-1)
    p_model = torch.softmax(base_logits, dim=-1)
    if spec.gate is None:
        lam = torch.full((*base_logits.shape[:-1], 1), spec.weight, dtype=base_logits.dtype)
    else:
        raw = m @ rows.T
        cos = raw / (m.norm(dim=-1, keepdim=True) * rows.norm(dim=-1)).clamp_min(1e-12)
        c = cos.max(dim=-1, keepdim=True).values
        if context is not None and z is not None:
            dominant, inverse = context
            unit = z.double() / z.double().norm(dim=-1, keepdim=True)
            leverage = ((z.double() @ inverse) * z.double()).sum(dim=-1, keepdim=True)
            share = torch.maximum((unit @ dominant).norm(dim=-1, keepdim=True), leverage.clamp_min(1).rsqrt())
            c = torch.minimum(c, share.to(c.dtype))
        open_ = ((c - spec.gate) / (1 - spec.gate)).clamp(0, 1)
        lam = spec.weight * open_
    mixed = (1 - lam) * p_model + lam * p_mem
    return torch.log(mixed.clamp_min(0)).nan_to_num(neginf=-math.inf)
