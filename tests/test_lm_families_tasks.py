"""Task learning and in-context learning on every tiny family of tests/lm_tiny.py ``MORE_FAMILIES``
(attention models, Mamba and the hybrids LFM2, Jamba, Bamba and Qwen3-Next, whose caches keep
recurrent states): the shortcuts that continue a KV cache — the demonstrations' cache, a shared
prompt's cache, continuations packed under an attention mask — give the scores one full forward per
label gives, and a model whose cache cannot be continued that way runs its rows whole instead of
failing deep inside transformers."""

from __future__ import annotations

import warnings

import pytest
import torch

from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.prefix_cache import model_extends_by_attention
from faast.lm.prompts import PromptCodec, PromptTemplate
from faast.lm.readouts import HEAD_INPUT
from faast.lm.task import ReadCandidate, TaskModel
from faast.lm.task_spec import TaskSpec
from tests.lm_tiny import MORE_FAMILIES, more_tiny_model
from tests.lm_wordlevel import word_tokenizer

TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")
#: labels of 1 to 3 tokens whose beginnings are shared (continuations after a prompt run once each)
LABELS = ["w40 w41 w42", "w40 w41 w43", "w40 w44", "w45 w41 w42", "w46"]
DEMOS = [("w10 w11", "w40 w41 w42"), ("w12", "w46")]
RECURRENT = {"mamba", "lfm2", "jamba", "bamba", "qwen3_next"}


def _model(family: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Mamba's "falling back to the reference implementation"
        return more_tiny_model(family)


def _full_log_prob(model, prompt: list[int], label: list[int]) -> float:
    """log p(label | prompt) from one forward pass of the whole sequence."""
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([prompt + label])).logits[0].float(), -1)
    return sum(float(lp[len(prompt) - 1 + k, t]) for k, t in enumerate(label))


def test_the_recurrent_families_are_the_ones_whose_cache_is_not_continued_by_attention():
    found = {f for f in MORE_FAMILIES if not model_extends_by_attention(_model(f))}
    assert found == RECURRENT


@pytest.mark.parametrize("demos", [DEMOS, []], ids=["demonstrations", "none"])
@pytest.mark.parametrize("family", sorted(MORE_FAMILIES))
def test_in_context_label_scores_equal_one_full_forward_per_label(family, demos):
    """A batch of 4 with 5 multi-token labels takes the each-query-once path (packed, or a cache copy
    per continuation) on attention models, whole rows on the recurrent ones; either way the scores
    are the full model's, and a greedy answer is the step-by-step argmax after the whole prompt."""
    model = _model(family)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=60)
    icl = InContextModel(model, codec, demos, reserve=16)
    assert (icl.cache_nbytes() == 0) == (family in RECURRENT or not icl.prefix)
    inputs = ["w5", "w6 w7"]
    scores = icl.label_scores(inputs, LABELS, batch_size=4)
    for i, text in enumerate(inputs):
        prompt = codec.icl_prompt(demos, text, reserve=16)[0] if demos else codec.prompt_ids(text)
        for j, label in enumerate(codec.scored_label_ids(LABELS)):
            # in-context scores sum float32 log-softmax values (InContextModel._log_probs)
            expected = _full_log_prob(model, prompt, label)
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    prompt = codec.icl_prompt(demos, "w6 w7", reserve=16)[0] if demos else codec.prompt_ids("w6 w7")
    seq = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(3):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    expected = codec.decode_answer(seq[0, len(prompt) :].tolist())
    assert icl.generate(["w5", "w6 w7"], max_new_tokens=3, stop={}, batch_size=2)[1] == expected


@pytest.mark.parametrize("lead", [False, True], ids=["no-lead", "lead-demonstrations"])
@pytest.mark.parametrize("family", sorted(MORE_FAMILIES))
def test_task_label_scores_after_a_shared_prompt_or_lead_cache_equal_whole_sequences(family, lead):
    """A learned task's label scores with one input a batch (the prompt once, the labels after its
    cache, where the model's cache allows it) and with lead demonstrations read from a cache equal
    those of whole sequences (lead demonstrations in every row); on the recurrent families both
    shortcuts are off (the model serves no prefix cache) instead of failing."""
    torch.manual_seed(0)
    spec = TaskSpec(TEMPLATE, "answer", LABELS, demonstrations=DEMOS if lead else [])
    task = TaskModel.create(_model(family), word_tokenizer(), spec)
    takes_positions = task.model._layout.accepts_position_ids  # BLOOM's does not: no prefix cache
    assert task.model.serves_prefix_cache == (family not in RECURRENT and takes_positions)
    task.learn([Example(f"w{a}", LABELS[a % 5]) for a in range(3, 15)], progress=False)
    task.use(ReadCandidate("logit", ReadConfig(weight=0.5)))
    shared = task.label_scores(["w5 w6", "w7"], batch_size=1)
    assert (task.lead_nbytes() > 0) == (lead and task.model.serves_prefix_cache)
    task.lead_cache = False  # every sequence whole, lead demonstrations included
    task._lead = None
    whole = task.label_scores(["w5 w6", "w7"], batch_size=64)
    torch.testing.assert_close(shared, whole, rtol=1e-5, atol=1e-5)
    if not lead:  # and both are the learned model's full forward (Cohere, Granite and Gemma 2
        # transform their head's output: label scores are the probabilities the model returns)
        for i, text in enumerate(["w5 w6", "w7"]):
            prompt = task.codec.prompt_ids(text)
            for j, label in enumerate(LABELS):
                expected = _full_log_prob(task.model, prompt, task.codec.label_ids(label))
                assert whole[i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("mix", ["prob", "logit"])
@pytest.mark.parametrize("family", sorted(MORE_FAMILIES))
def test_a_learned_model_returns_the_logits_faast_scores(family, mix):
    """After learning, the model's returned log-probabilities (its forward: the read-out in a hook
    on the LM head, then the model's own transform of the head's output) equal those faast
    computes from head inputs (``output_logits``: label scores, read-out choices), on every family:
    the "prob" mix hands the model the head output that its transform turns into the mixture."""
    torch.manual_seed(0)
    fm = get_faast_model(
        _model(family), FaastConfig(num_memories=0, output_mix=mix), ReadConfig(weight=0.5, gate=None)
    )
    text = torch.tensor([[5, 9, 14, 9, 22, 31, 5, 9, 40]])
    fm.learn(input_ids=text)
    with torch.no_grad():
        returned = torch.log_softmax(fm(input_ids=text).logits.float(), -1)
        scored = torch.log_softmax(fm.output_logits({HEAD_INPUT: fm.head_inputs(text)}).float(), -1)
        with fm.disabled():
            base = torch.log_softmax(fm(input_ids=text).logits.float(), -1)
    assert (returned - base).abs().max() > 0.01  # the memory is read
    torch.testing.assert_close(returned, scored, rtol=1e-4, atol=1e-4)
