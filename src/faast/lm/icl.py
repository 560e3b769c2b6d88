"""In-context learning, the baseline test-time learning is measured against: demonstrations in the prompt.

:class:`InContextModel` scores labels and generates answers for inputs with the same
:class:`~faast.lm.prompts.PromptCodec` a :class:`~faast.lm.task.TaskModel` uses, so both read the
examples the same way. The demonstrations are one shared list: the start tokens and the
demonstrations (as many whole ones as fit before the longest query, never truncating a query) form a
prefix that is run once; its KV cache is copied for each batch of queries (as many copies as
queries, within ``MAX_BATCH_CACHE_BYTES``). With many multi-token labels (more than half the
batch size) each query runs once after a copy of that cache and the labels' continuations after
the query, packed in one row under an attention mask (:meth:`InContextModel.label_scores`). That
is the cheapest way to run in-context learning, and the cost reported for it (time per example,
bytes of the cache) is what a deployment would pay. A model whose cache keeps recurrent states
(state-space or linear-attention layers: Mamba, LFM2, Jamba, ...) has no cache to continue with a
mask (:func:`~faast.lm.prefix_cache.extends_by_attention`): its rows run whole, the
demonstrations again in each, and it generates one query at a time (no padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from faast._checks import integer_at_least
from faast.lm.calibration import content_free_inputs, contextually_calibrated
from faast.lm.decoding import check_max_new_tokens, decoding_kwargs
from faast.lm.examples import Example, as_example
from faast.lm.prefix_cache import (
    PrefixCache,
    distinct_continuations,
    extends_by_attention,
    model_extends_by_attention,
    parameter_names,
    repeated_cache,
    returned_cache,
)
from faast.lm.prompts import PromptCodec
from faast.lm.task_spec import TaskSpec, auto_labels, checked_labels, input_texts, label_rule

#: The most bytes the per-sequence copies of the demonstrations' KV cache may take in one batch;
#: a long prefix (thousands of demonstration tokens) is then read a few queries at a time.
MAX_BATCH_CACHE_BYTES = 2 * 1024**3


#: The most continuation tokens :meth:`InContextModel._packed_log_probs` packs into one pass (their
#: logits over the vocabulary are held at once).
PACKED_TOKENS = 256


#: Attention implementations that take a custom 4D attention mask (flash attention does not).
MASKED_ATTENTION = ("sdpa", "eager")


def _packs_continuations(cache: Any, model: Any, forward_params: frozenset[str]) -> bool:
    """Whether continuations can be packed into one row after ``cache``: the model takes position
    ids and a custom attention mask (:data:`MASKED_ATTENTION`), and every layer of the cache is a
    plain growing one (a sliding-window layer drops old tokens, so a custom mask over the whole
    sequence would not fit it)."""
    layers = getattr(cache, "layers", None)
    return (
        "position_ids" in forward_params
        and getattr(getattr(model, "config", None), "_attn_implementation", None) in MASKED_ATTENTION
        and bool(layers)
        and all(type(layer).__name__ == "DynamicLayer" for layer in layers)
        and hasattr(cache, "get_seq_length")
    )


def _packs(runs: list[list[int]], most: int) -> list[list[list[int]]]:
    """``runs`` in consecutive groups of at most ``most`` tokens (a longer run alone)."""
    packs: list[list[list[int]]] = [[]]
    for run in runs:
        if packs[-1] and sum(map(len, packs[-1])) + len(run) > most:
            packs.append([])
        packs[-1].append(run)
    return packs


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
        reserve = integer_at_least(reserve, "reserve", 1)  # the query and its answer need room
        if reserve >= codec.context:
            raise ValueError(f"reserve={reserve} leaves no room in the context of {codec.context} tokens")
        self.prefix, self.num_used = codec.demonstrations(list(demonstrations), codec.context - reserve)
        self._forward_params = parameter_names(model.forward)
        self._prefix = PrefixCache(model, self.prefix, extra=self._last_logits_only())
        self._whole: bool | None = None  # _runs_whole, found on first use

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _last_logits_only(self) -> dict[str, int]:
        """The keyword that makes the model compute the LM head at the last position only (the
        prefix's logits are never read: over 32k tokens and a 262k vocabulary they would be 34 GB);
        ``{}`` for a model that has none."""
        for name in ("logits_to_keep", "num_logits_to_keep"):
            if name in self._forward_params:
                return {name: 1}
        return {}

    def _runs_whole(self) -> bool:
        """Whether every row runs whole, the demonstrations again in each, with no cache to continue:
        the model's cache keeps recurrent states (:func:`~faast.lm.prefix_cache.extends_by_attention`
        of the demonstrations' cache, or of one token's without demonstrations)."""
        if self._whole is None:
            cache = self._prefix.cache()
            kv = model_extends_by_attention(self.model) if cache is None else extends_by_attention(cache)
            self._whole = not kv
        return self._whole

    def cache_nbytes(self) -> int:
        """Bytes of the demonstrations' KV cache (what in-context learning holds at inference; 0 where
        rows run whole, :meth:`_runs_whole`)."""
        return 0 if self._runs_whole() else self._prefix.nbytes()

    def _batch_limit(self, batch_size: int) -> int:
        """``batch_size``, lowered so the batch's copies of the prefix cache stay within
        ``MAX_BATCH_CACHE_BYTES`` (at least 1)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        per_copy = self.cache_nbytes()
        return max(1, min(batch_size, MAX_BATCH_CACHE_BYTES // per_copy)) if per_copy else batch_size

    @torch.no_grad()
    def _log_probs(
        self, continuations: list[list[int]], positions: list[list[int]], after: tuple[Any, int] | None = None
    ) -> list[torch.Tensor]:
        """For each continuation c (token ids after the prefix; one batch, right-padded), the float32
        log-softmax rows (len(p), V) at its positions p (indices into c). ``after``: (the KV cache of
        one sequence, its length) the continuations follow instead of the prefix (the prefix and a
        query). Where rows run whole (:meth:`_runs_whole`) the prefix is put before each continuation."""
        if after is None and self.prefix and self._runs_whole():
            lead = len(self.prefix)
            continuations = [self.prefix + c for c in continuations]
            positions = [[lead + p for p in ps] for ps in positions]
            n, cached = 0, False
        else:
            n, cached = len(self.prefix) if after is None else after[1], True
        width = max(len(c) for c in continuations)
        pad = self.codec.tokenizer.pad_token_id or 0
        ids = torch.full((len(continuations), width), pad, dtype=torch.long)
        mask = torch.zeros(len(continuations), n + width, dtype=torch.long)
        mask[:, :n] = 1
        for i, c in enumerate(continuations):
            ids[i, : len(c)] = torch.tensor(c)
            mask[i, n : n + len(c)] = 1
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            use_cache=n > 0,
            **(
                {}
                if not cached
                else self._prefix.batched(len(continuations))
                if after is None
                else {self._prefix.keyword: repeated_cache(after[0], len(continuations))}
            ),
        )
        return [F.log_softmax(out.logits[i, p].float(), -1) for i, p in enumerate(positions)]

    def _tail_log_probs(
        self, items: list[tuple[list[int], list[int]]], batch_size: int, desc: str, progress: bool
    ) -> list[float]:
        """For each (query, tail): log p(tail | prefix, query), summed over the tail's tokens;
        ``batch_size`` sequences per forward pass."""
        out: list[float] = []
        step = self._batch_limit(batch_size)
        for i in tqdm(range(0, len(items), step), desc=desc, disable=not progress, leave=False):
            chunk = items[i : i + step]
            conts = [q + t for q, t in chunk]
            positions = [list(range(len(q) - 1, len(q) - 1 + len(t))) for q, t in chunk]
            for lp, (_, tail) in zip(self._log_probs(conts, positions), chunk, strict=True):
                picks = torch.arange(len(tail), device=lp.device)
                out.append(float(lp[picks, torch.tensor(tail, device=lp.device)].sum()))
        return out

    def label_scores(
        self,
        inputs: Sequence[str],
        labels: Sequence[str],
        *,
        progress: bool = False,
        batch_size: int = 8,
        calibrate: bool = False,
    ) -> torch.Tensor:
        """(n, L) float64 log-probability of each label's full token sequence after each query (with
        the end marker when labels begin one another: :meth:`PromptCodec.scored_label_ids`);
        ``batch_size`` queries per forward pass after the shared prefix (fewer when their copies of
        the prefix's cache would pass ``MAX_BATCH_CACHE_BYTES``); with more multi-token labels than
        half ``batch_size``, each query once and then its labels' continuations
        (:meth:`_shared_query_scores`). ``calibrate``: contextually
        calibrated log-probabilities over the L labels instead
        (:func:`~faast.lm.calibration.contextually_calibrated` with :meth:`content_free_scores`)."""
        inputs, labels = input_texts(inputs), checked_labels(labels, None, "pass the labels")
        if not inputs:
            return torch.empty(0, len(labels), dtype=torch.float64)
        if calibrate:
            raw = self.label_scores(inputs, labels, progress=progress, batch_size=batch_size)
            return contextually_calibrated(raw, self.content_free_scores(labels, batch_size=batch_size))
        label_ids = self.codec.scored_label_ids(labels)
        queries = []
        for text in inputs:
            query = self._query(text)
            self._check(query, max(len(x) for x in label_ids), text)
            queries.append(query)
        if all(len(x) == 1 for x in label_ids):  # one pass per query: the labels' first tokens
            rows: list[list[float]] = []
            step = self._batch_limit(batch_size)
            starts = range(0, len(queries), step)
            for i in tqdm(starts, desc="in-context scoring", disable=not progress, leave=False):
                chunk = queries[i : i + step]
                for lp in self._log_probs(chunk, [[len(q) - 1] for q in chunk]):
                    rows.append([float(lp[0, x[0]]) for x in label_ids])
            return torch.tensor(rows, dtype=torch.float64).reshape(len(queries), len(label_ids))
        if len(label_ids) > batch_size // 2 and not self._runs_whole():  # run each query once
            bar = tqdm(queries, desc="in-context scoring", disable=not progress, leave=False)
            rows = [self._shared_query_scores(q, label_ids, batch_size) for q in bar]
            return torch.tensor(rows, dtype=torch.float64).reshape(len(queries), len(label_ids))
        items = [(q, x) for q in queries for x in label_ids]
        flat = self._tail_log_probs(items, batch_size, "in-context scoring", progress)
        return torch.tensor(flat, dtype=torch.float64).reshape(len(queries), len(label_ids))

    @torch.no_grad()
    def _shared_query_scores(
        self, query: list[int], label_ids: list[list[int]], batch_size: int
    ) -> list[float]:
        """log p(label | prefix, query) for each label's token ids, the query run once after a copy
        of the demonstrations' cache: its last logits score every label's first token, and the
        labels' tokens but the last continue after the query, each distinct continuation once
        (:func:`~faast.lm.prefix_cache.distinct_continuations`): packed in one row
        (:meth:`_packed_log_probs`) where the model allows it (:func:`_packs_continuations`), else
        one row each on copies of the query's cache, ``batch_size`` rows a pass (fewer when the
        copies would pass ``MAX_BATCH_CACHE_BYTES``)."""
        start = len(self.prefix) + len(query)
        out = self.model(
            input_ids=torch.tensor([query], device=self.device),
            attention_mask=torch.ones(1, start, dtype=torch.long, device=self.device),
            use_cache=True,
            **self._prefix.batched(1),
            **self._last_logits_only(),
        )
        first = F.log_softmax(out.logits[0, -1].float(), -1)
        scores = [float(first[ids[0]]) for ids in label_ids]
        longer = [j for j, ids in enumerate(label_ids) if len(ids) > 1]
        if not longer:
            return scores
        cache = returned_cache(out)
        runs, owner = distinct_continuations([label_ids[j][:-1] for j in longer])
        if _packs_continuations(cache, self.model, self._forward_params):
            rows = self._packed_log_probs(cache, runs)
        else:  # a copy of the query's cache per continuation
            step, rows = self._batch_limit(batch_size), []
            for i in range(0, len(runs), step):
                chunk = runs[i : i + step]
                rows += self._log_probs(chunk, [list(range(len(c))) for c in chunk], after=(cache, start))
        for j, row in zip(longer, owner, strict=True):
            ids = label_ids[j]
            scores[j] += float(sum(rows[row][k - 1, ids[k]] for k in range(1, len(ids))))
        return scores

    @torch.no_grad()
    def _packed_log_probs(self, cache: Any, runs: list[list[int]]) -> list[torch.Tensor]:
        """For each continuation of ``runs`` after the sequence ``cache`` holds, its float32
        log-softmax rows (len(run), V), the continuations packed side by side in one row (at most
        :data:`PACKED_TOKENS` tokens a pass) under an attention mask that lets each token see the
        cached sequence and the tokens before it in its own continuation, at the positions it
        would have alone: no copy of the cache per continuation. The cache grows by the packed
        tokens (the caller drops it after)."""
        start, out = cache.get_seq_length(), []
        dtype = next(self.model.parameters()).dtype
        for pack in _packs(runs, PACKED_TOKENS):
            past = cache.get_seq_length()  # earlier packs' tokens are in the cache: masked out
            seg = torch.tensor([a for a, run in enumerate(pack) for _ in run])
            off = torch.tensor([k for run in pack for k in range(len(run))])
            own = (seg[:, None] == seg[None, :]) & (off[None, :] <= off[:, None])
            allowed = torch.zeros(len(seg), past + len(seg), dtype=torch.bool)
            allowed[:, :start] = True
            allowed[:, past:] = own
            mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
            res = self.model(
                input_ids=torch.tensor([[t for run in pack for t in run]], device=self.device),
                attention_mask=mask[None, None].to(self.device),
                position_ids=(start + off)[None].to(self.device),
                use_cache=True,
                **{self._prefix.keyword: cache},
            )
            rows = F.log_softmax(res.logits[0].float(), -1)
            out += list(rows.split([len(run) for run in pack]))
        return out

    def content_free_scores(self, labels: Sequence[str], *, batch_size: int = 8) -> torch.Tensor:
        """(c, L) float64 label log-probabilities of the content-free inputs
        (:data:`~faast.lm.calibration.CONTENT_FREE_INPUTS`) after the demonstrations."""
        return self.label_scores(
            content_free_inputs(self.codec, after_text=bool(self.prefix)), labels, batch_size=batch_size
        )

    def classify(self, inputs: Sequence[str], labels: Sequence[str], **kwargs: Any) -> list[str]:
        best = self.label_scores(inputs, labels, **kwargs).argmax(dim=1)
        return [labels[i] for i in best.tolist()]

    @torch.no_grad()
    def answer_nll(
        self, examples: Sequence[tuple[str, str]], *, batch_size: int = 8, progress: bool = False
    ) -> tuple[float, int]:
        """(summed NLL, tokens) of the answers under teacher forcing, end marker included;
        ``batch_size`` examples per forward pass."""
        items = []
        for text, output in examples:
            query, answer = self._query(text), self.codec.answer_ids(output)
            self._check(query, len(answer), text)
            items.append((query, answer))
        if not items:
            return 0.0, 0
        nll = -sum(self._tail_log_probs(items, batch_size, "in-context NLL", progress))
        return nll, sum(len(a) for _, a in items)

    @torch.no_grad()
    def generate(
        self,
        inputs: Sequence[str],
        *,
        max_new_tokens: int = 64,
        stop: dict[str, Any] | None = None,
        progress: bool = False,
        no_repeat_ngram: int | None = None,
        batch_size: int = 8,
    ) -> list[str]:
        """Greedy answers after the cached prefix. ``stop``: ``generate`` keyword arguments that end
        an answer (default: at the template's answer end, :meth:`PromptCodec.stop_kwargs`; ``{}``:
        only at EOS or ``max_new_tokens``). ``no_repeat_ngram``: forbid repeating an n-gram of the
        answer itself (the demonstrations' n-grams stay allowed). ``batch_size`` queries at once,
        grouped by length; a shorter query is padded on its left, between the prefix and its
        prompt, and the padding is masked (on models with sliding-window attention the pads take
        window slots, so a padded query may see a few prefix tokens less)."""
        check_max_new_tokens(max_new_tokens)
        stop = self.codec.stop_kwargs() if stop is None else stop
        inputs = input_texts(inputs)
        queries = []
        for text in inputs:
            query = self._query(text)
            self._check(query, max_new_tokens, text)
            queries.append(query)
        outs: list[str] = [""] * len(queries)
        order = sorted(range(len(queries)), key=lambda i: len(queries[i]))
        whole = self._runs_whole()
        step = 1 if whole else self._batch_limit(batch_size)  # whole rows: no padding in a state
        pad = self.codec.tokenizer.pad_token_id
        n = len(self.prefix)
        for b in tqdm(
            range(0, len(order), step), desc="in-context generation", disable=not progress, leave=False
        ):
            rows = order[b : b + step]
            width = max(len(queries[i]) for i in rows)
            ids = torch.full((len(rows), n + width), pad if pad is not None else 0, dtype=torch.long)
            mask = torch.zeros_like(ids)
            ids[:, :n] = torch.tensor(self.prefix, dtype=torch.long)
            mask[:, :n] = 1
            for r, i in enumerate(rows):
                q = queries[i]
                ids[r, n + width - len(q) :] = torch.tensor(q)
                mask[r, n + width - len(q) :] = 1
            gen = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                **({} if whole else self._prefix.batched(len(rows))),
                **stop,
                **decoding_kwargs(no_repeat_ngram, ids.shape[1]),
            )
            for r, i in enumerate(rows):
                outs[i] = self.codec.decode_answer(gen[r, ids.shape[1] :].tolist())
        return outs

    def _query(self, text: str) -> list[int]:
        """The query's prompt; it carries the start tokens only when there is no prefix, and
        continues the text of the demonstrations when there are some."""
        after = self.codec.follows_demonstration(self.num_used)
        return self.codec.prompt_ids(text, start=not self.prefix, after_demonstration=after)

    def _check(self, query: list[int], extra: int, text: str) -> None:
        if len(self.prefix) + len(query) + extra > self.codec.context:
            raise ValueError(
                f"the query {text[:40]!r} ({len(query)} tokens) and {extra} answer tokens do not fit after "
                f"{len(self.prefix)} prefix tokens in the context of {self.codec.context}; "
                "pass a larger reserve"
            )


class InContextTask:
    """In-context learning behind the interface of :class:`~faast.lm.task.TaskModel` that the
    ``faast task`` commands use (``spec.labels``, ``label_scores``, ``generate``, ``answer_nll`` on
    :class:`~faast.lm.examples.Example` lists), so the same command runs zero-shot, FAAST or
    in-context learning on the same files.

    Parameters
    ----------
    model, codec : as for :class:`InContextModel`
    demonstrations : the labelled examples put before every input (in order; ``shots`` first ones,
        all when None; whole ones only, as many as fit)
    labels : the label set, ``"auto"`` (the distinct outputs of all ``demonstrations``, the ones
        ``shots`` leaves out included, when there are 2 to :data:`~faast.lm.task_spec.MAX_LABELS`, else
        free-form), ``"all"`` (every distinct output, however many) or None (free-form outputs)
    reserve : tokens kept free after the demonstrations for the longest query and its answer
    """

    #: label scores are calibrated only when asked (in-context learning chooses no read-out), as
    #: :attr:`TaskModel.calibrated <faast.lm.task.TaskModel.calibrated>` says for a task model
    calibrated = False

    def __init__(
        self,
        model: Any,
        codec: PromptCodec,
        demonstrations: Sequence[Example],
        *,
        reserve: int,
        labels: Sequence[str] | str | None = "auto",
        shots: int | None = None,
    ) -> None:
        demonstrations = [as_example(e, i) for i, e in enumerate(demonstrations)]
        demos = [e for e in demonstrations if e.output is not None]
        if len(demos) != len(demonstrations):
            raise ValueError("in-context demonstrations need outputs (input<TAB>output, or an output field)")
        rule = label_rule(labels)
        if rule is not None:  # from every demonstration offered: a few shots may miss a label
            labels = auto_labels(demos, rule)
        if shots is not None:
            if shots < 0:
                raise ValueError(f"shots must be >= 0, got {shots}")
            demos = demos[:shots]
        self.spec = TaskSpec(codec.template, "answer", list(labels) if labels is not None else None)
        self.codec = codec
        self.icl = InContextModel(model, codec, [(e.input, e.output) for e in demos], reserve=reserve)
        self.num_asked = len(demos)  # the demonstrations offered, after ``shots``
        self.head = None

    @property
    def num_used(self) -> int:
        """How many demonstrations fit in the context (the prefix holds these)."""
        return self.icl.num_used

    def _labels(self, labels: Sequence[str] | None) -> list[str]:
        return checked_labels(labels, self.spec.labels, "pass labels")

    def head_applies(self, labels: Sequence[str]) -> bool:
        """Always False: in-context learning has no label head."""
        return False

    def label_scores(
        self,
        inputs: Sequence[str],
        labels: Sequence[str] | None = None,
        *,
        batch_size: int = 8,
        progress: bool = False,
        calibrate: bool | None = None,
    ) -> torch.Tensor:
        """(n, L) float64 log-probabilities of each label after the demonstrations and each input
        (``calibrate``: contextually calibrated, :meth:`InContextModel.label_scores`; None:
        :attr:`calibrated`)."""
        calibrate = self.calibrated if calibrate is None else calibrate
        return self.icl.label_scores(
            inputs, self._labels(labels), batch_size=batch_size, progress=progress, calibrate=calibrate
        )

    def generate(self, inputs: Sequence[str], **kwargs: Any) -> list[str]:
        """Greedy answers (:meth:`InContextModel.generate`)."""
        return self.icl.generate(inputs, **kwargs)

    def answer_nll(self, examples: Sequence[Example], *, batch_size: int = 8) -> tuple[float, int]:
        """(summed NLL, tokens) of the examples' answers after the demonstrations."""
        if any(e.output is None for e in examples):
            raise ValueError("answer_nll needs examples with outputs")
        return self.icl.answer_nll([(e.input, e.output) for e in examples], batch_size=batch_size)
