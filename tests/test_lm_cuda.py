"""A task on a CUDA device gives the numbers it gives on the CPU (skipped without a GPU).

Every benchmark that runs with ``--device cuda`` goes through these paths: learning (both output
memories, answer pairs), the cross-validated choice of a read-out, label scores, teacher-forced
NLL, greedy generation and in-context learning. The tiny model runs in float64 on both devices,
so the two agree to rounding.
"""

from __future__ import annotations

import pytest
import torch

from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.lora_baseline import LoraRecipe, answer_nll, fit_lora
from faast.lm.prompts import PromptCodec, PromptTemplate
from faast.lm.task import TaskModel, TaskSpec
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")


def rule_examples(n: int, seed: int = 0) -> list[Example]:
    gen = torch.Generator().manual_seed(seed)
    return [
        Example(f"w{a}", "w40 w42" if a % 2 == 0 else "w41")
        for a in torch.randint(3, 15, (n,), generator=gen).tolist()
    ]


def fitted(device: str, mix: str, labels) -> tuple[TaskModel, object]:
    torch.manual_seed(0)
    model = tiny_model("llama", dtype=torch.float64).to(device)
    task = TaskModel.create(model, word_tokenizer(), TaskSpec(TEMPLATE), mix=mix)
    report = task.fit(rule_examples(60), labels=labels, progress=False, batch_size=7)
    return task, report


@pytest.mark.parametrize("mix", ["prob", "correction"])
@pytest.mark.parametrize("labels", ["auto", None])
def test_a_task_fit_on_the_gpu_equals_the_same_fit_on_the_cpu(mix, labels):
    cpu, cpu_report = fitted("cpu", mix, labels)
    gpu, gpu_report = fitted("cuda", mix, labels)
    assert gpu.device.type == "cuda"
    assert gpu_report.chosen == cpu_report.chosen
    assert gpu_report.criterion == pytest.approx(cpu_report.criterion, rel=1e-5, abs=1e-7)
    probe = [Example("w4 w9", "w40 w42"), Example("w11", "w41"), Example("w3", "w41")]
    assert gpu.answer_nll(probe)[0] == pytest.approx(cpu.answer_nll(probe)[0], rel=1e-5)
    inputs = [e.input for e in probe]
    assert gpu.generate(inputs, max_new_tokens=4, progress=False) == cpu.generate(
        inputs, max_new_tokens=4, progress=False
    )
    if labels == "auto":
        assert torch.allclose(gpu.label_scores(inputs).cpu(), cpu.label_scores(inputs), rtol=1e-5, atol=1e-7)
        assert gpu.classify(inputs) == cpu.classify(inputs)
        heads = [task.fit_head(rule_examples(30, seed=1)) for task in (cpu, gpu)]
        assert torch.allclose(heads[1].weight, heads[0].weight, rtol=1e-4, atol=1e-6)
        assert gpu.classify(inputs) == cpu.classify(inputs)  # now by the label heads


def test_in_context_learning_on_the_gpu_equals_the_cpu():
    demos = [("w10 w11", "w40"), ("w12", "w41"), ("w13 w14", "w40")]
    out = {}
    for device in ("cpu", "cuda"):
        model = tiny_model("llama", dtype=torch.float64).to(device)
        codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
        icl = InContextModel(model, codec, demos, reserve=10)
        out[device] = (
            icl.label_scores(["w5", "w6 w7"], ["w40", "w41 w42"]).cpu(),
            icl.answer_nll([("w5", "w40"), ("w6 w7", "w41 w42")]),
            icl.generate(["w5", "w8"], max_new_tokens=3),
        )
    assert torch.allclose(out["cuda"][0], out["cpu"][0], rtol=1e-5, atol=1e-7)
    assert out["cuda"][1] == pytest.approx(out["cpu"][1], rel=1e-5)
    assert out["cuda"][2] == out["cpu"][2]


def test_the_lora_baseline_on_the_gpu_equals_the_same_fit_on_the_cpu():
    """The batches follow the model to its device (they were left on the CPU)."""
    recipe = LoraRecipe(epochs=2, batch_size=8, learning_rates=(1e-3, 3e-2), seed=0)
    codec = PromptCodec(word_tokenizer(), TEMPLATE)
    pad = codec.tokenizer.pad_token_id
    fits, nll = [], []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = tiny_model("llama", dtype=torch.float64).to(device)
        peft_model, fit = fit_lora(model, codec, rule_examples(40), recipe)
        fits.append(fit)
        nll.append(answer_nll(peft_model, codec, rule_examples(10, seed=1), 4, pad))
    assert fits[1].learning_rate == fits[0].learning_rate
    assert fits[1].held_out_nll == pytest.approx(fits[0].held_out_nll, rel=1e-5)
    assert nll[1] == pytest.approx(nll[0], rel=1e-5)
