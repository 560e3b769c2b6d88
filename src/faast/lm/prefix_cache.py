"""The KV cache of a token prefix shared by many sequences, computed once and copied per batch.

In-context learning (:class:`faast.lm.icl.InContextModel`) reads its demonstrations through one, and
so does a task with lead demonstrations (:class:`faast.lm.task.TaskModel`): the prefix is run once,
and each batch of continuations starts from a copy of its cache (the model appends to the copy), with
position ids that continue after the prefix.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch


def parameter_names(fn: Any) -> frozenset[str]:
    """The keyword parameters of ``fn`` (a module's ``forward``)."""
    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return frozenset()


def cache_keyword(forward_params: frozenset[str]) -> str:
    """The keyword a model takes a KV cache under: ``cache`` in recent transformers (which deprecates
    ``past_key_values``), ``past_key_values`` before."""
    return "cache" if "cache" in forward_params else "past_key_values"


class PrefixCache:
    """The KV cache of ``ids`` (a list of token ids) under ``model``, made on first use.

    model: a Hugging Face causal LM or its backbone (anything taking ``input_ids`` and
    ``use_cache=True`` and returning the cache); extra: keyword arguments for that one forward pass
    (e.g. ``logits_to_keep=1``: the prefix's logits are never read).
    """

    def __init__(self, model: Any, ids: Sequence[int], *, extra: dict[str, Any] | None = None) -> None:
        self.model = model
        self.ids = [int(i) for i in ids]
        self.extra = dict(extra or {})
        self.keyword = cache_keyword(parameter_names(model.forward))
        self._cache: Any = None
        self._made = False  # whether the forward pass ran (its cache may be None)
        #: (d,): the last hidden state at the prefix's last token when ``model`` returns one (a
        #: backbone's ``last_hidden_state``), set with the cache; None otherwise
        self.last_hidden: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def cache(self) -> Any:
        """The prefix's cache (None for an empty prefix, or a model that returns none), computed on
        the first call."""
        if not self._made and self.ids:
            ids = torch.tensor([self.ids], device=self.device)
            out = self.model(input_ids=ids, use_cache=True, **self.extra)
            self._cache, self._made = returned_cache(out), True
            hidden = getattr(out, "last_hidden_state", None)
            self.last_hidden = None if hidden is None else hidden[0, -1].detach()
        return self._cache

    def nbytes(self) -> int:
        """Bytes of the cache's keys and values."""
        cache = self.cache()
        total = 0
        for layer in getattr(cache, "layers", []) if cache is not None else []:
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total

    def slides(self) -> bool:
        """Whether a layer of the cache keeps a sliding window (Gemma 2/3, Mistral's window): rows
        left-padded after the prefix then spend window slots on their pads, and a padded row sees
        less of the prefix than it would alone."""
        cache = self.cache()
        return cache is not None and any(
            getattr(layer, "sliding_window", None) for layer in getattr(cache, "layers", [])
        )

    def batched(self, rows: int) -> dict[str, Any]:
        """The cache for ``rows`` sequences, as the keyword argument the model takes (``{}`` for an
        empty prefix); a copy, since the model appends to it."""
        cache = self.cache()
        if cache is None:
            return {}
        return {self.keyword: repeated_cache(cache, rows)}


def returned_cache(output: Any) -> Any:
    """The KV cache a model's forward pass returned: ``cache`` in recent transformers,
    ``past_key_values`` before; None for a model that returns neither (OpenAI GPT keeps no cache,
    RecurrentGemma keeps it inside its modules, RWKV returns a ``state``): no attention cache to
    continue, so its rows run whole (:func:`extends_by_attention` of None is False)."""
    cache = getattr(output, "cache", None)
    return getattr(output, "past_key_values", None) if cache is None else cache


def extends_by_attention(cache: Any) -> bool:
    """Whether ``cache`` (a model's returned cache) holds attention keys and values only, so that
    rows can continue a copy of it with an attention mask over the cached tokens and their own.
    False where a layer keeps a recurrent or convolution state instead (state-space and linear-
    attention layers: Mamba, and the hybrids LFM2, Jamba, Bamba, Qwen3-Next): such a state is
    the whole past folded in, it takes no mask over the cached tokens and cannot be copied per
    row by every version of transformers, so their rows run whole instead."""
    if cache is None:
        return False
    states = ("recurrent_states", "conv_states", "ssm_states")
    if any(hasattr(cache, name) for name in states):  # older transformers' MambaCache
        return False
    return not any(any(hasattr(layer, name) for name in states) for layer in getattr(cache, "layers", []))


@torch.no_grad()
def model_extends_by_attention(model: Any) -> bool:
    """:func:`extends_by_attention` of the cache ``model`` (a causal LM or its backbone) returns
    for one token: one forward pass of one token."""
    device = next(model.parameters()).device
    out = model(input_ids=torch.zeros(1, 1, dtype=torch.long, device=device), use_cache=True)
    return extends_by_attention(returned_cache(out))


def repeated_cache(cache: Any, rows: int) -> Any:
    """A copy of a model's KV cache (of one sequence) for ``rows`` sequences that continue it (the
    model appends to the copy)."""
    cache = copy.deepcopy(cache)
    if rows > 1:
        cache.batch_repeat_interleave(rows)
    return cache


def distinct_continuations(
    continuations: Sequence[Sequence[int]],
) -> tuple[list[list[int]], list[int]]:
    """The rows to run after a shared prefix so that every one of ``continuations`` (token ids;
    non-empty) finds its states: each distinct continuation once, longest first, and none that
    begins a longer one (a causal model's states over it are the longer one's first). Returns
    (rows, for each continuation the index of the row whose first states are its own)."""
    rows: list[tuple[int, ...]] = []
    keys = [tuple(c) for c in continuations]
    for c in sorted(dict.fromkeys(keys), key=len, reverse=True):
        if not any(row[: len(c)] == c for row in rows):
            rows.append(c)
    owner = {c: next(i for i, row in enumerate(rows) if row[: len(c)] == c) for c in set(keys)}
    return [list(row) for row in rows], [owner[c] for c in keys]
