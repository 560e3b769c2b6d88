"""Copies, pickles and PEFT wrappers of a hooked model: no silent wrong answer.

* ``copy.deepcopy`` of a FaastModel is refused; a deep copy of the hooked base model is the plain
  model (faast's hooks act only on the module they were registered on), can be wrapped again and
  unloads to the plain model, independently of the original;
* pickling a FaastModel, or its base model while hooked, fails with a ``TypeError`` that names what
  to save instead; after ``unload()`` the base model pickles;
* a PEFT wrapper is refused at wrap time with the advice to pass ``get_base_model()``, which learns
  and reads with its LoRA layers active.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from faast.lm import FaastConfig, UnsupportedModelError, get_faast_model, inject
from tests.lm_tiny import VOCAB, tiny_model

TEXT = torch.randint(3, VOCAB, (1, 20), generator=torch.Generator().manual_seed(5))
OTHER = torch.randint(3, VOCAB, (1, 20), generator=torch.Generator().manual_seed(6))


def hook_count(model: nn.Module) -> int:
    """Forward hooks and pre-hooks registered on any module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def logits(model: nn.Module, ids: torch.Tensor = TEXT) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def learned(middle: bool = False):
    """(base, fm, the base model's plain logits of TEXT) with TEXT learned; ``middle``: one middle
    memory with a non-zero readout, so that it changes the states too."""
    base = tiny_model("llama", dtype=torch.float32)
    plain = logits(base)
    fm = get_faast_model(base, FaastConfig(num_memories=1 if middle else 0))
    if middle:
        with torch.no_grad():
            fm.middle_memories[0].out_proj.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    fm.learn(input_ids=TEXT)
    assert not torch.allclose(logits(fm), plain, atol=1e-4)  # the memories change the output
    return base, fm, plain


# ----------------------------------------------------------------- deepcopy


def test_deepcopy_of_a_faast_model_is_refused_with_the_remedy():
    _, fm, _ = learned()
    with pytest.raises(TypeError, match=r"deepcopy of a FaastModel.*copy\.deepcopy\(fm\.base_model\)") as e:
        copy.deepcopy(fm)
    assert "save_fast_weights" in str(e.value) and "load_fast_weights" in str(e.value)
    with pytest.raises(TypeError, match=r"copy\.copy of a FaastModel"):
        copy.copy(fm)
    assert fm.attached and fm.num_pairs == 19  # the original is untouched


@pytest.mark.parametrize("middle", [False, True])
def test_deepcopy_of_the_hooked_base_is_the_plain_model(middle):
    """The copy's hooks are inert: it never reads the original's fast weights, whatever the
    original does afterwards (they used to be the original's closures)."""
    base, fm, plain = learned(middle)
    ref = logits(fm)
    twin = copy.deepcopy(base)
    assert torch.allclose(logits(twin), plain, atol=1e-6)
    assert all(  # what is left on the copy does nothing and holds none of the original
        isinstance(h, inject.FaastHook) and not h.serves(m)
        for m in twin.modules()
        for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())
    )
    fm.reset_projection()
    fm.learn(input_ids=OTHER)
    assert torch.allclose(logits(twin), plain, atol=1e-6)
    fm.unload()
    assert torch.allclose(logits(twin), plain, atol=1e-6)
    fm.attach()
    fm.reset_projection()
    fm.learn(input_ids=TEXT)
    assert torch.allclose(logits(fm), ref, atol=1e-6)  # the original still reads its own


@pytest.mark.parametrize("middle", [False, True])
def test_a_copy_of_the_hooked_base_wraps_learns_and_unloads_independently(middle):
    base, fm, plain = learned(middle)
    ref = logits(fm)
    twin = copy.deepcopy(base)
    config = FaastConfig(num_memories=1 if middle else 0)
    fm2 = get_faast_model(twin, config)  # accepted: the copy carries no live hooks
    assert hook_count(twin) == len(fm2._hooks.handles)  # the inert copies were removed
    if middle:
        with torch.no_grad():
            fm2.middle_memories[0].out_proj.weight.copy_(fm.middle_memories[0].out_proj.weight)
    assert torch.allclose(logits(fm2), plain, atol=1e-6)  # nothing learned yet
    fm2.learn(input_ids=TEXT)
    assert torch.allclose(logits(fm2), ref, atol=1e-5)  # the same memories, learned on its own
    fm2.reset_projection()
    assert torch.allclose(logits(fm2), plain, atol=1e-6)
    assert torch.allclose(logits(fm), ref, atol=1e-6)  # the original is not affected
    fm2.learn(input_ids=OTHER)
    with fm2.disabled():
        assert torch.allclose(logits(fm2), plain, atol=1e-6)
    assert torch.allclose(logits(fm), ref, atol=1e-6)
    with fm.disabled():
        assert torch.allclose(logits(fm), plain, atol=1e-6)
        assert not torch.allclose(logits(fm2), plain, atol=1e-4)  # disabling one leaves the other
    unloaded = fm2.unload()
    assert unloaded is twin and hook_count(twin) == 0
    assert torch.allclose(logits(twin), plain, atol=1e-6)
    assert torch.allclose(logits(fm), ref, atol=1e-6)


def test_the_original_is_still_guarded_and_unloads_plain_after_copies():
    base, fm, plain = learned()
    twin = copy.deepcopy(base)
    with pytest.raises(ValueError, match="already carries the hooks of another FaastModel"):
        get_faast_model(base, FaastConfig(num_memories=0))
    fm2 = get_faast_model(twin, FaastConfig(num_memories=0))
    assert torch.allclose(logits(fm2), plain, atol=1e-6)  # nothing learned: it reads none of fm's
    with pytest.raises(ValueError, match="already carries the hooks of another FaastModel"):
        get_faast_model(twin, FaastConfig(num_memories=0))
    assert fm.unload() is base and hook_count(base) == 0
    assert torch.allclose(logits(base), plain, atol=1e-6)
    again = get_faast_model(base, FaastConfig(num_memories=0))  # unloaded: wrappable again
    assert torch.allclose(logits(again), plain, atol=1e-6)
    assert fm2.attached


def test_inert_hooks_of_a_copy_are_stripped_and_foreign_hooks_kept():
    base, fm, plain = learned()
    ref = logits(fm)
    twin = copy.deepcopy(base)
    seen: list[int] = []
    handle = twin.lm_head.register_forward_hook(lambda _m, _a, _o: seen.append(1))  # someone else's
    carried = hook_count(twin) - 1
    assert carried == hook_count(base) > 0
    assert inject.strip_inert_hooks(twin) == carried
    assert hook_count(twin) == 1 and inject.strip_inert_hooks(base) == 0  # live hooks stay
    logits(twin)
    assert seen == [1]
    handle.remove()
    assert torch.allclose(logits(twin), plain, atol=1e-6)
    assert fm.attached and torch.equal(logits(fm), ref)  # the original's hooks act as before


def test_a_faast_hook_acts_only_on_its_own_module():
    calls: list[nn.Module] = []
    mine, other = nn.Linear(2, 2), nn.Linear(2, 2)
    hook = inject.FaastHook(mine, lambda module, *args: calls.append(module) or "changed")
    assert hook(other, (), {}) is None and calls == []
    assert hook(mine, (), {}) == "changed" and calls == [mine]
    inert = copy.deepcopy(hook)
    assert inert(mine, (), {}) is None and not inert.serves(mine) and len(calls) == 1


def test_the_remedy_of_the_deepcopy_error_gives_an_independent_copy(tmp_path):
    _, fm, plain = learned(middle=True)
    ref = logits(fm)
    path = tmp_path / "fw.safetensors"
    fm.save_fast_weights(path)
    fm2 = get_faast_model(copy.deepcopy(fm.base_model), fm.faast_config)
    with torch.no_grad():
        fm2.middle_memories[0].out_proj.weight.copy_(fm.middle_memories[0].out_proj.weight)
    fm2.load_fast_weights(path)
    assert torch.allclose(logits(fm2), ref, atol=1e-5)
    fm2.reset_projection()
    assert torch.allclose(logits(fm2), plain, atol=1e-6)
    assert torch.allclose(logits(fm), ref, atol=1e-6)


# ----------------------------------------------------------------- pickling


@pytest.mark.parametrize("dump", ["pickle", "torch.save"])
def test_pickling_a_faast_model_names_what_to_save_instead(dump):
    base, fm, _ = learned()
    save = (
        (lambda obj: pickle.dumps(obj)) if dump == "pickle" else (lambda obj: torch.save(obj, io.BytesIO()))
    )
    for _ in range(2):  # attached, then unloaded (the read-outs still hold lambdas)
        with pytest.raises(TypeError, match="cannot pickle a FaastModel") as e:
            save(fm)
        assert "fm.save_fast_weights(path)" in str(e.value) and "save_pretrained" in str(e.value)
        fm.unload()
    fm.attach()
    with pytest.raises(TypeError, match="cannot pickle faast's forward hooks") as e:
        save(base)
    assert "fm.unload()" in str(e.value) and "save_fast_weights" in str(e.value)
    assert "base.save_pretrained(directory)" in str(e.value)


def test_the_base_pickles_after_unload_and_a_copy_of_the_hooked_base_pickles():
    base, fm, plain = learned()
    twin = copy.deepcopy(base)  # carries inert hooks, which pickle as inert hooks
    restored = pickle.loads(pickle.dumps(twin))
    assert torch.allclose(logits(restored), plain, atol=1e-6)
    fm.unload()
    buffer = io.BytesIO()
    torch.save(base, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert hook_count(loaded) == 0
    assert torch.allclose(logits(loaded), plain, atol=1e-6)


# ----------------------------------------------------------------- PEFT


def test_a_peft_wrapper_is_refused_with_the_inner_model_as_remedy():
    peft = pytest.importorskip("peft")
    base = tiny_model("llama", dtype=torch.float32)
    wrapped = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(UnsupportedModelError, match=r"PEFT wrapper.*peft_model\.get_base_model\(\)"):
        get_faast_model(wrapped, FaastConfig(num_memories=0))
    assert hook_count(wrapped) == 0


def test_the_inner_model_of_a_peft_wrapper_learns_and_reads_with_lora_active():
    peft = pytest.importorskip("peft")
    base = tiny_model("llama", dtype=torch.float32)
    plain = logits(base)
    wrapped = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # LoRA's B starts at zero: make the adapter change the model
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    lora = logits(wrapped)
    assert not torch.allclose(lora, plain, atol=1e-4)
    fm = get_faast_model(wrapped.get_base_model(), FaastConfig(num_memories=1))
    with fm.disabled():
        assert torch.allclose(logits(fm), lora, atol=1e-6)  # the LoRA layers stay active
    assert fm.learn(input_ids=TEXT) == 19
    assert not torch.allclose(logits(fm), lora, atol=1e-4)  # it reads what it learned
    assert torch.equal(
        fm.generate(input_ids=TEXT[:, :4], max_new_tokens=3, do_sample=False)[:, :4], TEXT[:, :4]
    )
    fm.unload()
    assert torch.allclose(logits(wrapped), lora, atol=1e-6)


def test_peft_wrappers_are_recognised_without_importing_peft():
    """By the module of a class in the type's MRO; a remedy for wrappers without get_base_model."""
    inner = tiny_model("llama", dtype=torch.float32)

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = inner

    Wrapper.__module__ = "peft.tuners.fake"
    with pytest.raises(UnsupportedModelError, match=r"PEFT wrapper.*its `\.model`"):
        get_faast_model(Wrapper(), FaastConfig(num_memories=0))
    Sub = type("SubWrapper", (Wrapper,), {"__module__": "user_code", "get_base_model": lambda self: inner})
    with pytest.raises(UnsupportedModelError, match=r"get_base_model\(\)"):
        get_faast_model(Sub(), FaastConfig(num_memories=0))
    assert hook_count(inner) == 0


class _LogitsOnly(nn.Module):
    """A backbone stand-in that returns the LM's logits, as PEFT's LoraModel does."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        return CausalLMOutput(logits=self.lm(input_ids=input_ids, attention_mask=attention_mask).logits)


class _OddWrapper(nn.Module):
    """Not PEFT: a wrapper whose ``base_model`` returns no last_hidden_state."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.inner = _LogitsOnly(lm)
        self.config = lm.config

    @property
    def base_model(self) -> nn.Module:
        return self.inner

    def get_output_embeddings(self) -> nn.Module:
        return self.inner.lm.get_output_embeddings()

    def forward(self, input_ids=None, **kwargs):
        return self.inner.lm(input_ids=input_ids, **kwargs)


def test_a_backbone_without_last_hidden_state_is_refused_at_wrap_time():
    model = _OddWrapper(tiny_model("llama", dtype=torch.float32))
    with pytest.raises(UnsupportedModelError, match=r"no last_hidden_state.*_LogitsOnly.*ForCausalLM"):
        get_faast_model(model, FaastConfig(num_memories=0))
    assert hook_count(model) == 0
