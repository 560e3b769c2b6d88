"""A task's record of the examples it learned: ``forget`` refuses an example not in it at any size
(beyond d pairs only the per-token counts could be checked before, and an example never learned
— a test sentence, a learned input under another label — was subtracted without a word)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from faast.lm.examples import Example
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_record import LearnedRecord, example_digest
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import TEMPLATE, rule_examples


def _task(demonstrations=()) -> TaskModel:
    spec = TaskSpec(TEMPLATE, "answer", None, demonstrations=list(demonstrations))
    return TaskModel.create(_base(), word_tokenizer(), spec)


def _base():
    torch.manual_seed(0)
    return tiny_model("llama", dtype=torch.float64)


def _weights(task: TaskModel) -> dict[str, torch.Tensor]:
    stats = task.model.output_memory.stats
    return {"gram": stats.gram.clone(), "cross": stats.cross.clone()}


def _learned_beyond_d() -> tuple[TaskModel, list[Example]]:
    task = _task()
    examples = rule_examples(60)
    task.learn(examples, progress=False)
    d = task.model.output_memory.stats.key_dim
    assert task.model.num_pairs > d  # beyond the pairs kept: only counts were checked before
    return task, examples


@pytest.mark.parametrize(
    "never",
    [
        Example("w3", "w40"),  # w3 is odd: learned (if at all) as w41
        Example("w4", "w41"),  # w4 is even: learned as w40
    ],
)
def test_an_example_never_learned_is_refused_beyond_d_pairs(never):
    task, examples = _learned_beyond_d()
    learned = {(e.input, e.output) for e in examples}
    assert (never.input, never.output) not in learned
    before = _weights(task)
    with pytest.raises(ValueError, match="never learned by this task"):
        task.forget([examples[0], never], progress=False)
    after = _weights(task)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing was forgotten
    assert len(task.learned) == 60


def test_an_example_can_be_forgotten_as_often_as_it_was_learned():
    task, examples = _learned_beyond_d()
    first = examples[0]
    times = sum((e.input, e.output) == (first.input, first.output) for e in examples)
    assert times > 1  # the draw repeats it
    with pytest.raises(ValueError, match="never learned"):
        task.forget([first] * (times + 1), progress=False)
    task.forget([first] * times, progress=False)
    assert len(task.learned) == 60 - times
    with pytest.raises(ValueError, match="already forgotten"):
        task.forget([first], progress=False)


def test_the_record_is_saved_and_a_loaded_task_refuses_the_same(tmp_path):
    task, examples = _learned_beyond_d()
    path = task.save(tmp_path / "task.safetensors", "rule")
    loaded = TaskModel.load(_base(), task.tokenizer, path, "rule")
    assert loaded.learned is not None and loaded.learned.to_json() == task.learned.to_json()
    with pytest.raises(ValueError, match="never learned"):
        loaded.forget([Example("w4", "w41")], progress=False)
    loaded.forget(examples[:5], progress=False)
    task.forget(examples[:5], progress=False)
    assert loaded.learned.to_json() == task.learned.to_json()


def test_a_task_saved_without_a_record_forgets_as_before(tmp_path):
    task, _ = _learned_beyond_d()
    task.learned = None  # as a task saved before the record
    task.model.learned_rows = None  # and before the model's record of rows (faast.lm.learned_rows)
    path = task.save(tmp_path / "old.safetensors", "rule")
    loaded = TaskModel.load(_base(), task.tokenizer, path, "rule")
    assert loaded.learned is None
    loaded.forget([Example("w4", "w41")], progress=False)  # unverifiable beyond d pairs: subtracted


def test_a_demonstration_cannot_be_forgotten_and_the_error_says_why():
    task = _task(demonstrations=[("w5", "w41"), ("w6", "w40")])
    task.learn(rule_examples(10, seed=1), progress=False)
    with pytest.raises(ValueError, match="in-context demonstrations"):
        task.forget([Example("w5", "w41")], progress=False)


def test_fit_records_every_example_it_learns_once():
    task = _task()
    examples = rule_examples(16)
    task.fit(examples, progress=False, folds=2)  # folds learn and reset: the record follows
    assert sorted(task.learned.to_json()) == sorted(
        f"{example_digest(task.codec.encode(e.input, e.output).ids):016x}" for e in examples
    )


def test_the_record_is_a_multiset_and_refuses_malformed_data():
    a, c = 0xAAAA_AAAA_AAAA_AAAA, 0xCCCC_CCCC_CCCC_CCCC
    record = LearnedRecord.from_json(["a" * 16, "a" * 16, "b" * 16], "test")
    assert record.missing([a, a, a, c]).tolist() == [2, 3]
    assert record.remove_found([a])
    assert record.to_json() == ["a" * 16, "b" * 16]
    grown = record.copy()
    grown.add([c, a])
    assert type(grown) is LearnedRecord and grown.minus(record).tolist() == [a, c]
    assert record.to_json() == ["a" * 16, "b" * 16]  # the copy is independent
    for bad in ({"a": 1}, ["xyz"], [1234]):
        with pytest.raises(ValueError, match="malformed 'learned_examples'"):
            LearnedRecord.from_json(bad, "f.safetensors: task 't'")
    assert example_digest([1, 2, 3]) != example_digest([1, 2, 4])


def test_the_digest_is_the_one_saved_records_hold():
    """Records saved before the shared multiset hold SHA-256's first 16 hex digits of the ids as
    little-endian signed 64-bit words: the digest must stay that number."""
    ids = [0, 1, 49151, 2**40, -1]
    data = b"".join(i.to_bytes(8, "little", signed=True) for i in ids)
    saved = hashlib.sha256(data).hexdigest()[:16]
    record = LearnedRecord.from_json([saved], "test")
    assert record.missing([example_digest(ids)]).size == 0
    assert LearnedRecord([example_digest(ids)]).to_json() == [saved]


def test_the_command_line_refuses_an_example_never_learned_and_keeps_the_record(model_dir, tmp_path, capsys):  # noqa: F811
    from faast.cli import main
    from faast.lm.fastweights import read_file
    from tests.test_task_cli import parity_setup

    base, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "all", "--folds", "2"]) == 0
    _, tasks = read_file(out)
    assert len(tasks["all"]["info"]["learned_examples"]) == 40
    lines = (tmp_path / "train.tsv").read_text().splitlines()
    text, label = lines[0].split("\t")
    other = next(x.split("\t")[1] for x in lines if x.split("\t")[1] != label)
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text(f"{text}\t{other}\n")  # a learned input under the other label
    before = out.read_bytes()
    forget = ["task", "forget", *base, "--fast-weights", str(out), "--task", "all"]
    capsys.readouterr()
    assert main([*forget, "--examples", str(wrong)]) == 1
    assert "never learned by this task" in capsys.readouterr().err
    assert out.read_bytes() == before
    right = tmp_path / "right.tsv"
    right.write_text(lines[0] + "\n")
    assert main([*forget, "--examples", str(right)]) == 0
    _, tasks = read_file(out)
    assert len(tasks["all"]["info"]["learned_examples"]) == 39


def test_a_learning_block_keeps_the_record_and_a_failed_one_restores_it():
    import faast.distributed

    d = faast.distributed.current()  # one process: the reduction is the identity
    task = _task()
    task.learn(rule_examples(4), progress=False)
    before = task.learned.to_json()
    with d.reduce_learning(task):
        task.learn(rule_examples(3, seed=2), progress=False)
    assert len(task.learned) == 7 and set(before) <= set(task.learned.to_json())
    kept = task.learned.to_json()
    with pytest.raises(RuntimeError, match="boom"), d.reduce_learning(task):
        task.learn(rule_examples(3, seed=3), progress=False)
        raise RuntimeError("boom")
    assert task.learned.to_json() == kept
