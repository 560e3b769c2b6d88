"""Fixes of the s82_hooks hunt (.dev/hunts/s82_hooks/FINDINGS.md): faast's hooks and torch.compile
(compiled code is discarded when they are attached or removed), one FaastModel per model through a
compile wrapper or a shallow copy, the wrap-time probe with other hooks on the model, a PEFT LoRA on
the LM head (refused at wrapping and by the LoRA baseline), and the LoRA baseline giving back the
base model's ``requires_grad`` flags."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from faast.lm import FaastConfig, get_faast_model, lora_baseline
from faast.lm.examples import Example
from faast.lm.inject import UnsupportedModelError
from tests.lm_tiny import tiny_model
from tests.test_benchmark_lm_lead import _task
from tests.test_lm_arch_hunt_fixes import build

OUTPUT_ONLY = FaastConfig(num_memories=0)
TEXT = torch.randint(3, 97, (1, 12), generator=torch.Generator().manual_seed(3))


def _logits(model: torch.nn.Module, ids: torch.Tensor = TEXT) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.clone()


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture
def fresh_dynamo():
    """Dynamo's caches empty before and after the test (its compiled code is process-wide)."""
    torch.compiler.reset()
    yield
    torch.compiler.reset()


# --------------------------------------------------------------------------- 1: torch.compile before hooking
@pytest.mark.parametrize("how", ["module", "forward"])
def test_a_model_compiled_before_wrapping_reads_the_fast_weights_and_not_after_unload(how, fresh_dynamo):
    """Compiled (and run) before faast hooks it: the compiled call reads the fast weights as the
    eager one does, and after unload computes the plain model again (before the fix it kept the
    hook-free graph: the learned text's logits were the plain model's)."""
    base = tiny_model("llama", dtype=torch.float32)
    if how == "module":
        compiled = torch.compile(base, backend="eager")
    else:  # Hugging Face's recipe: model.forward = torch.compile(model.forward)
        base.forward = torch.compile(base.forward, backend="eager")
        compiled = base
    plain = _logits(compiled)
    fm = get_faast_model(base, OUTPUT_ONLY)
    fm.learn(input_ids=TEXT)
    with torch.compiler.set_stance("force_eager"):
        eager = _logits(base)
    assert (eager - plain).abs().max() > 1.0  # the memory changes these logits
    assert torch.allclose(_logits(compiled), eager, atol=1e-5)
    fm.unload()
    assert torch.allclose(_logits(compiled), plain, atol=1e-5)


def test_compiling_after_wrapping_stays_right_through_unload_and_reattach(fresh_dynamo):
    """The order that was already right (compile after hooking) stays right, also across unload()
    and attach()."""
    base = tiny_model("llama", dtype=torch.float32)
    plain = _logits(base)
    fm = get_faast_model(base, OUTPUT_ONLY)
    fm.learn(input_ids=TEXT)
    eager = _logits(base)
    compiled = torch.compile(base, backend="eager")
    assert torch.allclose(_logits(compiled), eager, atol=1e-5)
    fm.unload()
    assert torch.allclose(_logits(compiled), plain, atol=1e-5)
    fm.attach()
    assert torch.allclose(_logits(compiled), eager, atol=1e-5)
    with fm.disabled():
        assert torch.allclose(_logits(compiled), plain, atol=1e-5)


def test_wrapping_discards_compiled_code_only_when_there_is_some(monkeypatch, fresh_dynamo):
    """Nothing compiled in the process: wrapping and unloading do not reset dynamo."""
    calls: list[None] = []
    monkeypatch.setattr(torch.compiler, "reset", lambda: calls.append(None))
    fm = get_faast_model(tiny_model("llama", dtype=torch.float32), OUTPUT_ONLY)
    fm.unload()
    assert calls == []


# --------------------------------------------------------------------------- 2: two owners
@pytest.mark.parametrize("compiled_first", [True, False])
def test_a_compile_wrapper_and_its_model_take_one_faast_model(compiled_first, fresh_dynamo):
    """get_faast_model(torch.compile(base)) and get_faast_model(base) hook the same blocks and head:
    the second is refused, in either order (before the fix both were accepted, and every forward
    read both memories). torch.compile is lazy, but the wrap probe calls the wrapper: eager backend."""
    base = tiny_model("llama", dtype=torch.float32)
    wrapper = torch.compile(base, backend="eager")
    first, second = (wrapper, base) if compiled_first else (base, wrapper)
    fm = get_faast_model(first, OUTPUT_ONLY)
    hooks = _hooks(base)
    with pytest.raises(ValueError, match="already carries the hooks of another FaastModel"):
        get_faast_model(second, OUTPUT_ONLY)
    assert _hooks(base) == hooks
    fm.unload()
    get_faast_model(second, OUTPUT_ONLY)  # free again once the first is unloaded


def test_a_model_sharing_the_hooked_blocks_is_refused():
    """A copy.copy of a hooked model shares its blocks and head (and their hooks): wrapping it is
    refused by the hooks found on them, naming where."""
    base = tiny_model("llama", dtype=torch.float32)
    fm = get_faast_model(base, OUTPUT_ONLY)
    with pytest.raises(ValueError, match="another FaastModel .on its lm_head"):
        get_faast_model(copy.copy(base), OUTPUT_ONLY)
    fm.unload()
    get_faast_model(copy.copy(base), OUTPUT_ONLY)


# --------------------------------------------------------------------------- 3: the probe with other hooks
@pytest.mark.parametrize(
    "config, model, sizes",
    [
        ("XLNetConfig", "XLNetLMHeadModel", dict(d_model=32, n_layer=2, n_head=4, d_inner=64)),
        (
            "BertGenerationConfig",
            "BertGenerationDecoder",
            dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
        ),
    ],
)
def test_a_non_causal_model_is_refused_with_gradient_checkpointings_hook(config, model, sizes):
    """enable_input_require_grads() (what gradient_checkpointing_enable() adds) puts a forward hook
    on the input embeddings; the wrap-time causality check used to be skipped then."""
    lm = build(config, model, dtype=torch.float32, **sizes)
    lm.enable_input_require_grads()
    with pytest.raises(UnsupportedModelError, match="is not causal"):
        get_faast_model(lm, OUTPUT_ONLY)


def test_a_users_hook_that_changes_the_logits_is_seen_by_the_probe():
    """A forward hook that rescales the LM head's output: the model's logits are no longer the
    head's output, and the wrap refuses it (it was accepted unchecked)."""
    base = tiny_model("llama", dtype=torch.float32)
    handle = base.lm_head.register_forward_hook(lambda _m, _a, out: out * 3.0)
    with pytest.raises(ValueError, match="logits differ"):
        get_faast_model(base, OUTPUT_ONLY)
    handle.remove()
    base.enable_input_require_grads()  # a hook that changes nothing: accepted
    get_faast_model(base, OUTPUT_ONLY).unload()


# --------------------------------------------------------------------------- 4: LoRA on the LM head
def test_a_lora_on_the_lm_head_is_refused_at_wrapping_by_name():
    """PEFT's default init (B = 0) leaves the head's output unchanged, so the probe passed; faast's
    head paths (F.linear on head.weight) would then skip the trained adapter."""
    from peft import LoraConfig, get_peft_model

    base = tiny_model("llama", dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["lm_head"]))
    with pytest.raises(UnsupportedModelError, match=r"LM head is a PEFT layer \(Linear, adapter 'default'\)"):
        get_faast_model(peft_model.get_base_model(), OUTPUT_ONLY)
    with pytest.raises(UnsupportedModelError, match="merge_and_unload"):
        get_faast_model(peft_model.get_base_model(), OUTPUT_ONLY)
    get_faast_model(peft_model.merge_and_unload(), OUTPUT_ONLY).unload()


def test_the_lora_baseline_refuses_the_lm_head_as_a_target():
    base = tiny_model("llama", dtype=torch.float32)
    for targets in (("q_proj", "v_proj", "lm_head"), ("lm_head",)):
        with pytest.raises(ValueError, match="include 'lm_head', the model's LM head"):
            lora_baseline.add_lora(base, lora_baseline.LoraRecipe(targets=targets))
    assert not any("lora" in name for name, _ in base.named_modules())  # refused before injecting
    peft_model = lora_baseline.add_lora(base, lora_baseline.LoraRecipe(targets=("q_proj", "v_proj")))
    lora_baseline.remove_lora(peft_model)


# --------------------------------------------------------------------------- 5: requires_grad given back
def test_fit_and_remove_lora_give_back_the_requires_grad_flags():
    task = _task()
    fm, codec = task.model, task.codec
    model = fm.base_model
    model.model.embed_tokens.weight.requires_grad_(False)  # a flag of the caller's own, kept as it is
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    examples = [Example(f"w{3 + i} w{20 + i % 2}", f"w{40 + i % 2}") for i in range(6)]
    recipe = lora_baseline.LoraRecipe(epochs=1, batch_size=4, learning_rates=(1e-3,))
    with fm.disabled():
        peft_model, _ = lora_baseline.fit_lora(model, codec, examples, recipe)
        assert not any(p.requires_grad for n, p in model.named_parameters() if "lora" not in n)
        lora_baseline.remove_lora(peft_model)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == before
    with lora_baseline.adapted(task, examples, recipe):
        pass
    assert {name: p.requires_grad for name, p in model.named_parameters()} == before


@pytest.mark.parametrize("fails_at", [1, 2])  # the search's training, the final one
def test_a_lora_fit_that_fails_takes_its_adapter_out_and_gives_the_flags_back(monkeypatch, fails_at):
    """Review: fit_lora had no try/finally: a training that raised (or Ctrl-C) left the adapter
    in the model and its parameters frozen."""
    task = _task()
    fm, codec = task.model, task.codec
    model = fm.base_model
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    examples = [Example(f"w{3 + i} w{20 + i % 2}", f"w{40 + i % 2}") for i in range(6)]
    recipe = lora_baseline.LoraRecipe(epochs=1, batch_size=4, learning_rates=(1e-3,))
    calls, train = [], lora_baseline.train_lora

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == fails_at:
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(lora_baseline, "train_lora", failing)
    with fm.disabled(), pytest.raises(KeyboardInterrupt):
        lora_baseline.fit_lora(model, codec, examples, recipe)
    assert not any("lora" in name for name, _ in model.named_modules())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == before
    if fails_at == 1:  # raised inside the training: left in eval mode (review: it stayed in train mode)
        monkeypatch.setattr(lora_baseline, "train_lora", train)
        model.eval()

        def mid_training(peft_model, *args, **kwargs):
            peft_model.train()
            raise KeyboardInterrupt

        monkeypatch.setattr(lora_baseline, "answer_loss", lambda *a, **k: mid_training(*a))
        with fm.disabled(), pytest.raises(KeyboardInterrupt):
            lora_baseline.fit_lora(model, codec, examples, recipe)
        assert not any(m.training for m in model.modules())
