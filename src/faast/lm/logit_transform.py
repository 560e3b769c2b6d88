"""What a causal LM does to its LM head's output before returning it as logits.

Most models return the head's output as it is. A few transform it first, and their probabilities
are those of the transformed logits:

* Cohere and Cohere 2 multiply by ``config.logit_scale`` (0.0625 in Command-R);
* Granite models divide by ``config.logits_scaling`` (8 or 16 in Granite 3; HyperCLOVA X multiplies);
* Falcon-H1 multiplies by ``config.lm_head_multiplier``;
* Gemma 2 (and any model with ``config.final_logit_softcapping``) caps them softly:
  c·tanh(x / c), c = 30 in Gemma 2; RecurrentGemma likewise with ``config.logits_soft_cap``.

faast computes logits from head inputs itself (label scores, read-out choices, the "prob" mix), so
it applies the same transform: :func:`logit_transform` reads it from the config, and
:meth:`LogitTransform.check` compares it with the model's own logits on a few tokens, so that a
model whose output differs in another way is refused by name instead of scored with the wrong
probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class LogitTransform:
    """logits = softcap(scale · head output): ``scale`` a positive number, ``softcap`` c > 0 for
    c·tanh(x / c), or None."""

    scale: float = 1.0
    softcap: float | None = None

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.softcap is None

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        """The model's logits (..., V) for the head's output ``raw`` (..., V) (``raw`` itself if identity)."""
        out = raw if self.scale == 1.0 else raw * self.scale
        if self.softcap is not None:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out

    def head_output_for(self, logits: torch.Tensor) -> torch.Tensor:
        """A head output (..., V) whose transformed logits have the log-softmax of ``logits``
        (..., V): what a hook on the LM head returns so the model's own transform, applied after
        it, yields a distribution faast computed. With a soft cap, ``logits`` are first shifted
        so their largest entry sits just below c and clamped above −c: entries more than 2c below
        the largest (probability below e^(−2c) of the top one's, e^(−60) for Gemma 2) come out at
        that bound."""
        out = logits
        if self.softcap is not None:
            cap = self.softcap
            top = out.amax(dim=-1, keepdim=True)
            edge = cap * (1.0 - 1e-4)
            shifted = (out - top + edge).clamp(min=-edge)
            out = torch.atanh(shifted / cap) * cap
        return out if self.scale == 1.0 else out / self.scale

    def check(self, returned: torch.Tensor, head_output: torch.Tensor, kind: str) -> None:
        """Refuse (``ValueError``) a model (``kind``: its type, for the message) whose logits
        ``returned`` (..., V) differ from this transform of its LM head's output ``head_output``
        (..., V) for the same tokens beyond float rounding."""
        if not bool(torch.isfinite(returned).all()):  # the model itself, not a step faast misses
            dtype = str(returned.dtype).removeprefix("torch.")
            raise ValueError(
                f"the {kind} model's own logits are NaN or infinite in {dtype} "
                "(its activations overflow that dtype; Gemma-3 does in float16): run it in bfloat16 or "
                "float32 (--dtype bfloat16)"
            )
        returned, ours = returned.float(), self(head_output.float())
        worst = float((returned - ours).abs().max())
        if not math.isfinite(worst) or worst > 1e-3 + 1e-2 * float(returned.abs().max()):
            raw = head_output.float()
            fit = float((returned * raw).sum() / (raw * raw).sum().clamp_min(1e-30))
            raise ValueError(
                f"the {kind} model's logits differ (by up to {worst:.3g}) from its LM head applied to the "
                f"states faast reads (its last block's output through the final norm, then {self}; "
                f"measured, its logits are about {fit:.4g} × the head's output): a "
                "step between them faast does not reproduce (e.g. a head with layers of its own before "
                "its output projection, as BERT's), so its label scores and read-outs would not be this "
                "model's probabilities; use a causal LM whose head is one linear layer"
            )


def logit_transform(config: Any) -> LogitTransform:
    """The transform a model with (text) ``config`` applies to its LM head's output."""
    scale = 1.0
    logit_scale = _number(config, "logit_scale")  # Cohere
    if logit_scale is not None:
        scale *= logit_scale
    logits_scaling = _number(config, "logits_scaling")  # Granite divides, HyperCLOVA X multiplies
    if logits_scaling and getattr(config, "model_type", None) == "hyperclovax":
        scale *= logits_scaling
    elif logits_scaling:
        scale /= logits_scaling
    multiplier = _number(config, "lm_head_multiplier")  # Falcon-H1
    if multiplier is not None:
        scale *= multiplier
    cap = _number(config, "final_logit_softcapping")  # Gemma 2
    cap = _number(config, "logits_soft_cap") if cap is None else cap  # RecurrentGemma
    return LogitTransform(scale, cap if cap is not None and cap > 0 else None)


def _number(config: Any, name: str) -> float | None:
    """``config.name`` as a float when it is a number (not a bool), else None."""
    value = getattr(config, name, None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
