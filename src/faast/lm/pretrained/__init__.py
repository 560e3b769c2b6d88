"""Readouts that ship with faast, loadable by name wherever a readout folder is accepted.

Each is a folder written by :meth:`faast.lm.FaastModel.save_pretrained` (``faast_config.json``,
``faast_readout.safetensors``) with a model card (``README.md``: the base model, data, steps, time,
hardware, results and the command that trained it):

* ``smollm2-general``: one middle memory (before block 15 of 30) of SmolLM2-135M-Instruct, its
  readout and scorer trained on general, non-Austen text (``benchmarks/lm_general_readout.py``).

    FaastModel.from_pretrained(model, "smollm2-general")
    faast lm learn --model smollm2 --adapter smollm2-general ...
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).parent


def bundled() -> dict[str, Path]:
    """Name → folder of every readout shipped with faast."""
    return {p.name: p for p in sorted(HERE.iterdir()) if (p / "faast_config.json").is_file()}


def readout_folder(name_or_path: str | os.PathLike[str]) -> Path:
    """The folder of a readout: an existing path, or the name of a bundled readout."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = bundled()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(shipped) or "none"
    raise FileNotFoundError(
        f"no readout folder {str(name_or_path)!r}: not a directory, and not a bundled readout ({names})"
    )
