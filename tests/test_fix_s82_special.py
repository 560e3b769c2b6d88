"""`faast task` reads the strings of special tokens in a user's text as text: an input, output or
label quoting "<|im_end|>" or "<eos>" was encoded with the control token itself (a model taught
such an answer learned to emit its end token there, and generation stopped), while `faast lm`
already read such strings as text. The template's own strings (chat markup in --template) stay
control tokens, and text holding no such string encodes exactly as before."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faast.lm.prompts import PromptCodec, PromptTemplate
from faast.lm.special_tokens import TEXT_AS_TEXT, SpecialStrings, ids_around_text, special_strings
from tests.lm_sentencepiece import SP_WORDS, dummy_prefix_tokenizer
from tests.lm_wordlevel import WORDS, word_tokenizer

#: The word tokenizer's "</s>" (id 2) and "<s>" (id 1); read as text, "</s>" is three unknown tokens.
EOS, BOS, UNK = 2, 1, 0
WORD = word_tokenizer()
SP = dummy_prefix_tokenizer()


def test_special_strings_in_an_input_an_output_and_a_label_are_text():
    codec = PromptCodec(WORD, PromptTemplate("w5 {input} w6"))
    assert codec.prompt_ids("w7 </s> w8") == [5, 7, UNK, UNK, UNK, 8, 6]  # was [5, 7, EOS, 8, 6]
    assert codec.answer_ids("w9 </s>") == [9, UNK, UNK, UNK]  # was [9, EOS]: taught to stop
    assert codec.label_ids("<s>") == [UNK, UNK, UNK]  # was [BOS]
    demo = codec.demonstration_ids("w7 </s>", "w9 <s>")
    assert EOS not in demo and BOS not in demo


def test_the_templates_own_special_strings_stay_control_tokens():
    codec = PromptCodec(WORD, PromptTemplate("<s> w5 {input} </s> w6", answer_prefix=" ", answer_end=" </s>"))
    assert codec.prompt_ids("w7 </s> w8") == [BOS, 5, 7, UNK, UNK, UNK, 8, EOS, 6]
    assert codec.prompt_ids("w7 w8") == [BOS, 5, 7, 8, EOS, 6]
    assert codec.answer_ids("w9 <s>") == [9, UNK, UNK, UNK, EOS]


def test_a_special_string_made_across_the_inputs_edge_is_text():
    """The string "</" + "s>": the template's text and the input's make the string together; the user's part
    is text, so the whole string is read as text."""
    codec = PromptCodec(WORD, PromptTemplate("w5 </{input} w6"))
    assert EOS not in codec.prompt_ids("s>")
    ends = SpecialStrings(["</s>", "<s>"])
    assert ends.touches("w5 </s> w6", 5, 7) and ends.touches("w5 </s> w6", 3, 4)
    assert not ends.touches("w5 </s> w6", 8, 10) and not ends.touches("w5 </s> w6", 7, 7)


words = st.lists(st.sampled_from([*WORDS[:20], "<s>", "</s>", "w3</s>"]), max_size=5).map(" ".join)


@given(before=words, content=words, after=words)
def test_ids_around_text_are_one_call_unless_the_content_holds_a_special_string(before, content, after):
    """The fast path is the old encoding; otherwise only the content's special strings change:
    the ids equal one call over the text with the content's specials replaced by their text ids."""
    ids = ids_around_text(WORD, f"{before} ", content, f" {after}")
    one_call = WORD(f"{before} {content} {after}", add_special_tokens=False).input_ids
    if not any(s in content for s in special_strings(WORD)):
        assert ids == one_call
    else:
        spelled = content.replace("</s>", " w90 w91 w92 ").replace("<s>", " w90 w91 w92 ")
        expected = WORD(f"{before} {spelled} {after}", add_special_tokens=False).input_ids
        assert ids == [UNK if t in (90, 91, 92) else t for t in expected]


sp_texts = st.lists(st.sampled_from([*SP_WORDS, "</s>"]), min_size=1, max_size=4).map(" ".join)


@given(text=sp_texts, output=sp_texts)
def test_a_dummy_prefix_tokenizer_continues_the_prompts_text_on_the_special_string_path(text, output):
    """prompt + answer = the joined text read as text (no spurious "▁" between them: the answer
    continues the prompt's text), on the path for text holding a special string too (its
    continuation context is cut off as on the plain path). In this toy vocabulary "</s>" read as
    text is its own piece, id 2, so this checks the continuation, not the reading as text (the word
    tokenizer's tests above do that)."""
    template = PromptTemplate("Review: {input}\nSentiment:")
    codec = PromptCodec(SP, template)
    joined = SP(template.prompt(text) + template.answer(output), **TEXT_AS_TEXT).input_ids
    assert codec.prompt_ids(text) + codec.answer_ids(output) == codec.start_ids + joined


@pytest.mark.assets("smollm2-135m-instruct")
def test_smollm2_reads_a_quoted_im_end_as_text_and_a_chat_template_as_markup():
    from transformers import AutoTokenizer

    from faast.assets.lm import smollm2_dir

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir()))
    start, end = tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    codec = PromptCodec(tok, PromptTemplate("Copy: {input}\nCopy:"))
    answer = codec.answer_ids("quote <|im_end|> and more")
    assert end not in answer and codec.decode_answer(answer) == "quote <|im_end|> and more"
    assert end not in codec.prompt_ids("say <|im_end|> now")
    chat = PromptCodec(tok, PromptTemplate("<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"))
    ids = chat.prompt_ids("say <|im_end|> now")
    assert ids.count(start) == 2 and ids.count(end) == 1
    plain = "<|im_start|>user\nsay hi<|im_end|>\n<|im_start|>assistant\n"
    assert chat.prompt_ids("say hi") == tok(plain, add_special_tokens=False).input_ids


@given(
    text=st.text(alphabet="<>/sab", max_size=30),
    start=st.integers(0, 30),
    length=st.integers(0, 8),
    strings=st.lists(st.text(alphabet="<>/sab", min_size=1, max_size=4), max_size=6),
)
def test_special_strings_touch_a_span_as_a_plain_search_finds(text, start, length, strings):
    """The indexed search (by first character and length) against every occurrence of every
    string, overlapping text[start:end]."""
    start = min(start, len(text))
    end = min(start + length, len(text))
    plain = any(
        text.startswith(s, at) and at < end and at + len(s) > start
        for s in strings
        for at in range(len(text))
    ) or any(  # an empty span: a string across the point
        start == end and text.startswith(s, at) and at < start < at + len(s)
        for s in strings
        for at in range(len(text))
    )
    assert SpecialStrings(strings).touches(text, start, end) == plain
