"""Which read-out classes a :class:`~faast.lm.config.FaastConfig` builds: the middle memories and
the output read-out of each ``output_mix``."""

from __future__ import annotations

from typing import Any

from torch import nn

from faast.lm.correction import CorrectionReadOut
from faast.lm.inject import Layout
from faast.lm.output_readouts import LogitReadOut, OutputReadOut, PaperReadOut, ProbReadOut
from faast.lm.readouts import MiddleMemory, ReadOut

#: The output read-out class of each ``FaastConfig.output_mix``.
OUTPUT_READOUTS: dict[str, type[OutputReadOut]] = {
    "prob": ProbReadOut,
    "logit": LogitReadOut,
    "paper": PaperReadOut,
    "correction": CorrectionReadOut,
}


def build_readouts(config: Any, layout: Layout, model: nn.Module) -> dict[str, ReadOut]:
    """The read-outs of a :class:`~faast.lm.config.FaastConfig`, by name ("block{i}", "output")."""
    dtype = config.torch_dtype
    out: dict[str, ReadOut] = {}
    for i in config.layer_indices(layout.num_layers):
        out[f"block{i}"] = MiddleMemory(
            layout.hidden_size, i, scorer=config.scorer, dropout=config.readout_dropout, dtype=dtype
        )
    if config.output_memory:
        out["output"] = OUTPUT_READOUTS[config.output_mix](
            layout, model, dtype=dtype, **output_key_args(config)
        )
    return out


def output_key_args(config: Any) -> dict[str, int]:
    """The output read-out's key-feature arguments of a :class:`~faast.lm.config.FaastConfig`."""
    return {"key_features": config.output_key_features, "key_seed": config.output_key_seed}
