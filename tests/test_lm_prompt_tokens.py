"""How a prompt's pieces become tokens: with a SentencePiece dummy prefix (the legacy tokenizer.json
of Llama-2-era checkpoints) an answer, end marker or separator encoded alone carries a spurious "▁"
token; they are encoded as text that follows other text, so that prompt + answer is the sequence
the model reads in the joined text. Tokenizers without such a prefix (byte-level BPE, the word
tokenizer) are left as they were."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import ReadConfig
from faast.lm.examples import Example
from faast.lm.icl import InContextModel
from faast.lm.prompts import PromptCodec, PromptTemplate, adds_text_prefix
from faast.lm.task import ReadCandidate, TaskModel, TaskSpec
from tests.lm_sentencepiece import SP_WORDS, dummy_prefix_tokenizer
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import WORDS, word_tokenizer

SP = dummy_prefix_tokenizer()
TEMPLATES = [
    PromptTemplate("Review: {input}\nSentiment:"),
    PromptTemplate("{input}\nAnswer:", answer_end="\n\n", separator="\n"),
    PromptTemplate("Review: {input}.", answer_prefix=" Answer: ", answer_end=".", separator="\n"),
]
texts = st.lists(st.sampled_from(SP_WORDS), min_size=1, max_size=4).map(" ".join)


def test_the_dummy_prefix_is_detected_only_where_it_is():
    assert adds_text_prefix(SP)
    assert not adds_text_prefix(word_tokenizer()) and not adds_text_prefix(word_tokenizer(bos=True))
    alone = SP(" positive", add_special_tokens=False).input_ids
    assert SP.convert_ids_to_tokens(alone) == ["▁", "▁positive"]  # what an answer encoded alone was


@settings(max_examples=60, deadline=None)
@given(template=st.sampled_from(TEMPLATES), text=texts, output=texts)
def test_prompt_then_answer_is_the_joined_text_encoded(template, text, output):
    """prompt ids + answer ids = the ids of the joined text (what the model read in training), and a
    demonstration (prompt, answer, separator) as well; labels are the answer without its end."""
    codec = PromptCodec(SP, template)
    joined = SP(template.prompt(text) + template.answer(output), add_special_tokens=False).input_ids
    assert codec.prompt_ids(text) + codec.answer_ids(output) == codec.start_ids + joined
    demo = template.prompt(text) + template.answer(output) + template.separator
    assert codec.demonstration_ids(text, output) == SP(demo, add_special_tokens=False).input_ids
    answer = codec.answer_ids(output)
    assert codec.label_ids(output) == answer[: len(codec.label_ids(output))]
    assert SP.convert_ids_to_tokens(answer[:1]) != ["▁"]


def test_a_one_token_end_marker_stops_generation_by_its_token():
    """The newline alone was "▁" "\\n" (two tokens: a stop string); after text it is one token."""
    codec = PromptCodec(SP, TEMPLATES[0])
    newline = SP.convert_tokens_to_ids("\n")
    assert codec.stop_kwargs() == {"eos_token_id": [newline, SP.eos_token_id]}


@settings(max_examples=60, deadline=None)
@given(text=st.lists(st.sampled_from(WORDS), max_size=5).map(" ".join), lead=st.sampled_from(["", " ", "\n"]))
def test_tokenizers_without_a_prefix_encode_as_before(text, lead):
    codec = PromptCodec(word_tokenizer(), PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91"))
    assert codec.continuation_ids(lead + text) == codec.text_ids(lead + text)


def test_task_label_scores_are_those_of_the_joined_text():
    """A task on a dummy-prefix tokenizer scores each label as the joined text's tokens after the
    prompt (no spurious "▁" between prompt and label)."""
    torch.manual_seed(0)
    labels = ["positive", "negative"]
    task = TaskModel.create(
        tiny_model("llama", dtype=torch.float64), SP, TaskSpec(TEMPLATES[0], "answer", labels)
    )
    examples = [Example(w, labels[i % 2]) for i, w in enumerate(["good", "bad", "fine", "dull"])]
    task.learn(examples * 2, progress=False)
    task.use(ReadCandidate("prob", ReadConfig(weight=0.5, temperature=1.0, gate=None)))
    scores = task.label_scores(["good fine"])
    for j, label in enumerate(labels):
        ids = SP(TEMPLATES[0].prompt("good fine") + " " + label, add_special_tokens=False).input_ids
        prompt_len = len(SP(TEMPLATES[0].prompt("good fine"), add_special_tokens=False).input_ids)
        full = task.codec.start_ids + ids
        lp = torch.log_softmax(task.model(input_ids=torch.tensor([full])).logits[0].detach(), -1)
        start = len(task.codec.start_ids) + prompt_len
        expected = sum(float(lp[k - 1, full[k]]) for k in range(start, len(full)))
        assert len(full) - start == 1  # "▁positive" alone, as in the joined text
        assert scores[0, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_task_on_a_dummy_prefix_tokenizer_generates_what_it_learned():
    """Learned answers come back whole and stop at the one-token newline (the end marker was two
    tokens, "▁" "\\n", and every answer began with a lone "▁" the model had to produce). A short
    prompt: the tiny random model's last state tells long shared prompt endings apart too weakly."""
    torch.manual_seed(0)
    spec = TaskSpec(PromptTemplate("{input}\nSentiment:"))
    task = TaskModel.create(tiny_model("llama", dtype=torch.float64), SP, spec)
    examples = [Example("good fine", "positive yes"), Example("dull", "negative")]
    task.learn(examples * 2, progress=False)
    task.use(ReadCandidate("prob", ReadConfig(weight=1.0, temperature=0.01, gate=None)))
    assert task.generate(["good fine", "dull"], max_new_tokens=5, progress=False) == [
        "positive yes",
        "negative",
    ]


@settings(max_examples=40, deadline=None)
@given(
    template=st.sampled_from(TEMPLATES),
    pairs=st.lists(st.tuples(texts, texts), min_size=1, max_size=3),
    query=texts,
)
def test_in_context_prompts_are_the_joined_text_encoded(template, pairs, query):
    """Demonstrations then the query's prompt are the joined text's ids: a prompt that follows a
    demonstration (its separator) continues the text, so it has no "▁" a new line would not give
    it; the first prompt after the start tokens is encoded alone, as a document's first line."""
    codec = PromptCodec(SP, template)
    demos = "".join(template.prompt(x) + template.answer(y) + template.separator for x, y in pairs)
    joined = codec.start_ids + SP(demos + template.prompt(query), add_special_tokens=False).input_ids
    ids, used = codec.icl_prompt(pairs, query)
    assert used == len(pairs) and ids == joined
    icl = InContextModel(tiny_model("llama"), codec, pairs, reserve=16)
    assert icl.prefix + icl._query(query) == joined
    lead = PromptCodec(SP, template, demonstrations=pairs)
    assert lead.prompt_ids(query) == joined
    assert lead.icl_prompt([], query)[0] == joined
    alone = codec.start_ids + SP(template.prompt(query), add_special_tokens=False).input_ids
    assert codec.icl_prompt([], query) == (alone, 0)


def test_a_task_stops_at_an_end_marker_of_several_tokens():
    """An end marker of two tokens ("\\n" "\\n") is a stop string, which transformers' criterion
    matches on this tokenizer's pieces: generation ends there, well before ``max_new_tokens``."""
    torch.manual_seed(0)
    spec = TaskSpec(PromptTemplate("{input}\nSentiment:", answer_end="\n\n"))
    task = TaskModel.create(tiny_model("llama", dtype=torch.float64), SP, spec)
    assert "stop_strings" in task.codec.stop_kwargs()
    task.learn([Example("good fine", "positive yes"), Example("dull", "negative")] * 2, progress=False)
    task.use(ReadCandidate("prob", ReadConfig(weight=1.0, temperature=0.01, gate=None)))
    steps = []
    hook = task.model.get_output_embeddings().register_forward_hook(lambda *_: steps.append(1))
    try:
        assert task.generate(["dull"], max_new_tokens=20, progress=False) == ["negative"]
    finally:
        hook.remove()
    assert len(steps) == len(task.codec.answer_ids("negative"))  # "▁negative" "\n" "\n", then stop


@pytest.mark.assets("smollm2-135m-instruct")
def test_generation_stops_at_every_token_that_holds_the_end_marker():
    """SmolLM2 writes two newlines, or a newline and an indent, as one token: an answer ends there
    (decode_answer cuts at the first newline), so generation must stop there too instead of
    running on to max_new_tokens."""
    from transformers import AutoTokenizer

    from faast.assets.lm import smollm2_dir

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir()))
    codec = PromptCodec(tok, PromptTemplate("Review: {input}\nSentiment:"))
    stop = codec.stop_kwargs()["eos_token_id"]
    newline = tok("\n", add_special_tokens=False).input_ids
    assert stop[0] == newline[0] and stop[-1] == tok.eos_token_id
    holding = {i for i in range(len(tok)) if "\n" in tok.decode([i])}
    assert set(stop[:-1]) == holding and len(holding) > 10
    assert tok("\n\n", add_special_tokens=False).input_ids[0] in holding
    assert codec.decode_answer(tok(" positive\n\n", add_special_tokens=False).input_ids) == "positive"
