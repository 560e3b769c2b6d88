"""``FaastModel``: test-time learning for an unmodified Hugging Face causal LM.

    from faast.lm import FaastConfig, get_faast_model
    model = get_faast_model(AutoModelForCausalLM.from_pretrained(name), FaastConfig())
    model.learn(**tokenizer(texts, return_tensors="pt", padding=True))   # forward only, no grads
    model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=40)
    model.forget(**tokenizer(texts, return_tensors="pt", padding=True))     # as if never learned
    model.save_fast_weights("tasks.safetensors", task="austen")
    model.reset_projection()                                                # back to the base model

The memories are read-outs (:mod:`faast.lm.readouts`) attached with forward hooks; the wrapped
model is ``model.base_model`` and attribute look-ups fall through to it, as in PEFT. One key's
path: ``learn`` → :meth:`FaastModel.capture` records each read-out's key state through its hook →
``ReadOut.learn`` adds the pairs to its :class:`~faast.InverseMemory` → on the first read the
memory compiles W with the cut of the :class:`~faast.lm.config.ReadConfig` → the read-out's hook
applies its formula.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faast._checks import check_device
from faast.io import check_json_dict, load_tensors, save_tensors
from faast.lm import fastweights as fw
from faast.lm.config import FaastConfig, ReadConfig
from faast.lm.fastweights import SCORER_RESOLUTION, SCORER_VALUES
from faast.lm.inject import (
    PROBE_IDS,
    HookSet,
    UnsupportedModelError,
    _text_config,
    check_causal,
    check_head_unchanged,
    context_window,
    discard_compiled_code,
    find_layout,
    live_faast_hook,
    strip_inert_hooks,
)
from faast.lm.inputs import (
    check_learn_inputs,
    check_pair_mask,
    check_vocabulary,
    positions_from_mask,
    token_ids,
    warn_unmasked_padding,
)
from faast.lm.learned_rows import TENSOR_KEY as LEARNED_ROWS_KEY
from faast.lm.learned_rows import LearnedRows, row_digests
from faast.lm.logit_transform import LogitTransform
from faast.lm.output_readouts import (
    LogitReadOut,
    OutputReadOut,
    ProbReadOut,
    head_logits,
    head_row_chunks,
    layout_logits,
)
from faast.lm.prefix_cache import PrefixCache, model_extends_by_attention
from faast.lm.readout_registry import build_readouts
from faast.lm.readouts import (
    HEAD_INPUT,
    Captured,
    HookContext,
    MiddleMemory,
    ReadOut,
    same_scorer,
    scorer_snapshot,
)
from faast.lm.readouts import pair_mask as real_token_pairs

READOUT_NAME = "faast_readout.safetensors"


#: Why a FaastModel is not copied (``how``: copy.deepcopy or copy.copy), and how to get a second one.
_COPY_MESSAGE = (
    "{how} of a FaastModel is not supported: a copy would share the original's hooks and fast "
    "weights. Make a second one from a copy of the model instead: "
    "fm2 = get_faast_model(copy.deepcopy(fm.base_model), fm.faast_config) (a deep copy of the hooked "
    "model is the plain model), then move the fast weights with fm.save_fast_weights(path) and "
    "fm2.load_fast_weights(path) (a trained readout: fm.save_pretrained(dir), FaastModel.from_pretrained)"
)


#: base model (the module itself, not a ``torch.compile`` wrapper of it: :func:`_hooked_module`) →
#: the FaastModel whose hooks are on it (weak on both sides: no attribute is added to the model, and
#: a dropped FaastModel releases it)
_OWNERS: weakref.WeakKeyDictionary[nn.Module, weakref.ref[FaastModel]] = weakref.WeakKeyDictionary()


def _hooked_module(model: nn.Module) -> nn.Module:
    """The module whose parts faast hooks for ``model``: the module a ``torch.compile`` wrapper
    (``OptimizedModule``) holds as ``_orig_mod`` (through nested wrappers), else ``model`` itself."""
    inner = model
    while isinstance(getattr(inner, "_orig_mod", None), nn.Module):
        inner = inner._orig_mod
    return inner


def _attached_owner(model: nn.Module) -> FaastModel | None:
    """The FaastModel whose hooks are attached to ``model`` now, if any (one wrapped around a
    ``torch.compile`` wrapper of the same module counts)."""
    module = _hooked_module(model)
    ref = _OWNERS.get(module)
    owner = None if ref is None else ref()
    if owner is None or not owner.attached:
        return None
    return owner if _hooked_module(owner.base_model) is module else None


class FaastModel(nn.Module):
    """A causal LM with FAAST memories attached by hooks.

    Modes: outside :meth:`learn` the memories are *read* (forward / generate use the compiled
    fast weights); inside it they only *record* pairs and the hidden states are untouched.

    Parameters
    ----------
    model : transformers causal LM
        The frozen model (never modified; :meth:`unload` returns it as it was).
    config : FaastConfig, optional
        The layout of the memories (default: one middle memory and the "prob" output memory).
    read : ReadConfig, optional
        The read-time knobs (cut, weight, temperature, gate, support); see :meth:`set_read`.
    """

    def __init__(
        self, model: nn.Module, config: FaastConfig | None = None, read: ReadConfig | None = None
    ) -> None:
        super().__init__()
        config = FaastConfig() if config is None else config
        if not isinstance(config, FaastConfig):
            raise TypeError(f"config must be a FaastConfig, got {type(config).__name__}")
        if read is not None and not isinstance(read, ReadConfig):
            raise TypeError(f"read must be a ReadConfig, got {type(read).__name__}")
        if isinstance(model, FaastModel):
            raise TypeError("the model already has FAAST memories; use it directly")
        legacy = config.legacy_read
        config = FaastConfig.from_dict(config.to_dict())  # a copy: the caller's object is not changed
        self.base_model = model
        self.faast_config = config
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
        self._layout = find_layout(model, config.decoder_layers_path, config.final_norm_path)
        strip_inert_hooks(model)  # a deep copy of a hooked model carries inert faast hooks: drop them
        self.memories = nn.ModuleDict(build_readouts(config, self._layout, model))
        param = next(model.parameters())
        self.memories.to(device=param.device, dtype=param.dtype if param.is_floating_point() else None)
        self._ctx = HookContext()
        self._hooks = HookSet()
        self._attention_cache: bool | None = None  # model_extends_by_attention, found on first use
        self._masks_padding: bool | None = None  # masks_left_padding, found on first use
        # dtype of the hidden states the held pairs were learned from (None: nothing held, or
        # loaded from a file that did not record it); forget refuses states of another dtype
        self._learned_state_dtype: torch.dtype | None = None
        #: Whether pairs keyed on a start token are learned: only while holding fast weights of a
        #: file saved before they were left out (2026-12-06), so that forgetting from it, or adding
        #: to it, computes the pairs it was built with (:meth:`_start_token_keys`).
        self._start_token_pairs = False
        #: The rows learned since the last reset (:mod:`faast.lm.learned_rows`), which ``forget``
        #: checks at any size; None for fast weights loaded from a file saved before it.
        self.learned_rows: LearnedRows | None = LearnedRows()
        self._check_logit_transform()
        self.attach()
        # a FaastModel dropped without unload() takes its hooks with it (they would go on reading
        # its fast weights in every forward pass of the base model, and mix with a new wrapper's)
        weakref.finalize(self, self._hooks.remove)
        self.read_config = ReadConfig()
        self.set_read(read or ReadConfig().replace(**legacy))

    def _check_head(self) -> None:
        """Refuse a model whose LM head changed since it was wrapped (:func:`check_head_unchanged`)."""
        check_head_unchanged(self.base_model, self._layout.lm_head)

    def _check_logit_transform(self) -> None:
        """Refuse a model whose logits are not its LM head's output as :attr:`logit_transform` says
        (:meth:`LogitTransform.check`), or whose position t sees token t+1 (:func:`check_causal`),
        both on one forward pass of two 4-token rows that differ in their last token: faast computes
        logits from head inputs, so they would not be this model's probabilities, and learns
        next-token pairs, which would read their own answer. Run before faast's hooks are
        attached; other hooks on the model (gradient checkpointing's on the input embeddings, PEFT's,
        a user's) run during the probe, so it checks the model as it will run. Not checked: a model
        that cannot run those tokens alone (it needs other inputs), or one that carries another
        FaastModel's live hooks (:meth:`attach` refuses it; the inert faast hooks a deep copy of a
        hooked model carries are removed before). A backbone that runs but returns no
        ``last_hidden_state`` is refused (:class:`UnsupportedModelError`): ``learn`` could not read
        the states the head reads."""
        if live_faast_hook(self.base_model) is not None:
            return
        ids = torch.tensor(PROBE_IDS, device=next(self.base_model.parameters()).device)
        modes = [(m, m.training) for m in self.base_model.modules()]
        self.base_model.eval()  # dropout would make the two passes differ (GPT-2 in train mode)
        block_inputs: list[torch.Size] = []
        handle = self._layout.blocks[0].register_forward_pre_hook(
            _shape_recorder(block_inputs), with_kwargs=True
        )
        try:
            with torch.no_grad():
                returned = self.base_model(input_ids=ids).logits
                head_output = head_logits(self.head_inputs(ids), self._layout.lm_head)
        except NoHiddenStateError as error:  # the backbone ran: faast found the wrong module
            raise UnsupportedModelError(
                f"{error}; faast found {type(self._layout.backbone).__name__} as the backbone of "
                f"{type(self.base_model).__name__} and could not read the states its LM head reads: "
                "pass the transformers *ForCausalLM model itself (a wrapper's inner model)"
            ) from None
        except Exception:  # the model's own forward failed on these tokens alone: nothing to compare
            return
        finally:
            handle.remove()
            for module, training in modes:
                module.training = training
        kind = getattr(getattr(self.base_model, "config", None), "model_type", type(self.base_model).__name__)
        self._layout.logit_transform.check(returned, head_output, kind)
        check_causal(self.base_model, returned)
        if block_inputs and tuple(block_inputs[0]) != (*ids.shape, self._layout.hidden_size):
            self._refuse_block_state(block_inputs[0])

    def _refuse_block_state(self, shape: Sequence[int]) -> None:
        """Refuse middle memories on a model whose decoder blocks take a hidden state other than
        (B, T, d) (``shape``: the one block 0 took), e.g. Gemma-3n's AltUp stack (k, B, T, d)."""
        if self.middle_memories:
            raise UnsupportedModelError(_block_state_message(self.base_model, shape, "middle memories"))

    # ----------------------------------------------------------------- properties
    @property
    def logit_transform(self) -> LogitTransform:
        """What the model does to its LM head's output before returning logits (the identity for
        most models; Cohere's scale, Granite's, Gemma 2's soft cap): :func:`layout_logits` applies it."""
        return self._layout.logit_transform

    @property
    def readouts(self) -> list[ReadOut]:
        """Every read-out, middle memories first (in block order), then the output memory."""
        return list(self.memories.values())  # type: ignore[arg-type]

    @property
    def middle_memories(self) -> list[MiddleMemory]:
        return [m for m in self.readouts if isinstance(m, MiddleMemory)]

    @property
    def output_memory(self) -> OutputReadOut | None:
        mem = self.memories["output"] if "output" in self.memories else None
        return mem if isinstance(mem, OutputReadOut) else None

    @property
    def num_pairs(self) -> int:
        """Pairs learned since the last reset (the same for every memory)."""
        return max((m.memory.num_pairs for m in self.readouts), default=0)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_model", "memories", "_layout"):
                raise
            _reraise_from_property(self, name)
            return getattr(self.base_model, name)

    # ----------------------------------------------------------------- reading
    def set_read(self, read: ReadConfig | None = None, **knobs: Any) -> FaastModel:
        """Change how the fast weights are read (nothing learned changes).

        ``read`` replaces the whole read config; ``knobs`` (``cut``, ``weight``, ``temperature``,
        ``gate``, ``support``) change single knobs of the current one. Knobs left ``None`` take
        each read-out's defaults.
        """
        new = self.read_config if read is None else read
        if not isinstance(new, ReadConfig):
            raise TypeError(f"read must be a ReadConfig, got {type(new).__name__}")
        new = new.replace(**knobs) if knobs else new
        try:
            for readout in self.readouts:
                readout.configure(new)
        except Exception:  # a read-out refused it: every read-out back to the config in use
            for readout in self.readouts:
                readout.configure(self.read_config)
            raise
        self.read_config = new
        return self

    def set_output_mix(self, mix: str, read: ReadConfig | None = None) -> FaastModel:
        """Read the output memory with another mix that keys on the same state and learns the same
        values ("prob" ↔ "logit"); the statistics are kept. Changes ``faast_config.output_mix``;
        ``read`` replaces the read config at the same time (the old one's weight may not suit)."""
        from faast.lm.readout_registry import OUTPUT_READOUTS, output_key_args

        old = self.output_memory
        if old is None:
            raise ValueError("the model has no output memory")
        if mix not in OUTPUT_READOUTS:
            raise ValueError(f"output mix must be one of {sorted(OUTPUT_READOUTS)}, got {mix!r}")
        cls = OUTPUT_READOUTS[mix]
        if (cls.key_source, cls.value_source) != (old.key_source, old.value_source):
            raise ValueError(
                f"the {self.faast_config.output_mix!r} statistics cannot be read with the {mix!r} mix "
                f"(it keys on {cls.key_source} → {cls.value_source}, "
                f"they hold {old.key_source} → {old.value_source})"
            )
        if isinstance(old, cls):
            return self if read is None else self.set_read(read)
        new = cls(
            self._layout,
            self.base_model,
            dtype=self.faast_config.torch_dtype,
            **output_key_args(self.faast_config),
        )
        new.configure(self.read_config if read is None else read)  # validate before changing anything
        new.memory = old.memory
        new.load_extra_state(old.extra_state(), "the output memory")
        new.share_head_scale(old)  # the same head: its ρ² need not be computed again
        self._swap_output_memory(new)
        self.faast_config.output_mix = mix
        if read is not None:
            self.read_config = read
        return self

    def _swap_output_memory(self, new: OutputReadOut) -> None:
        """Put ``new`` (configured) in place of the output read-out, on its device, hooks re-attached."""
        new.to(device=self.output_memory.counts.device)
        was_attached = self.attached
        self.unload()
        self.memories["output"] = new
        if was_attached:
            self.attach()

    def set_output_key_features(self, features: int, seed: int = 0) -> FaastModel:
        """Key the (empty) output memory on the final state plus ``features`` random features
        (``FaastConfig.output_key_features``; 0: the state itself). A layout change: the output
        memory must hold no pairs (statistics of one key map cannot be read through another), so
        call :meth:`reset_projection` first. Changes ``faast_config``."""
        from faast.lm.readout_registry import OUTPUT_READOUTS, output_key_args

        old = self.output_memory
        if old is None:
            raise ValueError("the model has no output memory")
        if old.has_pairs:
            raise ValueError(
                f"the output memory holds {old.memory.num_pairs} pairs learned through its current keys; "
                "call reset_projection() before changing its key features"
            )
        layout = dataclasses.replace(self.faast_config, output_key_features=features, output_key_seed=seed)
        new = OUTPUT_READOUTS[layout.output_mix](
            self._layout, self.base_model, dtype=layout.torch_dtype, **output_key_args(layout)
        )
        new.configure(self.read_config)
        self._swap_output_memory(new)
        self.faast_config = layout
        return self

    @torch.no_grad()
    def head_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        prefix: PrefixCache | None = None,
    ) -> torch.Tensor:
        """What the LM head reads, (B, T, d), with the middle memories applied, without running the
        head (so a caller can score a few positions of a large vocabulary with :meth:`output_logits`).
        Position ids count real tokens, as in ``learn``. ``prefix``: a :meth:`prefix_cache` every row
        continues (``input_ids`` are the tokens after it; right-padded). Left-padded rows run right-
        padded (:func:`_left_pads`), their states put back in place."""
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        shift = _left_pads(mask) if prefix is None else None
        if shift is not None:
            input_ids, mask = _roll_rows(input_ids, shift), _roll_rows(mask, shift)
        full_mask, kwargs = self._backbone_inputs(mask, None, prefix)
        out = self._layout.backbone(input_ids=input_ids, attention_mask=full_mask, **kwargs)
        hidden = _last_hidden(out)
        return hidden if shift is None else _roll_rows(hidden, -shift)

    @torch.no_grad()
    def layer_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        layers: Sequence[int | None],
        prefix: PrefixCache | None = None,
    ) -> torch.Tensor:
        """(B, T, c, d): for each of the c ``layers`` the output of decoder block ``layer``
        (0-based: the residual stream after it) or, for ``None``, what the LM head reads (as
        :meth:`head_inputs`), in one pass of the backbone with the middle memories applied.
        Inputs as in :meth:`head_inputs`."""
        num = self._layout.num_layers
        bad = [x for x in layers if x is not None and not (type(x) is int and 0 <= x < num)]
        if bad or not layers:
            raise ValueError(
                f"layers must be decoder blocks in [0, {num}) or None (the head input), got {bad}"
            )
        wanted = sorted({x for x in layers if x is not None})
        seen: dict[int, torch.Tensor] = {}

        def keep(block: int) -> Any:
            def hook(_module: nn.Module, _args: Any, output: Any) -> None:
                seen[block] = output[0] if isinstance(output, (tuple, list)) else output  # OpenAI GPT: a list

            return hook

        handles = [self._layout.blocks[b].register_forward_hook(keep(b)) for b in wanted]
        try:
            last = self.head_inputs(input_ids, attention_mask, prefix=prefix)
        finally:
            for h in handles:
                h.remove()
        shift = _left_pads(attention_mask) if attention_mask is not None and prefix is None else None
        for block, state in seen.items():
            if state.shape != last.shape:
                raise UnsupportedModelError(
                    _block_state_message(self.base_model, state.shape, "layer states")
                )
            if shift is not None:  # head_inputs ran the rows right-padded
                seen[block] = _roll_rows(state, -shift)
        return torch.stack([last if x is None else seen[x] for x in layers], dim=2)

    @property
    def serves_prefix_cache(self) -> bool:
        """Whether :meth:`prefix_cache` can serve this model: its backbone takes position ids (the
        rows continue after the prefix), its cache holds attention keys and values only (not the
        recurrent state of a state-space or linear-attention layer:
        :func:`~faast.lm.prefix_cache.extends_by_attention`, found by one forward pass of one token
        on first use) and it has no middle memory (which would change the prefix's states as it
        learns)."""
        return self._layout.accepts_position_ids and not self.middle_memories and self._extends_by_attention()

    @property
    def masks_left_padding(self) -> bool:
        """Whether a left-padded row's states are those of the row alone: False for a model that
        runs its state through the pads whatever the attention mask says (RWKV), whose rows
        :meth:`capture` and :meth:`head_inputs` run right-padded, and ``TaskModel.generate``
        batches by length. Found on first use by one pass of the backbone over 2 rows of 3 tokens."""
        if self._masks_padding is None:
            device = self._layout.lm_head.weight.device
            ids = torch.tensor([[0, 5, 6], [5, 6, 0]], device=device)
            mask = torch.tensor([[0, 1, 1], [1, 1, 0]], device=device)
            full_mask, kwargs = self._backbone_inputs(mask, None, None)
            with torch.no_grad(), self.disabled():
                out = _last_hidden(self._layout.backbone(input_ids=ids, attention_mask=full_mask, **kwargs))
            left, right = out[0, 2].double(), out[1, 1].double()
            tol = max(1e-3, 8 * torch.finfo(out.dtype).eps)  # rounding, in the states' dtype
            self._masks_padding = bool((left - right).abs().max() <= tol * (1.0 + right.abs().max()))
        return self._masks_padding

    def _extends_by_attention(self) -> bool:
        if self._attention_cache is None:
            with self.disabled():
                self._attention_cache = model_extends_by_attention(self._layout.backbone)
        return self._attention_cache

    def prefix_cache(self, ids: Sequence[int]) -> PrefixCache:
        """The KV cache of the token ids ``ids`` under the backbone, for :meth:`head_inputs` and
        :meth:`capture` calls whose rows all continue them (made on the plain model, right away).
        Needs a model that takes position ids, whose cache holds attention keys and values only,
        and no middle memory (the memories would change the prefix's states as they learn)."""
        if not self._layout.accepts_position_ids:
            raise ValueError("a prefix cache needs a model whose backbone takes position ids")
        if self.middle_memories:
            raise ValueError(
                "a prefix cache cannot serve a model with middle memories (they change its states)"
            )
        if not self._extends_by_attention():
            raise ValueError(
                "a prefix cache needs a model whose cache holds attention keys and values only; this "
                "model keeps recurrent (state-space or linear-attention) states: run its rows whole"
            )
        self._check_context(len(ids), "the prefix")
        cache = PrefixCache(self._layout.backbone, ids)
        with self.disabled():
            cache.cache()
        return cache

    def _backbone_inputs(
        self, mask: torch.Tensor, position_ids: torch.Tensor | None, prefix: PrefixCache | None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """(the attention mask the backbone takes, its other keyword arguments) for rows of ``mask``
        (B, T), after ``prefix`` when one is given: position ids that count real tokens and continue
        after the prefix, and a copy of the prefix's cache per row."""
        n = len(prefix) if prefix is not None else 0
        kwargs: dict[str, Any] = {"use_cache": n > 0}
        full_mask = mask
        if n:
            if not self.serves_prefix_cache:
                raise ValueError("a prefix cache needs position ids and no middle memory (see prefix_cache)")
            kwargs.update(prefix.batched(mask.shape[0]))  # type: ignore[union-attr]
            full_mask = torch.cat([mask.new_ones(mask.shape[0], n), mask], dim=1)
        if position_ids is None and self._layout.accepts_position_ids:
            position_ids = positions_from_mask(mask) + n
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        return full_mask, kwargs

    @torch.no_grad()
    def output_logits(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's output (log-probabilities for the "prob" mix) for the states the output
        memory keys on (key point → (..., d): ``"head_input"``, and ``"pre_norm"`` for the "paper"
        mix), reading the output memory as configured now. With states from :meth:`capture` (the
        base model) this equals the model's output for layouts without middle memories; with
        :meth:`head_inputs` for any prob/logit layout. Lets a caller score chosen positions, and
        compare many read configs on one capture."""
        self._check_head()
        out = self.output_memory
        reading = self._ctx.enabled  # inside disabled() the base model's output
        with self.disabled():
            if out is None or not reading:
                return layout_logits(states[HEAD_INPUT], self._layout)
            return out.logits_from(states, self._layout)

    @torch.no_grad()
    def base_token_log_probs(self, head_input: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The base model's log-probabilities (N, K), float32 or wider, of tokens (N, K) long at
        head inputs (N, d): log_softmax of the model's logits (:func:`layout_logits`), gathered (a
        few rows at a time, ``head_row_chunks``)."""
        self._check_head()
        out = []
        for rows in head_row_chunks(head_input.shape[0]):
            logits = layout_logits(head_input[rows], self._layout)
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            out.append(torch.log_softmax(logits, dim=-1).gather(-1, tokens[rows]))
        return torch.cat(out) if out else head_input.new_zeros(tokens.shape)

    @torch.no_grad()
    def output_token_log_probs(
        self, head_input: torch.Tensor, tokens: torch.Tensor, base: torch.Tensor
    ) -> torch.Tensor | None:
        """:meth:`output_logits`' log-probabilities (N, K) of tokens (N, K) at head inputs (N, d),
        from the base model's (``base``, :meth:`base_token_log_probs`) without a second pass over
        the vocabulary: ``base`` itself when the output memory is off or not read, the "prob" mix
        at those tokens (:meth:`~faast.lm.output_readouts.ProbReadOut.token_log_probs`); None for
        read-outs that need the whole head (logit, paper, correction mixes), which the caller then
        scores through :meth:`output_logits`."""
        self._check_head()
        out = self.output_memory
        if out is None or not self._ctx.enabled or not out.active:
            return base
        if type(out) is not ProbReadOut:  # a subclass may mix otherwise
            return None
        with self.disabled():
            return out.token_log_probs(head_input, base, tokens, self._layout.lm_head)

    @torch.no_grad()
    def output_logit_parts(self, head_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """For an output memory read in the "logit" mix: (the LM head's output (N, V), the memory's
        head output per unit β (N, V), :meth:`~faast.lm.output_readouts.LogitReadOut.memory_logits`)
        at head inputs (N, d), so that :meth:`output_logits` with weight β is
        :attr:`logit_transform` of their sum with β on the second (up to float rounding) for every β
        at the cost of two head passes. None for another mix, or when the memory is not read
        (nothing learned, or inside :meth:`disabled`)."""
        self._check_head()
        out = self.output_memory
        if type(out) is not LogitReadOut or not self._ctx.enabled or not out.active:
            return None
        head = self._layout.lm_head
        with self.disabled():
            return head_logits(head_input, head), out.memory_logits(head_input, head)

    # ----------------------------------------------------------------- the API
    def reset_projection(self) -> FaastModel:
        """Forget everything learned: the model computes exactly what the base model computes."""
        for readout in self.readouts:
            readout.reset()
        self._learned_state_dtype = None
        self._start_token_pairs = False
        self.learned_rows = LearnedRows()
        return self

    @torch.no_grad()
    def learn(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: torch.Tensor | None = None,
        pair_mask: Any = None,
        **kwargs: Any,
    ) -> int:
        """Record the (token t → token t+1) pairs of a batch in every memory; return how many.

        input_ids, attention_mask: (B, T) tokenizer outputs, left or right padded; a pair is
        learned iff both of its tokens are real (without a mask every token is, and a batch whose
        rows end or start with the config's pad token unevenly is warned about). pair_mask:
        optional (B, T−1) bool, True where pair t → t+1 may be learned (e.g. only the pairs whose
        next token is part of a labelled answer); it is combined with the padding rule. Runs the
        backbone only (no LM head, no gradients, dropout off); the hidden states are not changed
        by the memories, so several calls accumulate exactly as one call on all the examples.
        """
        batch = self.capture(input_ids, attention_mask, position_ids, pair_mask=pair_mask, **kwargs)
        # Accumulate only after the whole forward succeeded, so a failing call changes nothing.
        return self.learn_captured(batch)

    @torch.no_grad()
    def learn_captured(self, batch: Captured) -> int:
        """Accumulate the pairs of a batch captured earlier by :meth:`capture` (no forward pass):
        learning the same examples into several models, or again after a reset, costs nothing more.
        ``batch.states`` must hold every read-out's key point. Returns the number of pairs."""
        self._check_head()
        self._check_captured(batch)
        self._check_state_dtype(batch, "learn")
        with _autocast_off(self._layout.lm_head.weight.device):  # values (a scorer's weights) as outside it
            for readout in self.readouts:
                readout.learn(batch)
        if self.learned_rows is not None:
            self.learned_rows.add(row_digests(batch)[0])
        self._learned_state_dtype = batch.states[HEAD_INPUT].dtype
        return batch.num_pairs

    def _check_state_dtype(self, batch: Captured, verb: str) -> None:
        """Refuse to learn or forget (``verb``) states of another dtype than the held pairs were
        learned from (loaded fast weights included). Learning them would mix the two in the
        statistics, so that neither part could be forgotten exactly (the recorded dtype is one);
        forgetting them could match no pair bit for bit (past d pairs, other keys than those
        learned would be subtracted). Checked while the dtype is recorded, also inside
        :meth:`faast.distributed.Dist.reduce_learning`, which empties the statistics for the block
        but keeps what they held."""
        learned, now = self._learned_state_dtype, batch.states[HEAD_INPUT].dtype
        if learned is None or now == learned:
            return
        name = str(learned).removeprefix("torch.")
        why = (
            "adding these states would mix the two, so that neither could be forgotten"
            if verb == "learn"
            else "its states differ, so what it learned cannot be matched"
        )
        fresh = ", or start new fast weights" if verb == "learn" else ""
        raise ValueError(
            f"{verb}: the fast weights held were learned with the model in {name} and it now runs in "
            f"{str(now).removeprefix('torch.')}: {why}; {verb} with the model in {name} "
            f"(model.to(torch.{name}), or the CLI's --dtype {name}){fresh}"
        )

    @torch.no_grad()
    def forget(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: torch.Tensor | None = None,
        pair_mask: Any = None,
        **kwargs: Any,
    ) -> int:
        """Remove from every memory the pairs :meth:`learn` recorded for this batch; return how many.

        Same arguments as :meth:`learn`. Afterwards the statistics (and so the predictions) equal
        those of a model that learned everything else and never this batch, up to float64
        rounding. What cannot have been learned is a ``ValueError`` and changes nothing: more
        pairs than held, a token forgotten more often than it was learned as a value, and, while
        the memories keep their rows (at most d pairs), any pair that matches no learned pair bit
        for bit. Pass the batch as it was learned (same padding and batching: the key states of a
        padded batch may differ in the last bits), with the model in the dtype it learned in
        (another is refused; the dtype is saved with the fast weights). Beyond d pairs each row
        must be one the model's record of learned rows holds (:attr:`learned_rows`,
        :mod:`faast.lm.learned_rows`: its real tokens and learned pairs, so rows learned in one
        batch may be forgotten one by one); fast weights saved before that record (2026-12-06)
        have none, and there a text never learned whose tokens were all learned is subtracted.

        A middle memory's values are weighted by its trained readout's scorer: forgetting is exact
        only if the scorer did not change between learning and forgetting (a change is refused).
        """
        batch = self.capture(input_ids, attention_mask, position_ids, pair_mask=pair_mask, **kwargs)
        return self.forget_captured(batch)

    @torch.no_grad()
    def forget_captured(self, batch: Captured | Sequence[Captured]) -> int:
        """Remove the pairs of one or several batches captured by :meth:`capture` (as learned by
        :meth:`learn_captured`), all or nothing; returns the number of pairs. See :meth:`forget`."""
        self._check_head()
        batches = [batch] if isinstance(batch, Captured) else list(batch)
        if not batches or not all(isinstance(b, Captured) for b in batches):
            raise TypeError("forget_captured takes a Captured batch or a non-empty list of them")
        for b in batches:
            self._check_captured(b)
            self._check_state_dtype(b, "forget")
        with _autocast_off(self._layout.lm_head.weight.device):  # the values learn computed
            for readout in self.readouts:  # every read-out checked before any changes
                readout.check_forget(batches)
            digests = self._checked_row_digests(batches)
            with self.all_or_nothing():  # e.g. a pair that matches no kept row: everything put back
                for b in batches:
                    for readout in self.readouts:
                        readout.forget(b)
        rows = self.learned_rows
        if rows is not None and digests is not None and not rows.remove_found(digests):
            self.learned_rows = None  # pairs matched while kept, rows not as learned: no longer exact
            warnings.warn(
                "forget: the pairs matched learned ones but the rows are not rows learned as such (e.g. "
                "a row forgotten in parts with pair_mask), so the record of learned rows no longer says "
                "what is held and is dropped: past d pairs forget checks token counts only from now on "
                "(reset_projection() starts a new record); forget rows as they were learned",
                RuntimeWarning,
                stacklevel=2,
            )
        if self.num_pairs == 0:  # nothing held: the next learn may run in any dtype
            self._learned_state_dtype = None
        return sum(b.num_pairs for b in batches)

    def _checked_row_digests(self, batches: Sequence[Captured]) -> np.ndarray | None:
        """The digests of the rows to forget in ``batches`` (None: no record, e.g. fast weights
        saved before it). Once a memory no longer keeps every pair's row (beyond d pairs), a
        ``ValueError`` names the rows the record of learned rows does not hold; while they are all
        kept, each pair is matched with a kept one instead (bit for bit, a sharper check)."""
        if self.learned_rows is None:
            return None
        per_batch = [row_digests(b) for b in batches]
        digests = np.concatenate([d for d, _ in per_batch])
        if all(r.stats.kept_row_count >= r.stats.count for r in self.readouts):
            return digests
        missing = self.learned_rows.missing(digests)
        if missing.size:
            where = [(k, int(r)) for k, (_, rows) in enumerate(per_batch) for r in rows]
            named = ", ".join(
                f"row {r}" + (f" of batch {k}" if len(batches) > 1 else "")
                for k, r in (where[i] for i in missing[:5])
            )
            more = " …" if missing.size > 5 else ""
            raise ValueError(
                f"{missing.size} of the {digests.size} rows to forget were never learned (or were already "
                f"forgotten), so nothing was forgotten: {named}{more}. A row is matched by its tokens "
                "(those the attention mask marks) and the pairs learned from it (pair_mask): pass the "
                "rows as they were learned"
            )
        return digests

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[FaastModel]:
        """Undo every change to the memories' statistics, learned-token counts and record of
        learned rows made inside the block if it raises (a copy of the statistics is kept
        meanwhile: (d² + d·m) floats each)."""
        backup = [(r.stats.copy(), r.extra_state()) for r in self.readouts]
        rows = None if self.learned_rows is None else self.learned_rows.copy()
        try:
            yield self
        except BaseException:
            for readout, (stats, extra) in zip(self.readouts, backup, strict=True):
                readout.memory.stats = stats
                readout.load_extra_state(extra, "the fast weights before the block")
            self.learned_rows = rows
            raise

    def _start_token_keys(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T−1) bool: the pairs of ``ids`` (B, T) keyed on a start token (the config's
        ``bos_token_id``), which are never learned. A start token's state is the same whatever
        text follows it, so its pair (start → first token of the text learned) would be read at
        the start of every text: on Gemma-3, whose tokenizer puts ``<bos>`` before every window,
        the first token of any new text paid ln 10 nats (λ = 0.9 on the learned text's first token).
        Fast weights loaded from a file saved before (2026-12-06: no ``start_token_pairs`` in its
        signature) keep learning and forgetting them, as that file was built, until
        :meth:`reset_projection`."""
        start = (
            None if self._start_token_pairs else getattr(_text_config(self.base_model), "bos_token_id", None)
        )
        if isinstance(start, int):
            start = [start]
        if not start:
            return torch.zeros_like(ids[:, :-1], dtype=torch.bool)
        return torch.isin(ids[:, :-1], torch.as_tensor(list(start), dtype=ids.dtype, device=ids.device))

    def _check_captured(self, batch: Captured) -> None:
        missing = sorted({r.key_point for r in self.readouts} - set(batch.states))
        if missing:
            unloaded = "" if self.attached else " (the model is unloaded: its hooks record them; attach() it)"
            raise ValueError(
                f"the captured batch lacks the states {missing} that this model's memories key on{unloaded}"
            )
        for point in sorted({r.key_point for r in self.readouts}):
            state = batch.states[point]  # (B, T, d); pair t → t+1 keys on position t
            if state.ndim != 3 or state.shape[1] != batch.valid.shape[1] + 1:
                continue  # a state not laid out per position: its read-out validates it
            finite = torch.isfinite(state[:, :-1]).all(dim=-1)  # (B, T−1)
            bad = int((batch.valid & ~finite).sum())
            if bad:
                raise ValueError(
                    f"the base model's hidden states ({point}) hold NaN or Inf at {bad} of the "
                    f"{batch.num_pairs} positions to learn: its own forward pass produced them, "
                    f"before any fast weight (dtype {state.dtype}: e.g. float16 overflow, or "
                    "left padding in an attention that fails on fully masked rows); try float32 "
                    "or bfloat16, batches padded on the right, or one sequence per batch"
                )

    def learned_pairs(self, ids: torch.Tensor, mask: torch.Tensor, pair_mask: Any = None) -> torch.Tensor:
        """(B, T−1) bool: the pairs :meth:`learn` learns of ``ids``/``mask`` (B, T) — both tokens
        real, not keyed on a start token, and in ``pair_mask`` when given (for code that builds a
        :class:`~faast.lm.readouts.Captured` batch from states it kept)."""
        valid = real_token_pairs(mask) & ~self._start_token_keys(ids)
        if pair_mask is not None:
            valid = valid & check_pair_mask(pair_mask, ids.shape, ids.device)
        return valid

    def note_learned_rows(self, input_ids: Any, attention_mask: Any = None, pair_mask: Any = None) -> None:
        """Add rows (B, T) to the record of learned rows (:attr:`learned_rows`) without learning
        them, as :meth:`learn` would note them: for code that learns one row's pairs in parts — each
        process a block of a sequence's pairs under :meth:`Dist.reduce_learning
        <faast.distributed.Dist.reduce_learning>`, with the record set aside (``learned_rows =
        None``) meanwhile — and notes the whole row once, so that it is forgotten as one row."""
        if self.learned_rows is None:
            return
        vocab = getattr(_text_config(self.base_model), "vocab_size", None)
        ids, mask = check_learn_inputs(input_ids, attention_mask, vocab, self._layout.lm_head.weight.device)
        valid = self.learned_pairs(ids, mask, pair_mask)
        self.learned_rows.add(row_digests(Captured(ids, mask, valid, int(valid.sum())))[0])

    @torch.no_grad()
    def capture(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: torch.Tensor | None = None,
        *,
        pair_mask: Any = None,
        prefix: PrefixCache | None = None,
        **kwargs: Any,
    ) -> Captured:
        """Run the backbone once (memories not applied) and return the states every read-out keys on.

        ``states[readout.key_point]``: (B, T, d), recorded by the read-outs' hooks;
        ``states["head_input"]``: the backbone's final state (what the LM head reads).
        Validates the inputs; ``pair_mask`` as in :meth:`learn`. ``prefix``: a :meth:`prefix_cache`
        every row continues (its tokens are context only: no pair is learned from them). The
        backbone runs in the model's own dtype even inside ``torch.autocast`` (:func:`_autocast_off`):
        states learned under autocast would be other numbers than the same text gives outside it,
        so that neither could be forgotten exactly.
        """
        if "inputs_embeds" in kwargs:
            raise ValueError(
                "learn needs input_ids (the memories' values are next-token ids), not inputs_embeds"
            )
        self._check_head()
        for key in ("labels", "use_cache", "past_key_values", "cache", "output_hidden_states", "return_dict"):
            kwargs.pop(key, None)
        config = _text_config(self.base_model)
        device = self._layout.lm_head.weight.device
        ids, mask = check_learn_inputs(input_ids, attention_mask, getattr(config, "vocab_size", None), device)
        if attention_mask is None:
            warn_unmasked_padding(ids, getattr(config, "pad_token_id", None))
        self._check_context(ids.shape[1] + (len(prefix) if prefix is not None else 0), "learn: sequences")
        valid = self.learned_pairs(ids, mask, pair_mask)
        n = int(valid.sum())
        if n == 0:
            raise ValueError(
                "learn: nothing to learn, no pair of consecutive real tokens is selected "
                "(is the batch only padding and start tokens, or is pair_mask all False?)"
            )
        # left-padded rows run right-padded (exact for a causal model, and right for one that
        # ignores the mask, as RWKV does); their states are put back in place
        shift = _left_pads(mask) if prefix is None else None
        run_ids, run_mask = ids, mask
        if shift is not None:
            run_ids, run_mask = _roll_rows(ids, shift), _roll_rows(mask, shift)
            position_ids = None if position_ids is None else _roll_rows(position_ids, shift)
            kwargs = {k: _roll_rows(v, shift) if _is_per_token(v, ids) else v for k, v in kwargs.items()}
        full_mask, extra = self._backbone_inputs(run_mask, position_ids, prefix)
        kwargs.update(extra)
        backbone = self._layout.backbone
        was_training = backbone.training
        backbone.eval()
        self._ctx.mode, self._ctx.captured = "learn", {}
        try:
            with _autocast_off(device):
                out = backbone(input_ids=run_ids, attention_mask=full_mask, **kwargs)
            states = dict(self._ctx.captured)
        finally:
            self._ctx.mode, self._ctx.captured = "read", {}
            backbone.train(was_training)
        states[HEAD_INPUT] = _last_hidden(out)
        if shift is not None:
            states = {k: _roll_rows(v, -shift) if _is_per_token(v, ids) else v for k, v in states.items()}
        return Captured(ids, mask, valid, n, states, tuple(prefix.ids) if prefix is not None else ())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's forward, reading the fast weights."""
        self._check_head()
        return self.base_model(*args, **kwargs)

    @torch.no_grad()
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's ``generate`` (KV cache and all), reading the fast weights.

        ``input_ids`` are checked as :meth:`learn` checks them (integer ids within the vocabulary,
        on the model's device; a 1-D prompt or a nested list becomes one row). A prompt plus
        ``max_new_tokens`` (given, or in a ``generation_config``), or a ``max_length``, longer than
        the model's context window is refused with a ``ValueError`` instead of running past the
        position embeddings.
        """
        self._check_head()
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:  # checked as learn checks them (a 1-D prompt or a list becomes one row)
            ids = self._checked_prompt(ids)
            if args:
                args = (ids, *args[1:])
            else:
                kwargs["input_ids"] = ids
            if ids.shape[-1] == 0:
                raise ValueError("generate: the prompt is empty (0 tokens)")
            self._check_context(ids.shape[-1], "generate: the prompt")
            config = kwargs.get("generation_config")
            new = kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None))
            if isinstance(new, int) and new > 0:
                self._check_context(ids.shape[-1] + new, "generate: the prompt plus max_new_tokens")
            longest = kwargs.get("max_length")
            if isinstance(longest, int):
                self._check_context(longest, "generate: max_length")
        return self.base_model.generate(*args, **kwargs)

    def _checked_prompt(self, ids: Any) -> torch.Tensor:
        """``generate``'s input_ids as a (B, T) integer tensor on the model's device, refusing what
        would fail inside torch: floats, booleans, ids outside the vocabulary, another device."""
        ids = token_ids(ids)
        device = self._layout.lm_head.weight.device
        if ids.device != device:
            raise ValueError(f"input_ids are on {ids.device} but the model is on {device}")
        check_vocabulary(ids, getattr(_text_config(self.base_model), "vocab_size", None))
        return ids

    @property
    def context_window(self) -> int | None:
        """The most positions the base model encodes (``max_position_embeddings`` or ``n_positions``)."""
        return context_window(self.base_model)

    def _check_context(self, length: int, what: str) -> None:
        """Refuse ``length`` positions beyond the context window; ``what`` names the sequences and
        decides the advice (a prompt to shorten, or a text to cut into windows)."""
        window = self.context_window
        if window is not None and length > window:
            advice = (
                "shorten the prompt or max_new_tokens / max_length"
                if what.startswith("generate")
                else "cut the text into shorter windows (--window of faast lm; "
                "faast.lm.text.token_windows in Python) or shorten the prompt"
            )
            raise ValueError(
                f"{what} of {length} tokens exceed the model's context window of {window} tokens; {advice}"
            )

    @contextlib.contextmanager
    def disabled(self) -> Iterator[FaastModel]:
        """Run the plain base model inside the block (the fast weights are kept), in this thread:
        forwards in other threads (another request; a ``generate`` started in a thread of its
        own, ``nn.DataParallel``'s replicas) keep reading the fast weights
        (:class:`~faast.lm.readouts.HookContext`)."""
        previous, self._ctx.enabled = self._ctx.enabled, False
        try:
            yield self
        finally:
            self._ctx.enabled = previous

    def to(self, *args: Any, **kwargs: Any) -> FaastModel:
        """``nn.Module.to``, with a device this torch cannot use (``"cuda"`` on a CPU-only build, an
        index past the GPUs present) refused with a ``ValueError`` naming it, not torch's assertion."""
        for value in (*args, kwargs.get("device")):
            if isinstance(value, str | torch.device):
                check_device(value, "FaastModel.to")
        return super().to(*args, **kwargs)

    def unload(self) -> nn.Module:
        """Detach every hook and return the untouched base model (:meth:`attach` undoes it). Inert
        faast hooks left on it (a deep copy of a hooked model carries them, see
        :class:`~faast.lm.inject.FaastHook`) are removed too, so the model then carries none. Code
        ``torch.compile`` compiled while they were on is discarded
        (:func:`~faast.lm.inject.discard_compiled_code`: dynamo does not guard compiled code on
        hooks); a compiled model compiles again on its next call."""
        had_hooks = bool(self._hooks.handles)
        self._hooks.remove()
        strip_inert_hooks(self.base_model)
        if _attached_owner(self.base_model) is self:
            del _OWNERS[_hooked_module(self.base_model)]
        if had_hooks:
            discard_compiled_code()
        return self.base_model

    def __deepcopy__(self, memo: dict[int, Any]) -> FaastModel:
        """Refused (``TypeError``): a copy would need its own hooks on its own copy of the model."""
        raise TypeError(_COPY_MESSAGE.format(how="copy.deepcopy"))

    def __copy__(self) -> FaastModel:
        """Refused (``TypeError``): a shallow copy would share the original's memories and hooks."""
        raise TypeError(_COPY_MESSAGE.format(how="copy.copy"))

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Refused (``TypeError``, also for ``torch.save(fm)``): the memories act through hooks on
        the base model and their statistics are not module state; save them as the message says."""
        raise TypeError(
            "cannot pickle a FaastModel (pickle, torch.save, multiprocessing): its memories act through "
            "forward hooks on the base model and read fast weights that are not module state. Save the "
            "fast weights with fm.save_fast_weights(path) (load them back with get_faast_model(model, "
            "config).load_fast_weights(path)) and the model with fm.unload().save_pretrained(directory); "
            "to pickle or torch.save the plain model, call fm.unload() first and save what it returns"
        )

    def attach(self) -> FaastModel:
        """Attach the read-outs' hooks to the base model (done at construction; a no-op if attached).
        A base model carries one FaastModel's hooks at a time: another attached FaastModel on it is
        a ``ValueError`` (both sets of hooks would act on every forward pass, each model reading the
        other's fast weights), also when one of the two was given a ``torch.compile`` wrapper of the
        model or a model sharing its blocks or head (a ``copy.copy``); ``unload()`` it first, or wrap
        a second copy of the model. Code ``torch.compile`` compiled before is discarded
        (:func:`~faast.lm.inject.discard_compiled_code`: dynamo does not guard on hooks, so it would
        go on running the model without them); a compiled model compiles again on its next call."""
        if not self._hooks.handles:
            other = _attached_owner(self.base_model)
            if other is not None and other is not self:
                raise ValueError(
                    f"this {type(self.base_model).__name__} already carries the hooks of another FaastModel "
                    f"({other.num_pairs} pairs learned): both would act on every forward pass, each reading "
                    "the other's fast weights; call .unload() on that one first (its fast weights are kept, "
                    ".attach() puts it back), or wrap a second copy of the model"
                )
            where = live_faast_hook(self.base_model)
            if where is not None:
                raise ValueError(
                    f"this {type(self.base_model).__name__} already carries the hooks of another FaastModel "
                    f"(on its {where or 'top module'}, a module shared with the model that one wraps): both "
                    "would act on every forward pass, each reading the other's fast weights; call .unload() "
                    "on that one first, or wrap a second copy of the model (copy.deepcopy)"
                )
            try:
                for readout in self.readouts:
                    readout.attach(self._layout, self._hooks, self._ctx)
            finally:
                discard_compiled_code()
            _OWNERS[_hooked_module(self.base_model)] = weakref.ref(self)
        return self

    @property
    def attached(self) -> bool:
        """Whether the read-outs' hooks are on the base model."""
        return bool(self._hooks.handles)

    def compile_fast_weights(self) -> dict[str, dict[str, Any]]:
        """Solve every memory now (otherwise done lazily on first read); returns rank and τ."""
        info = {}
        for name, readout in self.memories.items():
            if readout.has_pairs:
                solved = readout.memory.solve_info()
                readout.prepare()
                info[name] = {
                    "rank": solved.rank,
                    "tau": solved.tau,
                    "ridge": solved.ridge,
                    "pairs": solved.count,
                }
        return info

    def fast_weight_nbytes(self, dtype: torch.dtype | None = None) -> dict[str, int]:
        """Bytes of what learning produced.

        compiled: the fast-weight matrices in ``dtype`` (default: the model's) plus the read-outs'
        extra state reading needs (the output memory's learned-token mask, one byte per vocabulary entry);
        statistics: the float64 G and B; support_rows: what the read-outs gather once and keep
        while reading (the LM-head rows of the learned tokens for the "prob" mix).
        """
        itemsize = (dtype or self._layout.lm_head.weight.dtype).itemsize
        compiled = statistics = rows = 0
        for r in self.readouts:
            compiled += r.memory.key_dim * r.memory.value_dim * itemsize
            compiled += r.read_state_nbytes()
            statistics += r.stats.nbytes
            rows += r.cached_nbytes(itemsize)
        return {"compiled": compiled, "statistics": statistics, "support_rows": rows}

    # ----------------------------------------------------------------- fast weights I/O
    def signature(self) -> dict[str, Any]:
        """What fast weights must match to be loaded into this model."""
        cfg = _text_config(self.base_model)
        return {
            "model_type": getattr(cfg, "model_type", type(self.base_model).__name__),
            "hidden_size": self._layout.hidden_size,
            "num_layers": self._layout.num_layers,
            "vocab_size": getattr(cfg, "vocab_size", None),
            "name_or_path": getattr(self.base_model, "name_or_path", ""),
            "memories": {name: r.signature() for name, r in self.memories.items()},
            "config": self.faast_config.to_dict(),
        }

    def _fingerprint(self) -> torch.Tensor:
        return fw.embedding_fingerprint(self.base_model.get_input_embeddings().weight)

    def _check_weight_samples(
        self, where: str, tensors: dict[str, torch.Tensor], sig: dict[str, Any]
    ) -> None:
        """Refuse fast weights learned on a model whose weights differ from this one's beyond the
        rounding of a dtype change (a fine-tune of the same base model, a merged LoRA), by the values
        sampled from every weight tensor when they were saved. Files saved before the samples were
        stored are not checked; tensors named or shaped otherwise are warned about, not compared."""
        if "weight_samples" not in tensors or "weights" not in sig:
            return
        weights = fw.sampled_weights(self.base_model)
        if fw.weights_digest(weights) != sig["weights"]:
            warnings.warn(
                f"{where}: this model's weight tensors are named or shaped otherwise than those of the "
                "model they were learned on, so its weights were not compared with that model's",
                UserWarning,
                stacklevel=3,
            )
            return
        samples, resolution = fw.weight_samples(weights)
        stored_res = tensors.get("weight_resolution", torch.empty(0))
        differ = fw.differing_weights(tensors["weight_samples"], stored_res, samples, resolution)
        if differ:
            names = [weights[i][0] for i in differ]
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            raise ValueError(
                f"{where} were learned on a model with other weights ({sig.get('name_or_path')!r}) than "
                f"this one ({self.signature()['name_or_path']!r}): same architecture and embeddings, "
                f"but {', '.join(names[:3])}{more} differ (a fine-tune or merged adapter of the same "
                "base model?); load them into the model they were learned on"
            )

    def save_fast_weights(
        self,
        path: str | os.PathLike[str],
        task: str = "default",
        *,
        info: dict[str, Any] | None = None,
        expect: str | None = None,
    ) -> Path:
        """Store the float64 statistics of every memory and the current read config as ``task`` in
        ``path`` (other tasks in the file are kept). ``info``: JSON-able notes kept with the task.
        A memory that keeps every pair's float64 row (at most d pairs) saves them too, so that
        :meth:`forget` after :meth:`load_fast_weights` still refuses pairs never learned.
        ``expect``: the :func:`faast.lm.fastweights.task_digest` of the task as it was loaded, when
        this save extends it: a task that another command rewrote since is not overwritten
        (:class:`faast.lm.fastweights.TaskChangedError`)."""
        if self.num_pairs == 0:
            raise ValueError("nothing to save: no pairs were learned since the last reset_projection()")
        tensors: dict[str, torch.Tensor] = {"fingerprint": self._fingerprint()}
        if self.learned_rows is not None:  # what forget checks at any size (faast.lm.learned_rows)
            tensors[LEARNED_ROWS_KEY] = self.learned_rows.to_tensor()
        weights = fw.sampled_weights(self.base_model)
        tensors["weight_samples"], tensors["weight_resolution"] = fw.weight_samples(weights)
        signature = self.signature()
        signature["weights"] = fw.weights_digest(weights)
        signature["read"] = self.read_config.to_dict()
        if self._learned_state_dtype is not None:
            signature["state_dtype"] = str(self._learned_state_dtype).removeprefix("torch.")
        signature["start_token_pairs"] = self._start_token_pairs
        if info:
            signature["info"] = check_json_dict(info, "info")
        for name, readout in self.memories.items():
            for key, value in readout.stats.state_dict().items():
                tensors[f"{name}/{key}"] = value
            scorer = readout.learned_scorer() if isinstance(readout, MiddleMemory) else None
            if scorer is not None:  # compared up to dtype rounding when loading (the hash cannot be)
                tensors[f"{name}/{SCORER_VALUES}"], tensors[f"{name}/{SCORER_RESOLUTION}"] = scorer
            for key, value in readout.extra_state().items():
                tensors[f"{name}/{key}"] = value
            rows = readout.stats.kept_rows()
            if rows is not None and readout.stats.kept_row_count == readout.stats.count:
                # every pair, so that after loading forgetting still checks each against them
                tensors[f"{name}/{fw.KEPT_KEYS}"], tensors[f"{name}/{fw.KEPT_VALUES}"] = rows
            dtype = readout.stats.input_dtype
            signature["memories"][name]["input_dtype"] = (
                "" if dtype is None else str(dtype).removeprefix("torch.")
            )
        return fw.write_task(path, task, tensors, signature, expect=expect)

    def load_fast_weights(
        self, path: str | os.PathLike[str], task: str | None = None, *, read: bool = True
    ) -> FaastModel:
        """Replace the current fast weights by ``task`` from ``path`` (checked against this model).

        read: also take the read config stored with the task (how it was chosen to be read);
        ``False`` keeps the current one.
        """
        task, tensors, sig = fw.read_task(path, task)
        mine = self.signature()
        where = f"fast weights {task!r} in {path}"
        for key in ("model_type", "hidden_size", "num_layers", "vocab_size"):
            if sig.get(key) != mine[key]:
                raise ValueError(
                    f"{where} belong to another model: {key} = {sig.get(key)!r} there, {mine[key]!r} here "
                    f"(learned on {sig.get('name_or_path')!r}, this is {mine['name_or_path']!r})"
                )
        if not fw.same_fingerprint(tensors.get("fingerprint", torch.empty(0)), self._fingerprint()):
            raise ValueError(
                f"{where} were learned on a model with other weights ({sig.get('name_or_path')!r}) than this "
                f"one ({mine['name_or_path']!r}): same architecture, different embeddings"
            )
        self._check_weight_samples(where, tensors, sig)
        theirs = sig.get("memories", {})
        for name in sorted(set(theirs) | set(mine["memories"])):
            a = {k: v for k, v in theirs.get(name, {}).items() if k != "input_dtype"}
            b = mine["memories"].get(name)
            readout = self.memories[name] if name in self.memories else None
            if f"{name}/{SCORER_VALUES}" in tensors and isinstance(readout, MiddleMemory) and a and b:
                # the scorer's values were saved: compare them up to dtype rounding, not by hash
                stored = (tensors[f"{name}/{SCORER_VALUES}"], tensors.get(f"{name}/{SCORER_RESOLUTION}"))
                same = stored[1] is not None and same_scorer(stored, scorer_snapshot(readout))
                a, b = dict(a), dict(b)
                a["scorer"] = b["scorer"] if same else a.get("scorer")
            if a != b:
                hint = (
                    " (the scorer differs: they were learned with another readout; load the readout "
                    "they were learned with, the CLI's --adapter)"
                    if (a and b and a.get("scorer") != b.get("scorer"))
                    else ""
                )
                raise ValueError(
                    f"{where} do not match this model's memory {name!r}: "
                    f"{a or 'absent'} vs {b or 'absent'}{hint}"
                )
        stored_read = fw.task_read_config(sig) if read else None
        rows = tensors.get(LEARNED_ROWS_KEY)  # absent: saved before the record (2026-12-06)
        learned_rows = None if rows is None else LearnedRows.from_tensor(rows, where)
        states = {}
        for name in self.memories:
            state = {k: tensors[f"{name}/{k}"] for k in fw.STAT_KEYS if f"{name}/{k}" in tensors}
            if len(state) != len(fw.STAT_KEYS):
                raise ValueError(f"{where}: statistics of memory {name!r} are incomplete")
            states[name] = state
        backup = {
            name: (r.stats.copy(), {k: v.clone() for k, v in r.extra_state().items()})
            for name, r in self.memories.items()
        }
        try:  # replace all or nothing
            for name, readout in self.memories.items():
                extra = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}/")}
                dtype_name = theirs[name].get("input_dtype") or ""
                readout.reset()
                kept = (tensors.get(f"{name}/{fw.KEPT_KEYS}"), tensors.get(f"{name}/{fw.KEPT_VALUES}"))
                readout.stats.load_state_dict(
                    states[name],
                    input_dtype=getattr(torch, dtype_name, None) if dtype_name else None,
                    rows=None if kept[0] is None or kept[1] is None else kept,  # type: ignore[arg-type]
                )
                readout.load_extra_state(extra, f"{where}, memory {name!r}")
            if stored_read is not None:  # a read config the read-outs refuse undoes the load
                self.set_read(stored_read)
        except Exception:
            for name, readout in self.memories.items():
                stats, extra = backup[name]
                readout.stats.restore(stats)  # its kept rows included
                readout.load_extra_state(extra, "the previous fast weights")
            raise
        state_dtype = getattr(torch, str(sig.get("state_dtype")), None)
        self._learned_state_dtype = state_dtype if isinstance(state_dtype, torch.dtype) else None
        self._start_token_pairs = bool(sig.get("start_token_pairs", True))  # absent: saved before
        self.learned_rows = learned_rows
        return self

    # ----------------------------------------------------------------- adapter I/O
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``faast_config.json`` and the trained readout/scorer (``faast_readout.safetensors``)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.faast_config.save_pretrained(out)
        tensors = {
            f"{name}.{pname}": p.detach()
            for name, mem in self.memories.items()
            for pname, p in mem.named_parameters()
        }
        sig = self.signature()
        meta = {
            "model_type": str(sig["model_type"]),
            "hidden_size": str(sig["hidden_size"]),
            "num_layers": str(sig["num_layers"]),
        }
        save_tensors(out / READOUT_NAME, tensors, meta, kind="readout")
        return out

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        directory: str | os.PathLike[str],
        read: ReadConfig | None = None,
        **overrides: Any,
    ) -> FaastModel:
        """Attach the memories saved by :meth:`save_pretrained` to ``model``.

        ``directory``: a folder, or the name of a readout shipped with faast
        (:mod:`faast.lm.pretrained`, e.g. ``"smollm2-general"``). ``read``: the read-time knobs;
        ``overrides`` replace fields of the saved layout (e.g. ``output_mix="logit"``).
        """
        from faast.lm.pretrained import readout_folder

        directory = readout_folder(directory)
        config = FaastConfig.from_pretrained(directory)
        if overrides:
            config = FaastConfig.from_dict({**config.to_dict(), **overrides})
        faast = cls(model, config, read)
        path = Path(directory) / READOUT_NAME
        if path.is_file():
            faast.load_readout(path)
        return faast

    def load_readout(self, path: str | os.PathLike[str]) -> None:
        tensors, meta = load_tensors(path, kind="readout")
        if meta.get("hidden_size") != str(self._layout.hidden_size):
            raise ValueError(
                f"{path} was trained for hidden size {meta.get('hidden_size')}, "
                f"not {self._layout.hidden_size}"
            )
        own = {f"{n}.{pn}": p for n, m in self.memories.items() for pn, p in m.named_parameters()}
        if set(tensors) != set(own):
            raise ValueError(
                f"{path} holds readout weights {sorted(tensors)} but this layout needs {sorted(own)}"
            )
        for key, p in own.items():  # check everything before changing anything
            if tensors[key].shape != p.shape:
                raise ValueError(
                    f"{path}: {key} has shape {tuple(tensors[key].shape)}, expected {tuple(p.shape)}"
                )
            if not tensors[key].is_floating_point() or not bool(torch.isfinite(tensors[key]).all()):
                raise ValueError(f"{path}: {key} is not a finite floating-point tensor (damaged file?)")
        with torch.no_grad():
            for key, p in own.items():
                p.copy_(tensors[key].to(p.device, p.dtype))
        for mem in self.middle_memories:  # statistics were weighted by the old scorer
            mem.reset()

    def __repr__(self) -> str:
        layers = [m.layer for m in self.middle_memories]
        out = self.output_memory
        tail = f"output={self.faast_config.output_mix}(w={out.weight})" if out else "output=off"
        return (
            f"FaastModel({type(self.base_model).__name__}, middle={layers}, {tail}, pairs={self.num_pairs})"
        )


def _left_pads(mask: torch.Tensor) -> torch.Tensor | None:
    """(B,) long: each row's pads before its first real token, for a (B, T) attention mask; None
    when no row has any (nothing to move)."""
    lead = (mask.long().cumsum(-1) == 0).sum(-1)
    lead = lead.masked_fill(lead == mask.shape[-1], 0)  # an all-pad row stays as it is
    return lead if bool(lead.any()) else None


def _roll_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Row b of x (B, T, ...) rotated left by shift[b] positions (right for negative shifts): a
    left-padded row comes out right-padded, and back with −shift."""
    steps = torch.arange(x.shape[1], device=x.device)
    index = (steps[None, :] + shift.to(x.device)[:, None]) % x.shape[1]  # (B, T)
    index = index.reshape(*index.shape, *([1] * (x.ndim - 2))).expand_as(x)
    return x.gather(1, index)


def _is_per_token(value: Any, ids: torch.Tensor) -> bool:
    """Whether ``value`` is a tensor with one entry per token of ``ids`` (B, T) in front (B, T, ...)."""
    return isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[:2] == ids.shape


def _shape_recorder(shapes: list[torch.Size]) -> Any:
    """A forward pre-hook (with kwargs) that appends the shape of a block's hidden-state input."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        h = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("hidden_states")
        if isinstance(h, torch.Tensor):
            shapes.append(h.shape)

    return hook


def _block_state_message(model: nn.Module, shape: Sequence[int], what: str) -> str:
    """Why ``what`` (middle memories, layer states) cannot serve ``model``, whose decoder blocks
    pass a hidden state of ``shape`` rather than (B, T, d)."""
    return (
        f"{type(model).__name__}'s decoder blocks pass a hidden state of shape {tuple(shape)}, not "
        f"(batch, tokens, hidden) (Gemma-3n stacks its AltUp predictions in front): faast cannot put "
        f"{what} there; use FaastConfig(num_memories=0) and the output memory only (no layer heads)"
    )


def _reraise_from_property(obj: Any, name: str) -> None:
    """When ``name`` is a property of ``obj``'s class, Python calls ``__getattr__`` because the
    property raised AttributeError; run it again to raise that error as a RuntimeError (so it is
    neither taken for a missing attribute nor hidden behind the base model's "has no attribute")."""
    prop = inspect.getattr_static(type(obj), name, None)
    if not isinstance(prop, property) or prop.fget is None:
        return
    try:
        prop.fget(obj)
    except AttributeError as error:
        raise RuntimeError(f"{type(obj).__name__}.{name} failed: {type(error).__name__}: {error}") from error


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """A block where autocast is off for ``device``'s type, when the caller turned it on (else
    nothing to do): learning and forgetting capture states in the model's own dtype."""
    try:
        enabled = torch.is_autocast_enabled(device.type)
    except (RuntimeError, TypeError):  # a device type autocast does not know
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False) if enabled else contextlib.nullcontext()


class NoHiddenStateError(RuntimeError):
    """The backbone's output holds no ``last_hidden_state`` (faast hooked the wrong module)."""


def _last_hidden(output: Any) -> torch.Tensor:
    """The final state (B, T, d) of a backbone's output; :class:`NoHiddenStateError` without one."""
    h = getattr(output, "last_hidden_state", None)
    if h is None and isinstance(output, (tuple, list)):
        h = output[0]
    if not isinstance(h, torch.Tensor):
        raise NoHiddenStateError(
            f"the backbone returned no last_hidden_state (it returned {type(output).__name__})"
        )
    return h


def get_faast_model(
    model: nn.Module, config: FaastConfig | None = None, read: ReadConfig | None = None
) -> FaastModel:
    """Attach FAAST memories to a Hugging Face causal LM (like PEFT's ``get_peft_model``)."""
    return FaastModel(model, config, read)
