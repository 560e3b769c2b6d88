"""Supervised task learning: examples on disk, prompts (the query is never truncated), which pairs
each mode learns, the choice of read-out on validation data, classification, generation, files,
in-context learning with a cached prefix."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from faast.lm import FaastConfig, ReadConfig, get_faast_model
from faast.lm.examples import Example, read_examples, write_rows
from faast.lm.icl import InContextModel
from faast.lm.prompts import PromptCodec, PromptTemplate, answer_pair_mask, pad_batch
from faast.lm.task import MEMORY_OFF, ReadCandidate, TaskModel, default_candidates, memory_off
from faast.lm.task_spec import MAX_LABELS, TaskSpec, auto_labels, labels_of_outputs
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer

TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")


# ----------------------------------------------------------------- examples on disk
def test_examples_round_trip_in_both_formats(tmp_path):
    rows = [{"input": "a\tb", "output": "x\ny"}, {"input": "ü", "output": "z"}]
    for name in ("ex.tsv", "ex.jsonl"):
        write_rows(tmp_path / name, rows, ["input", "output"])
        back = read_examples(tmp_path / name)
        assert [(e.input, e.output) for e in back] == [("a\tb", "x\ny"), ("ü", "z")]
    (tmp_path / "inputs.tsv").write_text("only input\nanother\n", encoding="utf-8")
    assert [e.output for e in read_examples(tmp_path / "inputs.tsv", outputs=False)] == [None, None]
    (tmp_path / "extra.jsonl").write_text('{"input": "q", "output": "a", "id": 7}\n', encoding="utf-8")
    assert read_examples(tmp_path / "extra.jsonl")[0].extra == {"id": 7}


@pytest.mark.parametrize("name", ["ex.tsv", "ex.jsonl"])
def test_a_byte_order_mark_is_not_read_as_text(tmp_path, name):
    """Files saved with a UTF-8 byte-order mark (as Windows editors do) read as without it: the
    TSV header is still a header (not an example "input → output"), the first JSON line parses,
    a learned text does not start with U+FEFF."""
    from faast.lm.text import read_text

    plain = "input\toutput\nq\ta\n" if name.endswith(".tsv") else '{"input": "q", "output": "a"}\n'
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + plain.encode("utf-8"))
    assert [(e.input, e.output) for e in read_examples(tmp_path / name)] == [("q", "a")]
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbfOnce upon a time")
    assert read_text(tmp_path / "t.txt") == "Once upon a time"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("e.tsv", b"", "is empty"),
        ("e.tsv", b"input\toutput\n", "header but no examples"),
        ("e.tsv", b"a\tb\n\nc\td\n", r"e.tsv:2: blank line"),
        ("e.tsv", b"a\tb\tc\n", r"e.tsv:1: 3 tab-separated fields"),
        ("e.tsv", b"just input\n", r"e.tsv:1: no output"),
        # another tool's header was learned as the example "text -> label" (and "label" a class)
        ("e.tsv", b"text\tlabel\ngood\tpos\n", r"e.tsv:1: 'text'<TAB>'label' looks like a header"),
        ("e.tsv", b"ok\tfine\n\xff\xfe\tx\n", r"e.tsv:2: not UTF-8"),
        ("e.jsonl", b'{"input": "a", "output": "b"}\n{bad\n', r"e.jsonl:2: not valid JSON"),
        ("e.jsonl", b'{"input": "a"}\n', r"e.jsonl:1: no field 'output' \(the object's fields: 'input'\)"),
        ("e.jsonl", b'{"input": "a", "output": null}\n', r"e.jsonl:1: field 'output' is null"),
        (
            "e.jsonl",
            b'{"text": "a", "label": "b"}\n',
            r"no field 'input' or 'output' \(the object's fields: 'text', 'label'\); every line needs",
        ),
        ("e.jsonl", b'{"input": 3, "output": "b"}\n', "'input' must be a non-empty string"),
        ("e.jsonl", b'["a", "b"]\n', "expected a JSON object"),
        ("e.xlsx", b"a,b\n", "unknown file type"),
        ("e.csv", b"a,b\n", r"e.csv:1: no column 'input' or 'output' in the header \['a', 'b'\]"),
    ],
)
def test_bad_example_files_name_the_line(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_examples(tmp_path / name)


# ----------------------------------------------------------------- prompts
@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("Review: no placeholder", r"must contain \{input\} exactly once"),
        ("{input} and again {input}", r"must contain \{input\} exactly once"),
        # the answer is never written into the template: "{label}" would stay as literal text
        ("Review: {input} Sentiment: {label}", r"holds \{label\}, which nothing fills in"),
        ("Q: {input}\nA: {output}", r"holds \{output\}, which nothing fills in"),
    ],
)
def test_bad_prompt_templates_are_refused(template, match):
    with pytest.raises(ValueError, match=match):
        PromptTemplate(template)


def test_a_saved_template_with_a_stray_placeholder_still_loads():
    # tasks saved before the {label} check keep the prompt they were learned with
    saved = {"template": "R: {input} {label}", "answer_prefix": " ", "answer_end": "\n", "separator": "\n"}
    assert PromptTemplate.from_dict(saved).to_dict() == saved
    with pytest.raises(ValueError, match="exactly once"):
        PromptTemplate.from_dict({**saved, "template": "R: {label}"})


def test_spaces_ending_a_template_go_to_the_answer_prefix():
    """'Sentiment: ' then ' positive' read 'Sentiment:  positive' (two spaces, a lone space token:
    SmolLM2's zero-shot sentiment accuracy fell far). The spaces are dropped, with a
    warning, when the answer prefix has its own; otherwise they begin it (the same text); a saved
    template loads as it was learned."""
    with pytest.warns(
        UserWarning, match=r"template's ' ' is dropped, so that answers read 'Sentiment: <answer>'"
    ):
        doubled = PromptTemplate("Review: {input}\nSentiment: ")
    assert (doubled.template, doubled.answer_prefix) == ("Review: {input}\nSentiment:", " ")
    assert doubled.prompt("fine") + doubled.answer("positive") == "Review: fine\nSentiment: positive\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        moved = PromptTemplate("Q: {input} A: \t", answer_prefix="(")
        plain = PromptTemplate("Review: {input}\nSentiment:\n")  # a newline is not moved
    assert (moved.template, moved.answer_prefix) == ("Q: {input} A:", " \t(")
    assert moved.prompt("x") + moved.answer("y") == "Q: x A: \t(y\n"
    assert plain.template == "Review: {input}\nSentiment:\n"
    stored = {"template": "Q: {input} ", "answer_prefix": " ", "answer_end": "\n", "separator": "\n"}
    assert PromptTemplate.from_dict(stored).to_dict() == stored


def test_spaces_that_begin_an_answer_after_the_prefix_space_are_dropped():
    """Outputs " positive" / " negative" (a TSV written "text<TAB> positive") read "Sentiment:  positive"
    after the answer prefix " ": SmolLM2's zero-shot sentiment accuracy fell far, silently. The
    spaces are dropped from the encoded text (with a warning, once per codec); a prefix without a
    trailing space keeps them."""
    from tests.lm_sentencepiece import dummy_prefix_tokenizer  # a tokenizer that sees spaces

    spaced = dummy_prefix_tokenizer()
    codec = PromptCodec(spaced, PromptTemplate("Review: {input}\nSentiment:"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = (codec.label_ids("yes"), codec.answer_ids("yes no"))
    with pytest.warns(
        UserWarning, match=r"an answer begins with a space after the answer prefix ' ': it is dropped"
    ):
        assert codec.label_ids("  yes") == plain[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert codec.answer_ids("\tyes no") == plain[1]  # once per codec
    bare = PromptCodec(spaced, PromptTemplate("Review: {input}\nAnswer:", answer_prefix=""))
    assert bare.label_ids(" yes") != bare.label_ids("yes")  # no prefix space: the answer's is kept


def test_prompt_templates_may_hold_other_braces():
    template = PromptTemplate('{"review": "{input}", "format": "{json}"}')
    assert template.prompt("fine") == '{"review": "fine", "format": "{json}"}'


def test_prompt_encoding_and_in_context_budget():
    tok = word_tokenizer(bos=True)
    codec = PromptCodec(tok, TEMPLATE, context=20)
    assert codec.start_ids == [1]
    enc = codec.encode("w5 w6", "w40 w41")
    assert enc.prompt == [1, 5, 6, 90] and enc.answer == [40, 41, 91]
    assert codec.label_ids("w40") == [40]
    assert codec.decode_answer([40, 41, 91, 7, 8]) == "w40 w41"
    demos = [("w10", "w11"), ("w12 w13", "w14"), ("w15", "w16")]
    ids, used = codec.icl_prompt(demos, "w5 w6 w7", reserve=2)
    # start (1) + demo 1 (4) + demo 2 (5) = 10; demo 3 (4) would exceed 20 − 2 − 4 (query) = 14
    assert used == 2 and ids == [1, 10, 90, 11, 91, 92, 12, 13, 90, 14, 91, 92, 5, 6, 7, 90]
    ids, used = codec.icl_prompt(demos, "w5 " * 14, reserve=2)
    assert used == 0 and ids[-15:] == [5] * 14 + [90]  # demonstrations dropped, the query kept whole
    with pytest.raises(ValueError, match="more than the 18 the context window leaves"):
        codec.icl_prompt(demos, "w5 " * 20, reserve=2)


def test_answer_pair_mask_and_padding():
    ids, mask = pad_batch([[1, 2, 3, 4], [5, 6]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]] and mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    left, _ = pad_batch([[1, 2, 3, 4], [5, 6]], pad_id=0, side="left")
    assert left.tolist()[1] == [0, 0, 5, 6]
    pm = answer_pair_mask([2, 1], [4, 2], 4)
    assert pm.tolist() == [[False, True, True], [True, False, False]]
    with pytest.raises(ValueError, match="empty prompt or empty answer"):
        answer_pair_mask([2], [2], 3)


# ----------------------------------------------------------------- task learning
def make_task(pairs="answer", labels=None, seed=0):
    torch.manual_seed(seed)
    return TaskModel.create(
        tiny_model("llama", dtype=torch.float64), word_tokenizer(), TaskSpec(TEMPLATE, pairs, labels)
    )


def rule_examples(n, seed=0):
    """Input wA (A in 3 … 14) → label w40 if A is even else w41: 12 distinct keys, fewer than d = 32."""
    gen = torch.Generator().manual_seed(seed)
    return [
        Example(f"w{a}", "w40" if a % 2 == 0 else "w41")
        for a in torch.randint(3, 15, (n,), generator=gen).tolist()
    ]


def test_tuples_and_dicts_learn_what_examples_learn(tmp_path):
    """TaskModel.learn takes (input, output) tuples and {"input", "output"} dicts (an integer
    output as its text) and learns exactly what the Example objects teach."""
    from faast.lm.fastweights import read_file

    examples = rule_examples(24)
    forms = {
        "examples": examples,
        "tuples": [(e.input, e.output) for e in examples],
        "dicts": [{"input": e.input, "output": e.output, "source": i} for i, e in enumerate(examples)],
    }
    saved = {}
    for name, items in forms.items():
        task = make_task()
        assert task.learn(items, progress=False) > 0
        saved[name] = read_file(task.save(tmp_path / f"{name}.safetensors"))[0]
    for name in ("tuples", "dicts"):
        assert sorted(saved[name]) == sorted(saved["examples"])
        assert all(torch.equal(saved[name][k], saved["examples"][k]) for k in saved["examples"])


def test_as_example_reads_each_form_and_names_the_others():
    from faast.lm.examples import as_example

    assert as_example(("a", "b")) == Example("a", "b") and as_example(("a",)) == Example("a")
    assert as_example({"input": "a", "output": 3, "id": 9}).extra == {"id": 9}
    assert as_example({"input": "a", "output": 3}) == Example("a", "3") and as_example("a") == Example("a")
    assert as_example(Example("a", 3)).output == "3"  # type: ignore[arg-type]
    kept = Example("a", "b", {"id": 1})
    assert as_example(kept) is kept
    for bad, match in [
        (3, "example 4 is of type int; pass Example"),
        (("a", "b", "c"), "example 4 is of type tuple"),
        ({"text": "a"}, "example 4 is of type dict"),
        ((1, "b"), "example 4: the input must be a string, got int"),
        (("a", 1.5), "example 4: the output must be a string or an integer, got float"),
        (("a", True), "example 4: the output must be a string or an integer, got bool"),
    ]:
        with pytest.raises(TypeError, match=match):
            as_example(bad, 4)


def test_free_text_outputs_holding_the_answer_end_are_refused():
    """Generation stops at the answer end (here " w91"): an output holding it would be cut there
    every time (a multi-line output with the default end "\\n" was generated as its first line)."""
    examples = [Example("w5", "w40 w91 w41"), Example("w6", "w42")] * 4
    for call in (lambda t: t.learn(examples, progress=False), lambda t: t.fit(examples, labels=None)):
        task = make_task()
        with pytest.raises(ValueError, match=r"example 0 \('w5'\): its output holds the answer end ' w91'"):
            call(task)
        assert task.model.memories["output"].stats.count == 0  # refused before anything was learned
    as_labels = make_task(labels=["w40 w91 w41", "w42"])  # labels are scored whole, never generated
    assert as_labels.learn(examples, progress=False) > 0


@pytest.mark.parametrize("pairs", ["answer", "all"])
def test_which_pairs_each_mode_learns(pairs):
    task = make_task(pairs)
    examples = [Example("w5 w6", "w40 w41"), Example("w7", "w42")]
    learned = task.learn(examples, progress=False)
    # answer: w40, w41, w91 | w42, w91 (5 pairs);
    # all: every transition of [5, 6, 90, 40, 41, 91] and [7, 90, 42, 91] (8 pairs)
    assert learned == (5 if pairs == "answer" else 8)
    out = task.model.output_memory
    assert out.memory.num_pairs == learned
    seen = set(torch.nonzero(out.seen).squeeze(1).tolist())
    assert seen == ({40, 41, 42, 91} if pairs == "answer" else {6, 90, 40, 41, 42, 91})


def test_labels_all_classifies_among_more_than_auto_reads():
    """``labels="all"``: every distinct output is a label however many (``"auto"`` reads more than
    MAX_LABELS as free text); a string that is no rule is refused instead of read letter by letter."""
    outputs = [f"w{40 + i % 25}" for i in range(50)]
    examples = [Example(f"w{3 + i % 12}", y) for i, y in enumerate(outputs)]
    assert labels_of_outputs(outputs) is None and labels_of_outputs(outputs, "all") == list(
        dict.fromkeys(outputs)
    )
    with pytest.raises(ValueError, match="labels 'all': the outputs hold 1 distinct value"):
        labels_of_outputs(["w5", "w5"], "all")
    task = make_task()
    task.fit(examples, labels="all", progress=False, folds=2)
    assert task.spec.labels == list(dict.fromkeys(outputs)) and len(task.classify(["w3"])) == 1
    auto = make_task()
    auto.fit(examples, progress=False, folds=2)
    assert auto.spec.labels is None
    with pytest.raises(ValueError, match="labels must be a list of labels, 'auto', 'all' or None, got 'w40'"):
        make_task().fit(examples, labels="w40", progress=False)


def test_fit_chooses_a_read_out_by_cross_validation_and_learns_every_example():
    task = make_task()
    examples = rule_examples(60)
    report = task.fit(examples, progress=False)
    assert sorted(task.spec.labels) == ["w40", "w41"]
    assert report.n_validation == 60 and report.n_fit == 60 and report.metric.startswith("5-fold")
    assert report.pairs == task.model.output_memory.memory.num_pairs == 2 * 60  # label + end marker
    assert report.criterion[report.chosen.name] == max(report.criterion.values())
    zero_shot = "prob(λ=0,T=1;default)"
    assert report.criterion[report.chosen.name] > report.criterion[zero_shot]
    # on the (learned) examples the memory classifies by the rule, the plain model cannot
    acc = sum(
        p == e.output for p, e in zip(task.classify([e.input for e in examples]), examples, strict=True)
    )
    with task.model.disabled():
        base = sum(
            p == e.output for p, e in zip(task.classify([e.input for e in examples]), examples, strict=True)
        )
    assert acc / 60 >= 0.9 and acc > base


def test_cross_validation_folds_never_read_the_examples_they_score(monkeypatch):
    """While a fold is scored, the memory holds exactly the other examples."""
    task = make_task()
    examples = rule_examples(20)
    seen = []
    real = TaskModel._label_fold_scores

    def spy(self, part, target, lp, calibrate):
        learned = self.model.output_memory.memory.num_pairs
        seen.append((len(part), learned))
        return real(self, part, target, lp, calibrate)

    monkeypatch.setattr(TaskModel, "_label_fold_scores", spy)
    task.fit(examples, candidates=[ReadCandidate("logit", ReadConfig(weight=1.0))], progress=False)
    assert sum(n for n, _ in seen) == 20  # every example held out once (hold_out 1), in 5 folds
    assert all(learned == 2 * (20 - n) for n, learned in seen)


def test_the_report_keeps_each_candidates_right_answers_per_held_out_example():
    """Labels: per candidate, which held-out examples its best-scored label got right; they add up
    to its accuracy in ``scores``, and (two labels) an example is right exactly when the right
    label's normalised log-probability is above log 1/2. Free-form outputs have none."""
    task = make_task()
    report = task.fit(rule_examples(30), progress=False)
    assert report.validation_correct.keys() == report.scores.keys() == report.validation_loglik.keys()
    for name, right in report.validation_correct.items():
        assert right.dtype == torch.bool and right.shape == (report.n_validation,)
        assert int(right.sum()) / report.n_validation == pytest.approx(report.scores[name])
        assert torch.equal(right, report.validation_loglik[name] > -math.log(2.0))
    assert len({tuple(r.tolist()) for r in report.validation_correct.values()}) > 1  # they differ
    free = make_task().fit(rule_examples(30), labels=None, progress=False)
    assert free.validation_correct == {} and free.validation_loglik


def test_the_report_says_which_example_each_held_out_score_belongs_to():
    """``validation_index``: the position of each held-out example in the fitted examples, in the
    order of the per-example tensors: the targets are those examples' labels, every example is held
    out once (hold_out 1), fold after fold."""
    task = make_task()
    examples = rule_examples(23)
    report = task.fit(examples, progress=False)
    index = report.validation_index
    assert index.dtype == torch.long and sorted(index.tolist()) == list(range(23))
    labels = task.spec.labels
    want = [labels.index(examples[i].output) for i in index.tolist()]
    assert report.validation_targets.tolist() == want
    assert index.tolist() != list(range(23))  # fold by fold, not in the examples' order
    assert make_task().fit(rule_examples(3), progress=False).validation_index is None  # nothing held out


def test_too_few_examples_are_learned_but_read_with_the_memory_off():
    """Below the validation threshold nothing proves a read-out: the scores are the zero-shot
    model's, bit for bit, while the examples are in the statistics (a forced read-out uses them)."""
    task = make_task()
    examples = rule_examples(3)
    report = task.fit(examples, labels=["w40", "w41"], progress=False)
    assert report.n_validation == 0 and report.metric.startswith("memory off")
    assert report.chosen == MEMORY_OFF and report.pairs > 0
    probe = ["w4", "w5", "w12 w3"]
    with task.model.disabled():
        zero_shot = task.label_scores(probe)
    assert torch.equal(task.label_scores(probe), zero_shot)
    task.use(ReadCandidate("prob", ReadConfig(weight=1.0, temperature=0.05, gate=None)))
    assert not torch.allclose(task.label_scores(probe), zero_shot)
    with pytest.raises(ValueError, match="not labels"):
        task.fit(rule_examples(3), labels=["w40", "w50"], progress=False)


def test_labels_that_begin_one_another_are_scored_with_the_answer_end():
    """Labels 1 … 10 (" 10" is " 1" then "0" for SmolLM2's tokenizer): without the end marker the
    longer label's score is the shorter one's times more probabilities and can never win. Such
    label sets are scored as whole answers, with the end marker; the others as before."""
    codec = PromptCodec(word_tokenizer(), TEMPLATE, context=64)
    assert codec.scored_label_ids(["w40", "w41 w42"]) == [[40], [41, 42]]
    assert codec.scored_label_ids(["w40", "w40 w41"]) == [[40, 91], [40, 41, 91]]
    with pytest.raises(ValueError, match="no tokens"):
        codec.scored_label_ids(["w40", ""])
    with (
        pytest.raises(ValueError, match="'w40' and 'w40 ' encode to the same tokens"),
        pytest.warns(UserWarning, match="an answer ends with a space: 'w40 ' is read without it") as record,
    ):
        codec.scored_label_ids(["w40", "w40 "])
    assert record[0].filename == __file__  # pointed at the caller's line
    no_end = PromptCodec(word_tokenizer(), PromptTemplate("{input} w90", answer_prefix=" ", answer_end=""))
    with pytest.raises(ValueError, match="'w40'.s tokens begin those of 'w40 w41'.*--answer-end"):
        no_end.scored_label_ids(["w40 w41", "w40"])


class _MergingEnd:
    """The word tokenizer, except that "w40" then the end marker "w91" is one token (95), as Qwen's
    tokenizer writes ``:)`` then a newline as the one token ``:)\\n``."""

    def __init__(self) -> None:
        self.base = word_tokenizer()

    def __getattr__(self, name: str):
        return getattr(self.base, name)

    def __call__(self, text: str, **kwargs):
        from types import SimpleNamespace

        ids, merged = list(self.base(text, **kwargs).input_ids), []
        while ids:
            merged.append(95 if ids[:2] == [40, 91] else ids[0])
            ids = ids[2:] if ids[:2] == [40, 91] else ids[1:]
        return SimpleNamespace(input_ids=merged)


def test_a_label_whose_last_token_merges_with_the_end_marker_is_scored_as_it_was_learned():
    """The examples teach " w40" + end as the one token 95: scoring "w40" as the token 40 would
    never read what was learned. Such label sets are scored as whole answers (as learned)."""
    codec = PromptCodec(_MergingEnd(), TEMPLATE, context=64)
    assert codec.answer_ids("w40") == [95]
    assert codec.scored_label_ids(["w40", "w41"]) == [[95], [41, 91]]
    assert codec.scored_label_ids(["w42", "w41"]) == [[42], [41]]  # no merge: the labels alone


def test_a_label_that_extends_another_can_be_predicted():
    """The memory learns inputs → "w40" or "w40 w41"; read strongly, it gives each learned input its
    label (before, "w40 w41" could never beat "w40", whose tokens begin it), and the scores are
    those of the whole answers, end marker included."""
    labels = ["w40", "w40 w41"]
    examples = [Example(f"w{a}", labels[a % 2]) for a in range(3, 15)]
    task = make_task(labels=labels)
    task.learn(examples * 2, progress=False)
    task.use(ReadCandidate("prob", ReadConfig(weight=1.0, temperature=0.01, gate=None)))
    assert task.classify([e.input for e in examples]) == [e.output for e in examples]
    scores = task.label_scores(["w5"])
    prompt = task.codec.prompt_ids("w5")
    for j, label in enumerate(labels):
        whole = task.codec.answer_ids(label)
        lp = torch.log_softmax(task.model(input_ids=torch.tensor([prompt + whole])).logits[0].detach(), -1)
        expected = sum(float(lp[len(prompt) - 1 + k, t]) for k, t in enumerate(whole))
        assert scores[0, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("labels", "batch_size", "shared"),
    [
        (["w40 w41", "w42"], 16, False),  # several inputs a batch, each with every label
        (["w40 w41", "w42"], 1, True),  # one input a batch: its prompt once, the labels after its cache
        ([f"w{40 + i} w{60 - i}" if i % 3 else f"w{40 + i}" for i in range(12)], 8, True),  # many labels
        (["w40 w41 w42 w43", "w44", "w45 w46 w47", "w48 w49"], 1, True),  # labels of 1 to 4 tokens
        (["w40 w41 w42", "w40 w41 w43", "w40 w44", "w45 w41 w42", "w46"], 1, True),  # shared beginnings
    ],
)
def test_label_scores_are_full_sequence_log_probabilities(labels, batch_size, shared, monkeypatch):
    """Label scores equal the full model's log-probabilities of each label's tokens after the
    prompt, whether a batch runs each prompt + label whole or (one input, more labels than the
    batch size) the prompt once and the labels after a copy of its KV cache."""
    task = make_task(labels=labels)
    task.learn(rule_examples(10), progress=False)
    task.use(ReadCandidate("logit", ReadConfig(weight=0.5)))
    caches = []
    make_cache = task.model.prefix_cache
    monkeypatch.setattr(task.model, "prefix_cache", lambda ids: caches.append(ids) or make_cache(ids))
    scores = task.label_scores(["w5 w6", "w7"], batch_size=batch_size)
    assert len(caches) == (2 if shared else 0)
    model = task.model
    for i, text in enumerate(["w5 w6", "w7"]):
        prompt = task.codec.prompt_ids(text)
        for j, label in enumerate(labels):
            lab = task.codec.label_ids(label)
            logits = model(input_ids=torch.tensor([prompt + lab])).logits[0].detach()
            lp = torch.log_softmax(logits, -1)
            expected = sum(float(lp[len(prompt) - 1 + k, t]) for k, t in enumerate(lab))
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_labels_that_begin_alike_run_their_shared_tokens_once(monkeypatch):
    """After a shared prompt, the labels' tokens but the last run once per distinct continuation,
    and not at all when they begin a longer one: "w40 w41 w42", "w40 w41 w43", "w40 w44" and
    "w45 w41 w42" need w40 w41 and w45 w41 (two rows of two tokens), one-token "w46" nothing."""
    labels = ["w40 w41 w42", "w40 w41 w43", "w40 w44", "w45 w41 w42", "w46"]
    task = make_task(labels=labels)
    rows = []
    run = task.model.head_inputs
    monkeypatch.setattr(
        task.model, "head_inputs", lambda ids, *a, **k: rows.append(ids.tolist()) or run(ids, *a, **k)
    )
    task.label_scores(["w5 w6"], batch_size=1)
    assert rows == [[[40, 41], [45, 41]]]


@pytest.mark.parametrize("cache", [True, False])
def test_shared_prompt_states_are_kept_in_the_score_cache(cache, monkeypatch):
    """With ``cache=True`` a many-label batch's states are computed once: scoring the same inputs
    again runs no prompt (and gives the same scores); without it, every call runs them."""
    labels = ["w40 w41 w42", "w43 w44", "w45"]
    torch.manual_seed(0)
    model = tiny_model("llama", dtype=torch.float64)
    task = TaskModel.create(model, word_tokenizer(), TaskSpec(TEMPLATE, "answer", labels), cache=cache)
    task.learn(rule_examples(10), progress=False)
    caches = []
    make_cache = task.model.prefix_cache
    monkeypatch.setattr(task.model, "prefix_cache", lambda ids: caches.append(ids) or make_cache(ids))
    first = task.label_scores(["w5 w6", "w7"], batch_size=1)
    again = task.label_scores(["w5 w6", "w7"], batch_size=1)
    assert torch.equal(first, again)
    assert len(caches) == (2 if cache else 4)


def test_generation_recalls_a_learned_answer_and_stops_at_the_end_marker():
    task = make_task()
    examples = [Example("w5 w6", "w50 w51 w52"), Example("w7", "w60")]
    task.learn(examples * 2, progress=False)
    task.use(ReadCandidate("prob", ReadConfig(weight=1.0, temperature=0.01, gate=None)))
    assert task.generate(["w5 w6", "w7"], max_new_tokens=6, progress=False) == ["w50 w51 w52", "w60"]
    nll, count = task.answer_nll(examples)
    with task.model.disabled():
        base_nll, _ = task.answer_nll(examples)
    assert count == 6 and nll < base_nll / 3


def test_save_and_load_a_task(tmp_path):
    task = make_task()
    task.fit(rule_examples(40), progress=False)
    path = tmp_path / "tasks.safetensors"
    task.save(path, "rule")
    probe = ["w4 w9", "w11", "w3"]
    again = TaskModel.load(tiny_model("llama", dtype=torch.float64), word_tokenizer(), path, "rule")
    assert again.spec.to_dict() == task.spec.to_dict()
    assert again.model.read_config == task.model.read_config
    assert again.model.faast_config.output_mix == task.model.faast_config.output_mix
    assert torch.allclose(again.label_scores(probe), task.label_scores(probe), rtol=1e-9, atol=1e-9)
    sig = json.loads(__import__("safetensors").safe_open(str(path), "pt").metadata()["tasks"])
    assert sig["rule"]["info"]["fit"]["chosen_name"] == task.report.chosen.name


def test_prompts_longer_than_the_context_are_refused():
    task = make_task(labels=["w40", "w41"])
    long_input = " ".join(["w5"] * 70)
    with pytest.raises(ValueError, match="context"):
        task.classify([long_input])
    with pytest.raises(ValueError, match="context"):
        task.learn([Example(long_input, "w40")], progress=False)


# ----------------------------------------------------------------- in-context learning
def test_in_context_scores_with_a_cached_prefix_equal_one_full_forward():
    model = tiny_model("llama", dtype=torch.float64)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    demos = [("w10 w11", "w40"), ("w12", "w41"), ("w13 w14", "w40")]
    icl = InContextModel(model, codec, demos, reserve=10)
    assert icl.num_used == 3 and icl.cache_nbytes() > 0
    scores = icl.label_scores(["w5", "w6 w7"], ["w40", "w41 w42"])
    for i, text in enumerate(["w5", "w6 w7"]):
        full, _ = codec.icl_prompt(demos, text, reserve=10)
        for j, label in enumerate(["w40", "w41 w42"]):
            lab = codec.label_ids(label)
            lp = torch.log_softmax(model(input_ids=torch.tensor([full + lab])).logits[0].detach(), -1)
            expected = sum(float(lp[len(full) - 1 + k, t]) for k, t in enumerate(lab))
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-7, abs=1e-7)
    assert InContextModel(model, codec, demos * 20, reserve=10).num_used < 60  # only whole ones that fit
    out = icl.generate(["w5"], max_new_tokens=3)
    assert isinstance(out[0], str)


@pytest.mark.parametrize("demos", [[("w10 w11", "w40 w41 w42"), ("w12", "w46")], []])
@pytest.mark.parametrize(
    "labels",
    [
        ["w40 w41 w42", "w40 w41 w43", "w40 w44", "w45 w41 w42", "w46"],  # beginnings shared
        [f"w{40 + i} w{60 - i}" if i % 3 else f"w{40 + i}" for i in range(12)],
        ["w40 w41 w42 w43", "w44", "w45 w46 w47", "w48 w49"],
    ],
)
@pytest.mark.parametrize("path", ["packed", "packs of 2 tokens", "a cache copy per continuation", "gemma3"])
def test_in_context_scores_of_many_labels_run_each_query_once(demos, labels, path, monkeypatch):
    """With more labels than half the batch size, each query runs once after the demonstrations
    and the labels' tokens but the last after its cache (each distinct continuation once: packed
    side by side in one row under an attention mask, or, for a model with sliding-window layers
    (Gemma-3) or when told, one row per continuation on a copy of the cache): the scores equal one
    full forward of demonstrations + query + label, and those of the batches of query + label whole
    (a batch size above twice the labels)."""
    import faast.lm.icl as icl_module

    model = tiny_model("gemma3" if path == "gemma3" else "llama", dtype=torch.float64)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    icl = InContextModel(model, codec, demos, reserve=16)
    if path == "packs of 2 tokens":
        monkeypatch.setattr(icl_module, "PACKED_TOKENS", 2)
    if path == "a cache copy per continuation":
        monkeypatch.setattr(icl_module, "_packs_continuations", lambda *a: False)
    packed = []
    pack = icl._packed_log_probs
    monkeypatch.setattr(icl, "_packed_log_probs", lambda *a: packed.append(1) or pack(*a))
    inputs = ["w5", "w6 w7"]
    runs = []
    shared = icl._shared_query_scores
    monkeypatch.setattr(icl, "_shared_query_scores", lambda *a: runs.append(1) or shared(*a))
    scores = icl.label_scores(inputs, labels, batch_size=4)
    assert len(runs) == len(inputs)
    assert bool(packed) == path.startswith("pack")
    whole = icl.label_scores(inputs, labels, batch_size=2 * len(labels) + 2)
    assert len(runs) == len(inputs)  # the batches of query + label whole
    torch.testing.assert_close(scores, whole, rtol=1e-6, atol=1e-6)
    for i, text in enumerate(inputs):
        full = codec.icl_prompt(demos, text, reserve=16)[0] if demos else codec.prompt_ids(text)
        for j, lab in enumerate(codec.scored_label_ids(labels)):
            lp = torch.log_softmax(model(input_ids=torch.tensor([full + lab])).logits[0].detach(), -1)
            expected = sum(float(lp[len(full) - 1 + k, t]) for k, t in enumerate(lab))
            # in-context scores sum float32 log-softmax values (InContextModel._log_probs)
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_in_context_scores_labels_that_begin_one_another_with_the_answer_end():
    """In-context learning scores a label set whose labels begin one another as the task does:
    whole answers with their end marker (see PromptCodec.scored_label_ids)."""
    model = tiny_model("llama", dtype=torch.float64)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    demos = [("w10 w11", "w40"), ("w12", "w40 w41")]
    icl = InContextModel(model, codec, demos, reserve=10)
    labels = ["w40", "w40 w41"]
    scores = icl.label_scores(["w5", "w6 w7"], labels)
    for i, text in enumerate(["w5", "w6 w7"]):
        full, _ = codec.icl_prompt(demos, text, reserve=10)
        for j, label in enumerate(labels):
            whole = codec.answer_ids(label)
            lp = torch.log_softmax(model(input_ids=torch.tensor([full + whole])).logits[0].detach(), -1)
            expected = sum(float(lp[len(full) - 1 + k, t]) for k, t in enumerate(whole))
            # in-context scores sum float32 log-softmax values (InContextModel._log_probs)
            assert scores[i, j].item() == pytest.approx(expected, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("demos", [[("w10 w11", "w40"), ("w12", "w41 w42")], []])
def test_in_context_batches_give_what_one_query_at_a_time_gives(demos):
    model = tiny_model("llama", dtype=torch.float64)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    icl = InContextModel(model, codec, demos, reserve=16)
    inputs = ["w5", "w6 w7 w8", "w9 w5", "w13 w14 w15 w16", "w6"]
    examples = [(x, "w40 w41") for x in inputs]
    for labels in (["w40", "w41"], ["w40", "w41 w42"]):  # single-token labels take a shortcut
        one = icl.label_scores(inputs, labels, batch_size=1)
        many = icl.label_scores(inputs, labels, batch_size=3)
        assert torch.allclose(one, many, rtol=1e-9, atol=1e-9)
    nll_one, count_one = icl.answer_nll(examples, batch_size=1)
    nll_many, count_many = icl.answer_nll(examples, batch_size=4)
    assert count_one == count_many == 15 and nll_many == pytest.approx(nll_one, rel=1e-9)
    unbanned = icl.generate(inputs, max_new_tokens=5, batch_size=1, stop={})
    for ban in (None, 2):
        one = icl.generate(inputs, max_new_tokens=5, batch_size=1, no_repeat_ngram=ban, stop={})
        many = icl.generate(inputs, max_new_tokens=5, batch_size=8, no_repeat_ngram=ban, stop={})
        assert one == many
    full = codec.icl_prompt(demos, inputs[1], reserve=16)[0] if demos else codec.prompt_ids(inputs[1])
    ids = torch.tensor([full])
    plain = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False
    )
    assert unbanned[1] == codec.decode_answer(plain[0, len(full) :].tolist())  # no cache, no batch
    with pytest.raises(ValueError, match="batch_size"):
        icl.label_scores(inputs, ["w40", "w41"], batch_size=0)


def test_the_in_context_prefix_runs_without_its_logits():
    model = tiny_model("llama", dtype=torch.float64)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    seen = []
    model.register_forward_hook(lambda mod, a, kw, out: seen.append(out.logits.shape), with_kwargs=True)
    icl = InContextModel(model, codec, [("w10 w11", "w40"), ("w12", "w41")], reserve=12)
    assert icl.cache_nbytes() > 0 and len(icl.prefix) > 2
    assert seen == [(1, 1, model.config.vocab_size)]  # the LM head ran at the last position only


def test_in_context_generation_stops_at_the_templates_answer_end_by_default():
    model = tiny_model("llama", dtype=torch.float64)
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=64)
    end_id = codec.text_ids(TEMPLATE.answer_end)
    assert len(end_id) == 1 and codec.stop_kwargs()["eos_token_id"][0] == end_id[0]
    icl = InContextModel(model, codec, [("w10 w11", "w40")], reserve=12)
    seen = []
    real = model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    model.generate = spy
    default = icl.generate(["w5"], max_new_tokens=4)
    explicit = icl.generate(["w5"], max_new_tokens=4, stop=codec.stop_kwargs())
    icl.generate(["w5"], max_new_tokens=4, stop={})
    assert default == explicit
    assert seen[0]["eos_token_id"] == codec.stop_kwargs()["eos_token_id"]
    assert "eos_token_id" not in seen[2]
    no_end = PromptCodec(word_tokenizer(bos=True), PromptTemplate("{input} w90", answer_end=""), context=64)
    assert no_end.stop_kwargs() == {}


@pytest.mark.parametrize("pairs", ["answer", "all"])
def test_cached_states_give_the_same_statistics_and_scores_without_forward_passes(pairs):
    examples = [*rule_examples(20), Example("w5 w6", "w40 w41")]
    plain = make_task(pairs, labels=["w40", "w41"])
    cached = TaskModel(
        get_faast_model(tiny_model("llama", dtype=torch.float64), FaastConfig(num_memories=0)),
        word_tokenizer(),
        TaskSpec(TEMPLATE, pairs, ["w40", "w41"]),
        cache=True,
    )
    calls = []
    cached.model.base_model.model.register_forward_hook(lambda *a: calls.append(1))
    for task in (plain, cached):
        task.learn(examples, batch_size=4, progress=False)
    first = len(calls)
    cached.reset().learn(examples, batch_size=4, progress=False)  # again, from the cache
    assert len(calls) == first
    a, b = plain.model.output_memory.stats, cached.model.output_memory.stats
    assert a.count == b.count and torch.equal(a.gram, b.gram) and torch.equal(a.cross, b.cross)
    probe = [e.input for e in examples[:6]]
    before = cached.label_scores(probe)
    n_calls = len(calls)
    assert torch.equal(cached.label_scores(probe), before) and len(calls) == n_calls  # scored from the cache
    assert torch.allclose(plain.label_scores(probe), before, rtol=1e-12, atol=1e-12)
    # clear_cache: the same results, from forward passes again (learning and scoring alike)
    cached.clear_cache()
    assert torch.equal(cached.label_scores(probe), before) and len(calls) > n_calls
    n_calls, gram = len(calls), b.gram.clone()
    cached.reset().clear_cache().learn(examples, batch_size=4, progress=False)
    assert len(calls) > n_calls and torch.equal(cached.model.output_memory.stats.gram, gram)


# ----------------------------------------------------------------- benchmark splits
def test_random_holdout_keeps_test_items_out_of_the_pool():
    from faast.eval.holdout import normalize_text, random_holdout

    texts = [f"sentence {i % 50}" for i in range(100)] + ["A  Duplicate", "a duplicate"]
    pool, test = random_holdout(texts, 20, seed=3, key=normalize_text)
    assert len(test) == 20 and not set(pool) & set(test)
    test_texts = {normalize_text(texts[i]) for i in test}
    assert all(normalize_text(texts[i]) not in test_texts for i in pool)  # duplicates dropped too
    assert random_holdout(texts, 20, seed=3, key=normalize_text) == (pool, test)  # seeded
    with pytest.raises(ValueError, match="test_size"):
        random_holdout(texts, 0, seed=0)


def test_group_holdout_keeps_whole_groups_apart():
    from faast.eval.holdout import group_holdout

    groups = ["Ruth"] * 5 + ["John"] * 7 + ["Jonah"] * 3
    pool, test = group_holdout(groups, {"Ruth", "Jonah"}, seed=1)
    assert sorted(test) == [*range(5), 12, 13, 14] and sorted(pool) == list(range(5, 12))
    with pytest.raises(ValueError, match="do not occur"):
        group_holdout(groups, {"Mark"}, seed=1)
    with pytest.raises(ValueError, match="pool is empty"):
        group_holdout(groups, {"Ruth", "John", "Jonah"}, seed=1)


def test_prompt_features_are_the_keys_of_the_first_answer_token():
    task = TaskModel(
        get_faast_model(tiny_model("llama", dtype=torch.float64), FaastConfig(num_memories=0)),
        word_tokenizer(),
        TaskSpec(TEMPLATE, "answer", ["w40", "w41"]),
        cache=True,
    )
    examples = rule_examples(6)
    task.learn(examples, progress=False)
    learned = task.prompt_features(examples)  # from the learn cache
    fresh = task.prompt_features([e.input for e in examples])  # prompts run anew
    assert learned.shape == (6, 32) and torch.allclose(learned, fresh, rtol=1e-10, atol=1e-12)
    # they are the keys the output memory learned for the label tokens
    keys = []
    for e in examples:
        enc = task.codec.encode(e.input, e.output)
        cap = task.model.capture(input_ids=torch.tensor([enc.ids]))
        keys.append(cap.states["head_input"][0, len(enc.prompt) - 1])
    assert torch.allclose(torch.stack(keys), learned, rtol=1e-10, atol=1e-12)


def test_one_standard_error_guard_keeps_the_memory_off_unless_the_gain_is_clear():
    from faast.lm.task_choice import significant_or_off

    off = ReadCandidate("prob", ReadConfig(weight=0.0, temperature=1.0, gate=None))
    best = ReadCandidate("logit", ReadConfig(weight=1.0))
    sizes = torch.ones(6, dtype=torch.float64)
    base = torch.tensor([-0.7, -0.6, -0.8, -0.7, -0.5, -0.9], dtype=torch.float64)
    clear = {off.name: base, best.name: base + 0.2}  # the same gain on every example: s.e. 0
    assert significant_or_off(best, [off, best], clear, sizes, "one-se")[0] == best
    noisy = {off.name: base, best.name: base + torch.tensor([0.9, -0.8, 0.7, -0.6, 0.1, -0.1])}
    chosen, note = significant_or_off(best, [off, best], noisy, sizes, "one-se")
    assert chosen == off and "kept off" in note
    # without a memory-off candidate, or when it won, the best stays
    assert significant_or_off(best, [best], noisy, sizes, "one-se")[0] == best
    assert significant_or_off(off, [off, best], noisy, sizes, "one-se")[0] == off


def test_fit_on_labels_unrelated_to_the_inputs_keeps_the_zero_shot_model():
    """Labels drawn at random: no read-out beats the memory off by a clear margin on held-out folds."""
    task = make_task()
    gen = torch.Generator().manual_seed(3)
    examples = [
        Example(f"w{a} w{b}", "w40" if c else "w41")
        for a, b, c in zip(
            torch.randint(3, 30, (60,), generator=gen).tolist(),
            torch.randint(3, 30, (60,), generator=gen).tolist(),
            torch.randint(0, 2, (60,), generator=gen).tolist(),
            strict=True,
        )
    ]
    report = task.fit(examples, progress=False)
    assert report.chosen.read.weight == 0.0, report.metric
    assert "kept off" in report.metric or report.criterion[report.chosen.name] == max(
        report.criterion.values()
    )


def test_a_correction_task_is_fit_read_saved_and_loaded(tmp_path):
    """The "correction" statistics are chosen among their own candidates (β × damping, and off),
    make the learned rule's labels more likely than the zero-shot model does, and round-trip."""
    torch.manual_seed(0)
    task = TaskModel.create(
        tiny_model("llama", dtype=torch.float64), word_tokenizer(), TaskSpec(TEMPLATE), mix="correction"
    )
    examples = rule_examples(60)
    # one fold group per example: the rule's 12 inputs repeat, and the copies of an input (held out
    # together by default since 2026-12-06) are what the memory recalls here
    with pytest.warns(UserWarning, match="copies in more than one group"):  # recalling them is the task
        report = task.fit(examples, progress=False, groups=list(range(len(examples))))
    assert report.chosen.mix == "correction" and report.chosen.read.weight > 0
    assert set(report.criterion) == {c.name for c in default_candidates("correction")}
    assert "correction(β=0,c=default;default)" in report.criterion
    nll, _ = task.answer_nll(examples)
    with task.model.disabled():
        base_nll, _ = task.answer_nll(examples)
    assert nll < base_nll
    path = tmp_path / "tasks.safetensors"
    task.save(path, "rule")
    again = TaskModel.load(tiny_model("llama", dtype=torch.float64), word_tokenizer(), path, "rule")
    assert again.model.faast_config.output_mix == "correction"
    assert again.model.read_config == task.model.read_config
    probe = ["w4 w9", "w11", "w3"]
    assert torch.allclose(again.label_scores(probe), task.label_scores(probe), rtol=1e-9, atol=1e-9)
    # too few examples: the correction is learned but read with β = 0
    small = TaskModel.create(tiny_model("llama", dtype=torch.float64), word_tokenizer(), mix="correction")
    assert small.fit(rule_examples(3), progress=False).chosen == memory_off("correction")
    with pytest.raises(ValueError, match="no default read-out candidates for the 'paper' mix"):
        default_candidates("paper")


def test_labels_of_outputs_are_the_distinct_outputs_in_first_order_between_two_and_max_labels():
    assert labels_of_outputs(["neg", "pos", "neg"]) == ["neg", "pos"]
    for how in ("positive", None, ["neg", "pos"]):  # no rule: a clear error, not labels of any count
        with pytest.raises(ValueError, match="'auto', 'all' or None"):
            labels_of_outputs(["neg", "pos"], how)
    assert labels_of_outputs(["pos", "pos"]) is None  # one label: free-form
    assert labels_of_outputs([]) is None
    many = [f"l{i}" for i in range(MAX_LABELS + 1)]
    assert labels_of_outputs(many) is None and labels_of_outputs(many[:-1]) == many[:-1]
    examples = [Example("a", "y"), Example("b", "x"), Example("c", "y")]
    assert auto_labels(examples) == labels_of_outputs(e.output for e in examples) == ["y", "x"]


def test_outputs_differing_only_in_surrounding_whitespace_are_not_made_two_labels():
    """Reference outputs " positive", "positive " and "positive" (spreadsheet spaces) gave zero-shot
    `task evaluate --labels auto` three labels for one class (a task's TaskSpec already refused
    them); they are refused, naming the pair."""
    with pytest.raises(ValueError, match=r"labels 'pos' and 'pos ' differ only by surrounding whitespace"):
        labels_of_outputs(["pos", "neg", "pos "])
    examples = [Example("a", " neg"), Example("b", "pos"), Example("c", "neg")]
    with pytest.raises(ValueError, match=r"labels ' neg' and 'neg' differ only by surrounding whitespace"):
        make_task().fit(examples * 4, labels="auto", progress=False)
    assert labels_of_outputs(["pos ", "neg "]) == ["pos ", "neg "]  # consistent spaces: kept as given


def test_generate_refuses_max_new_tokens_below_one():
    task = make_task()
    icl = InContextModel(tiny_model("llama", dtype=torch.float64), task.codec, [("w5", "w40")], reserve=4)
    for generate in (task.generate, icl.generate):
        with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 1, got 0"):
            generate(["w5"], max_new_tokens=0)


def _grouped_examples(seed: int = 0) -> tuple[list[Example], list[int]]:
    """10 groups of 4 copies of one input each (inputs share no word across groups), the labels
    alternating over the groups: within a group the memory recalls, across groups nothing
    generalises."""
    labels = ["w40", "w41"] * 5
    examples, groups = [], []
    for g in range(10):
        examples += [Example(f"w{3 + g} w{30 + g}", labels[(7 * g + seed) % 10]) for _ in range(4)]
        groups += [g] * 4
    return examples, groups


def test_group_folds_hold_out_whole_groups_and_learn_none_of_them():
    from faast.lm.task_folds import group_folds

    examples = [Example(f"w{3 + i}", "w40") for i in range(12)]
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2
    group_of = {id(e): g for e, g in zip(examples, groups, strict=True)}
    held = examples[::2] + examples[1:4:2]  # not every example of a group is held out
    parts, unlearned = group_folds(examples, held, 3, group_of)
    assert len(parts) == 3 and sorted(id(e) for p in parts for e in p) == sorted(id(e) for e in held)
    for part, skipped in zip(parts, unlearned, strict=True):
        mine = {group_of[id(e)] for e in part}
        assert skipped == {id(e) for e in examples if group_of[id(e)] in mine}  # held out or not
    # held out per group: a 5, b 1, c 1, d 1 → the largest alone, the rest spread: 5, 2, 1
    assert sorted(len(p) for p in parts) == [1, 2, 5]
    assert len(group_folds(examples, held, 9, group_of)[0]) == 4  # at most one fold per group


def test_grouped_folds_see_that_recalling_a_group_does_not_carry_to_new_ones():
    """Copies of one input per group: folds of single examples learn a held-out example's twins,
    so the memory wins by far (p < 0.01) though nothing carries to a new group; folds of whole
    groups find no gain and keep the memory off. Without groups the copies of an input are held
    out together (since 2026-12-06), which here are the groups: the memory stays off too."""
    examples, groups = _grouped_examples()
    single = list(range(len(examples)))
    with pytest.warns(UserWarning, match="10 input text"):  # the copies split over the folds
        plain = make_task(labels=["w40", "w41"]).fit(
            examples, labels=["w40", "w41"], progress=False, groups=single
        )
    default = make_task(labels=["w40", "w41"]).fit(examples, labels=["w40", "w41"], progress=False)
    assert default.chosen.read.weight == 0 and "copies of an input held out together" in default.metric
    grouped = make_task(labels=["w40", "w41"]).fit(
        examples, labels=["w40", "w41"], progress=False, groups=groups
    )
    assert plain.chosen.read.weight > 0 and plain.sign_flip_p < 0.01
    assert grouped.chosen.read.weight == 0 and grouped.sign_flip_p > 0.5
    assert "folds of whole groups, 10 groups" in grouped.metric


def test_groups_are_checked():
    examples, groups = _grouped_examples()
    task = make_task(labels=["w40", "w41"])
    for bad, message in (
        (groups[:-1], "39 groups for 40 examples"),
        ([0] * 40, "at least two groups"),
        ([None, *groups[1:]], "example 0's group None is not a hashable value"),
        ([[1], *groups[1:]], r"example 0's group \[1\] is not a hashable value"),
    ):
        with pytest.raises(ValueError, match=message):
            task.fit(examples, labels=["w40", "w41"], progress=False, groups=bad)


def test_one_string_where_a_list_belongs_is_refused_and_empty_lists_give_empty_answers():
    """A string passed as the inputs (or labels) was read a character at a time: seven answers for
    "w10 w11"; now a TypeError, as learn's is for one example. Empty inputs give empty results."""
    task = make_task(labels=["w40", "w41"])
    task.learn(rule_examples(10), progress=False)
    for call in (task.classify, task.label_scores, task.prompt_features, task.generate):
        with pytest.raises(TypeError, match="got one string 'w10 w11'"):
            call("w10 w11")
    with pytest.raises(TypeError, match="input 1 is NoneType"):
        task.classify(["w10", None])
    with pytest.raises(TypeError, match="labels must be a list of strings, got one string 'w40'"):
        task.label_scores(["w10"], labels="w40")
    with pytest.raises(TypeError, match="label 1 is int"):
        task.label_scores(["w10"], labels=["w40", 6])
    assert task.classify([]) == [] and task.generate([], progress=False) == []
    assert task.label_scores([]).shape == (0, 2) and task.prompt_features([]).shape == (0, 32)
    icl = InContextModel(tiny_model("llama", dtype=torch.float64), task.codec, [("w10", "w40")], reserve=8)
    with pytest.raises(TypeError, match="got one string"):
        icl.classify("w10 w11", ["w40", "w41"])
    with pytest.raises(ValueError, match="at least two labels"):
        icl.classify(["w10"], ["w40"])
    assert icl.label_scores([], ["w40", "w41"]).shape == (0, 2)
    with pytest.raises(ValueError, match="reserve must be an integer >= 1, got -10"):
        InContextModel(icl.model, task.codec, [("w10", "w40")], reserve=-10)


def test_spaces_that_end_an_answer_are_not_read():
    """A TSV written ``text<TAB>positive `` gives the label "positive ": read with its space, the
    space would stand between the label and the end marker (SmolLM2: " positive", " \\n"), so
    its learned and scored tokens would not be those of the label; it is dropped, with a warning."""
    codec = PromptCodec(word_tokenizer(), TEMPLATE, context=64)
    with pytest.warns(UserWarning, match="ends with a space"):
        assert codec.answer_ids("w40 \t") == codec.answer_ids("w40") == [40, 91]
    assert codec.scored_label_ids(["w40 ", "w41"]) == [[40], [41]]


@pytest.mark.assets("smollm2-135m-instruct")
def test_spaces_that_end_an_answer_are_not_read_by_a_real_tokenizer():
    from transformers import AutoTokenizer

    from faast.assets.lm import smollm2_dir

    codec = PromptCodec(
        AutoTokenizer.from_pretrained(str(smollm2_dir())), PromptTemplate("Review: {input}\nSentiment:")
    )
    assert codec.text_ids(" positive \n") != codec.text_ids(" positive\n")  # the space is a token of its own
    with pytest.warns(UserWarning, match="ends with a space"):
        assert codec.answer_ids("positive ") == codec.answer_ids("positive")
    assert codec.scored_label_ids(["positive ", "negative"]) == codec.scored_label_ids(
        ["positive", "negative"]
    )


def test_an_empty_prompt_is_refused_and_calibration_leaves_out_the_empty_input():
    """Template {input}, no start token: the empty input's prompt had no token, so its first
    label token was scored from position −1, which wrapped to the end of the sequence — a label
    of two tokens got log P(a | a b) + log P(b | a) — or failed with an IndexError; calibration
    scores the empty content-free input that way."""
    torch.manual_seed(0)
    plain = PromptTemplate("{input}", answer_prefix=" ", answer_end=" w91", separator=" w92")
    task = TaskModel.create(tiny_model("llama", dtype=torch.float64), word_tokenizer(), TaskSpec(plain))
    labels = ["w40 w41", "w42 w43"]  # two tokens each
    for inputs in ([""], ["", "w5"]):
        with pytest.raises(ValueError, match=r"input '' makes an empty prompt"):
            task.label_scores(inputs, labels)
    with pytest.raises(ValueError, match=r"input '' makes an empty prompt"):
        task.generate(["", "w5"], max_new_tokens=2)
    calibrated = task.label_scores(["w5", "w6"], labels, calibrate=True)
    assert calibrated.shape == (2, 2) and bool(torch.isfinite(calibrated).all())
    content_free = task.content_free_scores(labels)
    assert content_free.shape == (2, 2)  # "N/A" and "[MASK]": the empty input left out
    by_hand = task.label_scores(["N/A", "[MASK]"], labels)
    torch.testing.assert_close(content_free, by_hand)
    with_start = TaskModel.create(
        tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True), TaskSpec(plain)
    )
    assert with_start.content_free_scores(labels).shape == (3, 2)  # after <s>, "" has a state


def test_generation_after_a_cached_lead_on_a_sliding_window_model_does_not_depend_on_the_batch():
    """Gemma-3 with --in-context: rows left-padded between the cached lead and their prompt spent
    window slots on pads, so a short prompt batched with a long one lost part of the lead and
    generated other text than alone. On a sliding-window model rows of one length share a batch."""
    from faast.lm.task import _generation_groups

    assert _generation_groups([[1], [1, 2], [3], [4, 5]], 8, False) == [[0, 1, 2, 3]]
    assert _generation_groups([[1], [1, 2], [3], [4, 5]], 8, True) == [[0, 2], [1, 3]]
    assert _generation_groups([[1]] * 5, 2, True) == [[0, 1], [2, 3], [4]]
    torch.manual_seed(0)
    model = tiny_model("gemma3", dtype=torch.float64)
    model.config.sliding_window = 4  # far shorter than the lead: the window matters
    if hasattr(model.config, "layer_types"):
        model.config.layer_types = ["sliding_attention"] * len(model.config.layer_types)
    spec = TaskSpec(
        TEMPLATE, "answer", None, demonstrations=[Example("w5 w6 w7", "w40"), Example("w8", "w41")]
    )
    task = TaskModel.create(model, word_tokenizer(bos=True), spec)
    prefix, _ = task._lead_view()
    assert prefix is not None and prefix.slides()
    inputs = ["w9", "w10 w11 w12 w13 w14", "w15 w16", "w17"]
    together = task.generate(inputs, max_new_tokens=3, batch_size=4)
    alone = [task.generate([x], max_new_tokens=3, batch_size=1)[0] for x in inputs]
    assert together == alone
