"""A frozen sentence encoder: pooled token states of a BERT-style model.

It follows the folder's sentence-transformers recipe (:mod:`faast.encoders.pooling`): for
all-MiniLM-L6-v2, Transformer → mean pooling over the attention mask → L2 normalisation, inputs
truncated to 256 tokens; written with plain ``transformers.AutoModel``/``AutoTokenizer`` so that no
sentence-transformers install is needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from faast.encoders.pooling import pool, read_recipe

#: Short names of the offline text encoders (assets) accepted by SentenceEncoder.
OFFLINE_TEXT_ENCODERS = ("minilm",)
#: What a Hugging Face Hub model id looks like (``owner/name``).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: The files of a Hub model a sentence encoder reads (no ONNX or other exports).
HUB_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "pytorch_model.bin")
#: Files of a ``from_pretrained`` folder that change the features: the weights, the model's
#: configuration and the tokenizer's (their contents key the feature cache).
IDENTITY_PATTERNS = (
    "*.safetensors",
    "pytorch_model*.bin",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
    "sentence_bert_config.json",
    "modules.json",
    "*/config.json",
)


def length_order(sentences: Sequence[str]) -> list[int]:
    """Indices of ``sentences`` from the longest to the shortest (ties in input order): the order
    :meth:`SentenceEncoder.encode` batches them in. A list already in this order keeps it."""
    return sorted(range(len(sentences)), key=lambda i: len(sentences[i]), reverse=True)


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
    and ``fetch``), a local ``from_pretrained`` folder of a BERT-style encoder (or of any model
    whose ``AutoModel`` returns token states; a tokenizer without a padding token pads with its
    end-of-text token, else its unknown one, which the pooling leaves out), or such a model's id
    on the Hugging Face Hub (``"BAAI/bge-small-en-v1.5"``, downloaded by :func:`hub_snapshot`).
    device: where the model runs; ``encode`` always returns CPU tensors. batch_size: sentences per
    forward pass. max_length: tokens kept per sentence (default: the folder's ``max_seq_length``,
    256 for MiniLM; longer inputs are truncated). Attributes: ``name`` (``"minilm"``, the folder's
    own name, or the Hub id), ``dim`` (384 for MiniLM), ``max_length``, ``recipe`` (the pooling:
    :func:`~faast.encoders.pooling.read_recipe`); :meth:`identity` keys the feature cache.
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

            folder, self.name = minilm_dir(cache, fetch=fetch), "minilm"
        elif Path(path_or_name).is_dir():
            folder = Path(path_or_name)
            self.name = folder.resolve().name
        else:  # a Hugging Face Hub model, named by its id
            folder, self.name = hub_snapshot(str(path_or_name)), str(path_or_name)
        self.folder = folder
        self.recipe = read_recipe(folder)  # a pipeline it cannot follow is refused before any loading
        self._files_sha256 = _files_sha256(folder)  # of the files read here, not as they may change
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        if self.tokenizer.pad_token is None:  # e.g. GPT-2-style tokenizers: padding is masked out of
            # the mean, so any token pads; the end-of-text token, else the unknown one
            fill = self.tokenizer.eos_token or self.tokenizer.unk_token
            if fill is None:
                raise ValueError(
                    f"the tokenizer of {folder} has no padding, end-of-text or unknown token to pad "
                    "sentences of unequal length with"
                )
            self.tokenizer.pad_token = fill
        # padding after the text: a left-padded sentence would start at another position, which
        # changes its states in a model of absolute positions (GPT-2)
        self.tokenizer.padding_side = "right"
        self.model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).to(self.device).eval()
        self.model.requires_grad_(False)
        self.max_length = int(max_length) if max_length is not None else _max_length(folder, self.tokenizer)
        self.dim = int(self.model.config.hidden_size)

    def identity(self) -> dict[str, str]:
        """String fields that determine the features (stored with cached features and with a
        classifier fitted on them): the name, one SHA-256 over the folder's weights, configuration
        and tokenizer files (:data:`IDENTITY_PATTERNS`, as they were when loaded), ``max_length``,
        the pooling and the dimension."""
        return {
            "encoder": self.name,
            "weights_sha256": self._files_sha256,
            "max_length": str(self.max_length),
            "pooling": self.recipe.describe(),
            "feature_dim": str(self.dim),
        }

    @torch.no_grad()
    def encode(self, sentences: Sequence[str], *, progress: bool = True) -> torch.Tensor:
        """Embeddings, float32 (n, dim) on CPU, row i for ``sentences[i]``, pooled by the folder's
        recipe (:attr:`recipe`; unit norm unless it has no ``Normalize``).

        Sentences are batched in order of length (less padding; the pooling leaves padding out)
        and the rows are put back in input order.
        """
        if isinstance(sentences, str):
            raise TypeError("encode takes a list of sentences, not one string")
        sentences = list(sentences)
        out = torch.empty(len(sentences), self.dim, dtype=torch.float32)
        order = length_order(sentences)
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
            out[rows] = pool(hidden.float(), batch["attention_mask"], self.recipe).cpu()
        return out


def hub_snapshot(model_id: str) -> Path:
    """The local folder of the Hugging Face Hub model ``model_id`` (``owner/name``), downloaded
    into the Hub cache when not there yet (:data:`HUB_FILES` only; offline, from the cache alone);
    a clear error naming both readings of ``model_id`` when it is neither a folder nor a model
    that can be had."""
    known = ", ".join(OFFLINE_TEXT_ENCODERS)
    if not HUB_ID.match(model_id):
        raise FileNotFoundError(
            f"no encoder folder {model_id}; use {known}, a from_pretrained folder or a Hugging Face "
            "Hub model id (owner/name)"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, allow_patterns=list(HUB_FILES)))
    except Exception as exc:  # no network, no such model, a gated model without a token, ...
        raise FileNotFoundError(
            f"no encoder folder {model_id}, and no Hugging Face Hub model {model_id} could be had "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); use "
            f"{known}, a from_pretrained folder, or the Hub when it can be reached"
        ) from None


def _files_sha256(folder: Path) -> str:
    """One hex SHA-256 over the path (relative to ``folder``) and contents of every file matching
    :data:`IDENTITY_PATTERNS`, in path order."""
    from faast.assets.core import sha256_file

    names = sorted(
        {
            p.relative_to(folder).as_posix()
            for pattern in IDENTITY_PATTERNS
            for p in folder.glob(pattern)
            if p.is_file()
        }
    )
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{sha256_file(folder / name)}\n".encode())
    return digest.hexdigest()
