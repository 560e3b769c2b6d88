"""The "correction" output read-out: a closed-form step on the next-token loss at the LM head's input.

The other output read-outs store *which token followed* a state (value: that token's LM-head row),
which recalls learned text but, on text the memory has not read, mostly adds wrong guesses. This
one stores *how the head input should have moved* to predict the next token better: the value of
the pair (zₜ → token yₜ₊₁) is the negative gradient of the cross-entropy with respect to the head
input,

    gₜ = −∂CE/∂z = u_y − Uᵀ·softmax(U·zₜ + b)        (U: the (V, d) LM head, u_y its row of y),

which is zero where the model already predicts the learned token and points towards it where the
model does not. The memory's least-squares fit W = Σ g·φ(z)ᵀ (Σ φ(z)·φ(z)ᵀ + cut)⁻¹ (φ(z) = z, or
the key features of :mod:`faast.lm.key_features`) is the loss's gradient for a linear correction
z ↦ z + A·φ(z) at A = 0, preconditioned in key space; the model reads one damped Newton step

    head(z + β·(F̄ + c·L·I)⁻¹·W·φ(z)),

with F̄ the loss's mean curvature in z over the learned pairs, F̄ = mean of Uᵀ(diag p − p·pᵀ)U,
and L its largest eigenvalue. F̄ is exact from two float64 sums kept beside the memory's
statistics, Σ p (V,) and Σ m·mᵀ (d, d) with m = Uᵀp, because Σ Uᵀ diag(p) U = Uᵀ diag(Σ p) U; so
forgetting stays exact (both sums are subtracted). The damping c·L is relative to L, so β and c
mean the same on every model whatever the scale of its head (a head input k times larger under a
head k times smaller reads the same logits after learning the same text). Splitting the curvature
into a value-space and a key-space factor underrates it in its weak directions, where the full
Newton step would overshoot, so the step is damped (c) and shortened (β): defaults β = 0.5,
c = 0.3, chosen on held-out Austen text (the last tenth of what the domain protocol learns, never
its test book) on SmolLM2-135M and Gemma-3-270M (``docs/lm.md``, "A closed-form step on the
loss"). The closed-form counterpart of training a linear layer at the head input by backprop (the
baseline of ``benchmarks/lm_domain.py``): learning in-domain text makes unseen text of that domain
more likely, learning task examples makes their answers more likely.

Heads whose logits the model changes after the head (e.g. Gemma-2's final soft-capping) get the
gradient of the head's own logits: an approximation there, exact otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from faast._checks import caller_stacklevel, integer_at_least
from faast.lm.config import ReadConfig
from faast.lm.inject import Layout
from faast.lm.output_readouts import LogitReadOut
from faast.lm.readouts import Captured, next_pairs
from faast.solver import Cut
from faast.solver.normal_tensors import outside_inference_mode

#: Rows × vocabulary entries of one chunk of probabilities (float32: 64 MiB).
CHUNK_ELEMENTS = 1 << 24


def loss_gradients(
    z: torch.Tensor, next_ids: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values and curvature sums of the pairs (zᵢ → next_idsᵢ).

    z: (n, d) head inputs; next_ids: (n,) long; weight: (V, d) the LM head U; bias: (V,) or None.
    Returns g (n, d) = U[y] − Uᵀ softmax(U z + b) in z's dtype (float32 at least), Σᵢ pᵢ (V,) float64
    and Σᵢ mᵢ mᵢᵀ (d, d) float64 with mᵢ = Uᵀ pᵢ. Computed in chunks of rows, so the (n, V)
    probabilities never exist at once.
    """
    work = torch.promote_types(z.dtype, torch.float32)
    u = weight.detach().to(work)
    b = None if bias is None else bias.detach().to(work)
    vocab, d = u.shape
    prob_sum = torch.zeros(vocab, dtype=torch.float64, device=z.device)
    outer = torch.zeros(d, d, dtype=torch.float64, device=z.device)
    values = torch.empty(z.shape[0], d, dtype=work, device=z.device)
    step = max(1, CHUNK_ELEMENTS // max(vocab, 1))
    for i in range(0, z.shape[0], step):
        p = torch.softmax(F.linear(z[i : i + step].to(work), u, b), dim=-1)
        m = p @ u
        values[i : i + step] = u[next_ids[i : i + step]] - m
        prob_sum += p.sum(dim=0, dtype=torch.float64)
        m64 = m.double()
        outer += m64.T @ m64
    return values, prob_sum, outer


def mean_curvature(
    prob_sum: torch.Tensor, outer: torch.Tensor, count: int, weight: torch.Tensor, *, rows: int = 16384
) -> torch.Tensor:
    """F̄ = (Uᵀ diag(Σp) U − Σ m mᵀ) / count (d, d) float64: the mean Hessian of the cross-entropy
    with respect to the head input over the learned pairs (U taken ``rows`` rows at a time).
    prob_sum: (V,); outer: (d, d); weight: (V, d); count ≥ 1."""
    d = weight.shape[1]
    fisher = torch.zeros(d, d, dtype=torch.float64, device=outer.device)
    for i in range(0, weight.shape[0], rows):
        u = weight[i : i + rows].detach().to(device=outer.device, dtype=torch.float64)
        fisher += (u.T * prob_sum[i : i + rows]) @ u
    fisher = (fisher - outer) / count
    return (fisher + fisher.T) / 2


def curvature_bound(
    prob_sum: torch.Tensor, outer: torch.Tensor, count: int, weight: torch.Tensor, *, rows: int = 16384
) -> float:
    """L = λ_max(F̄) of :func:`mean_curvature`; 0.0 when nothing is learned."""
    if count <= 0:
        return 0.0
    return float(torch.linalg.eigvalsh(mean_curvature(prob_sum, outer, count, weight, rows=rows))[-1])


def damped_inverse(eigenvalues: torch.Tensor, eigenvectors: torch.Tensor, damping: float) -> torch.Tensor:
    """(F̄ + c·L·I)⁻¹ (d, d) from F̄'s eigendecomposition (ascending eigenvalues (d,), eigenvectors
    (d, d)); L = the largest eigenvalue, negative round-off eigenvalues taken as 0."""
    bound = float(eigenvalues[-1])
    shifted = eigenvalues.clamp_min(0.0) + damping * bound
    return (eigenvectors / shifted) @ eigenvectors.T


def learn_in_steps(model: Any, learn_once: Callable[[], Any], steps: int) -> None:
    """``steps`` closed-form steps on the loss of what ``learn_once()`` learns into ``model`` (a
    FaastModel whose output memory is a :class:`CorrectionReadOut`): learn, then ``steps − 1``
    times fold the step (:meth:`CorrectionReadOut.fold_step`) and learn the same data again. Each
    step is one forward pass over the data."""
    out = getattr(model, "output_memory", None)
    if not isinstance(out, CorrectionReadOut):
        raise ValueError("learn_in_steps needs a model whose output memory has output_mix='correction'")
    integer_at_least(steps, "steps", 1, kinds=int)
    for k in range(steps):
        if k:
            out.fold_step()
        learn_once()


def learn_windows_in_steps(model: Any, windows: torch.Tensor, steps: int, *, batch_size: int = 4) -> int:
    """:func:`learn_in_steps` over (n, T) token windows, running the backbone once: the batches are
    captured (``FaastModel.capture``; their head-input states, n·T·d floats, are kept meanwhile) and
    every step learns the captures again (``learn_captured``), so a further step costs the LM head
    over the states, not a forward pass. Returns the pairs of one pass."""
    from faast.lm.text import capture_windows

    captured = capture_windows(model, windows, batch_size=batch_size)
    learn_in_steps(model, lambda: [model.learn_captured(c) for c in captured], steps)
    return sum(c.num_pairs for c in captured)


def _warn_constant_step(grad: torch.Tensor) -> None:
    """Gradient hook of a correction read (``grad`` unchanged): warn, once per process, when a
    backward pass runs through it with the LM head trainable. The step (F̄ + c·L·I)⁻¹·W is
    computed from the head's weights without a graph, so their gradient leaves out its part (the
    prob and logit mixes keep it)."""
    global _WARNED_CONSTANT_STEP
    if _WARNED_CONSTANT_STEP:
        return
    _WARNED_CONSTANT_STEP = True
    warnings.warn(
        "the correction memory's step depends on the LM head's weights but is held constant in a "
        "backward pass: gradients of the LM head (or of embeddings tied to it) leave out its part; "
        "freeze the head (lm_head.weight.requires_grad_(False)), train inside fm.disabled(), or use "
        'output_mix="prob" or "logit", whose gradients are exact',
        UserWarning,
        stacklevel=caller_stacklevel(),
    )


_WARNED_CONSTANT_STEP = False


class CorrectionReadOut(LogitReadOut):
    """Output read-out whose values are loss gradients at the head input (see the module).

    Reads head(z + β·(F̄ + c·L·I)⁻¹·W·φ(z)); β is ``ReadConfig.weight`` (default 0.5), c
    ``ReadConfig.damping`` (default 0.3). Keeps, besides the memory's statistics, ``prob_sum`` (V,)
    and ``outer_sum`` (d, d), float64 sums over the learned pairs (saved with the fast weights).
    """

    key_source, value_source = "post_norm", "loss_gradient"
    defaults: ClassVar[dict[str, Any]] = {"weight": 0.5, "damping": 0.3}
    #: The default cut's ridge, in pseudo-pairs per key dimension (see :meth:`default_cut`).
    prior_pairs_per_key: ClassVar[float] = 2.0

    def __init__(
        self, layout: Layout, model: nn.Module, *, dtype: torch.dtype | None = None, **keys: int
    ) -> None:
        if not layout.logit_transform.is_identity:  # its gradients and curvature assume plain logits
            raise ValueError(
                f"the correction read-out needs a model whose logits are its LM head's output; this one "
                f"transforms them ({layout.logit_transform}): use the 'prob' or 'logit' mix"
            )
        super().__init__(layout, model, dtype=dtype, **keys)
        self.head: Callable[[], nn.Module] = lambda: layout.lm_head
        vocab, d = layout.lm_head.weight.shape
        # Plain attributes, not buffers: they stay float64 whatever dtype the model is cast to.
        self.prob_sum = torch.zeros(vocab, dtype=torch.float64)
        self.outer_sum = torch.zeros(d, d, dtype=torch.float64)
        self.damping = self.defaults["damping"]
        #: (d, key_dim) float64, the sum of the steps folded by :meth:`fold_step` (None: none yet).
        self.folded: torch.Tensor | None = None
        self.folded_steps = 0
        self._version = 0
        self._spectrum: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._effective: tuple[tuple, torch.Tensor] | None = None
        self._folded_cast: tuple[torch.Tensor, tuple, torch.Tensor] | None = None

    # ----------------------------------------------------------------- learning
    def _pairs_and_curvature(self, batch: Captured) -> tuple[torch.Tensor, ...]:
        """Keys φ(z), gradients and curvature sums; after folded steps, taken where the model
        reads now (z + A·φ(z)), the keys staying φ(z)."""
        z, _ = next_pairs(batch.states[self.key_point], batch.valid)
        keys = self.keys_of(z)
        at = z if self.folded is None else z + F.linear(keys, self._folded_as(z.dtype, z.device))
        head = self.head()
        values, prob_sum, outer = loss_gradients(
            at, batch.next_ids(), head.weight, getattr(head, "bias", None)
        )
        return keys, values, prob_sum, outer

    def pairs(self, batch: Captured) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (n, d) (or (n, d + D)) and loss gradients (n, d) of the learned pairs."""
        keys, values, _, _ = self._pairs_and_curvature(batch)
        return keys, values

    def _update(self, batch: Captured, sign: int) -> None:
        keys, values, prob_sum, outer = self._pairs_and_curvature(batch)
        self.add_pairs(keys, values, sign=sign)
        dev = self.prob_sum.device
        self.prob_sum += sign * prob_sum.to(dev)
        self.outer_sum += sign * outer.to(dev)
        self._version += 1

    def learn(self, batch: Captured) -> None:
        self._update(batch, 1)
        self.learn_tokens(batch.next_ids())

    def forget(self, batch: Captured) -> None:
        self._update(batch, -1)
        self.forget_tokens(batch.next_ids())

    def check_forget(self, batches: list[Captured]) -> None:
        """Also refuses once steps are folded: the folded steps hold every text learned before."""
        if self.folded is not None:
            raise ValueError(
                f"the correction memory has folded {self.folded_steps} step(s) (fold_step): forgetting "
                "is exact only for a one-step correction; reset it and learn again without the text"
            )
        super().check_forget(batches)

    def _clear_pairs(self) -> None:
        super().reset()
        self.prob_sum.zero_()
        self.outer_sum.zero_()
        self._version += 1

    def reset(self) -> None:
        self._clear_pairs()
        self.folded, self.folded_steps, self._folded_cast = None, 0, None

    def fold_step(self) -> None:
        """Keep the current step for good and start the next one: the step β·(F̄ + c·L·I)⁻¹·W is
        added to the folded correction A and the pairs are cleared; learning the same text again
        then computes the gradients where the model reads now (z + A·φ(z)), so k rounds of
        learn → fold are k closed-form steps on the loss (a forward pass each, no backprop).
        Forgetting is refused afterwards; ``reset`` clears everything."""
        if not self.has_pairs:
            raise ValueError(
                "fold_step: nothing was learned since the last step (learn the text again first)"
            )
        step = self.effective_weight(torch.float64, self.prob_sum.device)
        self.folded = step.clone() if self.folded is None else self.folded + step
        self.folded_steps += 1
        self._clear_pairs()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """The curvature sums and folded steps follow the model's device, never its dtype."""
        super()._apply(fn, recurse)
        device = self.memory.stats.device
        self.prob_sum = self.prob_sum.to(device)
        self.outer_sum = self.outer_sum.to(device)
        if self.folded is not None:
            self.folded = self.folded.to(device)
        return self

    @property
    def active(self) -> bool:
        return (self.has_pairs and self.weight > 0) or self.folded is not None

    # ----------------------------------------------------------------- reading
    def default_cut(self) -> Cut:
        """A ridge worth 2·key_dim pseudo-pairs (``Cut.pseudo_pairs``), not the paper's τ = n⁻¹:
        with a few hundred learned tokens the τ = n⁻¹ fit interpolates their gradients and the step
        wrecks unseen text (*Northanger Abbey*, SmolLM2-135M: 256 learned tokens took the next
        2,048 from perplexity 39.15 to 102.73, a prior of 1,024 pairs to 39.00; from ~4k tokens on
        both help alike; ``benchmarks/lm_correction_short.py``). The prior scales with the key
        dimension, the number of pairs that determine the map."""
        return Cut.pseudo_pairs(self.prior_pairs_per_key * self.memory.key_dim)

    def configure(self, read: ReadConfig) -> None:
        super().configure(read)
        self.damping = self.defaults["damping"] if read.damping is None else read.damping
        self._effective = None

    def _curvature_key(self) -> tuple:
        weight = self.head().weight
        return (self._version, self.memory.num_pairs, weight.data_ptr(), weight._version)

    @outside_inference_mode  # a cache: usable, and saved for backward, outside it too
    def spectrum(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues (d,) ascending and eigenvectors (d, d) of F̄ (:func:`mean_curvature`),
        float64, cached until the pairs or the head change."""
        key = self._curvature_key()
        if self._spectrum is None or self._spectrum[0] != key:
            fisher = mean_curvature(self.prob_sum, self.outer_sum, self.memory.num_pairs, self.head().weight)
            self._spectrum = (key, torch.linalg.eigh(fisher))
        return self._spectrum[1]

    def curvature(self) -> float:
        """L, the largest eigenvalue of F̄ (0.0 when nothing is learned)."""
        return float(self.spectrum()[0][-1]) if self.has_pairs else 0.0

    @outside_inference_mode  # a cache: usable, and saved for backward, outside it too
    def effective_weight(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """β·(F̄ + c·L·I)⁻¹·W (d, key_dim) in ``dtype``, cached until the pairs, the head, the cut or
        the knobs change; zero when the learned pairs carry no curvature (the model is then
        unchanged)."""
        key = (self._curvature_key(), str(self.memory.cut), self.weight, self.damping, dtype, str(device))
        if self._effective is None or self._effective[0] != key:
            values, vectors = self.spectrum()
            w = self.memory.weight(torch.float64, values.device)
            if float(values[-1]) > 1e-12 * self.head_scale(self.head()):
                step = self.weight * (damped_inverse(values, vectors, self.damping) @ w)
            else:
                step = torch.zeros_like(w)
            self._effective = (key, step.to(device=device, dtype=dtype))
        return self._effective[1]

    @outside_inference_mode  # a cache: usable, and saved for backward, outside it too
    def _folded_as(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The folded steps A (d, key_dim) in ``dtype`` on ``device``, cast once per change: every
        change assigns a new ``folded`` tensor (never in place), so the cache holds the tensor it
        was cast from and compares identity (learning new pairs does not recast it)."""
        assert self.folded is not None
        cached = self._folded_cast
        if cached is None or cached[0] is not self.folded or cached[1] != (dtype, str(device)):
            cached = (self.folded, (dtype, str(device)), self.folded.to(device=device, dtype=dtype))
            self._folded_cast = cached
        return cached[2]

    def prepare(self) -> None:
        """Compute the damped step now (``FaastModel.compile_fast_weights``), not on the first read."""
        if self.has_pairs:
            self.effective_weight(self.compute_dtype or self.head().weight.dtype, self.head().weight.device)

    def read(self, z: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """z (..., d) → z + A·φ(z) + β·(F̄ + c·L·I)⁻¹·W·φ(z) (A: the folded steps, if any)."""
        dtype = self._dtype_for(z)
        keys = self.keys_of(z).to(dtype)
        out = z
        if self.folded is not None:
            out = out + F.linear(keys, self._folded_as(dtype, z.device)).to(z.dtype)
        if self.has_pairs:
            out = out + F.linear(keys, self.effective_weight(dtype, z.device)).to(z.dtype)
        if out is not z and out.requires_grad and head.weight.requires_grad:
            out.register_hook(_warn_constant_step)  # a backward pass through this read warns
        return out

    # ----------------------------------------------------------------- saving
    def extra_state(self) -> dict[str, torch.Tensor]:
        """``counts`` (V,) int64, ``prob_sum`` (V,) and ``outer_sum`` (d, d) float64; after
        :meth:`fold_step` also ``folded`` (d, key_dim) float64 and ``folded_steps`` (1,) int64."""
        out = {
            **super().extra_state(),
            "prob_sum": self.prob_sum.clone(),
            "outer_sum": self.outer_sum.clone(),
        }
        if self.folded is not None:
            out["folded"] = self.folded.clone()
            out["folded_steps"] = torch.tensor([self.folded_steps], dtype=torch.int64)
        return out

    def read_state_nbytes(self) -> int:
        """Reading needs W, the scalar L, the folded steps (if any) and, with key features, R: the
        sums are kept for forgetting and compiling."""
        itemsize = (self.compute_dtype or torch.float32).itemsize
        keys = 0 if self.key_map is None else self.key_map.nbytes(self.compute_dtype or torch.float32)
        folded = 0 if self.folded is None else self.folded.numel() * itemsize
        return keys + folded + 8

    def load_extra_state(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Restore the counts and the two curvature sums (validated: float64, shape, finite)."""
        super().load_extra_state(tensors, where)
        for name in ("prob_sum", "outer_sum"):
            have, got = getattr(self, name), tensors.get(name)
            if got is None:
                raise ValueError(f"{where}: the curvature sum {name!r} of the correction read-out is missing")
            if tuple(got.shape) != tuple(have.shape) or got.dtype != torch.float64:
                raise ValueError(
                    f"{where}: {name!r} must be float64 of shape {tuple(have.shape)}, got {got.dtype} of "
                    f"shape {tuple(got.shape)}"
                )
            if not bool(torch.isfinite(got).all()):
                raise ValueError(f"{where}: {name!r} holds NaN or Inf (damaged file?)")
        folded, steps = tensors.get("folded"), tensors.get("folded_steps")
        if (folded is None) != (steps is None):
            raise ValueError(f"{where}: the folded correction needs both 'folded' and 'folded_steps'")
        if folded is not None:
            shape = (self.memory.value_dim, self.memory.key_dim)
            if tuple(folded.shape) != shape or folded.dtype != torch.float64:
                raise ValueError(
                    f"{where}: 'folded' must be float64 of shape {shape}, got {folded.dtype} of shape "
                    f"{tuple(folded.shape)}"
                )
            if not bool(torch.isfinite(folded).all()):
                raise ValueError(f"{where}: 'folded' holds NaN or Inf (damaged file?)")
            if steps.dtype != torch.int64 or steps.numel() != 1 or int(steps) < 1:
                raise ValueError(f"{where}: 'folded_steps' must be one int64 >= 1")
        self.prob_sum = tensors["prob_sum"].to(self.prob_sum.device).clone()
        self.outer_sum = tensors["outer_sum"].to(self.outer_sum.device).clone()
        self.folded = None if folded is None else folded.to(self.prob_sum.device).clone()
        self.folded_steps = 0 if steps is None else int(steps)
        self._version += 1
