"""TaskModel.fit refuses an example longer than the model's context before any forward pass: it
was found only in the cross-validation, after a fold was learned (minutes on a real model)."""

from __future__ import annotations

import pytest

from faast.lm.examples import Example
from faast.lm.task import TaskModel, TaskSpec
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer
from tests.test_lm_task import TEMPLATE, rule_examples


def _counting_task() -> tuple[TaskModel, list[int]]:
    task = TaskModel.create(tiny_model("llama"), word_tokenizer(), TaskSpec(TEMPLATE, "answer", None))
    calls: list[int] = []
    capture = task.model.capture

    def counted(*args, **kwargs):
        calls.append(1)
        return capture(*args, **kwargs)

    task.model.capture = counted
    return task, calls


@pytest.mark.parametrize("labels", ["auto", None])
def test_an_example_beyond_the_context_is_named_before_any_forward_pass(labels):
    task, calls = _counting_task()
    examples = rule_examples(40)
    examples.append(Example(" ".join(["w5"] * (task.codec.context + 5)), "w41"))
    with pytest.raises(ValueError, match=r"example 41 \('w5 w5.*more than the model's context of 64"):
        task.fit(examples, labels=labels, progress=False, folds=2)
    assert calls == []  # no forward pass ran
    assert task.model.num_pairs == 0


def test_a_prompt_whose_longest_label_passes_the_context_is_named_before_any_forward_pass():
    """Each example fits with its own (short) answer; scored with the longest label it does not."""
    task, calls = _counting_task()
    long_label = " ".join(["w40"] * 30)
    examples = rule_examples(40) + [Example("w6", long_label)] * 2
    examples.append(Example(" ".join(["w5"] * 40), "w41"))  # 40 + 3 tokens fit; 40 + 30 do not
    with pytest.raises(ValueError, match=r"the prompt of example 43 \('w5 w5.*with a label"):
        task.fit(examples, labels=["w40", "w41", long_label], progress=False, folds=2)
    assert calls == []
