"""In-context learning, the baseline test-time learning is measured against: demonstrations in the prompt.

:class:`InContextModel` scores labels and generates answers for inputs with the same
:class:`~faast.lm.prompts.PromptCodec` a :class:`~faast.lm.task.TaskModel` uses, so both read the
examples the same way. The demonstrations are one shared list: the start tokens and the
demonstrations (as many whole ones as fit before the longest query, never truncating a query) form a
prefix that is run once; its KV cache is copied for each query. That is the cheapest way to run
in-context learning, and the cost reported for it (time per example, bytes of the cache) is what a
deployment would pay.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from faast.lm.decoding import decoding_kwargs
from faast.lm.prompts import PromptCodec


class InContextModel:
    """A plain causal LM reading ``demonstrations`` (input, output) before every query.

    Parameters
    ----------
    model : transformers causal LM (not modified)
    codec : PromptCodec
        The tokenizer and template of the task.
    demonstrations : sequence of (input, output)
        In order; the prefix keeps as many whole ones as fit (``num_used``).
    reserve : int
        Tokens kept free after the prefix for the longest query and its answer.
    """

    def __init__(
        self,
        model: Any,
        codec: PromptCodec,
        demonstrations: Sequence[tuple[str, str]],
        *,
        reserve: int,
    ) -> None:
        self.model = model
        self.codec = codec
        if reserve >= codec.context:
            raise ValueError(f"reserve={reserve} leaves no room in the context of {codec.context} tokens")
        self.prefix, self.num_used = codec.demonstrations(list(demonstrations), codec.context - reserve)
        self._cache: Any = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def _cache_keyword(self) -> str:
        """The keyword the model takes a KV cache under: ``cache`` in recent transformers (which
        deprecates ``past_key_values``), ``past_key_values`` before."""
        try:
            params = inspect.signature(self.model.forward).parameters
        except (TypeError, ValueError):
            return "past_key_values"
        return "cache" if "cache" in params else "past_key_values"

    @torch.no_grad()
    def _prefix_cache(self) -> Any:
        if self._cache is None and len(self.prefix) > 0:
            ids = torch.tensor([self.prefix], device=self.device)
            out = self.model(input_ids=ids, use_cache=True)
            cache = getattr(out, "cache", None)
            self._cache = out.past_key_values if cache is None else cache
        return self._cache

    def cache_nbytes(self) -> int:
        """Bytes of the demonstrations' KV cache (what in-context learning holds at inference)."""
        cache = self._prefix_cache()
        if cache is None:
            return 0
        total = 0
        for layer in getattr(cache, "layers", []):
            for name in ("keys", "values"):
                t = getattr(layer, name, None)
                if isinstance(t, torch.Tensor):
                    total += t.numel() * t.element_size()
        return total

    @torch.no_grad()
    def _logits(self, continuation: list[int]) -> torch.Tensor:
        """(len(continuation), V) logits of the tokens after the prefix."""
        ids = torch.tensor([continuation], device=self.device)
        cache = self._prefix_cache()
        if cache is None:  # the prefix is empty
            return self.model(input_ids=ids, use_cache=False).logits[0]
        n = len(self.prefix)
        mask = torch.ones(1, n + len(continuation), dtype=torch.long, device=self.device)
        cached = {self._cache_keyword: copy.deepcopy(cache)}
        out = self.model(input_ids=ids, attention_mask=mask, use_cache=True, **cached)
        return out.logits[0]

    def label_scores(
        self, inputs: Sequence[str], labels: Sequence[str], *, progress: bool = False
    ) -> torch.Tensor:
        """(n, L) float64 log-probability of each label's full token sequence after each query."""
        label_ids = [self.codec.label_ids(label) for label in labels]
        rows = []
        for text in tqdm(inputs, desc="in-context scoring", disable=not progress, leave=False):
            query = self._query(text)
            self._check(query, max(len(x) for x in label_ids), text)
            row = []
            if all(len(x) == 1 for x in label_ids):
                lp = F.log_softmax(self._logits(query)[-1].float(), -1)
                row = [float(lp[x[0]]) for x in label_ids]
            else:
                for x in label_ids:
                    lp = F.log_softmax(self._logits(query + x).float(), -1)
                    start = len(query) - 1
                    row.append(float(sum(lp[start + k, tok] for k, tok in enumerate(x))))
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float64)

    def classify(self, inputs: Sequence[str], labels: Sequence[str], **kwargs: Any) -> list[str]:
        best = self.label_scores(inputs, labels, **kwargs).argmax(dim=1)
        return [labels[i] for i in best.tolist()]

    @torch.no_grad()
    def answer_nll(self, examples: Sequence[tuple[str, str]]) -> tuple[float, int]:
        """(summed NLL, tokens) of the answers under teacher forcing, end marker included."""
        nll, count = 0.0, 0
        for text, output in examples:
            query = self._query(text)
            answer = self.codec.answer_ids(output)
            self._check(query, len(answer), text)
            lp = F.log_softmax(self._logits(query + answer).float(), -1)
            start = len(query) - 1
            nll -= float(sum(lp[start + k, tok] for k, tok in enumerate(answer)))
            count += len(answer)
        return nll, count

    @torch.no_grad()
    def generate(
        self,
        inputs: Sequence[str],
        *,
        max_new_tokens: int = 64,
        stop: dict[str, Any] | None = None,
        progress: bool = False,
        no_repeat_ngram: int | None = None,
    ) -> list[str]:
        """Greedy answers, one query at a time after the cached prefix. ``stop``: ``generate`` keyword
        arguments that end an answer (default: at the template's answer end,
        :meth:`PromptCodec.stop_kwargs`; ``{}``: only at EOS or ``max_new_tokens``).
        ``no_repeat_ngram``: forbid repeating an n-gram of the answer itself (the demonstrations'
        n-grams stay allowed)."""
        stop = self.codec.stop_kwargs() if stop is None else stop
        outs = []
        pad = self.codec.tokenizer.pad_token_id
        for text in tqdm(inputs, desc="in-context generation", disable=not progress, leave=False):
            query = self._query(text)
            self._check(query, max_new_tokens, text)
            ids = torch.tensor([self.prefix + query], device=self.device)
            cache = self._prefix_cache()
            kwargs: dict[str, Any] = {
                "max_new_tokens": max_new_tokens,
                "do_sample": False,
                "pad_token_id": pad,
            }
            if cache is not None:
                kwargs[self._cache_keyword] = copy.deepcopy(cache)
            gen = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                **kwargs,
                **stop,
                **decoding_kwargs(no_repeat_ngram, ids.shape[1]),
            )
            outs.append(self.codec.decode_answer(gen[0, ids.shape[1] :].tolist()))
        return outs

    def _query(self, text: str) -> list[int]:
        """The query's prompt; it carries the start tokens only when there is no prefix."""
        return self.codec.prompt_ids(text, start=not self.prefix)

    def _check(self, query: list[int], extra: int, text: str) -> None:
        if len(self.prefix) + len(query) + extra > self.codec.context:
            raise ValueError(
                f"the query {text[:40]!r} ({len(query)} tokens) and {extra} answer tokens do not fit after "
                f"{len(self.prefix)} prefix tokens in the context of {self.codec.context}; "
                "pass a larger reserve"
            )
