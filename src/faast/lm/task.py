"""A frozen causal LM learns a supervised task from (input → output) examples, without gradients.

    from faast.lm.task import TaskModel
    task = TaskModel.create(model, tokenizer)                 # output memory only, no trained weights
    report = task.fit(examples)                                # learn + choose the read-out on validation
    task.classify(["a fine film", "a dull film"])              # over the labels seen in the examples
    task.fit_head(examples)                                    # optional: a closed-form label head
    task.generate(["Good morning"])                            # free-form outputs
    task.save("tasks.safetensors", "sentiment")                # same files as `faast lm learn`

Each example is written as ``prompt + answer`` (:mod:`faast.lm.prompts`). Which token transitions it
contributes to the fast weights (``pairs``):

* ``"answer"`` (supervised, the default): only the pairs whose next token is part of the answer,
  so the memory maps "input in context" → answer tokens;
* ``"all"`` (the paper): every transition of the whole demonstration, prompt included.

How the memory is read (mix, weight, temperature, spectral cut) is chosen by :meth:`TaskModel.fit`
on a validation split of the examples themselves, never on test data; with too few examples to
split, the memory is learned but kept off (:data:`MEMORY_OFF`, the zero-shot model) until enough
examples validate a read-out, as the guard does for read-outs that do not clearly beat it
(:func:`faast.lm.task_choice.significant_or_off`). The choice, with every candidate's validation score, is
returned and saved with the task.

A task can also carry lead demonstrations (``TaskSpec.demonstrations``): (input, output) pairs
written before every prompt, so the memory learns and is read on states conditioned on them —
in-context learning and fast weights together; their KV cache is computed once and every sequence
continues from a copy (``lead_cache=True``).

For classification, :meth:`TaskModel.fit_head` also fits a closed-form label head on the state at
the prompt's end (:mod:`faast.lm.label_head`); :meth:`TaskModel.classify` then uses it. How text is
batched and scored (label scores, answer NLL) is :mod:`faast.lm.task_scoring`; how the read-out is
chosen, :mod:`faast.lm.task_choice`; what a task is (:class:`TaskSpec`, its labels, the checks of its
examples), :mod:`faast.lm.task_spec`; folds of grouped examples, :mod:`faast.lm.task_folds`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import faast.distributed
from faast._checks import caller_stacklevel
from faast.lm import fastweights as fw
from faast.lm.calibration import LOG_PROB_FLOOR, calibrated_label_scores, content_free_inputs
from faast.lm.config import FaastConfig
from faast.lm.decoding import check_max_new_tokens, decoding_kwargs
from faast.lm.examples import Example
from faast.lm.inject import context_window
from faast.lm.label_head import DEFAULT_HEAD_LAYER, LabelHead, candidate_layers
from faast.lm.model import FaastModel, get_faast_model
from faast.lm.prefix_cache import PrefixCache
from faast.lm.prompts import Encoded, PromptCodec, answer_pair_mask, pad_batch
from faast.lm.readouts import HEAD_INPUT, Captured
from faast.lm.task_choice import (
    DEFAULT_ANCHOR,
    DEFAULT_GUARD,
    MEMORY_OFF,
    TASK_DEFAULT_READ,
    ReadCandidate,
    checked_anchor,
    checked_guard,
    choose_read_out,
    default_candidates,
    memory_off,
    split_examples,
)
from faast.lm.task_folds import (
    check_validation,
    copies_as_groups,
    group_folds,
    groups_by_example,
    warn_copies_across_groups,
)
from faast.lm.task_record import INFO_KEY as LEARNED_KEY
from faast.lm.task_record import LearnedRecord, example_digest
from faast.lm.task_scoring import ScoredBatch, TaskScoringMixin, batch_starts, check_batch_size
from faast.lm.task_spec import (
    MAX_LABELS,
    PAIR_MODES,
    TaskSpec,
    auto_labels,
    check_outputs_end,
    checked_examples,
    checked_labels,
    input_texts,
    label_rule,
    listed,
)

#: Fewer examples than this: no validation split; the memory is kept off (MEMORY_OFF).
MIN_VALIDATION_EXAMPLES = 8
#: The share of the examples :meth:`TaskModel.fit` holds out (each in one fold) by default: every
#: example, chosen on development sentences over half (benchmarks/lm_guard.py, docs/tasks.md).
DEFAULT_HOLD_OUT = 1.0


@dataclass
class FitReport:
    """What :meth:`TaskModel.fit` did: the chosen read-out, why, and on how many examples."""

    chosen: ReadCandidate
    metric: str
    scores: dict[str, float]
    n_fit: int
    n_validation: int
    pairs: int
    criterion: dict[str, float] = field(default_factory=dict)
    #: guard name -> the read-out it chose (every guard of :data:`GUARDS`, from the same scores)
    decisions: dict[str, str] = field(default_factory=dict)
    #: how often chance makes the best candidate gain this much over the memory off
    #: (:func:`faast.lm.task_choice.sign_flip_p_value`; None without validation or a memory-off candidate)
    sign_flip_p: float | None = None
    #: candidate name -> (held-out examples,) float64 log-likelihood per example, summed over its
    #: items (labels: 1; free-form: answer tokens), as the guards read them; not saved
    validation_loglik: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    #: (held-out examples,) items per example
    validation_items: torch.Tensor | None = field(default=None, repr=False)
    #: labels only: candidate name -> (held-out examples,) bool, whether its best-scored label was the
    #: right one (the per-example accuracy behind ``scores``); not saved
    validation_correct: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    #: the name of the memory-off read-out the guard would fall back on and, unless the anchor is
    #: one of :data:`faast.lm.task_choice.FALLBACK_ONLY_ANCHORS` (tested against the zero-shot model
    #: as it is), tested the choice against (:func:`faast.lm.task_choice.anchor_candidate`; None
    #: without validation or a memory-off candidate)
    anchor: str | None = None
    #: labels only: candidate name -> (held-out examples,) int64 index of its best-scored label (as
    #: the label-mix anchors read them, :data:`faast.lm.task_choice.LABEL_MIX_ANCHORS`); not saved
    validation_predicted: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    #: labels only: (held-out examples,) int64 index of the right label; not saved
    validation_targets: torch.Tensor | None = field(default=None, repr=False)
    #: (held-out examples,) int64 position in the fitted examples of each held-out example, in the
    #: order of the per-example tensors above (fold by fold); not saved
    validation_index: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The saved part of the report, standard JSON: a score that is not finite (the held-out
        loss of a read-out that gives some answer token probability 0, e.g. λ = 1) is None."""
        return {
            "chosen": self.chosen.to_dict(),
            "chosen_name": self.chosen.name,
            "metric": self.metric,
            "scores": {name: _finite_or_none(v) for name, v in self.scores.items()},
            "n_fit": self.n_fit,
            "n_validation": self.n_validation,
            "pairs": self.pairs,
            "criterion": {name: _finite_or_none(v) for name, v in self.criterion.items()},
            "decisions": self.decisions,
            "sign_flip_p": _finite_or_none(self.sign_flip_p),
            "anchor": self.anchor,
        }


def fit_labels(
    examples: Sequence[Example],
    labels: Sequence[str] | str | None,
    demonstrations: Sequence[tuple[str, str]] = (),
) -> list[str] | None:
    """The label set :meth:`TaskModel.fit` learns ``examples`` under for its ``labels`` (None: free
    text), without a model, so that a command can refuse bad labels before loading one:
    ``"auto"``/``"all"`` read the outputs of the examples, then of the lead ``demonstrations`` (a
    label only they show is one); a list must hold every output of the examples (a clear error
    names those it does not). ``"auto"`` warns when every output is the same one (no label set:
    the examples are then learned as free text) and, as every label set taken from outputs, of two
    labels that differ only in case (:func:`~faast.lm.task_spec.warn_case_twins`)."""
    rule = label_rule(labels)
    if rule is not None:
        shown = [Example(inp, out) for inp, out in demonstrations]
        found = auto_labels([*examples, *shown], rule)
        outputs = {e.output for e in [*examples, *shown]}
        if found is None and len(outputs) == 1:
            warnings.warn(
                f"labels 'auto': every output is {next(iter(outputs))!r}, one label, so there is no label "
                "set and the examples are learned as free text; give the labels (labels=[a, b]) or "
                "learn them as free text on purpose (labels=None)",
                UserWarning,
                stacklevel=caller_stacklevel(),
            )
        return found
    if labels is None:
        return None
    resolved = TaskSpec(labels=list(labels)).labels or []  # checked (and read as strings) as fit reads them
    unknown = {e.output for e in examples} - set(resolved)
    if unknown:
        raise ValueError(f"examples have outputs that are not labels: {sorted(unknown)[:5]}")  # type: ignore[type-var]
    return resolved


def _finite_or_none(value: float | None) -> float | None:
    """``value`` as a float if it is a finite number, else None (JSON has no NaN or Infinity)."""
    return None if value is None or not math.isfinite(value) else float(value)


class TaskModel(TaskScoringMixin):
    """A :class:`~faast.lm.FaastModel` plus a tokenizer and a :class:`TaskSpec`.

    Parameters
    ----------
    model : FaastModel
        The frozen LM with its memories (the output memory is what tasks read).
    tokenizer : transformers tokenizer
    spec : TaskSpec, optional
        Template, pair mode, labels.
    context : int, optional
        The model's context window in tokens (default: from the tokenizer/model config).
    cache : bool
        Keep the base model's states of every sequence run (examples learned, prompts scored), so
        learning or scoring the same examples again — other subsets, other pair modes, other
        read-outs — runs no forward pass. Costs about T × d floats per sequence.
    lead_cache : bool
        With lead demonstrations (``spec.demonstrations``), run them once and continue every
        sequence from a copy of their KV cache (:meth:`FaastModel.prefix_cache
        <faast.lm.FaastModel.prefix_cache>`) instead of running them again with each one (default;
        the same states up to rounding; models with middle memories or without position ids always
        run them again), generation included.
    """

    def __init__(
        self,
        model: FaastModel,
        tokenizer: Any,
        spec: TaskSpec | None = None,
        *,
        context: int | None = None,
        cache: bool = False,
        lead_cache: bool = True,
    ):
        if not isinstance(model, FaastModel):
            raise TypeError(f"model must be a FaastModel (get_faast_model), got {type(model).__name__}")
        if model.output_memory is None:
            raise ValueError("task learning reads the output memory; build the model with output_memory=True")
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec or TaskSpec()
        if context is None:
            context = context_window(model.base_model)
        self.codec = PromptCodec(
            tokenizer, self.spec.template, context, demonstrations=self.spec.demonstrations
        )
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to eos_token)")
        self.report: FitReport | None = None
        self.head: LabelHead | None = None
        #: the examples learned since the last reset (:mod:`faast.lm.task_record`), which
        #: :meth:`forget` checks; None for a task saved before there was a record
        self.learned: LearnedRecord | None = LearnedRecord()
        #: whether label scores are contextually calibrated unless told (set by :meth:`use`)
        self.calibrated = False
        self._learn_cache: dict[tuple[int, ...], dict[str, torch.Tensor]] | None = {} if cache else None
        self._score_cache: dict[tuple[int, ...], torch.Tensor] | None = {} if cache else None
        self.lead_cache = lead_cache
        self._lead: PrefixCache | None = None
        self._lead_where: tuple[torch.device, torch.dtype] | None = None

    def _lead_prefix(self) -> PrefixCache | None:
        """The KV cache of the lead tokens but the last (which every sequence then starts with, so
        its transition into the prompt stays a pair), when lead demonstrations are read from a cache
        (``lead_cache``); None otherwise. Sequences are run from position ``len(prefix)`` on."""
        lead = self.codec.lead_ids
        usable = self.lead_cache and self.codec.num_lead > 0 and len(lead) > 1
        if not (usable and self.model.serves_prefix_cache):
            return None
        where = (self.device, next(self.model.base_model.parameters()).dtype)
        if self._lead is None or self._lead_where != where:  # made again after fm.to(...)
            self._lead, self._lead_where = self.model.prefix_cache(lead[:-1]), where
        return self._lead

    def _lead_view(self) -> tuple[PrefixCache | None, int]:
        """(:meth:`_lead_prefix`, how many leading tokens of every sequence it holds: 0 without
        one); a sequence is run as ``ids[skip:]`` after the prefix."""
        prefix = self._lead_prefix()
        return prefix, 0 if prefix is None else len(prefix)

    def lead_nbytes(self) -> int:
        """Bytes of the KV cache the lead demonstrations are read from (0 without one): what the
        task holds at inference besides its fast weights."""
        prefix = self._lead_prefix()
        return 0 if prefix is None else prefix.nbytes()

    @classmethod
    def create(
        cls,
        model: Any,
        tokenizer: Any,
        spec: TaskSpec | None = None,
        *,
        key_features: int = 0,
        mix: str = "prob",
        **kwargs: Any,
    ) -> TaskModel:
        """A task model on a plain causal LM: output memory only (no trained parameters), keyed on
        the final state plus ``key_features`` random features (``FaastConfig.output_key_features``),
        learning the statistics of ``mix`` ("prob": next-token rows, read by the "prob" and "logit"
        mixes; "correction": loss gradients, :mod:`faast.lm.correction`)."""
        layout = FaastConfig(num_memories=0, output_key_features=key_features, output_mix=mix)
        return cls(get_faast_model(model, layout), tokenizer, spec, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.base_model.parameters()).device

    # ----------------------------------------------------------------- learning
    def learn(self, examples: Sequence[Example], *, batch_size: int = 16, progress: bool = True) -> int:
        """Add the pairs of ``examples`` to the fast weights (``spec.pairs`` decides which); returns
        how many pairs. Calls accumulate exactly. Free-text outputs holding the template's
        ``answer_end`` are refused (:func:`check_outputs_end`)."""
        encoded = self._encoded_examples(examples, learning=True)
        pairs = 0
        starts = batch_starts(len(encoded), batch_size)
        for i in _batch_bar(starts, "learn examples", progress):
            pairs += self.model.learn_captured(self._captured(encoded[i : i + batch_size]))
        if self.learned is not None:
            self.learned.add(example_digest(e.ids) for e in encoded)
        return pairs

    def forget(self, examples: Sequence[Example], *, batch_size: int = 16, progress: bool = True) -> int:
        """Remove the pairs :meth:`learn` added for ``examples`` (in ``spec.pairs`` mode); returns how
        many. Afterwards the fast weights equal those of a task that learned only the other
        examples. Examples never learned are a ``ValueError`` and nothing changes: every example
        must be in the task's record of learned examples (:attr:`learned`, by its tokens, at any
        size; an in-context demonstration is not learned and cannot be forgotten), and while at
        most d pairs are held every pair is also checked bit for bit (:meth:`FaastModel.forget
        <faast.lm.FaastModel.forget>`: pass the examples batched as they were learned, or build the
        task with ``cache=True``, whose cached states are the very ones learned). A task saved
        before the record (``learned`` None) has the pair check only."""
        checked = checked_examples(examples, outputs=True)
        encoded = self._encode_checked(checked)
        digests = [example_digest(e.ids) for e in encoded]
        if self.learned is not None:
            self._check_learned(checked, digests)
        pairs = 0
        starts = batch_starts(len(encoded), batch_size)
        with self.model.all_or_nothing():
            for i in _batch_bar(starts, "forget examples", progress):
                pairs += self.model.forget_captured(self._captured(encoded[i : i + batch_size]))
        if self.learned is not None:
            self.learned.remove_found(digests)
        return pairs

    def _check_learned(self, examples: list[Example], digests: list[int]) -> None:
        """Refuse examples the record does not hold, naming them (1-based positions) and saying
        which are the task's in-context demonstrations."""
        missing = [] if self.learned is None else self.learned.missing(digests).tolist()
        if not missing:
            return
        demos = set(self.spec.demonstrations)  # (input, output) pairs
        named = ", ".join(
            f"example {i + 1} ({examples[i].input[:40]!r} → {examples[i].output!r})" for i in missing[:3]
        )
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = [i for i in missing if (examples[i].input, examples[i].output) in demos]
        demo_note = (
            f"; example {shown[0] + 1} is one of the task's in-context demonstrations, written before "
            "every prompt and not learned: they stay with the task (learn it again without them to "
            "drop one)"
            if shown
            else ""
        )
        raise ValueError(
            f"{len(missing)} of the {len(examples)} examples to forget were never learned by this task "
            f"(or were already forgotten), so nothing was forgotten: {named}{more}{demo_note}. An "
            "example is matched by its input and output as the task's template encodes them"
        )

    def _encoded_examples(self, examples: Sequence[Example], *, learning: bool = False) -> list[Encoded]:
        """``examples`` (with outputs) encoded as ``prompt + answer``, each checked to fit the context
        and, ``learning`` free text, not to hold the answer end (:func:`check_outputs_end`; what was
        learned before that check can still be forgotten)."""
        return self._encode_checked(checked_examples(examples, outputs=True), learning=learning)

    def _encode_checked(self, examples: list[Example], *, learning: bool = False) -> list[Encoded]:
        """:meth:`_encoded_examples` of examples already through :func:`checked_examples` (a list of
        :class:`Example`, each with an output)."""
        if learning and self.spec.labels is None:
            check_outputs_end(examples, self.spec.template)
        encoded = [self.codec.encode(e.input, e.output) for e in examples]  # type: ignore[arg-type]
        for i, (e, enc) in enumerate(zip(examples, encoded, strict=True)):
            self.codec.check_fits(enc.ids, f"example {i + 1} ({e.input[:40]!r} → {e.output[:20]!r})")
        return encoded

    def _check_lengths(self, examples: Sequence[Example], labels: Sequence[str] | None) -> None:
        """Refuse, before any forward pass, an example longer than the context: as learned (prompt
        + answer) and, with ``labels``, as scored (prompt + the longest label). Without this
        :meth:`fit` found it in the cross-validation, after learning a fold (minutes on a real
        model). ``examples``: through :func:`checked_examples` (as :meth:`fit` has them); each prompt
        is encoded once, for both checks."""
        encoded = self._encode_checked(list(examples))
        if labels:
            longest = max(self.codec.scored_label_ids(list(labels)), key=len)
            for i, (e, enc) in enumerate(zip(examples, encoded, strict=True)):
                what = f"the prompt of example {i + 1} ({e.input[:40]!r}) with a label"
                self.codec.check_fits(enc.prompt + longest, what)

    def _captured(self, chunk: list[Encoded]) -> Captured:
        """The base model's states for a batch of encoded examples, from the cache when every
        sequence is in it (``cache=True``), with the pairs the task's mode learns. With a lead
        cache (:meth:`_lead_prefix`) the rows are the tokens after it (states and pairs alike)."""
        prefix, skip = self._lead_view()
        lengths = [len(c.ids) - skip for c in chunk]
        ids, mask = pad_batch([c.ids[skip:] for c in chunk], self.tokenizer.pad_token_id)
        pair_mask = None
        if self.spec.pairs == "answer":
            pair_mask = answer_pair_mask([len(c.prompt) - skip for c in chunk], lengths, ids.shape[1])
        elif self.codec.num_lead:  # "all": the example's own transitions, not the lead's again
            lead = len(self.codec.lead_ids) - skip
            pair_mask = answer_pair_mask([lead] * len(chunk), lengths, ids.shape[1])
        keys = [tuple(c.ids) for c in chunk]
        if self._learn_cache is not None and all(k in self._learn_cache for k in keys):
            points = list(self._learn_cache[keys[0]])
            states = {
                p: _pad_rows([self._learn_cache[k][p] for k in keys], ids.shape[1]).to(self.device)
                for p in points
            }
            valid = self.model.learned_pairs(ids, mask, pair_mask)  # as capture: start-token pairs left out
            self._share_head_inputs(chunk, skip)
            lead = () if prefix is None else tuple(prefix.ids)
            ids, mask, valid = ids.to(self.device), mask.to(self.device), valid.to(self.device)
            return Captured(ids, mask, valid, int(valid.sum()), states, lead)
        cap = self.model.capture(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            pair_mask=pair_mask,
            prefix=prefix,
        )
        if self._learn_cache is not None:
            for row, (k, n) in enumerate(zip(keys, lengths, strict=True)):
                self._learn_cache[k] = {p: s[row, :n].detach().clone() for p, s in cap.states.items()}
            self._share_head_inputs(chunk, skip)
        return cap

    def _share_head_inputs(self, chunk: list[Encoded], skip: int) -> None:
        """Put the head inputs learning captured for ``chunk`` (in the learn cache) in the score
        cache too, when both are kept (``cache=True``, or during :meth:`fit`): under the whole
        example (prompt + answer, what answer scores read) and under its prompt alone (a causal
        model's prompt states do not depend on what follows; what single-token label scores read).
        Views of the learned states, no copy; scoring them needs no forward pass of its own."""
        if self._learn_cache is None or self._score_cache is None:
            return
        for c in chunk:
            z = self._learn_cache[tuple(c.ids)].get(HEAD_INPUT)
            if z is not None:
                self._score_cache.setdefault(tuple(c.ids), z)
                self._score_cache.setdefault(tuple(c.prompt), z[: len(c.prompt) - skip])

    def reset(self) -> TaskModel:
        """Back to the zero-shot model: no fast weights, no label head, and label scores read as
        they are (a calibrated read-out chosen by :meth:`fit` no longer applies)."""
        self.model.reset_projection()
        self.head = None
        self.calibrated = False
        self.learned = LearnedRecord()
        return self

    def clear_cache(self) -> TaskModel:
        """Drop the base model's states kept by ``cache=True`` (examples learned, prompts scored),
        so the next learn, fit or score runs the model again (e.g. to time it); the memory and the
        lead demonstrations' KV cache stay."""
        if self._learn_cache is not None:
            self._learn_cache.clear()
        if self._score_cache is not None:
            self._score_cache.clear()
        return self

    def fit_head(
        self,
        examples: Sequence[Example],
        *,
        loss: str = "squared",
        batch_size: int = 16,
        layer: int | str | None = DEFAULT_HEAD_LAYER,
        groups: Sequence[Hashable] | None = None,
        center: bool = False,
        progress: bool = True,
    ) -> LabelHead:
        """Fit a closed-form label head (:mod:`faast.lm.label_head`) on the prompt-end states of
        labelled ``examples`` (no backprop); :meth:`classify` then scores with it, and :meth:`save`
        stores it with the task. ``layer``: ``"auto"`` (the default) weighs the blocks of
        :func:`~faast.lm.label_head.candidate_layers` and the head input by cross-validation on
        the examples, keeping the head input unless another layer is significantly better
        (:meth:`LabelHead.fit_layers`; one more forward pass over the examples); None reads what
        the LM head reads (the states come from the learn cache when there is one); a decoder
        block's index (0-based) reads its output. ``groups`` (one per example, as in :meth:`fit`):
        ``"auto"``'s folds hold out whole groups (without them, the copies of an input together).
        ``center``: weights on the centred states plus a per-label intercept
        (:class:`~faast.lm.label_head.LabelHead`). ``progress``: a bar over the forward pass."""
        examples = checked_examples(examples, outputs=True)
        labels = self._labels(None)
        outputs = [e.output for e in examples]
        if layer == "auto":
            if groups is None and copies_as_groups(examples)[1]:  # copies held out together, as in fit
                groups = [e.input for e in examples]
            elif groups is not None:  # as in fit
                warn_copies_across_groups(examples, groups_by_example(examples, groups))  # type: ignore[arg-type]
            layers = candidate_layers(self.model._layout.num_layers)
            feats = self.prompt_layer_features(examples, layers, batch_size=batch_size, progress=progress)
            self.head = LabelHead.fit_layers(
                feats,
                layers,
                outputs,
                labels,
                loss,
                groups=groups,
                center=center,  # type: ignore[arg-type]
            )
            return self.head
        if layer is not None and (not isinstance(layer, int) or isinstance(layer, bool)):
            raise ValueError(f"layer must be None, a decoder block's index or 'auto', got {layer!r}")
        feats = self.prompt_features(examples, batch_size=batch_size, layer=layer, progress=progress)
        self.head = LabelHead.fit(feats, outputs, labels, loss, layer, center)  # type: ignore[arg-type]
        return self.head

    def head_applies(self, labels: Sequence[str]) -> bool:
        """Whether the label head scores ``labels``: each is one of its labels, once (in any order,
        or some of them: :meth:`head_scores` takes their columns)."""
        if self.head is None or not labels or len(set(labels)) != len(labels):
            return False
        return set(labels) <= set(self.head.labels)

    def head_scores(
        self,
        inputs: Sequence[str],
        *,
        labels: Sequence[str] | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> torch.Tensor:
        """(n, L) float64 scores of the label head: of ``labels`` in their order (labels the head
        scores, :meth:`head_applies`), or of all its labels in ``head.labels`` order; ``progress``:
        a bar over the forward pass."""
        if self.head is None:
            raise ValueError("this task has no label head; call fit_head first")
        if labels is not None and not self.head_applies(labels):
            raise ValueError(f"the label head scores the labels {self.head.labels}, not {list(labels)}")
        scores = self.head.scores(
            self.prompt_features(
                list(inputs), batch_size=batch_size, layer=self.head.layer, progress=progress
            )
        )
        if labels is None:
            return scores
        return scores[:, [self.head.labels.index(label) for label in labels]]

    def fit(
        self,
        examples: Sequence[Example],
        *,
        labels: Sequence[str] | str | None = "auto",
        folds: int = 5,
        max_validation: int = 500,
        hold_out: float = DEFAULT_HOLD_OUT,
        candidates: Sequence[ReadCandidate] | None = None,
        guard: str = DEFAULT_GUARD,
        anchor: str = DEFAULT_ANCHOR,
        seed: int = 0,
        batch_size: int = 16,
        progress: bool = True,
        distributed: bool = False,
        groups: Sequence[Hashable] | None = None,
    ) -> FitReport:
        """Learn ``examples`` and choose how to read them by cross-validation on them.

        labels: the label set (classification), ``"auto"`` (the distinct outputs when there are at
        most :data:`MAX_LABELS`, else free-form), ``"all"`` (every distinct output, however many)
        or ``None`` (free-form outputs).
        folds, max_validation, hold_out: the share ``hold_out`` of the examples, at most
        ``max_validation`` (stratified by label, seeded: :func:`~faast.lm.task_choice.split_examples`),
        is held out in ``folds`` folds (1: every example is held out once, but for the only example
        of a label, which is never held out: the memory would not have seen its label); for each
        fold the memory holds every other example, and each candidate read-out (default
        :func:`default_candidates`) is scored on the fold. The one with the best mean
        log-probability of the right answer (labels: of the right label; free-form: of the
        answer's tokens) wins, a proper scoring rule that is steadier than accuracy on small folds.
        Then the memory holds every example and is read with the winner. Each example runs through
        the model once (its states are kept for the duration of the fit).
        guard: what keeps the memory off unless the choice clearly beats it on the held-out
        examples (:func:`faast.lm.task_choice.significant_or_off`): "sign-flip" (the default: a
        sign-flip p-value for the best of all candidates below 0.1), "selection" (the gain of the
        choice made without each example above one standard error), "one-se" (the winner's own
        gain above one standard error) or "none". The report's ``decisions`` gives every guard's
        choice from the same scores.
        anchor: the memory-off read-out the guard tests against and falls back on when the
        candidates hold it plain and calibrated (:data:`faast.lm.task_choice.ANCHORS`):
        "balanced-best" (the default since 2026-12-03 night: the calibrated one when its predicted
        labels on the held-out examples come in shares closer to the right labels' and it is the
        better of the two by held-out log-likelihood), "balanced" (the first condition alone),
        "tested" (the calibrated one only when it beats the plain one by the sign-flip test between
        the two; the default that evening), "zero-shot" (the zero-shot model as it is; the default
        before), "best" (the better of the two on the held-out examples) or
        "balanced-best-fallback" (falls back on the read-out of "balanced-best" but tests the
        choice against the zero-shot model as it is).
        groups: one group per example (the document, speaker or source it comes from), or None.
        With groups the folds hold out whole groups (as scikit-learn's ``GroupKFold``): while a
        fold is scored, no example of its groups is learned, so the choice and the guard see how
        a read-out does on groups it never learned — where examples of one source resemble each
        other more than the inputs to come, folds of single examples overrate the memory (the
        genre task of docs/tasks.md: held-out folds of the plays learned, p < 0.05; new plays, a
        loss; folds of whole plays there showed no clear gain on its 120 test passages). At least
        two groups are needed; groups that split the copies of an input are warned about (a fold
        can then learn the copy of an example it scores). Without groups, the examples that share
        an input text are one group (copies held out together; the report's metric says how many
        repeat one), so a fold is never scored on an example whose copy it learned.
        distributed: under ``torchrun`` (:mod:`faast.distributed`) every process passes all the
        examples; each learns its block of them (in every fold and at the end) and scores its block
        of each fold, the statistics are all-reduced and the scores gathered in order, so every
        process chooses the same read-out and ends with the fast weights of one process.
        """
        examples = checked_examples(examples, outputs=True)
        group_of = groups_by_example(examples, groups)
        copies = 0
        if group_of is None:  # copies of an input are held out together
            group_of, copies = copies_as_groups(examples)
        else:  # groups given decide, with a warning where they split the copies of an input
            warn_copies_across_groups(examples, group_of)
        checked_guard(guard)
        checked_anchor(anchor)
        check_validation(folds, max_validation, hold_out)
        check_batch_size(batch_size)  # refused now, not after the cross-validation
        dist = faast.distributed.current() if distributed else faast.distributed.Dist()
        spec = self._resolved_spec(examples, labels)
        if spec.labels is None:  # free text: refused before the cross-validation, not after it
            check_outputs_end(examples, self.spec.template)
        self._check_lengths(examples, spec.labels)  # so are examples beyond the context
        mix = self.model.faast_config.output_mix
        candidates = self._fit_candidates(candidates, mix, spec.labels is not None)
        self.spec.labels = spec.labels  # the template and demonstrations stay those the codec reads
        temporary = self._learn_cache is None
        if temporary:
            self._learn_cache = {}
        scores_temporary = self._score_cache is None  # validation reads the states learning made
        if scores_temporary:
            self._score_cache = {}
        try:
            held = []
            n_val = 0
            validable = len(examples) >= MIN_VALIDATION_EXAMPLES and bool(candidates)
            if validable:
                n_val = min(max_validation, int(hold_out * len(examples)))
                _, held = split_examples(examples, n_val, self.spec.labels, seed)
            if held:
                report = self._cross_validate(
                    examples,
                    held,
                    folds,
                    candidates,
                    guard,
                    anchor,
                    batch_size,
                    progress,
                    dist,
                    group_of,
                    copies,
                )
            else:
                if not validable:
                    why = f"memory off: too few examples to validate a read-out (< {MIN_VALIDATION_EXAMPLES})"
                elif n_val == 0:
                    why = (
                        f"memory off: none held out (hold_out {hold_out:g}, max_validation {max_validation})"
                    )
                else:  # labels, each with a single example: holding one out would leave it unseen
                    why = (
                        "memory off: none held out, as every label has a single example (holding out "
                        "a label's only example would leave the label unseen); give some labels more "
                        "examples"
                    )
                report = FitReport(memory_off(mix), why, {}, len(examples), 0, 0)
            self.reset()
            report.pairs = self._learn_block(examples, set(), dist, batch_size, progress)
        finally:
            if temporary:
                self._learn_cache = None
            if scores_temporary:
                self._score_cache = None
        self.use(report.chosen)
        self.report = report
        return report

    @staticmethod
    def _fit_candidates(
        candidates: Sequence[ReadCandidate] | None, mix: str, labelled: bool
    ) -> list[ReadCandidate]:
        """``candidates`` (None or none: :func:`default_candidates` of ``mix``, without its
        calibrated read-outs unless the task is ``labelled``); a clear error for a calibrated
        candidate of a task whose outputs are free text."""
        if not candidates:
            chosen = default_candidates(mix)
            return chosen if labelled else [c for c in chosen if not c.calibrate]
        chosen = list(candidates)
        calibrated = [c.name for c in chosen if c.calibrate]
        if calibrated and not labelled:
            raise ValueError(
                f"calibrated read-outs ({calibrated[0]}, ...) need labels; these outputs are free text"
            )
        return chosen

    def use(self, candidate: ReadCandidate) -> TaskModel:
        """Read the fast weights with ``candidate`` (output mix + read knobs; label scores
        calibrated or not, :attr:`calibrated`)."""
        self.model.set_output_mix(candidate.mix, candidate.read)
        self.model.set_read(candidate.read)
        self.calibrated = candidate.calibrate
        return self

    def _resolved_spec(self, examples: Sequence[Example], labels: Sequence[str] | str | None) -> TaskSpec:
        """The task spec with the labels of ``fit``'s ``labels`` for ``examples`` (the task is left
        as it is; :func:`fit_labels`)."""
        resolved = fit_labels(examples, labels, self.spec.demonstrations)
        return TaskSpec(self.spec.template, self.spec.pairs, resolved, self.spec.demonstrations)

    # ----------------------------------------------------------------- validation
    def _cross_validate(
        self,
        examples: list[Example],
        held: list[Example],
        folds: int,
        candidates: Sequence[ReadCandidate],
        guard: str,
        anchor: str,
        batch_size: int,
        progress: bool,
        dist: faast.distributed.Dist,
        group_of: dict[int, Hashable] | None = None,
        copies: int = 0,
    ) -> FitReport:
        """Score every candidate on ``held`` in ``folds`` folds, each with the others learned: the
        report of the choice after ``guard`` against ``anchor`` (pairs: 0, for the caller to fill),
        with every guard's choice, the sign-flip p-value and the per-example scores. ``group_of``
        (``id(example)`` → group): folds of whole groups, and no example of a fold's groups is
        learned while it is scored (:func:`group_folds`); ``copies``: how many examples repeat an
        earlier one's input when ``group_of`` maps each example to its input (said in the metric)."""
        if group_of is None:
            k = max(1, min(folds, len(held)))
            parts = [held[f::k] for f in range(k)]
            unlearned = [{id(e) for e in part} for part in parts]
        else:
            parts, unlearned = group_folds(examples, held, folds, group_of)
            k = len(parts)
        labelled = self.spec.labels is not None
        part_targets = [self._right_label_indices(part) if labelled else None for part in parts]
        values: dict[str, list[torch.Tensor]] = {c.name: [] for c in candidates}
        guesses: dict[str, list[torch.Tensor]] = {c.name: [] for c in candidates}
        sizes: list[torch.Tensor] = []
        bar = tqdm(
            total=k * len(candidates), desc="cross-validate read-outs", disable=not progress, leave=False
        )
        for part, part_target, skipped in zip(parts, part_targets, unlearned, strict=True):
            self.reset()
            self._learn_block(examples, skipped, dist, batch_size, False)
            loglik, n, guess = self._score_fold(part, part_target, candidates, dist, bar)
            for j, cand in enumerate(candidates):
                values[cand.name].append(loglik[:, j])
                guesses[cand.name].append(guess[:, j])
            sizes.append(n)
        bar.close()
        items = torch.cat(sizes)
        per_item = {name: torch.cat(v) for name, v in values.items()}
        mean = {name: float(v.sum() / items.sum()) for name, v in per_item.items()}
        predicted = {name: torch.cat(v) for name, v in guesses.items()} if labelled else {}
        targets = torch.cat(part_targets) if labelled else None  # type: ignore[arg-type]
        best, outcomes, p_value, tested_against = choose_read_out(
            candidates, per_item, items, guard, anchor, predicted or None, targets
        )
        decisions = {g: choice.name for g, (choice, _) in outcomes.items()}
        note = outcomes[guard][1]
        correct = {name: guess == targets for name, guess in predicted.items()}  # labels only
        if group_of is None:
            grouped = ""
        elif copies:
            grouped = f" (copies of an input held out together: {copies} examples repeat one)"
        else:
            grouped = f" (folds of whole groups, {len(set(group_of.values()))} groups)"
        cv = f"{k}-fold cross-validation{grouped} on {len(held)} examples"
        if self.spec.labels is not None:
            scores = {name: int(correct[name].sum()) / len(held) for name in mean}
            metric = f"{cv}: mean log-probability of the right label (scores: accuracy){note}"
        else:
            scores = {name: -value for name, value in mean.items()}
            metric = f"{cv}: NLL per answer token (scores){note}"
        return FitReport(
            best,
            metric,
            scores,
            len(examples),
            len(held),
            0,
            mean,
            decisions,
            p_value,
            per_item,
            items,
            correct,
            None if tested_against is None else tested_against.name,
            predicted,
            targets,
            self._positions(examples, parts),
        )

    @staticmethod
    def _positions(examples: Sequence[Example], parts: Sequence[Sequence[Example]]) -> torch.Tensor:
        """(held-out examples,) int64 position in ``examples`` of each example of ``parts``, fold by
        fold (the order in which the folds' scores are concatenated)."""
        where = {id(e): i for i, e in enumerate(examples)}
        return torch.tensor([where[id(e)] for part in parts for e in part], dtype=torch.long)

    def _learn_block(
        self,
        examples: list[Example],
        skip: set[int],
        dist: faast.distributed.Dist,
        batch_size: int,
        progress: bool,
    ) -> int:
        """Learn ``examples`` except those whose ``id`` is in ``skip``; returns the pair count. With
        several processes each learns the examples of its block of ``examples`` (the same block in
        every fold, so its cached states serve every fold) and the statistics are all-reduced."""
        if not dist.active:
            return self.learn(
                [e for e in examples if id(e) not in skip], batch_size=batch_size, progress=progress
            )
        mine = [examples[i] for i in dist.shard_range(len(examples)) if id(examples[i]) not in skip]
        with dist.reduce_learning(self):  # unites the processes' records of examples learned too
            pairs = self.learn(mine, batch_size=batch_size, progress=progress) if mine else 0
        return round(dist.sum(pairs))

    def _score_fold(
        self,
        part: list[Example],
        targets: torch.Tensor | None,
        candidates: Sequence[ReadCandidate],
        dist: faast.distributed.Dist,
        bar: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score every candidate on the held-out ``part`` (targets: (len(part),) index of each
        example's right label, :meth:`_right_label_indices`; None for free-form outputs):
        (log-likelihood (len(part), C) float64, items per example (len(part),), index of the
        best-scored label (len(part), C) int64 (labels; -1 for free-form outputs)). Each process
        scores its block of ``part``; the blocks are gathered in order, so every process gets the
        same numbers."""
        mine = list(dist.shard(part))
        mine_targets = None if targets is None else dist.shard(targets)
        loglik = torch.zeros(len(mine), len(candidates), dtype=torch.float64)
        guess = torch.full((len(mine), len(candidates)), -1, dtype=torch.long)
        items = torch.zeros(len(mine), dtype=torch.float64)
        if mine:
            batches = self._validation_batches(mine)
            if self.spec.labels is not None and any(c.calibrate for c in candidates):
                batches += self._label_batches(content_free_inputs(self.codec), self.spec.labels)  # last
            fixed = None if self.model.middle_memories else [self._states(b) for b in batches]
            base = None  # the base model's log-probs of the scored tokens, shared by the read-outs
            if fixed is not None:
                base = [self._base_log_probs(b, s) for b, s in zip(batches, fixed, strict=True)]
            # "logit" read-outs of one cut: the head and the memory's logits once for all their β
            logit_picks = {} if fixed is None else self._logit_mix_picks(candidates, batches, fixed)
            label_lp: dict[str, torch.Tensor] = {}  # plain read-out -> (rows, L), for its calibrated twin
            for j, cand in enumerate(candidates):
                self.use(cand)
                states = fixed if fixed is not None else [self._states(b) for b in batches]
                plain = ReadCandidate(cand.mix, cand.read).name
                picked = logit_picks.get(plain, [None] * len(batches))
                if self.spec.labels is None:
                    ll, items = self._answer_fold_scores(batches, states, base, picked)
                else:
                    if plain not in label_lp:
                        label_lp[plain] = torch.cat(
                            [
                                self._label_log_probs(b, s, None if base is None else base[i], picked[i])
                                for i, (b, s) in enumerate(zip(batches, states, strict=True))
                            ]
                        )
                    ll, items, picks = self._label_fold_scores(
                        mine, mine_targets, label_lp[plain], cand.calibrate
                    )
                    guess[:, j] = picks.cpu()
                loglik[:, j] = ll.cpu()
                bar.update(1)
        loglik = dist.gather_rows(loglik, len(part))
        items = dist.gather_rows(items.cpu().to(torch.float64), len(part))
        guess = dist.gather_rows(guess, len(part))
        return loglik, items, guess

    def _validation_batches(self, part: list[Example]) -> list[ScoredBatch]:
        if self.spec.labels is not None:
            return self._label_batches([e.input for e in part], self.spec.labels)
        return self._answer_batches(part)

    def _right_label_indices(self, examples: Sequence[Example]) -> torch.Tensor:
        """(len(examples),) int64 index in ``spec.labels`` of each example's output (labelled tasks)."""
        return torch.tensor([self.spec.labels.index(e.output) for e in examples], dtype=torch.long)  # type: ignore[union-attr]

    def _label_fold_scores(
        self, part: list[Example], target: torch.Tensor, lp: torch.Tensor, calibrate: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probability of the right label normalised over the labels, ones: one item each, the
        best-scored label's index) per example of ``part``, whose right labels' indices are
        ``target`` (len(part),). lp: (len(part) + c, L) float64 label log-probabilities of ``part``
        and then of the c content-free inputs (c = 0 unless ``calibrate``), which the calibrated
        scores divide out."""
        n = len(part)
        scores = calibrated_label_scores(lp[:n], lp[n:]) if calibrate else lp[:n]
        norm = scores - torch.logsumexp(scores, dim=1, keepdim=True)
        picked = norm[torch.arange(n), target].clamp_min(LOG_PROB_FLOOR)
        return picked, torch.ones(n, dtype=torch.float64), scores.argmax(1)

    def _answer_fold_scores(
        self,
        batches: list[ScoredBatch],
        states: list[torch.Tensor],
        base: list[torch.Tensor] | None = None,
        picked: Sequence[torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed log-probability of the answer's tokens, answer tokens) per example (``base``:
        per batch, the base model's log-probabilities of those tokens, shared by the read-outs;
        ``picked``: per batch, the read-out's own when already computed, or None)."""
        nll, tokens = [], []
        for i, (b, s) in enumerate(zip(batches, states, strict=True)):
            part_nll, n = self._answer_nll_per_sequence(
                b, s, None if base is None else base[i], None if picked is None else picked[i]
            )
            nll.append(part_nll)
            tokens.append(n)
        nll_all = torch.cat(nll)
        return -nll_all, torch.cat(tokens)

    # ----------------------------------------------------------------- scoring
    @torch.no_grad()
    def label_scores(
        self,
        inputs: Sequence[str],
        labels: Sequence[str] | None = None,
        *,
        batch_size: int = 16,
        progress: bool = False,
        calibrate: bool | None = None,
    ) -> torch.Tensor:
        """(n, L) float64 log-probability of each label's full token sequence after each input's prompt
        (:meth:`~faast.lm.prompts.PromptCodec.scored_label_ids`: with the end marker when labels
        begin one another), with the fast weights or zero-shot without. ``calibrate``: contextually
        calibrated log-probabilities over the L labels instead, the label preference after the
        content-free inputs through the same model divided out (:mod:`faast.lm.calibration`); None
        (default): as the read-out in use says (:attr:`calibrated`, chosen by :meth:`fit` or set by
        :meth:`use`)."""
        labels, inputs = self._labels(labels), input_texts(inputs)
        if not inputs:
            return torch.empty(0, len(labels), dtype=torch.float64)
        if calibrate is None:
            calibrate = self.calibrated
        if calibrate:
            raw = self.label_scores(inputs, labels, batch_size=batch_size, progress=progress, calibrate=False)
            return calibrated_label_scores(raw, self.content_free_scores(labels, batch_size=batch_size))
        out = []
        batches = self._label_batches(list(inputs), labels, batch_size)
        for b in _batch_bar(batches, "score labels", progress):
            out.append(self._label_log_probs(b, self._states(b)))
        return torch.cat(out)

    def content_free_scores(
        self, labels: Sequence[str] | None = None, *, batch_size: int = 16
    ) -> torch.Tensor:
        """(c, L) float64 label log-probabilities of the content-free inputs
        (:func:`~faast.lm.calibration.content_free_inputs`) through this model as it is now."""
        return self.label_scores(
            content_free_inputs(self.codec), labels, batch_size=batch_size, calibrate=False
        )

    @torch.no_grad()
    def prompt_features(
        self,
        items: Sequence[str | Example],
        *,
        batch_size: int = 16,
        layer: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """(n, d) what the LM head reads at the end of each prompt (the key a labelled example's
        first answer token is learned under): features for another classifier on the same model.
        An :class:`Example` with an output is looked up among the learned sequences first (with
        ``cache=True`` a learned example costs no forward pass). ``layer``: the output of that
        decoder block (0-based) at the prompt's end instead (:meth:`prompt_layer_features`).
        ``progress``: a bar over the batches that run the model."""
        items = _feature_items(items)
        if layer is not None:
            return self.prompt_layer_features(items, [layer], batch_size=batch_size, progress=progress)[:, 0]
        if not items:
            return torch.zeros(0, self.model._layout.hidden_size)
        out: list[torch.Tensor | None] = [None] * len(items)
        todo = []
        _, skip = self._lead_view()  # cached states start after the lead's cached tokens
        for i, item in enumerate(items):
            text = item.input if isinstance(item, Example) else item
            if isinstance(item, Example) and item.output is not None and self._learn_cache is not None:
                enc = self.codec.encode(item.input, item.output)
                hit = self._learn_cache.get(tuple(enc.ids))
                if hit is not None and not self.model.middle_memories:
                    out[i] = hit[HEAD_INPUT][len(enc.prompt) - 1 - skip]
                    continue
            todo.append((i, text))
        starts = batch_starts(len(todo), batch_size)
        for start in _batch_bar(starts, "prompt states", progress):
            chunk = todo[start : start + batch_size]
            prompts = [self.codec.prompt_ids(text) for _, text in chunk]
            batch = ScoredBatch(prompts, [[(len(p) - 1, [])] for p in prompts], len(chunk), 1, True)
            for (i, _), z in zip(chunk, self._states(batch), strict=True):
                out[i] = z
        return torch.stack(out)  # type: ignore[arg-type]

    @torch.no_grad()
    def prompt_layer_features(
        self,
        items: Sequence[str | Example],
        layers: Sequence[int | None],
        *,
        batch_size: int = 16,
        progress: bool = False,
    ) -> torch.Tensor:
        """(n, c, d) the states at the end of each prompt of ``items`` (texts or examples: their
        inputs) for each of the c ``layers``: the output of that decoder block (0-based) or, for
        ``None``, what the LM head reads (:meth:`prompt_features`), in one forward pass per batch
        (:meth:`~faast.lm.model.FaastModel.layer_states`; never from the learn cache, which keeps
        the head input only), gathered on the CPU (c states per example can outgrow a GPU)."""
        texts = [item.input if isinstance(item, Example) else item for item in _feature_items(items)]
        prefix, skip = self._lead_view()
        out = []
        starts = batch_starts(len(texts), batch_size)
        for start in _batch_bar(starts, "layer states", progress):
            rows = [self.codec.prompt_ids(t)[skip:] for t in texts[start : start + batch_size]]
            ids, mask = pad_batch(rows, self.tokenizer.pad_token_id)
            states = self.model.layer_states(
                ids.to(self.device), mask.to(self.device), layers=list(layers), prefix=prefix
            )
            out.append(torch.stack([states[r, len(row) - 1] for r, row in enumerate(rows)]).cpu())
        if not out:
            return torch.zeros(0, len(layers), self.model._layout.hidden_size)
        return torch.cat(out)

    def classify(
        self, inputs: Sequence[str], labels: Sequence[str] | None = None, **kwargs: Any
    ) -> list[str]:
        """The most probable label for each input (by the label head when the task has one and
        ``labels`` are its labels, else by the LM with its fast weights)."""
        labels, inputs = self._labels(labels), input_texts(inputs)
        if not inputs:
            return []
        if self.head_applies(labels):
            shared = {key: kwargs[key] for key in ("batch_size", "progress") if key in kwargs}
            best = self.head_scores(inputs, labels=labels, **shared).argmax(dim=1)
            return [labels[i] for i in best.tolist()]
        best = self.label_scores(inputs, labels, **kwargs).argmax(dim=1)
        return [labels[i] for i in best.tolist()]

    @torch.no_grad()
    def answer_nll(self, examples: Sequence[Example], *, batch_size: int = 16) -> tuple[float, int]:
        """(summed NLL, tokens) of the examples' answers under teacher forcing (end marker included)."""
        examples = checked_examples(examples, outputs=True)
        nll, count = 0.0, 0
        for b in self._answer_batches(examples, batch_size):
            part, n = self._answer_nll(b, self._states(b))
            nll, count = nll + part, count + n
        return nll, count

    @torch.no_grad()
    def generate(
        self,
        inputs: Sequence[str],
        *,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        progress: bool = True,
        no_repeat_ngram: int | None = None,
    ) -> list[str]:
        """Greedy answers for ``inputs``, stopped at the template's end marker. ``no_repeat_ngram``:
        forbid repeating an n-gram of the answer itself (:class:`faast.lm.decoding.NoRepeatInAnswer`;
        the prompt's n-grams stay allowed)."""
        check_max_new_tokens(max_new_tokens)
        inputs = input_texts(inputs)
        prompts = [self.codec.prompt_ids(x) for x in inputs]
        for p, x in zip(prompts, inputs, strict=True):
            if len(p) + max_new_tokens > self.codec.context:
                raise ValueError(
                    f"the prompt of {x[:40]!r} ({len(p)} tokens) leaves no room for {max_new_tokens} new "
                    f"tokens in the context of {self.codec.context}"
                )
        prefix, skip = self._lead_view()
        # pads between the lead and a row cost a sliding window slots; a model that ignores the mask
        # (RWKV) runs its state through them: then only prompts of one length share a batch
        by_length = (prefix is not None and prefix.slides()) or not self.model.masks_left_padding
        groups = _generation_groups(prompts, check_batch_size(batch_size), by_length)
        outs: list[str | None] = [None] * len(prompts)
        for group in _batch_bar(groups, "generate", progress):
            rows = [prompts[j][skip:] for j in group]
            ids, mask = pad_batch(rows, self.tokenizer.pad_token_id, side="left")
            cache: dict[str, Any] = {}
            if prefix is not None:  # the lead's cached tokens, then each row left-padded after them
                ids = torch.cat([torch.tensor([prefix.ids]).expand(len(rows), -1), ids], dim=1)
                mask = torch.cat([torch.ones(len(rows), skip, dtype=mask.dtype), mask], dim=1)
                cache = prefix.batched(len(rows))
            gen = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                **cache,
                **self.codec.stop_kwargs(),
                **decoding_kwargs(no_repeat_ngram, ids.shape[1]),
            )
            for j, row in zip(group, gen, strict=True):
                outs[j] = self.codec.decode_answer(row[ids.shape[1] :].tolist())
        return outs  # type: ignore[return-value]

    # ----------------------------------------------------------------- labels
    def _labels(self, labels: Sequence[str] | None) -> list[str]:
        return checked_labels(labels, self.spec.labels, "learn labelled examples or pass labels")

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str], task: str = "default") -> Path:
        """Store the fast weights, the read-out in use (calibrated or not) and the task spec as
        ``task`` in ``path``, with the report of the fit that chose the read-out."""
        info = {
            "task": self.spec.to_dict(),
            "fit": None if self.report is None else self.report.to_dict(),
            "calibrated": self.calibrated,
        }
        if self.head is not None:
            info["head"] = self.head.to_dict()
        if self.learned is not None:
            info[LEARNED_KEY] = self.learned.to_json()
        return self.model.save_fast_weights(path, task, info=info)

    @classmethod
    def load(
        cls, model: Any, tokenizer: Any, path: str | os.PathLike[str], task: str | None = None, **kwargs: Any
    ) -> TaskModel:
        """A task model on a plain causal LM from a task saved by :meth:`save`."""
        _, _, signature = fw.read_task(path, task)
        info = signature.get("info") or {}
        if "task" not in info:
            raise ValueError(
                f"{path}: task {task!r} was not saved by a TaskModel (no task spec); use FaastModel"
            )
        layout = FaastConfig.from_dict(signature["config"])
        return cls.on_saved(get_faast_model(model, layout), tokenizer, path, task, info, **kwargs)

    @classmethod
    def on_saved(
        cls,
        model: FaastModel,
        tokenizer: Any,
        path: str | os.PathLike[str],
        task: str | None,
        info: dict[str, Any],
        **kwargs: Any,
    ) -> TaskModel:
        """The task ``task`` of ``path`` on ``model``, already built with the task's saved layout:
        its spec and label head from ``info`` (the task's saved info), its fast weights from the
        file."""
        tm = cls(model, tokenizer, TaskSpec.from_dict(info["task"]), **kwargs)
        tm.model.load_fast_weights(path, task)
        data = info.get("head")
        tm.head = (
            None
            if data is None
            else LabelHead.from_dict(data, model._layout.hidden_size, model._layout.num_layers)
        )
        tm.calibrated = bool(info.get("calibrated", False))  # the fast weights keep the read itself
        record = info.get(LEARNED_KEY)
        where = f"{path}: task {task!r}"
        tm.learned = None if record is None else LearnedRecord.from_json(record, where)
        return tm


def _pad_rows(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """(B, width, d) from per-sequence (T_i, d) states, zero-padded on the right."""
    out = rows[0].new_zeros((len(rows), width, rows[0].shape[-1]))
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out


__all__ = [
    "MAX_LABELS",
    "MEMORY_OFF",
    "PAIR_MODES",
    "TASK_DEFAULT_READ",
    "FitReport",
    "ReadCandidate",
    "TaskModel",
    "TaskSpec",
    "check_outputs_end",
    "default_candidates",
    "fit_labels",
    "memory_off",
    "split_examples",
]


def _feature_items(items: Sequence[str | Example]) -> list[str | Example]:
    """``items`` (texts or examples) as a list (:func:`~faast.lm.task_spec.listed`)."""
    return listed(items, (str, Example), ("items", "item", "texts or examples"))


def _batch_bar(batches: Iterable[Any], desc: str, progress: bool) -> Any:
    """``batches`` under a transient tqdm bar named ``desc`` (counting batches; none unless
    ``progress``)."""
    return tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False)


def _generation_groups(prompts: list[list[int]], batch_size: int, by_length: bool) -> list[list[int]]:
    """The indices of ``prompts`` generated together, at most ``batch_size`` at a time: in order;
    with ``by_length`` (a cached lead on a model whose layers keep a sliding window) only prompts
    of one length share a batch, so no row is padded between the lead and its prompt — the pads
    took window slots, a padded row lost part of the lead, and the text it generated depended on
    the batch (Gemma-3 with --in-context)."""
    if not by_length:
        return [list(range(i, min(i + batch_size, len(prompts)))) for i in range(0, len(prompts), batch_size)]
    by: dict[int, list[int]] = {}
    for j, prompt in enumerate(prompts):
        by.setdefault(len(prompt), []).append(j)
    return [group[i : i + batch_size] for group in by.values() for i in range(0, len(group), batch_size)]
