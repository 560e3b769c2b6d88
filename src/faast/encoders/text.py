"""A frozen sentence encoder: mean-pooled, L2-normalised token states of a BERT-style model.

This is the sentence-transformers recipe of all-MiniLM-L6-v2 (Transformer → mean pooling over
the attention mask → L2 normalisation, inputs truncated to 256 tokens), written with plain
``transformers.AutoModel``/``AutoTokenizer`` so that no sentence-transformers install is needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

#: Short names of the offline text encoders (assets) accepted by SentenceEncoder.
OFFLINE_TEXT_ENCODERS = ("minilm",)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, D) token states over the tokens where the (B, T) attention mask is 1 → (B, D)."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def _max_length(folder: Path, tokenizer) -> int:
    """``max_seq_length`` of a sentence-transformers folder, else the tokenizer's limit (≤ 512)."""
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
        if value:
            return int(value)
    return int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512))


class SentenceEncoder:
    """Frozen sentence encoder (eval mode, no gradients).

    path_or_name: ``"minilm"`` (the offline all-MiniLM-L6-v2 asset, fetched first when missing
    and ``fetch``) or a local ``from_pretrained`` folder of a BERT-style encoder. device: where
    the model runs; ``encode`` always returns CPU tensors. batch_size: sentences per forward pass.
    max_length: tokens kept per sentence (default: the folder's ``max_seq_length``, 256 for
    MiniLM; longer inputs are truncated). Attributes: ``dim`` (384 for MiniLM), ``max_length``.
    """

    def __init__(
        self,
        path_or_name: str | os.PathLike[str] = "minilm",
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
        cache: str | None = None,
        fetch: bool = True,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if str(path_or_name) == "minilm":
            from faast.assets.text import minilm_dir

            folder = minilm_dir(cache, fetch=fetch)
        else:
            folder = Path(path_or_name)
            if not folder.is_dir():
                known = ", ".join(OFFLINE_TEXT_ENCODERS)
                raise FileNotFoundError(
                    f"no encoder folder {folder}; use {known} or a from_pretrained folder"
                )
        self.folder = folder
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).to(self.device).eval()
        self.model.requires_grad_(False)
        self.max_length = int(max_length) if max_length is not None else _max_length(folder, self.tokenizer)
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], *, progress: bool = True) -> torch.Tensor:
        """Unit-norm embeddings, float32 (n, dim) on CPU, row i for ``sentences[i]``.

        Sentences are batched in order of length (less padding; the mean over the attention mask
        does not depend on padding) and the rows are put back in input order.
        """
        if isinstance(sentences, str):
            raise TypeError("encode takes a list of sentences, not one string")
        sentences = list(sentences)
        out = torch.empty(len(sentences), self.dim, dtype=torch.float32)
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]), reverse=True)
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc="encode", unit="batch", disable=not progress or len(starts) < 2):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [sentences[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"])
            out[rows] = F.normalize(pooled.float(), dim=-1).cpu()
        return out
