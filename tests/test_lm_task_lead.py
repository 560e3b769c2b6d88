"""Lead demonstrations (``TaskSpec.demonstrations``): in-context examples written before every prompt
of a task, so the fast weights learn and are read on states conditioned on them."""

from __future__ import annotations

import json

import pytest
import torch

from faast.cli import main
from faast.lm.examples import Example
from faast.lm.fastweights import read_task
from faast.lm.icl import InContextModel
from faast.lm.prompts import PromptCodec, PromptTemplate
from faast.lm.task import MEMORY_OFF, TaskModel, TaskSpec, default_candidates
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_task_cli import parity_setup

TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")
DEMOS = [("w10", "w11"), ("w12 w13", "w14")]


def test_codec_writes_lead_demonstrations_before_every_prompt():
    codec = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=40, demonstrations=DEMOS)
    lead = [1, 10, 90, 11, 91, 92, 12, 13, 90, 14, 91, 92]
    assert codec.lead_ids == lead
    enc = codec.encode("w5 w6", "w40")
    assert enc.prompt == [*lead, 5, 6, 90] and enc.answer == [40, 91]
    assert codec.prompt_ids("w5", start=False) == [5, 90]
    # in-context demonstrations come after the lead ones, within the same budget
    ids, used = codec.icl_prompt([("w15", "w16")], "w5", reserve=2)
    assert used == 1 and ids == [*lead, 15, 90, 16, 91, 92, 5, 90]
    plain = PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=40)
    assert plain.lead_ids == [1] and plain.encode("w5", "w40").prompt == [1, 5, 90]


def test_codec_refuses_lead_demonstrations_that_fill_the_context():
    with pytest.raises(ValueError, match="2 lead demonstrations take 12 tokens.*context of 12"):
        PromptCodec(word_tokenizer(bos=True), TEMPLATE, context=12, demonstrations=DEMOS)


def test_spec_checks_and_round_trips_demonstrations():
    spec = TaskSpec(TEMPLATE, "answer", ["w40", "w41"], [Example("w10", "w11"), ["w12 w13", "w14"]])
    assert spec.demonstrations == DEMOS
    back = TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec
    assert "demonstrations" not in TaskSpec(TEMPLATE).to_dict()  # files without them stay as they were
    assert TaskSpec.from_dict(TaskSpec(TEMPLATE).to_dict()).demonstrations == []
    for bad in ([("w10",)], [("w10", "")], [("w10", 3)], ["w10 w11"]):
        with pytest.raises(ValueError, match="demonstration 0 must be an \\(input, output\\) pair"):
            TaskSpec(TEMPLATE, demonstrations=bad)


def _task(pairs: str, demos=DEMOS, seed: int = 0) -> TaskModel:
    torch.manual_seed(seed)
    spec = TaskSpec(TEMPLATE, pairs, None, demos)
    return TaskModel.create(tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True), spec)


@pytest.mark.parametrize("pairs", ["answer", "all"])
def test_the_memory_learns_the_examples_own_transitions_only(pairs):
    task = _task(pairs)
    examples = [Example("w5 w6", "w40 w41"), Example("w7", "w42")]
    learned = task.learn(examples, progress=False)
    # answer: w40, w41, w91 | w42, w91; all: every transition whose next token follows the lead
    # (w5, w6, w90, w40, w41, w91 | w7, w90, w42, w91), never the lead's own transitions again
    assert learned == (5 if pairs == "answer" else 10)
    seen = set(torch.nonzero(task.model.output_memory.seen).squeeze(1).tolist())
    assert seen == ({40, 41, 42, 91} if pairs == "answer" else {5, 6, 7, 90, 40, 41, 42, 91})


def test_with_an_empty_memory_the_task_reads_as_in_context_learning():
    task = _task("answer")
    inputs = ["w5 w6", "w7", "w8 w9 w10"]
    labels = ["w40", "w41 w42"]
    mine = task.label_scores(inputs, labels)
    icl = InContextModel(task.model.base_model, PromptCodec(task.tokenizer, TEMPLATE, 64), DEMOS, reserve=8)
    with task.model.disabled():
        theirs = icl.label_scores(inputs, labels)
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)  # float32 steps in the tiny model


def test_learning_after_lead_demonstrations_changes_the_scores_and_saves_them(tmp_path):
    examples = [Example(f"w{a}", "w40" if a % 2 == 0 else "w41") for a in range(3, 15)] * 2
    task = _task("answer")
    before = task.label_scores(["w5", "w6"], ["w40", "w41"])
    report = task.fit(examples, labels=["w40", "w41"], folds=2, progress=False)
    assert report.n_fit == len(examples)
    read = next(c for c in default_candidates("prob") if c != MEMORY_OFF)
    task.use(read)
    after = task.label_scores(["w5", "w6"], ["w40", "w41"])
    assert not torch.allclose(before, after)
    # the lead tokens change the keys: the same examples without them give other scores
    plain = _task("answer", demos=[])
    plain.learn(examples, progress=False)
    plain.use(read)
    assert not torch.allclose(plain.label_scores(["w5", "w6"], ["w40", "w41"]), after)
    path = task.save(tmp_path / "t.safetensors", "lead")
    _, _, signature = read_task(path, "lead")
    assert signature["info"]["task"]["demonstrations"] == [list(d) for d in DEMOS]
    torch.manual_seed(0)
    loaded = TaskModel.load(tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True), path, "lead")
    loaded.use(read)
    assert loaded.spec.demonstrations == DEMOS and loaded.codec.lead_ids == task.codec.lead_ids
    torch.testing.assert_close(loaded.label_scores(["w5", "w6"], ["w40", "w41"]), after)


def test_cli_learns_after_in_context_demonstrations(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "lead", "--folds", "2", "--in-context", "3"]) == 0
    printed = capsys.readouterr().out
    assert "learning 37 examples" in printed and "after 3 in-context demonstrations" in printed
    _, _, signature = read_task(out, "lead")
    demos = signature["info"]["task"]["demonstrations"]
    train = (tmp_path / "train.tsv").read_text().splitlines()
    assert demos == [line.split("\t") for line in train[:3]]
    preds = tmp_path / "pred.jsonl"
    use = [*base, "--fast-weights", str(out), "--task", "lead"]
    assert main(["task", "classify", *use, "--inputs", str(test), "--out", str(preds)]) == 0
    assert len(preds.read_text().splitlines()) == 12
    learned = tmp_path / "learned.tsv"  # forgetting learned examples keeps the demonstrations
    learned.write_text("\n".join(train[3:8]) + "\n")
    assert main(["task", "forget", *use, "--examples", str(learned)]) == 0
    assert read_task(out, "lead")[2]["info"]["task"]["demonstrations"] == demos
    for bad, message in (("-1", "--in-context must be >= 0"), ("40", "leaves none of the 40 examples")):
        assert main([*learn, "--task", "bad", "--in-context", bad]) == 1
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("pairs", ["answer", "all"])
def test_the_lead_kv_cache_gives_the_states_of_running_the_demonstrations_again(pairs):
    """lead_cache=True (the default) continues every row from the demonstrations' KV cache; the
    pairs, statistics, scores, NLLs and prompt features equal those of running them with each row."""
    examples = [Example(f"w{a} w{a + 20}", "w40 w42" if a % 2 else "w41") for a in range(3, 15)]
    tasks = []
    for lead_cache in (True, False):
        torch.manual_seed(0)
        spec = TaskSpec(TEMPLATE, pairs, None, DEMOS)
        model = tiny_model("llama", dtype=torch.float64)
        tasks.append(
            TaskModel.create(model, word_tokenizer(bos=True), spec, cache=True, lead_cache=lead_cache)
        )
    cached, plain = tasks
    assert len(cached._lead_prefix()) == len(cached.codec.lead_ids) - 1 and plain._lead_prefix() is None
    read = next(c for c in default_candidates("prob") if c != MEMORY_OFF)
    for task in tasks:
        assert (
            task.learn(examples, batch_size=5, progress=False)
            == tasks[0].model.output_memory.memory.num_pairs
        )
        task.use(read)
    inputs = ["w5 w6", "w7", "w8 w9 w10"]
    torch.testing.assert_close(
        cached.label_scores(inputs, ["w40", "w41 w42"]), plain.label_scores(inputs, ["w40", "w41 w42"])
    )
    nll_c, n_c = cached.answer_nll(examples[:4])
    nll_p, n_p = plain.answer_nll(examples[:4])
    assert n_c == n_p and nll_c == pytest.approx(nll_p, rel=1e-9)
    torch.testing.assert_close(cached.prompt_features(examples[:3]), plain.prompt_features(examples[:3]))
    # forgetting through the cache removes exactly what learning through it added
    cached.forget(examples[:5], batch_size=5, progress=False)
    plain.forget(examples[:5], batch_size=5, progress=False)
    torch.testing.assert_close(
        cached.label_scores(inputs, ["w40", "w41"]), plain.label_scores(inputs, ["w40", "w41"])
    )


def test_a_prefix_cache_refuses_models_it_cannot_serve():
    from faast.lm import FaastConfig, get_faast_model

    torch.manual_seed(0)
    fm = get_faast_model(tiny_model("llama", dtype=torch.float64), FaastConfig(num_memories=1))
    with pytest.raises(ValueError, match="middle memories"):
        fm.prefix_cache([1, 2, 3])
    task = TaskModel(fm, word_tokenizer(bos=True), TaskSpec(TEMPLATE, "answer", None, DEMOS))
    assert task._lead_prefix() is None  # the demonstrations are run again with each row instead
    task.learn([Example("w5", "w40")], progress=False)
    plain = get_faast_model(tiny_model("llama", dtype=torch.float64), FaastConfig(num_memories=0))
    with pytest.raises(ValueError, match="exceed the model's context window"):
        plain.prefix_cache(list(range(3, 3 + 10_000)))


def test_the_lead_cache_follows_the_model_to_another_dtype():
    task = _task("answer")
    task.learn([Example("w5", "w40"), Example("w6", "w41")], progress=False)
    before = task._lead_prefix()
    scores = task.label_scores(["w5", "w6"], ["w40", "w41"])
    task.model.to(torch.float32)
    after = task._lead_prefix()
    assert after is not before and after.cache().layers[0].keys.dtype == torch.float32
    torch.testing.assert_close(task.label_scores(["w5", "w6"], ["w40", "w41"]), scores, rtol=1e-4, atol=1e-4)


def test_generation_after_the_lead_cache_equals_running_the_demonstrations_again(monkeypatch):
    from faast.lm.prefix_cache import PrefixCache

    copies = []
    batched = PrefixCache.batched
    monkeypatch.setattr(PrefixCache, "batched", lambda self, rows: copies.append(rows) or batched(self, rows))
    examples = [Example(f"w{a}", f"w{a + 30} w{a + 31}") for a in range(3, 15)]
    outs = []
    for lead_cache in (True, False):
        torch.manual_seed(0)
        spec = TaskSpec(TEMPLATE, "answer", None, DEMOS)
        task = TaskModel.create(
            tiny_model("llama", dtype=torch.float64), word_tokenizer(bos=True), spec, lead_cache=lead_cache
        )
        task.learn(examples, progress=False)
        task.use(next(c for c in default_candidates("prob") if c != MEMORY_OFF))
        inputs = ["w5", "w6 w7 w8", "w9 w10"]  # rows of different lengths: left padding after the lead
        outs.append(task.generate(inputs, max_new_tokens=4, batch_size=3, progress=False))
        outs.append(task.generate(inputs, max_new_tokens=4, batch_size=1, progress=False))
    assert outs[0] == outs[1] == outs[2] == outs[3]
    assert copies[-4:] == [3, 1, 1, 1]  # the cached task's generation read the lead cache per batch
    assert any(o.strip() for o in outs[0])


def test_labels_auto_include_those_only_the_lead_demonstrations_show():
    """A label that only a lead demonstration shows is a label (it was dropped: the task then
    scored two labels, and evaluate counted that one as an error on every reference)."""
    examples = [Example(f"w{a}", "w40" if a % 2 == 0 else "w41") for a in range(3, 15)]
    task = _task("answer", demos=[("w10", "w42"), ("w12 w13", "w40")])
    task.fit(examples, labels="auto", folds=2, progress=False)
    assert task.spec.labels == ["w41", "w40", "w42"]  # the examples' outputs first, then the lead's
    plain = _task("answer", demos=[])
    plain.fit(examples, labels="auto", folds=2, progress=False)
    assert plain.spec.labels == ["w41", "w40"]
