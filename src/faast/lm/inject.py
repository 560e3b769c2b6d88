"""Find the parts of an unmodified Hugging Face causal LM that the memories hook into.

A causal LM is seen as: a backbone (``model.base_model``: embeddings → decoder blocks → final
norm) and an LM head (``model.get_output_embeddings()``). The decoder blocks are found at the
attribute paths of the known families (Llama/SmolLM2/Mistral, Qwen2, Gemma 3: ``model.layers``;
GPT-2: ``transformer.h``; GPT-NeoX, OPT, ...), else as the one ``nn.ModuleList`` holding
``num_hidden_layers`` modules of one class. Anything else fails with an error that says how to
pass the paths explicitly (``FaastConfig.decoder_layers_path`` / ``final_norm_path``).

Hooks are plain ``register_forward_pre_hook`` / ``register_forward_hook`` calls: the model's code
and weights are never changed, and ``HookSet.remove()`` restores it exactly. Each hook is a
:class:`FaastHook` that acts only on the module it was registered on: a ``copy.deepcopy`` of a
hooked model carries inert copies of them (the copy computes the plain model), which
:func:`strip_inert_hooks` removes, and pickling a hooked model fails with a ``TypeError`` that
says how to save it instead.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from faast.lm.logit_transform import LogitTransform, logit_transform

#: Dotted paths (from the LM) of decoder-block lists, most common first.
BLOCK_PATHS = (
    "model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.blocks",
    "transformer.layers",
    "model.language_model.layers",
    "backbone.layers",
)
#: Attribute names (on the backbone) of the final norm.
FINAL_NORM_NAMES = (
    "norm",
    "ln_f",
    "final_layer_norm",
    "final_norm",
    "norm_f",
    "final_layernorm",
    "layer_norm",  # BioGPT, XGLM
    "layernorm",  # CTRL
    "ln_out",  # RWKV
)
#: Sub-modules of the backbone that hold the decoder stack and its final norm (OPT's
#: ``model.decoder``, a multimodal model's ``language_model``), searched after the backbone itself.
NORM_OWNERS = ("decoder", "language_model")


class UnsupportedModelError(ValueError):
    """The model's layout is not one faast can hook into without help."""


@dataclass
class Layout:
    """Where the memories attach. blocks[i] is decoder block i; hidden_size is d."""

    backbone: nn.Module
    blocks: nn.ModuleList
    blocks_path: str
    final_norm: nn.Module | None
    final_norm_path: str | None
    lm_head: nn.Module
    hidden_size: int
    num_layers: int
    accepts_position_ids: bool
    #: what the model does to the LM head's output before returning logits (identity for most)
    logit_transform: LogitTransform = field(default_factory=LogitTransform)


def resolve(root: nn.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(path)
        obj = getattr(obj, part)
    return obj


def _text_config(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no `config`; pass a transformers model")
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def context_window(model: nn.Module) -> int | None:
    """The most positions ``model`` (a transformers model) encodes: its (text) config's
    ``max_position_embeddings`` or ``n_positions``; None when it names neither."""
    config = _text_config(model)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _config_int(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _find_blocks(model: nn.Module, num_layers: int | None, explicit: str | None) -> tuple[nn.ModuleList, str]:
    if explicit:
        try:
            blocks = resolve(model, explicit)
        except AttributeError:
            raise UnsupportedModelError(
                f"decoder_layers_path={explicit!r} does not exist on the model"
            ) from None
        if not isinstance(blocks, nn.ModuleList):
            raise UnsupportedModelError(
                f"decoder_layers_path={explicit!r} is a {type(blocks).__name__}, not a ModuleList"
            )
        return blocks, explicit
    for path in BLOCK_PATHS:
        try:
            blocks = resolve(model, path)
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return blocks, path
    candidates = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList)
        and len(mod) > 0
        and (num_layers is None or len(mod) == num_layers)
        and len({type(m) for m in mod}) == 1
    ]
    if len(candidates) == 1:
        return candidates[0][1], candidates[0][0]
    found = ", ".join(f"{n} ({len(m)} × {type(m[0]).__name__})" for n, m in candidates) or "none"
    raise UnsupportedModelError(
        f"cannot find the decoder blocks of {type(model).__name__}: no known path ({', '.join(BLOCK_PATHS)}) "
        f"and {len(candidates)} candidate ModuleLists of {num_layers} blocks [{found}]; pass "
        "FaastConfig(decoder_layers_path='path.to.layers')"
    )


def _find_final_norm(
    model: nn.Module, backbone: nn.Module, explicit: str | None
) -> tuple[nn.Module | None, str | None]:
    if explicit:
        try:
            return resolve(model, explicit), explicit
        except AttributeError:
            raise UnsupportedModelError(f"final_norm_path={explicit!r} does not exist on the model") from None
    prefix = _path_of(model, backbone)
    owners = [(prefix, backbone)]
    for owner in NORM_OWNERS:
        mod = getattr(backbone, owner, None)
        if isinstance(mod, nn.Module):
            owners.append((f"{prefix}.{owner}" if prefix else owner, mod))
    for path, owner in owners:
        for name in FINAL_NORM_NAMES:
            mod = getattr(owner, name, None)
            if isinstance(mod, nn.Module):
                return mod, f"{path}.{name}" if path else name
    return None, None


def _path_of(model: nn.Module, module: nn.Module) -> str:
    """The dotted path of ``module`` inside ``model`` ('' for the model itself)."""
    for name, mod in model.named_modules():
        if mod is module:
            return name
    return ""


def _find_backbone(model: nn.Module, blocks_path: str) -> nn.Module:
    """The backbone: ``model.base_model``, else (Llama 4, Mllama: ``base_model_prefix`` names an
    attribute the causal LM does not have, so ``base_model`` is the model itself) the child of the
    model that holds the decoder blocks (``model`` of ``model.layers``)."""
    backbone = getattr(model, "base_model", None)
    if isinstance(backbone, nn.Module) and backbone is not model:
        return backbone
    head, _, rest = blocks_path.partition(".")
    child = getattr(model, head, None)
    if rest and isinstance(child, nn.Module) and child is not model:
        return child
    raise UnsupportedModelError(
        f"{type(model).__name__} exposes no separate backbone (base_model, or a child holding its "
        f"decoder blocks {blocks_path}); faast.lm needs a *ForCausalLM model"
    )


def find_layout(
    model: nn.Module, decoder_layers_path: str | None = None, final_norm_path: str | None = None
) -> Layout:
    """Locate the backbone, decoder blocks, final norm and LM head of a causal LM."""
    check_not_peft_wrapper(model)
    config = _text_config(model)
    # decoder halves of encoder-decoder families (Bart, Whisper, ...): num_hidden_layers is the encoder's
    num_layers = _config_int(config, "decoder_layers", "num_hidden_layers", "n_layer", "num_layers")
    hidden = _config_int(config, "hidden_size", "n_embd", "d_model")
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    check_head_not_peft(model, head)
    if not isinstance(head, nn.Module) or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise UnsupportedModelError(
            f"{type(model).__name__} has no linear LM head (get_output_embeddings()); "
            "faast.lm needs a causal LM such as AutoModelForCausalLM"
        )
    _check_not_masked_lm(model)
    blocks, blocks_path = _find_blocks(model, num_layers, decoder_layers_path)
    backbone = _find_backbone(model, blocks_path)
    # an explicit path is taken as it is: the config's count may describe another stack (an encoder's)
    if decoder_layers_path is None and num_layers is not None and len(blocks) != num_layers:
        raise UnsupportedModelError(
            f"{blocks_path} holds {len(blocks)} blocks but config says {num_layers}; pass decoder_layers_path"
        )
    if hidden is None:
        hidden = int(head.weight.shape[1])
    if head.weight.shape[1] != hidden:
        raise UnsupportedModelError(_width_message(model, int(head.weight.shape[1]), hidden))
    _check_head_input_unscaled(model, config)
    norm, norm_path = _find_final_norm(model, backbone, final_norm_path)
    accepts = "position_ids" in inspect.signature(backbone.forward).parameters
    transform = logit_transform(config)
    return Layout(
        backbone, blocks, blocks_path, norm, norm_path, head, int(hidden), len(blocks), accepts, transform
    )


def _is_peft_wrapper(model: nn.Module) -> bool:
    """Whether ``model`` is one of PEFT's wrappers (``PeftModel*``, ``PeftMixedModel``, a tuner such
    as ``LoraModel``): a class of its type's MRO is defined in the ``peft`` package. Found without
    importing peft, so a model is never taken for one when peft is not installed."""
    return any(
        (getattr(cls, "__module__", None) or "").split(".", 1)[0] == "peft" for cls in type(model).__mro__
    )


def check_not_peft_wrapper(model: nn.Module) -> None:
    """Refuse a PEFT wrapper (:class:`UnsupportedModelError`): its ``base_model`` is PEFT's tuner
    (``LoraModel``), whose output has logits but no ``last_hidden_state``, so every ``learn``
    would fail. faast hooks the transformers model inside it, which keeps the LoRA layers."""
    if not _is_peft_wrapper(model):
        return
    name = type(model).__name__
    if callable(getattr(model, "get_base_model", None)):
        remedy = "pass peft_model.get_base_model() to get_faast_model instead"
    else:
        remedy = "pass the transformers model it wraps (its `.model`) to get_faast_model instead"
    raise UnsupportedModelError(
        f"{name} is a PEFT wrapper, not a transformers causal LM: faast.lm hooks the model's own "
        f"decoder blocks and LM head, which the wrapper hides; {remedy} (the LoRA layers stay in it, "
        "active, and faast reads through them)"
    )


def check_head_not_peft(model: nn.Module, head: Any) -> None:
    """Refuse (:class:`UnsupportedModelError`) an LM head that is a PEFT layer (a LoRA ``lora.Linear``,
    a ``ModulesToSaveWrapper``: its class comes from the ``peft`` package): faast computes logits
    from the head's weight itself (``F.linear`` on ``head.weight``: label and answer scores, the
    read-outs, the "prob" mix), which leaves the adapter out, so they would not be the adapted
    model's. Found without importing peft."""
    if head is None or not _is_peft_wrapper(head):
        return
    adapters = getattr(head, "active_adapters", None)
    adapters = [adapters] if isinstance(adapters, str) else list(adapters or [])
    named = f", adapter {', '.join(repr(a) for a in adapters)}" if adapters else ""
    raise UnsupportedModelError(
        f"{type(model).__name__}'s LM head is a PEFT layer ({type(head).__name__}{named}): faast computes "
        "logits from the head's weight itself (label and answer scores, the output memory), which would "
        "leave the adapter out, so they would not be the adapted model's; merge the adapter into the "
        "model first (model = peft_model.merge_and_unload()) or put it on other modules than the LM "
        "head (e.g. LoraConfig(target_modules=['q_proj', 'v_proj']))"
    )


def check_head_unchanged(model: nn.Module, head: nn.Module) -> None:
    """Refuse (:class:`UnsupportedModelError`) a model whose LM head (``get_output_embeddings()``) is
    no longer ``head``, the one faast found when it wrapped the model: a PEFT adapter put on the head
    afterwards (``get_peft_model``), or a head replaced (``resize_token_embeddings``). faast's hooks
    sit on the old module and its scores use the old weight, so they would not be the model's
    (an adapter is named, as :func:`check_head_not_peft` names it at wrap time)."""
    get_head = getattr(model, "get_output_embeddings", None)
    now = get_head() if callable(get_head) else None
    if now is head or now is None:
        return
    check_head_not_peft(model, now)
    raise UnsupportedModelError(
        f"{type(model).__name__}'s LM head was replaced after faast wrapped the model (now "
        f"{type(now).__name__}, e.g. by resize_token_embeddings): faast's hooks and scores use the "
        "head it found then; unload() and wrap the model again (FaastModel(model))"
    )


def _width_message(model: nn.Module, head_width: int, hidden: int) -> str:
    """Why a model whose LM head reads ``head_width`` features, not the blocks' ``hidden``, is refused."""
    projected = [
        n for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == "project_out" and m is not None
    ]
    step = f" (its {projected[0]}: OPT-350m's word_embed_proj_dim ≠ hidden_size)" if projected else ""
    return (
        f"{type(model).__name__}'s LM head reads {head_width} features but its decoder blocks are "
        f"{hidden} wide: the model projects its last state{step} before the head, and faast's memories "
        "need the head to read the blocks' state; use a model whose head reads hidden_size features"
    )


def _check_head_input_unscaled(model: nn.Module, config: Any) -> None:
    """Refuse MiniCPM3: it divides the LM head's input by ``config.logits_scaling`` after the
    backbone, so the states faast reads are not what the head reads (Granite's field of the same
    name divides the head's output, which :func:`logit_transform` reproduces)."""
    if getattr(config, "model_type", None) == "minicpm3":
        raise UnsupportedModelError(
            f"{type(model).__name__} (minicpm3) divides its LM head's input by config.logits_scaling "
            f"({getattr(config, 'logits_scaling', None)}) after its backbone, a step faast does not "
            "reproduce (its memories would read other states than the head's): not supported"
        )


def _check_not_masked_lm(model: nn.Module) -> None:
    """Refuse the masked LMs of transformers (BERT, RoBERTa, ...): their states see the tokens after
    them, the next one included, so next-token pairs learned from them would read their own answer
    (a silent wrong memory). Models transformers does not know are trusted to be causal."""
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:  # pragma: no cover - an older or newer layout of transformers
        return
    name = type(model).__name__
    masked = set(MODEL_FOR_MASKED_LM_MAPPING_NAMES.values()) - set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    why = (
        "each position sees the tokens after it, so the next-token pairs faast.lm learns would read "
        "their own answer"
    )
    if name in masked:
        raise UnsupportedModelError(
            f"{name} is a masked (bidirectional) LM: {why}; load a causal LM (AutoModelForCausalLM)"
        )
    # encoder families (BERT, RoBERTa, ...) also have a causal class, causal only with is_decoder=True
    # (AutoModelForCausalLM on a BERT checkpoint gives BertLMHeadModel with is_decoder=False)
    encoders = set(MODEL_FOR_MASKED_LM_MAPPING_NAMES) & set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    config = _text_config(model)
    model_type = getattr(config, "model_type", None)
    if model_type in encoders - {"xlm"} and getattr(config, "is_decoder", False) is not True:
        raise UnsupportedModelError(
            f"{name} with is_decoder=False attends in both directions: {why}; use a causal LM (made "
            "causal with is_decoder=True, an encoder's LM head still runs layers of its own before its "
            "output projection, which faast does not reproduce)"
        )


#: Token ids of the wrap-time probe (FaastModel): two rows that differ only in their last token.
PROBE_IDS = ((1, 2, 3, 4), (1, 2, 3, 5))


def check_causal(model: nn.Module, logits: torch.Tensor) -> None:
    """Refuse (:class:`UnsupportedModelError`) a model whose positions see the tokens after them.

    logits: (2, 4, V), the model's own logits for :data:`PROBE_IDS`. A causal model's logits at
    positions 0-2 cannot depend on the last token, so they agree up to float rounding (4 ulps of
    the model's dtype, relative to the largest logit); a bidirectional one (XLNet, CPM-Ant,
    BertGeneration with is_decoder=False) differs there, and the next-token pairs faast learns from
    it would read their own answer.
    """
    first, second = logits[0, :-1].double(), logits[1, :-1].double()
    worst = float((first - second).abs().max())
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else logits.dtype
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float32).eps
    if worst > 4 * eps * (1.0 + float(first.abs().max())):  # NaN: LogitTransform.check says why
        raise UnsupportedModelError(
            f"{type(model).__name__} is not causal: its logits at a position change (by up to "
            f"{worst:.3g}) when a later token changes, so the next-token pairs faast.lm learns would "
            "read their own answer; use a causal LM (one whose positions see only the tokens before them)"
        )


def hidden_from_call(args: tuple, kwargs: dict) -> tuple[torch.Tensor, bool]:
    """The hidden-state input of a block call: (tensor, passed positionally?)."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0], True
    h = kwargs.get("hidden_states", kwargs.get("input"))
    if not isinstance(h, torch.Tensor):
        raise UnsupportedModelError("a decoder block was called without a hidden_states tensor")
    return h, False


def replace_hidden(args: tuple, kwargs: dict, new: torch.Tensor, positional: bool) -> tuple[tuple, dict]:
    if positional:
        return (new, *args[1:]), kwargs
    return args, {**kwargs, ("hidden_states" if "hidden_states" in kwargs else "input"): new}


#: Why a model carrying a FaastModel's hooks cannot be pickled, and what to save instead.
PICKLE_MESSAGE = (
    "cannot pickle faast's forward hooks: they read a FaastModel's fast weights, which are not part of "
    "the model. Save the fast weights with fm.save_fast_weights(path) and the model with "
    "base.save_pretrained(directory); to pickle or torch.save the plain model, call fm.unload() first"
)


class FaastHook:
    """A forward (pre-)hook faast registers on ``module``: it calls ``fn(module, ...)`` only when
    run by a module it serves and does nothing (returns None) on any other.

    It serves the module it was registered on (held by weak reference) and any module that shares
    that module's hook dict of its kind (``kind``: ``"_forward_pre_hooks"`` or ``"_forward_hooks"``,
    the dict it was registered in): the replicas ``nn.DataParallel`` makes
    (``Module._replicate_for_data_parallel``) and a ``copy.copy`` of the module are new objects whose
    ``__dict__`` is a shallow copy of the original's, so they run these very hooks, and read the
    original's fast weights as the original does.

    ``copy.deepcopy`` of a hooked model copies its hook dicts; the copy of a FaastHook is an inert
    hook (no module, no ``fn``: it neither reads the original's fast weights nor keeps them alive),
    so the copy computes the plain model. The inert hooks stay registered on the copy (torch offers
    no way to leave an entry out of a copied hook dict); :func:`strip_inert_hooks` removes them, and
    ``get_faast_model`` and ``FaastModel.unload`` call it. Pickling a live hook raises a
    ``TypeError`` (:data:`PICKLE_MESSAGE`); an inert one pickles as an inert one.
    """

    __slots__ = ("_fn", "_kind", "_module")

    def __init__(
        self, module: nn.Module | None, fn: Callable[..., Any] | None, kind: str | None = None
    ) -> None:
        self._module = None if module is None else weakref.ref(module)
        self._fn = fn
        self._kind = kind

    def serves(self, module: nn.Module) -> bool:
        """Whether this hook acts when ``module`` runs: it is not inert, and ``module`` is the module
        it was registered on or shares that module's hook dict of its kind (a DataParallel replica
        or a ``copy.copy`` of it; a ``copy.deepcopy`` has dicts of its own)."""
        if self._fn is None or self._module is None:
            return False
        registered = self._module()
        if registered is None:
            return False
        if registered is module:
            return True
        if self._kind is None:
            return False
        own = getattr(registered, self._kind, None)
        return own is not None and getattr(module, self._kind, None) is own

    def __call__(self, module: nn.Module, *args: Any) -> Any:
        if not self.serves(module):
            return None
        return self._fn(module, *args)  # type: ignore[misc]

    def __deepcopy__(self, memo: dict[int, Any]) -> FaastHook:
        return FaastHook(None, None)

    def __copy__(self) -> FaastHook:
        return FaastHook(None, None)

    def __reduce_ex__(self, protocol: Any) -> Any:
        if self._fn is not None:
            raise TypeError(PICKLE_MESSAGE)
        return (FaastHook, (None, None))

    def __repr__(self) -> str:
        module = None if self._module is None else self._module()
        where = "inert" if self._fn is None else f"on {type(module).__name__}"
        return f"FaastHook({where})"


#: A module's hook dicts: (the hooks, the dicts a handle of one of them is also listed in).
_HOOK_DICTS = (
    ("_forward_pre_hooks", ("_forward_pre_hooks_with_kwargs",)),
    ("_forward_hooks", ("_forward_hooks_with_kwargs", "_forward_hooks_always_called")),
)


def strip_inert_hooks(model: nn.Module) -> int:
    """Remove from every module of ``model`` the faast hooks that do not act there (the inert
    copies a ``copy.deepcopy`` of a hooked model carries, :class:`FaastHook`); return how many.
    Live hooks are kept: anyone else's, and faast's on a module they serve (the module they were
    registered on, or a replica or ``copy.copy`` of it sharing its hook dict, whose hooks are also
    the original's)."""
    removed = 0
    for module in model.modules():
        for name, extras in _HOOK_DICTS:
            hooks = getattr(module, name, None)
            if not hooks:
                continue
            dead = [key for key, fn in hooks.items() if isinstance(fn, FaastHook) and not fn.serves(module)]
            for key in dead:
                del hooks[key]
                for extra in extras:
                    getattr(module, extra, {}).pop(key, None)
            removed += len(dead)
    return removed


def live_faast_hook(model: nn.Module) -> str | None:
    """The dotted path (``""``: the model itself) of the first module of ``model`` that carries a
    faast hook acting there (a :class:`FaastHook` that serves it: a FaastModel's, attached now),
    None when there is none. Inert copies (see :func:`strip_inert_hooks`) and others' hooks do not
    count."""
    for path, module in model.named_modules():
        for name, _ in _HOOK_DICTS:
            hooks = getattr(module, name, None) or {}
            if any(isinstance(fn, FaastHook) and fn.serves(module) for fn in hooks.values()):
                return path
    return None


def discard_compiled_code() -> bool:
    """Discard the code ``torch.compile`` compiled in this process (``torch.compiler.reset()``) when
    it compiled any; return whether it did. Called when faast's hooks are attached or removed:
    dynamo does not guard compiled code on ``nn.Module`` hooks (``torch._dynamo.config.
    skip_nnmodule_hook_guards``, on by default), so code compiled before would go on running
    without them (the fast weights silently not read), or with them after ``unload``. The next
    call of a compiled model compiles again. Never imports dynamo: where it was not imported
    nothing was compiled."""
    if "torch._dynamo" not in sys.modules:
        return False
    convert_frame = sys.modules.get("torch._dynamo.convert_frame")
    compiled = getattr(getattr(convert_frame, "input_codes", None), "seen_ids", None)
    if isinstance(compiled, set) and not compiled:  # dynamo is loaded but compiled nothing (yet)
        return False
    torch.compiler.reset()
    return True


@dataclass
class HookSet:
    """The hook handles faast added to a model; ``remove()`` detaches them all."""

    handles: list[Any] = field(default_factory=list)

    def pre(self, module: nn.Module, fn: Callable[..., Any]) -> None:
        """Register ``fn(module, args, kwargs)`` as a forward pre-hook of ``module`` (:class:`FaastHook`)."""
        hook = FaastHook(module, fn, "_forward_pre_hooks")
        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def post(self, module: nn.Module, fn: Callable[..., Any]) -> None:
        """Register ``fn(module, args, output)`` as a forward hook of ``module`` (:class:`FaastHook`)."""
        self.handles.append(module.register_forward_hook(FaastHook(module, fn, "_forward_hooks")))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
