"""How :class:`~faast.lm.task.TaskModel` scores text: batches of sequences with the positions and
tokens each one scores (:class:`ScoredBatch`), the LM's head inputs there, and the
log-probabilities, label scores and answer NLLs read from them (through the memory as configured).

Two kinds of batch: label batches (prompt + each label; a single-token label set needs the
prompt only, every label scored at its last position) for :meth:`TaskModel.label_scores` and
validation, and answer batches (prompt + the example's answer, every answer token scored) for
:meth:`TaskModel.answer_nll`. When a batch holds one input's prompt followed by each of many
labels (more than half the batch size, so that a batch holds one input), the prompt is run once
and the labels continue from a copy of its KV cache (:meth:`FaastModel.prefix_cache
<faast.lm.model.FaastModel.prefix_cache>`), the prompt's end scored once for every label's first
token and only the labels' tokens but the last run after it, so the cost grows with the labels'
later tokens, not with labels × prompt. The mixin needs the task
model's ``codec``, ``model``, ``tokenizer``, ``device``, ``_score_cache`` and ``_lead_view`` (the
KV cache of lead demonstrations and how many tokens every sequence then skips).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from faast._checks import integer_at_least
from faast.lm.examples import Example
from faast.lm.output_readouts import head_row_chunks
from faast.lm.prefix_cache import distinct_continuations
from faast.lm.prompts import pad_batch
from faast.lm.readouts import HEAD_INPUT
from faast.lm.task_choice import ReadCandidate


def check_batch_size(batch_size: int) -> int:
    """``batch_size``, or a clear error when it is not an integer >= 1 (``range`` would fail with
    "arg 3 must not be zero")."""
    return integer_at_least(batch_size, "batch_size", 1)


def batch_starts(count: int, batch_size: int) -> range:
    """The first index of each batch of ``batch_size`` among ``count`` items (checked)."""
    return range(0, count, check_batch_size(batch_size))


@dataclass
class ScoredBatch:
    """Sequences to run and, per sequence, the (position, token ids) it scores."""

    sequences: list[list[int]]
    targets: list[list[tuple[int, list[int]]]]
    inputs: int
    labels: int
    single: bool
    #: > 0: every sequence starts with the same prompt of this many tokens, run once into a KV cache
    #: (which gives the state at its end), the rest of each sequence but its last token continuing
    #: from a copy
    shared_prompt: int = 0

    @cached_property
    def tokens(self) -> torch.Tensor:
        """(N, K) long on the CPU: the tokens scored at each of the N scored positions (K = the
        labels for a single-token label batch, else 1), made once for every read-out scored."""
        return torch.tensor([toks for tgt in self.targets for _, toks in tgt])


class TaskScoringMixin:
    """Scoring steps of :class:`~faast.lm.task.TaskModel`."""

    def _label_batches(self, inputs: list[str], labels: list[str], batch_size: int = 16) -> list[ScoredBatch]:
        """Batches of sequences prompt + label (the label's tokens as
        :meth:`~faast.lm.prompts.PromptCodec.scored_label_ids` scores them); single-token label sets
        need the prompt only."""
        label_ids = self.codec.scored_label_ids(labels)
        single = all(len(ids) == 1 for ids in label_ids)
        check_batch_size(batch_size)
        batches = []
        per_batch = max(1, batch_size if single else batch_size // len(labels))
        # one input, many labels: the prompt once, the labels after its KV cache
        share = not single and per_batch == 1 and len(labels) > 1 and self._serves_shared_prompts()
        for i in range(0, len(inputs), per_batch):
            chunk = inputs[i : i + per_batch]
            prompts = [self.codec.prompt_ids(x) for x in chunk]
            for x, p in zip(chunk, prompts, strict=True):
                self.codec.check_fits(p + max(label_ids, key=len), f"the prompt of {x[:40]!r} with a label")
            if single:
                seqs = prompts
                targets = [[(len(p) - 1, [ids[0] for ids in label_ids])] for p in prompts]
            elif share:  # the prompt's end scored once, for every label's first token
                seqs, targets = self._shared_label_targets(prompts[0], label_ids)
            else:
                seqs = [p + ids for p in prompts for ids in label_ids]
                targets = [
                    [(len(p) - 1 + k, [tok]) for k, tok in enumerate(ids)]
                    for p in prompts
                    for ids in label_ids
                ]
            shared = len(prompts[0]) if share else 0
            batches.append(ScoredBatch(seqs, targets, len(chunk), len(labels), single, shared))
        return batches

    @staticmethod
    def _shared_label_targets(
        prompt: list[int], label_ids: list[list[int]]
    ) -> tuple[list[list[int]], list[list[tuple[int, list[int]]]]]:
        """(sequences, targets) of one prompt followed by each label: the prompt's end is scored
        once, in the first sequence, for every label's first token (the state is the same in all
        of them); each later position of label j for its own token (repeated to the labels'
        number, so that every scored position reads as many tokens)."""
        width = len(label_ids)
        seqs = [prompt + ids for ids in label_ids]
        targets = []
        for j, ids in enumerate(label_ids):
            rows = [(len(prompt) - 1, [first[0] for first in label_ids])] if j == 0 else []
            rows += [(len(prompt) - 1 + k, [tok] * width) for k, tok in enumerate(ids) if k > 0]
            targets.append(rows)
        return seqs, targets

    def _serves_shared_prompts(self) -> bool:
        """Whether label batches may run a prompt once and the labels after its KV cache: the model
        serves a prefix cache (position ids, no middle memory) and no lead cache is in use."""
        return self.model.serves_prefix_cache and self._lead_view()[0] is None

    def _answer_batches(self, examples: Sequence[Example], batch_size: int = 16) -> list[ScoredBatch]:
        """Teacher-forced batches of ``examples`` (with outputs), each checked to fit the context
        (a longer one would be scored at positions the model never saw, or fail deep in it)."""
        batches = []
        for i in batch_starts(len(examples), batch_size):
            enc = self._encoded_examples(examples[i : i + batch_size])  # each checked to fit
            seqs = [c.ids for c in enc]
            targets = [[(len(c.prompt) - 1 + k, [tok]) for k, tok in enumerate(c.answer)] for c in enc]
            batches.append(ScoredBatch(seqs, targets, len(enc), 1, False))
        return batches

    def _states(self, batch: ScoredBatch) -> torch.Tensor:
        """Head inputs (N, d) at every scored position of ``batch`` (cached per sequence with
        ``cache=True`` when no middle memory makes them depend on what was learned)."""
        if batch.shared_prompt:
            return self._shared_prompt_states(batch)
        cache = self._states_cache()
        prefix, skip = self._lead_view()  # lead demonstrations read from their KV cache: rows after it
        keys = [tuple(s) for s in batch.sequences]
        todo = [i for i, k in enumerate(keys) if cache is None or k not in cache]
        computed: dict[int, torch.Tensor] = {}
        if todo:
            rows = [batch.sequences[i][skip:] for i in todo]
            ids, mask = pad_batch(rows, self.tokenizer.pad_token_id)
            z = self.model.head_inputs(ids.to(self.device), mask.to(self.device), prefix=prefix)
            for row, i in enumerate(todo):
                computed[i] = z[row, : len(rows[row])]
                if cache is not None:
                    cache[keys[i]] = computed[i].detach().clone()
        seqs = [computed[i] if i in computed else cache[keys[i]] for i in range(len(keys))]  # type: ignore[index]
        return torch.stack([seqs[r][pos - skip] for r, tgt in enumerate(batch.targets) for pos, _ in tgt])

    def _states_cache(self) -> dict | None:
        """The score cache head inputs are kept in (``cache=True``, and during a fit), or None when
        there is none or a middle memory makes the states depend on what was learned."""
        return self._score_cache if not self.model.middle_memories else None

    def _shared_prompt_states(self, batch: ScoredBatch) -> torch.Tensor:
        """:meth:`_states` of a batch whose sequences share their prompt (``shared_prompt`` tokens):
        the prompt is run once into a KV cache, which gives the state at its end (where every
        label's first token is scored), and the labels' tokens but the last (whose states score the
        later ones; a one-token label needs none) continue from a copy, each distinct continuation
        once and none that begins a longer one (its states are the longer one's first). Kept in the
        score cache (``cache=True``, and during a fit) under the prompt's length and the batch's
        sequences when no middle memory makes them depend on what was learned."""
        n = batch.shared_prompt
        cache = self._states_cache()
        key = (n, *(tuple(seq) for seq in batch.sequences))  # the split sets the scored positions
        if cache is not None and key in cache:
            return cache[key]  # type: ignore[index]
        prefix = self.model.prefix_cache(batch.sequences[0][:n])
        end = prefix.last_hidden
        if end is None:
            raise RuntimeError("the backbone returned no last_hidden_state for the shared prompt")
        longer = [r for r, seq in enumerate(batch.sequences) if len(seq) > n + 1]
        later: dict[int, torch.Tensor] = {}
        if longer:
            runs, owner = distinct_continuations([batch.sequences[r][n:-1] for r in longer])
            ids, mask = pad_batch(runs, self.tokenizer.pad_token_id)
            z = self.model.head_inputs(ids.to(self.device), mask.to(self.device), prefix=prefix)
            later = {r: z[i] for r, i in zip(longer, owner, strict=True)}
        positions = [(r, pos) for r, tgt in enumerate(batch.targets) for pos, _ in tgt]
        states = torch.stack([end if pos == n - 1 else later[r][pos - n] for r, pos in positions])
        if cache is not None:
            cache[key] = states  # type: ignore[index]
        return states

    def _log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """(N, V) log-probabilities at the scored positions, reading the memory as configured."""
        out = []
        for rows in head_row_chunks(states.shape[0]):  # a large vocabulary: a few positions at a time
            logits = self.model.output_logits({HEAD_INPUT: states[rows]})
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            out.append(F.log_softmax(logits, dim=-1))
        return torch.cat(out)

    def _target_tokens(self, batch: ScoredBatch) -> torch.Tensor:
        """(N, K) long: the tokens scored at each of ``batch``'s N scored positions (K = the labels
        for a single-token label batch, else 1)."""
        return batch.tokens.to(self.device)

    def _base_log_probs(self, batch: ScoredBatch, states: torch.Tensor) -> torch.Tensor:
        """(N, K): the base model's log-probabilities of the scored tokens (the memory off), to
        share among the read-outs :meth:`_picked_log_probs` compares on the same states."""
        return self.model.base_token_log_probs(states, self._target_tokens(batch))

    def _picked_log_probs(
        self, batch: ScoredBatch, states: torch.Tensor, base: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(N, K) log-probabilities of the tokens ``batch`` scores (:meth:`_target_tokens`), reading
        the memory as configured. With ``base`` (:meth:`_base_log_probs` of the same states) a
        read-out that needs no whole-vocabulary pass (the memory off, the "prob" mix:
        ``FaastModel.output_token_log_probs``) is read at those tokens only; the others through the
        whole head, as without it."""
        tokens = self._target_tokens(batch)
        picked = None if base is None else self.model.output_token_log_probs(states, tokens, base)
        return self._log_probs(states).gather(-1, tokens) if picked is None else picked

    def _picked_for_weights(
        self, batch: ScoredBatch, states: torch.Tensor, weights: Sequence[float]
    ) -> list[torch.Tensor] | None:
        """:meth:`_picked_log_probs` of the "logit" mix as configured now (its cut) for each β of
        ``weights``: per β, (N, K) log-probabilities of the scored tokens, from one pass of the head
        and one of the memory's logits (``FaastModel.output_logit_parts``; logits(β) = head(z) +
        β·memory), instead of a head pass per β. None when the memory is not read in that mix."""
        tokens = self._target_tokens(batch)
        picked: list[list[torch.Tensor]] = [[] for _ in weights]
        transform = self.model.logit_transform  # the model's logits from its head's output
        for rows in head_row_chunks(states.shape[0]):  # a large vocabulary: a few positions at a time
            parts = self.model.output_logit_parts(states[rows])
            if parts is None:
                return None
            base, memory = (p.to(torch.promote_types(p.dtype, torch.float32)) for p in parts)
            for j, weight in enumerate(weights):
                logits = transform(base + weight * memory)
                picked[j].append(F.log_softmax(logits, dim=-1).gather(-1, tokens[rows]))
        return [torch.cat(p) for p in picked]

    def _logit_mix_picks(
        self, candidates: Sequence[ReadCandidate], batches: list[ScoredBatch], states: list[torch.Tensor]
    ) -> dict[str, list[torch.Tensor]]:
        """For the "logit" read-outs among ``candidates`` that differ in β only (plain, not
        calibrated): read-out name → per batch of ``batches`` (whose head inputs are ``states``)
        its (N, K) log-probabilities of the scored tokens (:meth:`_picked_for_weights`: one head
        pass and one memory pass per batch for all the β of a cut, not one head pass per β). A
        read-out alone in its group, or another mix, is not in the result (scored as before)."""
        groups: dict[str, list[ReadCandidate]] = {}
        for cand in candidates:
            if cand.mix == "logit":
                plain = ReadCandidate(cand.mix, cand.read)
                group = groups.setdefault(ReadCandidate("logit", cand.read.replace(weight=None)).name, [])
                if plain not in group:
                    group.append(plain)
        out: dict[str, list[torch.Tensor]] = {}
        for group in (g for g in groups.values() if len(g) > 1):
            weights = [float(self.use(cand).model.output_memory.weight) for cand in group]
            pairs = zip(batches, states, strict=True)
            per_batch = [self._picked_for_weights(b, z, weights) for b, z in pairs]
            if all(p is not None for p in per_batch):
                out.update({cand.name: [p[j] for p in per_batch] for j, cand in enumerate(group)})  # type: ignore[index]
        return out

    def _label_log_probs(
        self,
        batch: ScoredBatch,
        states: torch.Tensor,
        base: torch.Tensor | None = None,
        picked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(inputs, labels) float64 on the CPU, whatever device the model is on (``base``: see
        :meth:`_picked_log_probs`; ``picked``: its result, when already computed)."""
        if picked is None:
            picked = self._picked_log_probs(batch, states, base)
        if batch.single:
            return picked.double().cpu()
        if batch.shared_prompt:  # row 0: every label's first token; then each label's later tokens
            later, k = [], 1
            for j, tgt in enumerate(batch.targets):
                n = len(tgt) - (j == 0)
                later.append(float(picked[k : k + n, 0].double().sum()))
                k += n
            return (picked[0].double().cpu() + torch.tensor(later, dtype=torch.float64)).view(1, batch.labels)
        per_seq, k = [], 0
        for tgt in batch.targets:
            per_seq.append(float(sum(picked[k + j, 0] for j in range(len(tgt)))))
            k += len(tgt)
        return torch.tensor(per_seq, dtype=torch.float64).view(batch.inputs, batch.labels)

    def _answer_nll(self, batch: ScoredBatch, states: torch.Tensor) -> tuple[float, int]:
        nll, tokens = self._answer_nll_per_sequence(batch, states)
        return float(nll.sum()), int(tokens.sum())

    def _answer_nll_per_sequence(
        self,
        batch: ScoredBatch,
        states: torch.Tensor,
        base: torch.Tensor | None = None,
        picked: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed NLL, answer tokens) per sequence of ``batch``, float64 (``base``: see
        :meth:`_picked_log_probs`; ``picked``: its result, when already computed)."""
        if picked is None:
            picked = self._picked_log_probs(batch, states, base)
        picked = -picked[:, 0].double().cpu()
        lengths = torch.tensor([len(tgt) for tgt in batch.targets])
        seq = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        nll = torch.zeros(len(lengths), dtype=torch.float64).index_add_(0, seq, picked)
        return nll, lengths.double()
