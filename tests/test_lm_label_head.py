"""The closed-form label head on the prompt-end state (:mod:`faast.lm.label_head`): against
FaastClassifier, inside TaskModel (classify, save/load, reset) and through `faast task`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faast import FaastClassifier
from faast.cli import main
from faast.lm.label_head import LabelHead
from faast.lm.task import TaskModel
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import make_task, rule_examples
from tests.test_task_cli import TEMPLATE, parity_setup


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_head_is_the_classifier_on_the_states(loss):
    rng = np.random.default_rng(0)
    feats = torch.as_tensor(rng.normal(size=(40, 6)))
    outputs = ["b" if v > 0 else "a" for v in feats[:, 0].tolist()]
    head = LabelHead.fit(feats, outputs, ["b", "a"], loss)  # labels in the task's order, not sorted
    ref = FaastClassifier(tau="auto", loss=loss, fit_intercept=False).fit(
        feats.numpy(), [["b", "a"].index(o) for o in outputs]
    )
    np.testing.assert_allclose(head.weight.numpy(), ref.coef_)
    np.testing.assert_allclose(head.scores(feats).numpy(), feats.numpy() @ ref.coef_.T)
    again = LabelHead.from_dict(json.loads(json.dumps(head.to_dict())), 6)  # JSON round trip, exact
    assert again.labels == ["b", "a"] and again.loss == loss and torch.equal(again.weight, head.weight)


@pytest.mark.parametrize(
    ("outputs", "labels", "loss", "match"),
    [
        (["a", "c"], ["a", "b"], "squared", "not labels: \\['c'\\]"),
        (["a", "a"], ["a", "b"], "squared", "labels without an example: \\['b'\\]"),
        (["a", "a"], ["a"], "squared", "at least two labels"),
        (["a", "b"], ["a", "b"], "hinge", "head loss must be one of"),
    ],
)
def test_bad_heads_are_refused(outputs, labels, loss, match):
    with pytest.raises(ValueError, match=match):
        LabelHead.fit(torch.randn(2, 3), outputs, labels, loss)


def test_stored_heads_are_checked():
    good = {"labels": ["a", "b"], "loss": "squared", "weight": [[0.0, 1.0], [1.0, 0.0]]}
    assert LabelHead.from_dict(good, 2).labels == ["a", "b"]
    for bad, match in [
        ({**good, "weight": [[0.0, 1.0]]}, "does not fit 2 labels"),
        ({**good, "weight": [[0.0, float("nan")], [1.0, 0.0]]}, "NaN or Inf"),
        ({"labels": ["a", "b"]}, "malformed label head"),
    ]:
        with pytest.raises(ValueError, match=match):
            LabelHead.from_dict(bad, 2)
    with pytest.raises(ValueError, match="width 3"):
        LabelHead.from_dict(good, 3)


def test_task_classifies_with_its_head_and_saves_it(tmp_path):
    task = make_task()
    examples = rule_examples(60)
    task.fit(examples, progress=False)
    head = task.fit_head(examples)
    assert head.labels == task.spec.labels and head.weight.shape == (2, 32)
    inputs = [e.input for e in examples]
    scores = task.head_scores(inputs)
    predicted = task.classify(inputs)
    assert predicted == [head.labels[i] for i in scores.argmax(1).tolist()]
    assert np.mean([p == e.output for p, e in zip(predicted, examples, strict=True)]) >= 0.9
    path = tmp_path / "tasks.safetensors"
    task.save(path, "rule")
    again = TaskModel.load(tiny_model("llama", dtype=torch.float64), word_tokenizer(), path, "rule")
    assert again.head is not None and again.head.loss == "squared"
    torch.testing.assert_close(again.head_scores(inputs), scores)
    task.reset()
    assert task.head is None
    with pytest.raises(ValueError, match="no label head"):
        task.head_scores(inputs)


def test_classify_without_the_head_labels_reads_the_lm():
    task = make_task()
    examples = rule_examples(40)
    task.fit(examples, progress=False)
    inputs = [e.input for e in examples[:8]]
    lm = task.label_scores(inputs, ["w41", "w40"]).argmax(1).tolist()
    task.fit_head(examples)
    assert task.classify(inputs, labels=["w41", "w40"]) == [["w41", "w40"][i] for i in lm]


def test_cli_learn_with_a_head_then_classify(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2", "--head", "logistic"]) == 0
    assert "logistic label head" in capsys.readouterr().out
    preds = tmp_path / "pred.jsonl"
    use = [*base, "--fast-weights", str(out), "--task", "parity"]
    assert main(["task", "classify", *use, "--inputs", str(test), "--out", str(preds)]) == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 12 and all(set(r["head_scores"]) == {"w5", "w6"} for r in rows)
    for r in rows:
        scores = r["head_scores"]
        assert r["prediction"] == max(scores, key=scores.get)
    free = tmp_path / "free.jsonl"
    free.write_text(
        "".join(json.dumps({"input": "w10 w11", "output": f"w{20 + i} w30"}) + "\n" for i in range(9))
    )
    learn_free = ["task", "learn", *base, "--examples", str(free), "--out", str(tmp_path / "f.safetensors")]
    assert main([*learn_free, "--template", TEMPLATE, "--labels", "none", "--head", "squared"]) == 1
    assert "--head needs labels" in capsys.readouterr().err
