"""``FaastModel``: test-time learning for an unmodified Hugging Face causal LM.

    from faast.lm import FaastConfig, get_faast_model
    model = get_faast_model(AutoModelForCausalLM.from_pretrained(name), FaastConfig())
    model.learn(**tokenizer(texts, return_tensors="pt", padding=True))   # forward only, no grads
    model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=40)
    model.save_fast_weights("tasks.safetensors", task="austen")
    model.reset_projection()                                                # back to the base model

The memories are attached with forward hooks (see :mod:`faast.lm.inject`); the wrapped model is
``model.base_model`` and attribute look-ups fall through to it, as in PEFT.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faast.io import load_tensors, save_tensors
from faast.lm import fastweights as fw
from faast.lm.config import FaastConfig
from faast.lm.inject import HookSet, _text_config, find_layout, hidden_from_call, replace_hidden
from faast.lm.inputs import check_learn_inputs, positions_from_mask
from faast.lm.layers import MiddleMemory, OutputMemory, next_pairs, pair_mask

READOUT_NAME = "faast_readout.safetensors"
READOUT_FORMAT = "faast.lm.readout"


@dataclass
class Captured:
    """A validated batch and the states the memories key on (see :meth:`FaastModel.capture`)."""

    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long
    valid: torch.Tensor  # (B, T-1) bool: pair t → t+1 is learned
    num_pairs: int
    states: dict[str, torch.Tensor]


class FaastModel(nn.Module):
    """A causal LM with FAAST memories attached by hooks.

    Modes: outside :meth:`learn` the memories are *read* (forward / generate use the compiled
    fast weights); inside it they only *record* pairs and the hidden states are untouched.
    """

    def __init__(self, model: nn.Module, config: FaastConfig | None = None) -> None:
        super().__init__()
        config = FaastConfig() if config is None else config
        if not isinstance(config, FaastConfig):
            raise TypeError(f"config must be a FaastConfig, got {type(config).__name__}")
        if isinstance(model, FaastModel):
            raise TypeError("the model already has FAAST memories; use it directly")
        config = FaastConfig.from_dict(config.to_dict())  # a copy: the caller's object is not changed
        self.base_model = model
        self.faast_config = config
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
        self._layout = find_layout(model, config.decoder_layers_path, config.final_norm_path)
        if config.output_memory and config.output_mix == "paper" and self._layout.final_norm is None:
            raise ValueError(
                f"output_mix='paper' reads the state before the final norm, but no final norm was found "
                f"on {type(model).__name__}; pass FaastConfig(final_norm_path=...)"
            )
        d = self._layout.hidden_size
        self.memories = nn.ModuleDict()
        for i in config.layer_indices(self._layout.num_layers):
            self.memories[f"block{i}"] = MiddleMemory(
                d,
                i,
                scorer=config.scorer,
                dropout=config.readout_dropout,
                alpha=config.alpha,
                c=config.c,
                dtype=config.torch_dtype,
            )
        if config.output_memory:
            table = self._value_table()
            self.memories["output"] = OutputMemory(
                d,
                table.shape[1],
                table.shape[0],
                mix=config.output_mix,
                support=config.output_support,
                gate=config.gate_threshold,
                weight=config.mix_weight,
                temperature=config.mix_temperature,
                alpha=config.alpha,
                c=config.c,
                dtype=config.torch_dtype,
            )
        param = next(model.parameters())
        self.memories.to(device=param.device, dtype=param.dtype if param.is_floating_point() else None)
        self._mode = "read"
        self._enabled = True
        self._captured: dict[str, torch.Tensor] = {}
        self._hooks = HookSet()
        self._attach()

    # ----------------------------------------------------------------- hooks
    def _attach(self) -> None:
        lay = self._layout
        for mem in self.middle_memories:
            self._hooks.pre(lay.blocks[mem.layer], self._block_hook(mem))
        out = self.output_memory
        if out is None:
            return
        if out.mix == "paper":
            assert lay.final_norm is not None
            self._hooks.pre(lay.final_norm, self._final_norm_hook)
        elif out.mix == "logit":
            self._hooks.pre(lay.lm_head, self._head_pre_hook)
        else:
            self._hooks.post(lay.lm_head, self._head_post_hook)

    def _block_hook(self, mem: MiddleMemory):  # type: ignore[no-untyped-def]
        name = f"block{mem.layer}"

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> Any:
            h, positional = hidden_from_call(args, kwargs)
            if self._mode == "learn":
                self._captured[name] = h
                return None
            if not self._enabled or not mem.active:
                return None
            return replace_hidden(args, kwargs, mem.read(h), positional)

        return hook

    def _final_norm_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        h, positional = hidden_from_call(args, kwargs)
        if self._mode == "learn":
            self._captured["pre_norm"] = h
            return None
        out = self.output_memory
        if not self._enabled or out is None or not out.active:
            return None
        return replace_hidden(args, kwargs, out.mix_state(h), positional)

    def _head_pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        out = self.output_memory
        if self._mode == "learn" or not self._enabled or out is None or not out.active:
            return None
        z, positional = hidden_from_call(args, kwargs)
        return replace_hidden(args, kwargs, out.mix_state(z), positional)

    def _head_post_hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> Any:
        out = self.output_memory
        if self._mode == "learn" or not self._enabled or out is None or not out.active:
            return None
        return out.mix_logits(args[0], output, module)

    # ----------------------------------------------------------------- properties
    @property
    def middle_memories(self) -> list[MiddleMemory]:
        return [m for m in self.memories.values() if isinstance(m, MiddleMemory)]

    @property
    def output_memory(self) -> OutputMemory | None:
        mem = self.memories["output"] if "output" in self.memories else None
        return mem if isinstance(mem, OutputMemory) else None

    @property
    def num_pairs(self) -> int:
        """Pairs learned since the last reset (the same for every memory)."""
        return max((m.stats.count for m in self.memories.values()), default=0)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_model", "memories", "_layout"):
                raise
            return getattr(self.base_model, name)

    def _value_table(self) -> torch.Tensor:
        """(V, m): the LM-head rows ("logit"/"prob") or input embeddings ("paper") of every token."""
        if self.faast_config.output_mix == "paper":
            emb = self.base_model.get_input_embeddings()
            return emb.weight
        return self._layout.lm_head.weight

    # ----------------------------------------------------------------- the API
    def reset_projection(self) -> FaastModel:
        """Forget everything learned: the model computes exactly what the base model computes."""
        for mem in self.memories.values():
            mem.reset()
        return self

    @torch.no_grad()
    def learn(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> int:
        """Record the (token t → token t+1) pairs of a batch in every memory; return how many.

        input_ids, attention_mask: (B, T) tokenizer outputs, left or right padded; a pair is
        learned iff both of its tokens are real. Runs the backbone only (no LM head, no
        gradients, dropout off); the hidden states are not changed by the memories, so several
        calls accumulate exactly as one call on all the examples.
        """
        batch = self.capture(input_ids, attention_mask, position_ids, **kwargs)
        # Accumulate only after the whole forward succeeded, so a failing call changes nothing.
        for mem in self.middle_memories:
            mem.learn(batch.states[f"block{mem.layer}"], batch.valid)
        out_mem = self.output_memory
        if out_mem is not None:
            keys, _ = next_pairs(batch.states["output"], batch.valid)
            next_ids = batch.input_ids[:, 1:][batch.valid]
            if out_mem.mix == "paper":
                values = self.base_model.get_input_embeddings()(next_ids)
            else:
                values = nn.functional.embedding(next_ids, self._layout.lm_head.weight)
            out_mem.add_pairs(keys, values)
            out_mem.learn_tokens(next_ids)
        return batch.num_pairs

    @torch.no_grad()
    def capture(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Captured:
        """Run the backbone once (memories not applied) and return the states every memory keys on.

        ``states["block{i}"]``: (B, T, d) input of block i; ``states["output"]``: (B, T, d) final
        state after (or, for the "paper" mix, before) the final norm. Validates the inputs.
        """
        if "inputs_embeds" in kwargs:
            raise ValueError(
                "learn needs input_ids (the memories' values are next-token ids), not inputs_embeds"
            )
        for key in ("labels", "use_cache", "past_key_values", "output_hidden_states", "return_dict"):
            kwargs.pop(key, None)
        vocab = getattr(_text_config(self.base_model), "vocab_size", None)
        device = self._layout.lm_head.weight.device
        ids, mask = check_learn_inputs(input_ids, attention_mask, vocab, device)
        valid = pair_mask(mask)
        n = int(valid.sum())
        if n == 0:
            raise ValueError(
                "learn: nothing to learn, no row has two consecutive real tokens in attention_mask "
                "(is the batch only padding?)"
            )
        if position_ids is None and self._layout.accepts_position_ids:
            position_ids = positions_from_mask(mask)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        backbone = self._layout.backbone
        was_training = backbone.training
        backbone.eval()
        self._mode, self._captured = "learn", {}
        try:
            out = backbone(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs)
            states = dict(self._captured)
        finally:
            self._mode, self._captured = "read", {}
            backbone.train(was_training)
        out_mem = self.output_memory
        if out_mem is not None:
            states["output"] = states.pop("pre_norm") if out_mem.mix == "paper" else _last_hidden(out)
        return Captured(ids, mask, valid, n, states)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's forward, reading the fast weights."""
        return self.base_model(*args, **kwargs)

    @torch.no_grad()
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's ``generate`` (KV cache and all), reading the fast weights."""
        return self.base_model.generate(*args, **kwargs)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[FaastModel]:
        """Run the plain base model inside the block (the fast weights are kept)."""
        previous, self._enabled = self._enabled, False
        try:
            yield self
        finally:
            self._enabled = previous

    def unload(self) -> nn.Module:
        """Detach every hook and return the untouched base model."""
        self._hooks.remove()
        return self.base_model

    def compile_fast_weights(self) -> dict[str, dict[str, Any]]:
        """Solve every memory now (otherwise done lazily on first read); returns rank and τ."""
        info = {}
        for name, mem in self.memories.items():
            if not mem.has_pairs:
                continue
            _, solved = mem.stats.solve_with_info(alpha=mem.alpha, c=mem.c)
            info[name] = {"rank": solved.rank, "tau": solved.tau, "pairs": solved.count}
        return info

    def fast_weight_nbytes(self, dtype: torch.dtype | None = None) -> dict[str, int]:
        """Bytes of what learning produced.

        compiled: the fast-weight matrices in ``dtype`` (default: the model's) plus the
        learned-token mask of the output memory (one byte per vocabulary entry);
        statistics: the float64 G and B; support_rows: the LM-head rows of the learned tokens
        that the "prob" mix (support "learned") gathers once and keeps while reading.
        """
        itemsize = (dtype or self._layout.lm_head.weight.dtype).itemsize
        compiled = sum(m.stats.key_dim * m.stats.value_dim * itemsize for m in self.memories.values())
        stats = sum(m.stats.nbytes for m in self.memories.values())
        out = self.output_memory
        rows = 0
        if out is not None:
            compiled += out.seen.numel()
            if out.mix == "prob" and out.support == "learned":
                rows = int(out.seen.sum()) * self._layout.hidden_size * itemsize
        return {"compiled": compiled, "statistics": stats, "support_rows": rows}

    # ----------------------------------------------------------------- fast weights I/O
    def signature(self) -> dict[str, Any]:
        """What fast weights must match to be loaded into this model."""
        cfg = _text_config(self.base_model)
        memories = {}
        for name, mem in self.memories.items():
            entry = {"kind": mem.kind, "key_dim": mem.stats.key_dim, "value_dim": mem.stats.value_dim}
            if isinstance(mem, MiddleMemory):
                entry.update(layer=mem.layer, scorer=_scorer_hash(mem))
            else:
                entry.update(key=mem.key_source, value=mem.value_source)
            memories[name] = entry
        return {
            "model_type": getattr(cfg, "model_type", type(self.base_model).__name__),
            "hidden_size": self._layout.hidden_size,
            "num_layers": self._layout.num_layers,
            "vocab_size": getattr(cfg, "vocab_size", None),
            "name_or_path": getattr(self.base_model, "name_or_path", ""),
            "memories": memories,
            "config": self.faast_config.to_dict(),
        }

    def _fingerprint(self) -> torch.Tensor:
        return fw.embedding_fingerprint(self.base_model.get_input_embeddings().weight)

    def save_fast_weights(self, path: str | os.PathLike[str], task: str = "default") -> Path:
        """Store the float64 statistics of every memory as ``task`` in ``path`` (other tasks are kept)."""
        if self.num_pairs == 0:
            raise ValueError("nothing to save: no pairs were learned since the last reset_projection()")
        tensors: dict[str, torch.Tensor] = {"fingerprint": self._fingerprint()}
        signature = self.signature()
        for name, mem in self.memories.items():
            for key, value in mem.stats.state_dict().items():
                tensors[f"{name}/{key}"] = value
            if isinstance(mem, OutputMemory):
                tensors[f"{name}/seen"] = mem.seen.to(torch.uint8)
            dtype = mem.stats.input_dtype
            signature["memories"][name]["input_dtype"] = (
                "" if dtype is None else str(dtype).removeprefix("torch.")
            )
        return fw.write_task(path, task, tensors, signature)

    def load_fast_weights(self, path: str | os.PathLike[str], task: str | None = None) -> FaastModel:
        """Replace the current fast weights by ``task`` from ``path`` (checked against this model)."""
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
        theirs = sig.get("memories", {})
        for name in sorted(set(theirs) | set(mine["memories"])):
            a = {k: v for k, v in theirs.get(name, {}).items() if k != "input_dtype"}
            b = mine["memories"].get(name)
            if a != b:
                hint = (
                    " (the scorer differs: they were learned with another readout)"
                    if (a and b and a.get("scorer") != b.get("scorer"))
                    else ""
                )
                raise ValueError(
                    f"{where} do not match this model's memory {name!r}: "
                    f"{a or 'absent'} vs {b or 'absent'}{hint}"
                )
        states = {}
        for name in self.memories:
            state = {k: tensors[f"{name}/{k}"] for k in fw.STAT_KEYS if f"{name}/{k}" in tensors}
            if len(state) != len(fw.STAT_KEYS):
                raise ValueError(f"{where}: statistics of memory {name!r} are incomplete")
            mem = self.memories[name]
            if isinstance(mem, OutputMemory):
                seen = tensors.get(f"{name}/seen")
                if seen is None or seen.shape != mem.seen.shape:
                    raise ValueError(
                        f"{where}: the learned-token set of memory {name!r} is missing or malformed"
                    )
                state["seen"] = seen
            states[name] = state
        for name, mem in self.memories.items():  # validated above: now replace all at once
            if isinstance(mem, OutputMemory):
                mem.reset()
                mem.learn_tokens(torch.nonzero(states[name].pop("seen")).squeeze(1))
            dtype_name = theirs[name].get("input_dtype") or ""
            mem.stats.load_state_dict(
                states[name], input_dtype=getattr(torch, dtype_name, None) if dtype_name else None
            )
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
            "format": READOUT_FORMAT,
            "model_type": str(sig["model_type"]),
            "hidden_size": str(sig["hidden_size"]),
            "num_layers": str(sig["num_layers"]),
        }
        save_tensors(out / READOUT_NAME, tensors, meta)
        return out

    @classmethod
    def from_pretrained(
        cls, model: nn.Module, directory: str | os.PathLike[str], **overrides: Any
    ) -> FaastModel:
        """Attach the memories saved by :meth:`save_pretrained` to ``model``.

        ``overrides`` replace fields of the saved config (e.g. ``output_weight=1.0``).
        """
        config = FaastConfig.from_pretrained(directory)
        if overrides:
            config = FaastConfig.from_dict({**config.to_dict(), **overrides})
        faast = cls(model, config)
        path = Path(directory) / READOUT_NAME
        if path.is_file():
            faast.load_readout(path)
        return faast

    def load_readout(self, path: str | os.PathLike[str]) -> None:
        tensors, meta = load_tensors(path)
        if meta.get("format") != READOUT_FORMAT:
            raise ValueError(f"{path} is not a faast readout file (format={meta.get('format')!r})")
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
        with torch.no_grad():
            for key, p in own.items():
                if tensors[key].shape != p.shape:
                    raise ValueError(
                        f"{path}: {key} has shape {tuple(tensors[key].shape)}, expected {tuple(p.shape)}"
                    )
                p.copy_(tensors[key].to(p.device, p.dtype))
        for mem in self.middle_memories:  # statistics were weighted by the old scorer
            mem.reset()

    def __repr__(self) -> str:
        layers = [m.layer for m in self.middle_memories]
        out = self.output_memory
        tail = f"output={out.mix}(w={out.weight})" if out else "output=off"
        return (
            f"FaastModel({type(self.base_model).__name__}, middle={layers}, {tail}, pairs={self.num_pairs})"
        )


def _last_hidden(output: Any) -> torch.Tensor:
    h = getattr(output, "last_hidden_state", None)
    if h is None and isinstance(output, tuple):
        h = output[0]
    if not isinstance(h, torch.Tensor):
        raise RuntimeError("the backbone returned no last_hidden_state")
    return h


def _scorer_hash(mem: MiddleMemory) -> str:
    if mem.scorer is None:
        return "none"
    # Rounded to bfloat16 first, so the same scorer hashes alike in a float32 and a bfloat16 model.
    weight = mem.scorer.weight.detach().to("cpu", torch.bfloat16).float().contiguous()
    data = weight.numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


def get_faast_model(model: nn.Module, config: FaastConfig | None = None) -> FaastModel:
    """Attach FAAST memories to a Hugging Face causal LM (like PEFT's ``get_peft_model``)."""
    return FaastModel(model, config)
