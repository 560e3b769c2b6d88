"""``FaastConfig``: where the memories go and how they are read, as a JSON-round-tripping dataclass.

In the spirit of PEFT's ``LoraConfig``: the config holds hyper-parameters only, is saved next to
the trained readout (``faast_config.json``) and rebuilds the same layout on any copy of the model.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from faast.io import load_json, save_json

CONFIG_NAME = "faast_config.json"

#: How the output memory's prediction W·h enters the model (see ``FaastConfig.output_mix``).
OUTPUT_MIXES = ("logit", "prob", "paper")

#: Defaults of each way to read the output memory, chosen on held-out text (``python
#: benchmarks/lm_mix.py --threads 2``: tuned on *Northanger Abbey*, reported on *Persuasion*, see
#: docs/lm.md). Rule: the strongest recall of a learned passage among settings that cost at most
#: 5 % perplexity on unseen text, both after learning 49k tokens of other novels and after learning
#: only the preceding passage. It picked the gated "prob" mix ("prob-gated": λ = 0.9, T = 0.25,
#: gate θ = 0.8). Without the gate the rule takes λ = 0.05, T = 0.1; within "logit" β = 0.1.
#: "paper" keeps the paper's r = 0.9 for reproduction (the rule would take r = 0.7; r = 0.9 costs
#: +37 % on the continuation of a learned passage of *Persuasion*).
DEFAULT_OUTPUT_WEIGHTS = {"prob-gated": 0.9, "prob": 0.05, "logit": 0.1, "paper": 0.9}
DEFAULT_OUTPUT_TEMPERATURES = {"prob-gated": 0.25, "prob": 0.1}
DEFAULT_OUTPUT_GATE = 0.8

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass
class FaastConfig:
    """Layout and read-out of the FAAST memories attached to a causal LM.

    num_memories: middle memories, placed before decoder blocks ⌊L/(m+1)·(i+1)⌋, i < m (the paper's
        placement). Each maps the block's input state hₜ → hₜ₊₁ and is read as h + out_proj(W·h)
        with a zero-initialised ``out_proj``: until it is trained (``faast.lm.train``) or loaded
        (``from_pretrained``) a middle memory changes nothing.
    memory_layers: explicit block indices instead of the even placement (overrides num_memories).
    alpha, c: spectral cut τ = c·n^(−α) of every solve (n = number of pairs learned).
    output_memory: add the parameter-free output memory (last hidden state → next token).
    output_mix: how the output memory's prediction enters the model (key: the final hidden state z
        after the final norm, what the LM head reads; value: the LM-head row of the next token):
        ``"prob"`` (default): p = (1−λ)·p_model + λ·softmax(head(W·z)/T), λ = output_weight,
        T = output_temperature. Whatever the memory says, it costs at most −log(1−λ) nats per
        token (5 % perplexity at λ = 0.05). The head is called once on [z; W·z].
        ``"logit"``: the head reads z + β·W·z, i.e. logits + β·head(W·z) (a log-linear mix,
        β = output_weight); stronger recall for large β, but unbounded cost on new text.
        ``"paper"``: the paper's mix before the final norm, h' = (1−r)·h + r·W·h, with key the
        pre-norm state and value the next token's input embedding, r = output_weight (0.9 in
        the paper). Kept for reproduction.
    output_weight: λ, β or r of the mix; ``None`` takes the default of the mix
        (``DEFAULT_OUTPUT_WEIGHTS``; "prob-gated" for the "prob" mix with a gate).
    output_temperature: T of the "prob" mix; ``None`` takes ``DEFAULT_OUTPUT_TEMPERATURES``.
    output_support: tokens the "prob" mix's memory distribution covers: ``"learned"`` (the tokens
        seen as values by ``learn``, as a k-NN LM; |learned| × d per token) or ``"vocab"`` (all,
        a second full LM-head product per token).
    output_gate: the "prob" mix's recall gate: θ in [0, 1), ``None`` (no gate) or ``"auto"``
        (θ = ``DEFAULT_OUTPUT_GATE`` for the "prob" mix, no gate for the others). With a gate, λ is
        scaled per token by clamp((c − θ)/(1 − θ), 0, 1), where c is the largest cosine between
        W·z and the LM-head rows of the support: near 1 where z is a context the memory learned,
        lower on new text, so a large λ recalls learned text at little cost elsewhere.
    scorer: learned sigmoid scorer w = σ(s·[k; v]) scaling the values of middle memories.
    readout_dropout: dropout on W·h before ``out_proj`` while training the readout.
    dtype: dtype the fast weights are compiled to (``None``: the dtype of the hidden states).
        The statistics are float64 whatever this says.
    decoder_layers_path, final_norm_path: dotted attribute paths of the decoder blocks
        (e.g. ``"model.layers"``) and of the final norm, for layouts faast does not recognise.
    base_model_name_or_path: recorded for ``save_pretrained`` (informational).
    """

    num_memories: int = 1
    memory_layers: list[int] | None = None
    alpha: float = 1.0
    c: float = 1.0
    output_memory: bool = True
    output_mix: str = "prob"
    output_weight: float | None = None
    output_temperature: float | None = None
    output_support: str = "learned"
    output_gate: float | str | None = "auto"
    scorer: bool = True
    readout_dropout: float = 0.1
    dtype: str | None = None
    decoder_layers_path: str | None = None
    final_norm_path: str | None = None
    base_model_name_or_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.memory_layers is not None:
            layers = [int(i) for i in self.memory_layers]
            if len(set(layers)) != len(layers) or any(i < 0 for i in layers):
                raise ValueError(f"memory_layers must be distinct non-negative block indices, got {layers}")
            self.memory_layers = sorted(layers)
            self.num_memories = len(layers)
        if int(self.num_memories) < 0:
            raise ValueError(f"num_memories must be >= 0, got {self.num_memories}")
        self.num_memories = int(self.num_memories)
        for name in ("alpha", "c", "output_temperature", "readout_dropout"):
            if getattr(self, name) is None and name == "output_temperature":
                continue
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
            setattr(self, name, value)
        if self.c <= 0 or (self.output_temperature is not None and self.output_temperature <= 0):
            raise ValueError("c and output_temperature must be > 0")
        if not 0.0 <= self.readout_dropout < 1.0:
            raise ValueError(f"readout_dropout must be in [0, 1), got {self.readout_dropout}")
        if self.output_mix not in OUTPUT_MIXES:
            raise ValueError(f"output_mix must be one of {OUTPUT_MIXES}, got {self.output_mix!r}")
        if self.output_weight is not None:
            w = float(self.output_weight)
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"output_weight must be a finite number >= 0, got {self.output_weight}")
            if self.output_mix in ("prob", "paper") and w > 1:
                raise ValueError(
                    f"output_weight of the {self.output_mix!r} mix is a ratio in [0, 1], got {w}"
                )
            self.output_weight = w
        if self.output_support not in ("learned", "vocab"):
            raise ValueError(f"output_support must be 'learned' or 'vocab', got {self.output_support!r}")
        if self.output_gate is not None and self.output_gate != "auto":
            if isinstance(self.output_gate, str):
                raise ValueError(f"output_gate must be a number, None or 'auto', got {self.output_gate!r}")
            gate = float(self.output_gate)
            if not 0.0 <= gate < 1.0:
                raise ValueError(f"output_gate must be a cosine threshold in [0, 1), got {self.output_gate}")
            if self.output_mix != "prob":
                raise ValueError(f"output_gate works with the 'prob' mix, not {self.output_mix!r}")
            self.output_gate = gate
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or None, got {self.dtype!r}")

    # ----------------------------------------------------------------- derived
    @property
    def gate_threshold(self) -> float | None:
        """The effective gate θ of the output memory (None: no gate)."""
        if self.output_gate == "auto":
            return DEFAULT_OUTPUT_GATE if self.output_mix == "prob" else None
        return None if self.output_gate is None else float(self.output_gate)

    @property
    def mix_key(self) -> str:
        """The row of the default tables: the mix, or "prob-gated" for the gated "prob" mix."""
        gated = self.output_mix == "prob" and self.gate_threshold is not None
        return "prob-gated" if gated else self.output_mix

    @property
    def mix_weight(self) -> float:
        """The effective output weight (the default of the mix when ``output_weight`` is None)."""
        return DEFAULT_OUTPUT_WEIGHTS[self.mix_key] if self.output_weight is None else self.output_weight

    @property
    def mix_temperature(self) -> float:
        """The effective T of the "prob" mix (the default when ``output_temperature`` is None)."""
        if self.output_temperature is not None:
            return self.output_temperature
        return DEFAULT_OUTPUT_TEMPERATURES.get(self.mix_key, 1.0)

    @property
    def torch_dtype(self) -> torch.dtype | None:
        return None if self.dtype is None else _DTYPES[self.dtype]

    def layer_indices(self, num_layers: int) -> list[int]:
        """Block indices of the middle memories for a model with ``num_layers`` decoder blocks."""
        if self.memory_layers is not None:
            bad = [i for i in self.memory_layers if i >= num_layers]
            if bad:
                raise ValueError(f"memory_layers {bad} do not exist: the model has {num_layers} blocks")
            return list(self.memory_layers)
        if self.num_memories > num_layers:
            raise ValueError(f"num_memories={self.num_memories} exceeds the model's {num_layers} blocks")
        stride = num_layers / (self.num_memories + 1)
        return [math.floor(stride * (i + 1)) for i in range(self.num_memories)]

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaastConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"faast_version", "format"})
        if unknown:
            raise ValueError(f"unknown FaastConfig fields {unknown}; was it written by a newer faast?")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        from faast import __version__

        return save_json(
            path, {"format": "faast.lm.FaastConfig", "faast_version": __version__, **self.to_dict()}
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> FaastConfig:
        data = load_json(path)
        if not isinstance(data, dict) or data.get("format") != "faast.lm.FaastConfig":
            raise ValueError(f"{path} is not a FaastConfig JSON file")
        return cls.from_dict(data)

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        return self.to_json(Path(directory) / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> FaastConfig:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"no {CONFIG_NAME} in {directory}; is it a folder written by save_pretrained?"
            )
        return cls.from_json(path)
