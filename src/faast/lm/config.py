"""The two configurations of FAAST memories on a causal LM, in the way PEFT separates them.

* :class:`FaastConfig` — the **layout**: which memories exist, where they attach and what they key
  on. It round-trips to JSON, is saved next to a trained readout (``faast_config.json``) and rebuilds
  the same memories on any copy of the model. Fast weights learned with one layout load only into
  the same layout.
* :class:`ReadConfig` — the **read-time knobs**: the spectral cut of every solve and how the output
  memory is mixed in (weight, temperature, gate, support). They change nothing that was learned, so
  they can be set at any time (``FaastModel.set_read``) and are not part of the layout; a fast-weight
  task stores the knobs it was chosen with.

Each read-out class (:mod:`faast.lm.readouts`) owns its defaults; a ``None`` knob takes them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from faast._checks import finite_number
from faast.io import load_json, save_json
from faast.solver import Cut

CONFIG_NAME = "faast_config.json"

#: How the output memory's prediction W·z enters the model (see ``FaastConfig.output_mix``).
OUTPUT_MIXES = ("prob", "logit", "paper", "correction")
SUPPORTS = ("learned", "vocab")

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
#: Fields FaastConfig took before the read-time knobs moved to ReadConfig → the ReadConfig field.
_LEGACY_READ_FIELDS = {
    "output_weight": "weight",
    "output_temperature": "temperature",
    "output_gate": "gate",
    "output_support": "support",
}


def _whole_number(value: Any, name: str) -> int:
    """``value`` as an int if it is a whole number ≥ 0 (an int, or a float such as 2.0 that a
    JSON file may hold; never a bool or a string); else a ValueError naming ``name``."""
    if (
        isinstance(value, bool | str)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value != int(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


@dataclass
class ReadConfig:
    """How the learned statistics are read (runtime knobs; ``None``: the read-out's default).

    cut: the spectral cut of every memory's solve: a :class:`faast.solver.Cut` or anything
        ``Cut.parse`` reads (``"alpha=0.8"``, ``"gcv"``, ``0.01``, ``"ridge=1e-2"``, ``"prior=1024"``);
        ``None`` is each read-out's default: the paper's τ = n⁻¹ (``Cut.power()``), except the
        "correction" mix's ridge worth twice its key dimension in pseudo-pairs
        (:meth:`faast.lm.correction.CorrectionReadOut.default_cut`).
    weight: the output memory's mix weight: λ of the "prob" mix, β of "logit", r of "paper", the
        step β of "correction".
    temperature: T of the "prob" mix's memory distribution.
    damping: c of the "correction" mix's damped step (F̄ + c·L·I)⁻¹, relative to the curvature's
        largest eigenvalue L (:mod:`faast.lm.correction`).
    gate: the "prob" mix's recall gate θ in [0, 1); ``None`` reads without a gate; ``"auto"`` takes
        the read-out's default (gated for "prob").
    support: tokens the "prob" mix's memory distribution covers: ``"learned"`` (the tokens seen as
        values by ``learn``, as a k-NN LM) or ``"vocab"`` (the whole vocabulary).
    """

    cut: Cut | str | float | None = None
    weight: float | None = None
    temperature: float | None = None
    gate: float | str | None = "auto"
    support: str = "learned"
    damping: float | None = None

    def __post_init__(self) -> None:
        self.cut = None if self.cut is None else Cut.parse(self.cut)
        if self.weight is not None:
            w = finite_number(self.weight, "weight")
            if w < 0:
                raise ValueError(f"weight must be >= 0, got {w}")
            self.weight = w
        if self.temperature is not None:
            t = finite_number(self.temperature, "temperature")
            if t <= 0:
                raise ValueError(f"temperature must be > 0, got {t}")
            self.temperature = t
        if self.damping is not None:
            c = finite_number(self.damping, "damping")
            if c <= 0:
                raise ValueError(f"damping must be > 0, got {c}")
            self.damping = c
        if self.gate is not None and self.gate != "auto":
            if isinstance(self.gate, str):
                raise ValueError(f"gate must be a number, None or 'auto', got {self.gate!r}")
            gate = finite_number(self.gate, "gate")
            if not 0.0 <= gate < 1.0:
                raise ValueError(f"gate must be a cosine threshold in [0, 1), got {self.gate}")
            self.gate = gate
        if self.support not in SUPPORTS:
            raise ValueError(f"support must be one of {SUPPORTS}, got {self.support!r}")

    def replace(self, **changes: Any) -> ReadConfig:
        """A copy with ``changes`` applied (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(
                f"unknown read knob(s) {sorted(unknown)}; known: cut, weight, temperature, damping, gate, "
                "support"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cut"] = None if self.cut is None else str(self.cut)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadConfig:
        if not isinstance(data, dict):
            raise ValueError(f"a read config is a dict, got {type(data).__name__}")
        return cls().replace(**data)


@dataclass
class FaastConfig:
    """Layout of the FAAST memories attached to a causal LM.

    num_memories: middle memories, placed before decoder blocks ⌊L/(m+1)·(i+1)⌋, i < m (the paper's
        placement). Each maps the block's input state hₜ → hₜ₊₁ and is read as h + out_proj(W·h)
        with a zero-initialised ``out_proj``: until it is trained (``faast.lm.train``) or loaded
        (``from_pretrained``) a middle memory changes nothing.
    memory_layers: explicit block indices instead of the even placement (overrides num_memories).
    output_memory: add the parameter-free output memory (next token from the final state).
    output_mix: which output read-out (:mod:`faast.lm.readouts`): ``"prob"`` (default; key: the LM
        head's input z, value: the next token's LM-head row, read as a mixture of distributions
        with a recall gate), ``"logit"`` (same key and value, read as logits + β·head(W·z)) or
        ``"paper"`` (the paper's mix before the final norm; value: the next token's input
        embedding) or ``"correction"`` (key z, value the loss gradient −∂CE/∂z, read as
        head(z + (β/L)·W·z): a closed-form step on the next-token loss that makes unseen text of
        a learned domain, or a learned task's answers, more likely; :mod:`faast.lm.correction`).
        "prob" and "logit" learn the same statistics, so either reads the other's.
    output_key_features: D random ReLU features appended to the output memory's unit-normalised
        key (:class:`faast.lm.key_features.RandomFeatureKeys`); 0 (default) keys on the state
        itself. The memory then holds up to d + D pairs instead of d (a passage longer than the
        model's width is recalled verbatim) at (d + D)² float64 statistics.
    output_key_seed: seed of those features' random matrix.
    scorer: learned sigmoid scorer w = σ(s·[k; v]) scaling the values of middle memories.
    readout_dropout: dropout on W·h before ``out_proj`` while training the readout.
    dtype: dtype the fast weights are compiled to (``None``: the dtype of the hidden states).
        The statistics are float64 whatever this says.
    decoder_layers_path, final_norm_path: dotted attribute paths of the decoder blocks
        (e.g. ``"model.layers"``) and of the final norm, for layouts faast does not recognise.
    base_model_name_or_path: recorded for ``save_pretrained`` (informational).

    The read-time knobs (cut, weight, temperature, gate, support) live in :class:`ReadConfig`.
    The older fields ``alpha``, ``c``, ``output_weight``, ``output_temperature``, ``output_gate``
    and ``output_support`` are still accepted (with a ``DeprecationWarning``) and become the
    model's initial read config; they are not saved with the layout.
    """

    num_memories: int = 1
    memory_layers: list[int] | None = None
    output_memory: bool = True
    output_mix: str = "prob"
    output_key_features: int = 0
    output_key_seed: int = 0
    scorer: bool = True
    readout_dropout: float = 0.1
    dtype: str | None = None
    decoder_layers_path: str | None = None
    final_norm_path: str | None = None
    base_model_name_or_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.memory_layers is not None:
            layers = [_whole_number(i, "memory_layers") for i in self.memory_layers]
            if len(set(layers)) != len(layers):
                raise ValueError(f"memory_layers must be distinct non-negative block indices, got {layers}")
            self.memory_layers = sorted(layers)
            self.num_memories = len(layers)
        for name in ("num_memories", "output_key_features", "output_key_seed"):
            setattr(self, name, _whole_number(getattr(self, name), name))
        self.readout_dropout = finite_number(self.readout_dropout, "readout_dropout")
        if not 0.0 <= self.readout_dropout < 1.0:
            raise ValueError(f"readout_dropout must be in [0, 1), got {self.readout_dropout}")
        if self.output_mix not in OUTPUT_MIXES:
            raise ValueError(f"output_mix must be one of {OUTPUT_MIXES}, got {self.output_mix!r}")
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or None, got {self.dtype!r}")
        if not hasattr(self, "_legacy_read"):
            self._legacy_read: dict[str, Any] = {}

    # ----------------------------------------------------------------- derived
    @property
    def torch_dtype(self) -> torch.dtype | None:
        return None if self.dtype is None else _DTYPES[self.dtype]

    @property
    def legacy_read(self) -> dict[str, Any]:
        """Read knobs given through the deprecated fields (ReadConfig field → value)."""
        return dict(self._legacy_read)

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
        """Rebuild a config from :meth:`to_dict` output (older files' read fields are accepted)."""
        if not isinstance(data, dict):
            raise ValueError(f"a FaastConfig is a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} | set(_LEGACY_READ_FIELDS) | {"alpha", "c"}
        unknown = sorted(set(data) - known - {"faast_version", "format"})
        if unknown:
            raise ValueError(f"unknown FaastConfig fields {unknown}; was it written by a newer faast?")
        # files written before ReadConfig: not the reader's fault, so no DeprecationWarning (said
        # by a flag: catch_warnings changes the process's filters, which other threads share)
        return cls(**{k: v for k, v in data.items() if k in known}, _from_file=True)

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


_UNSET: Any = object()
_dataclass_init = FaastConfig.__init__


def _init_with_legacy_fields(
    self: FaastConfig,
    *args: Any,
    alpha: Any = _UNSET,
    c: Any = _UNSET,
    output_weight: Any = _UNSET,
    output_temperature: Any = _UNSET,
    output_gate: Any = _UNSET,
    output_support: Any = _UNSET,
    _from_file: bool = False,
    **kwargs: Any,
) -> None:
    legacy = {
        "output_weight": output_weight,
        "output_temperature": output_temperature,
        "output_gate": output_gate,
        "output_support": output_support,
    }
    read = {_LEGACY_READ_FIELDS[k]: v for k, v in legacy.items() if v is not _UNSET}
    if alpha is not _UNSET or c is not _UNSET:
        a = 1.0 if alpha is _UNSET or alpha is None else alpha
        read["cut"] = Cut.power(a, 1.0 if c is _UNSET or c is None else c)
    if read and not _from_file:
        names = [k for k, v in {**legacy, "alpha": alpha, "c": c}.items() if v is not _UNSET]
        warnings.warn(
            f"FaastConfig({', '.join(names)}) is deprecated: these are read-time knobs; pass "
            "ReadConfig(cut=..., weight=..., temperature=..., gate=..., support=...) to get_faast_model "
            "or call FaastModel.set_read(...)",
            DeprecationWarning,
            stacklevel=2,
        )
    if read:
        ReadConfig().replace(**read)  # validate now, where the value was written
    self._legacy_read = read
    _dataclass_init(self, *args, **kwargs)


_init_with_legacy_fields.__doc__ = _dataclass_init.__doc__
FaastConfig.__init__ = _init_with_legacy_fields  # type: ignore[method-assign]
