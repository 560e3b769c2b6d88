"""The closed-form label head on the prompt-end state (:mod:`faast.lm.label_head`): against
FaastClassifier, inside TaskModel (classify, save/load, reset) and through `faast task`."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from faast import FaastClassifier
from faast.cli import main
from faast.lm import FaastConfig, get_faast_model
from faast.lm.label_head import LabelHead, candidate_layers, held_out_log_likelihood, held_out_right
from faast.lm.prompts import PromptTemplate, pad_batch
from faast.lm.task import TaskModel, TaskSpec
from faast.lm.task_choice import SIGN_FLIP_LEVEL, max_gain_p_value
from faast.lm.text import load_causal_lm
from tests.lm_tiny import tiny_model
from tests.lm_wordlevel import word_tokenizer
from tests.test_lm_cli import WORDS, model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import make_task, rule_examples
from tests.test_task_cli import TEMPLATE, parity_setup

LEAD_TEMPLATE = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")


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
    other = ["w41", "w42"]  # w42 is not a label of the head
    lm = task.label_scores(inputs, other).argmax(1).tolist()
    task.fit_head(examples)
    assert not task.head_applies(other)
    assert task.classify(inputs, labels=other) == [other[i] for i in lm]


def test_the_head_scores_its_labels_in_any_order():
    """The same labels named in another order are the same classifier (they once switched to the
    LM without a word): the head's columns follow the order asked for."""
    task = make_task()
    examples = rule_examples(40)
    task.fit(examples, progress=False)
    task.fit_head(examples)
    inputs = [e.input for e in examples[:8]]
    assert sorted(task.head.labels) == ["w40", "w41"]
    flipped_labels = task.head.labels[::-1]
    scores = task.head_scores(inputs)
    flipped = task.head_scores(inputs, labels=flipped_labels)
    assert torch.equal(flipped, scores[:, [1, 0]])
    assert task.classify(inputs, labels=flipped_labels) == task.classify(inputs)
    assert not task.head_applies(["w40", "w40"])
    with pytest.raises(ValueError, match="scores the labels"):
        task.head_scores(inputs, labels=["w40", "w42"])


def test_cli_learn_with_a_head_then_classify(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2", "--head", "logistic"]) == 0
    assert "logistic label head" in capsys.readouterr().out
    preds = tmp_path / "pred.jsonl"
    use = [*base, "--fast-weights", str(out), "--task", "parity"]
    assert main(["task", "classify", *use, "--inputs", str(test), "--out", str(preds)]) == 0
    assert re.search("(prompt|layer) states", capsys.readouterr().err)  # the head's forward pass
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 12 and all(set(r["head_scores"]) == {"w5", "w6"} for r in rows)
    for r in rows:
        scores = r["head_scores"]
        assert r["prediction"] == max(scores, key=scores.get)
    flipped = tmp_path / "flipped.jsonl"  # the same labels in the other order: the same head
    assert (
        main(["task", "classify", *use, "--inputs", str(test), "--out", str(flipped), "--labels", "w6,w5"])
        == 0
    )
    again = [json.loads(line) for line in flipped.read_text().splitlines()]
    assert [r["prediction"] for r in again] == [r["prediction"] for r in rows]
    assert all(r["head_scores"] == pytest.approx(a["head_scores"]) for r, a in zip(rows, again, strict=True))
    free = tmp_path / "free.jsonl"
    free.write_text(
        "".join(json.dumps({"input": "w10 w11", "output": f"w{20 + i} w30"}) + "\n" for i in range(9))
    )
    learn_free = ["task", "learn", *base, "--examples", str(free), "--out", str(tmp_path / "f.safetensors")]
    assert main([*learn_free, "--template", TEMPLATE, "--labels", "none", "--head", "squared"]) == 1
    assert "--head needs labels" in capsys.readouterr().err


# ----------------------------------------------------------------- the layer the head reads


@pytest.mark.parametrize(
    ("num_layers", "expected"),
    [(30, [14, 18, 21, 25, None]), (18, [8, 10, 13, 15, None]), (2, [0, 1, None]), (1, [0, None])],
)
def test_candidate_layers(num_layers, expected):
    assert candidate_layers(num_layers) == expected


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_candidate_layers_need_a_positive_block_count(bad):
    with pytest.raises(ValueError, match="num_layers must be an integer >= 1"):
        candidate_layers(bad)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_layer_states_are_the_blocks_outputs(family):
    """Each block's output equals transformers' hidden_states[block + 1] (the last block's through
    the final norm: transformers reports it normed) and None the head input, on right-padded rows of
    different lengths."""
    model = tiny_model(family, layers=3)
    fm = get_faast_model(model, FaastConfig(num_memories=0))
    final_norm = model.transformer.ln_f if family == "gpt2" else model.model.norm
    rows = [[1, 5, 6, 7, 8], [1, 9, 10]]
    ids, mask = pad_batch(rows, 0)
    layers = [2, 0, None, 1]
    states = fm.layer_states(ids, mask, layers=layers)
    assert states.shape == (2, 5, 4, 32)
    for r, row in enumerate(rows):
        with torch.no_grad():
            ref = model(torch.tensor([row]), output_hidden_states=True).hidden_states
            n = len(row)
            for c, block in enumerate(layers):
                got = final_norm(states[r, :n, c]) if block == 2 else states[r, :n, c]
                torch.testing.assert_close(got, ref[-1 if block in (None, 2) else block + 1][0])
        torch.testing.assert_close(states[r, :n, 2], fm.head_inputs(ids[r : r + 1, :n])[0])


@pytest.mark.parametrize("layers", [[], [3], [-1], ["0"], [True]])
def test_layer_states_refuse_unknown_layers(layers):
    fm = get_faast_model(tiny_model("llama", layers=3), FaastConfig(num_memories=0))
    with pytest.raises(ValueError, match="decoder blocks in \\[0, 3\\)"):
        fm.layer_states(torch.tensor([[1, 5]]), layers=layers)


def test_prompt_layer_features_after_lead_demonstrations_equal_the_full_prompts():
    """With lead demonstrations read from their KV cache, the prompt-end states of every layer equal
    those of the whole prompt run from the start (lead_cache=False); the head input equals
    prompt_features."""
    spec = TaskSpec(LEAD_TEMPLATE, demonstrations=[("w10", "w11"), ("w12 w13", "w14")])
    inputs = ["w20", "w21 w22 w23", "w24 w25"]
    feats = {}
    for lead_cache in (True, False):
        model = tiny_model("llama", layers=3)
        task = TaskModel.create(model, word_tokenizer(bos=True), spec, lead_cache=lead_cache)
        feats[lead_cache] = task.prompt_layer_features(inputs, [0, 2, None], batch_size=2)
        torch.testing.assert_close(feats[lead_cache][:, 2], task.prompt_features(inputs))
    torch.testing.assert_close(feats[True], feats[False])


def _layered(n, informative, seed=0, layers=3, d=5):
    """(n, layers, d) Gaussian states where only layer ``informative`` carries the label (its first
    coordinate's sign), and the outputs."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, layers, d))
    outputs = ["b" if v > 0 else "a" for v in feats[:, informative, 0]]
    return torch.as_tensor(feats), outputs


@pytest.mark.parametrize("informative", [0, 1, 2])
def test_fit_layers_keeps_the_layer_that_carries_the_labels(informative):
    feats, outputs = _layered(60, informative)
    head = LabelHead.fit_layers(feats, [4, 7, None], outputs, ["a", "b"])
    assert head.layer == [4, 7, None][informative]
    assert head.where == ["block 4", "block 7", "head input"][informative]
    torch.testing.assert_close(head.weight, LabelHead.fit(feats[:, informative], outputs, ["a", "b"]).weight)
    accuracy = dict(head.held_out)
    assert accuracy[head.layer] == max(accuracy.values()) and accuracy[head.layer] > 0.8


def test_fit_layers_held_out_accuracy_is_the_folds_refits():
    """held_out equals stratified 5-fold refits of the same classifier done by hand."""
    from sklearn.model_selection import StratifiedKFold

    feats, outputs = _layered(37, 1, seed=3)
    head = LabelHead.fit_layers(feats, [0, 1, None], outputs, ["a", "b"])
    y = np.array([["a", "b"].index(o) for o in outputs])
    for c, (layer, accuracy) in enumerate(head.held_out):
        right = 0
        for train, held in StratifiedKFold(5, shuffle=True, random_state=0).split(feats[:, c], y):
            clf = FaastClassifier(tau="auto", fit_intercept=False).fit(feats[train, c].numpy(), y[train])
            right += int((clf.predict(feats[held, c].numpy()) == y[held]).sum())
        assert layer == [0, 1, None][c] and accuracy == pytest.approx(right / 37)


def test_fit_layers_ties_and_too_few_examples_keep_the_last_layer():
    feats, outputs = _layered(40, 0)
    same = feats[:, :1].expand(-1, 3, -1)  # every layer alike: the last wins the tie
    assert LabelHead.fit_layers(same, [0, 1, None], outputs, ["a", "b"]).layer is None
    few = LabelHead.fit_layers(feats[:3], [0, 1, None], ["a", "b", "b"], ["a", "b"])
    assert few.layer is None and few.held_out == []  # one "a": nothing to hold out
    with pytest.raises(ValueError, match="not \\(n, 2 layers, d\\)"):
        LabelHead.fit_layers(feats, [0, None], outputs, ["a", "b"])


def test_task_head_on_a_chosen_layer_scores_saves_and_loads(tmp_path):
    task = make_task()
    examples = rule_examples(60)
    inputs = [e.input for e in examples]
    task.fit(examples, progress=False)  # the labels come from the examples
    head = task.fit_head(examples, layer=0)
    assert head.layer == 0
    block0 = task.prompt_features(inputs, layer=0)
    assert not torch.allclose(block0, task.prompt_features(inputs))
    torch.testing.assert_close(task.head_scores(inputs), head.scores(block0))
    head = task.fit_head(examples, layer="auto")
    assert head.layer in (0, 1, None) and [layer for layer, _ in head.held_out] == [0, 1, None]
    scores = task.head_scores(inputs)
    torch.testing.assert_close(scores, head.scores(task.prompt_features(inputs, layer=head.layer)))
    path = tmp_path / "tasks.safetensors"
    task.fit_head(examples, layer=1)
    task.save(path, "rule")
    again = TaskModel.load(tiny_model("llama", dtype=torch.float64), word_tokenizer(), path, "rule")
    assert again.head.layer == 1
    torch.testing.assert_close(again.head_scores(inputs), task.head_scores(inputs))
    for bad in ("last", True, 1.0):
        with pytest.raises(ValueError, match="layer must be None, a decoder block's index or 'auto'"):
            task.fit_head(examples, layer=bad)
    with pytest.raises(ValueError, match="decoder blocks in \\[0, 2\\)"):
        task.fit_head(examples, layer=2)


def test_stored_head_layers_are_checked():
    good = {"labels": ["a", "b"], "loss": "squared", "weight": [[0.0, 1.0], [1.0, 0.0]]}
    assert LabelHead.from_dict(good, 2, 3).layer is None  # saved before layers were stored
    assert LabelHead.from_dict({**good, "layer": 2}, 2, 3).layer == 2
    for layer in (3, -1, 1.0, "1", True):
        with pytest.raises(ValueError, match="is not a decoder block of this model"):
            LabelHead.from_dict({**good, "layer": layer}, 2, 3)


def test_cli_head_layer_is_stored_and_read(model_dir, tmp_path, capsys):  # noqa: F811
    """`--head-layer 0` stores a head on block 0 that `classify` reads; auto reports its choice."""
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2", "--head", "squared", "--head-layer", "0"]) == 0
    assert "squared label head on block 0" in capsys.readouterr().out
    use = [*base, "--fast-weights", str(out), "--task", "parity"]
    preds = tmp_path / "pred.jsonl"
    assert main(["task", "classify", *use, "--inputs", str(test), "--out", str(preds)]) == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    task = TaskModel.load(
        *load_causal_lm(str(model_dir), dtype=torch.float32), out, "parity"
    )  # the saved head, read as the CLI reads it
    assert task.head.layer == 0
    expected = task.head_scores([r["input"] for r in rows])
    for r, want in zip(rows, expected.tolist(), strict=True):
        assert list(r["head_scores"].values()) == pytest.approx(want)
    assert main([*learn, "--task", "auto", "--folds", "2", "--head", "squared", "--head-layer", "auto"]) == 0
    assert re.search(r"squared label head on (block [01]|the head input)", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--head-layer", "0"], "--head-layer needs --head"),
        (["--head-center"], "--head-center needs --head"),
        (["--head", "squared", "--head-layer", "middle"], "--head-layer must be last, auto or a decoder"),
        (["--head", "squared", "--head-layer", "-1"], "--head-layer must be last, auto or a decoder"),
        (
            ["--head", "squared", "--head-layer", "7"],
            "--head-layer 7: the model has 2 decoder blocks \\(0 to 1\\)",
        ),
    ],
)
def test_cli_bad_head_layers_are_refused(model_dir, tmp_path, capsys, extra, message):  # noqa: F811
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--folds", "2", *extra]) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()  # refused before anything was learned or written


def test_cli_head_center_stores_a_centred_head(model_dir, tmp_path, capsys):  # noqa: F811
    """`--head --head-center` saves a head with a bias, which `classify` adds to its scores."""
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    argv = [*learn, "--task", "parity", "--folds", "2", "--head", "squared", "--head-layer", "last"]
    assert main([*argv, "--head-center"]) == 0
    assert "squared centred label head on the head input" in capsys.readouterr().out
    task = TaskModel.load(*load_causal_lm(str(model_dir), dtype=torch.float32), out, "parity")
    assert task.head.bias is not None and task.head.bias.shape == (len(task.head.labels),)
    preds = tmp_path / "pred.jsonl"
    use = [*base, "--fast-weights", str(out), "--task", "parity"]
    assert main(["task", "classify", *use, "--inputs", str(test), "--out", str(preds)]) == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    expected = task.head_scores([r["input"] for r in rows])
    for r, want in zip(rows, expected.tolist(), strict=True):
        assert list(r["head_scores"].values()) == pytest.approx(want)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_centred_head_is_the_centred_classifier_plus_its_intercept(loss):
    rng = np.random.default_rng(3)
    feats = torch.as_tensor(rng.normal(size=(30, 6)) + 5.0)
    outputs = ["b" if v > 5.0 else "a" for v in feats[:, 1].tolist()]
    head = LabelHead.fit(feats, outputs, ["b", "a"], loss, center=True)
    y = [["b", "a"].index(o) for o in outputs]
    ref = FaastClassifier(tau="auto", loss=loss, fit_intercept=True, center_features=True).fit(
        feats.numpy(), y
    )
    np.testing.assert_allclose(head.weight.numpy(), ref.coef_)
    np.testing.assert_allclose(head.bias.numpy(), ref.intercept_)
    np.testing.assert_allclose(head.scores(feats).numpy(), feats.numpy() @ ref.coef_.T + ref.intercept_)
    assert (head.scores(feats).argmax(1).numpy() == ref.predict(feats.numpy())).all()
    assert LabelHead.fit(feats, outputs, ["b", "a"], loss).bias is None  # through the origin by default


def _shared_direction(seed, n_major=12, n_minor=4, d=40):
    """(n, d) states that share one large component (the same for every seed), with a weak label
    signal, and more "a" examples than "b": the prompt-end states of a frozen LM look like this."""
    common = np.random.default_rng(12345).normal(size=d)
    rng = np.random.default_rng(seed)
    y = np.array([0] * n_major + [1] * n_minor)
    feats = 20.0 * common + rng.normal(size=(len(y), d)) + 1.5 * np.outer(2 * y - 1, np.eye(d)[0])
    return torch.as_tensor(feats), ["ab"[v] for v in y]


def test_a_centred_head_does_not_lean_to_the_majority_label():
    """A shrunk head through the origin scores every state by its likeness to each label's summed
    states, all alike along the shared component: it leans to the label with more examples. On
    balanced test states the centred head predicts the minority label about as often as it
    should, and more of them right."""
    share, accuracy = {False: [], True: []}, {False: [], True: []}
    for seed in range(10):
        feats, outputs = _shared_direction(seed)
        test, test_outputs = _shared_direction(seed + 100, n_major=20, n_minor=20)
        want = np.array([o == "b" for o in test_outputs])
        for center in (False, True):
            predicted_b = LabelHead.fit(feats, outputs, ["a", "b"], center=center).scores(test).argmax(1) == 1
            share[center].append(float(predicted_b.double().mean()))
            accuracy[center].append(float((predicted_b.numpy() == want).mean()))
    assert np.mean(share[False]) < 0.35 < np.mean(share[True]) < 0.65
    assert np.mean(accuracy[True]) > np.mean(accuracy[False]) + 0.05


def test_saved_centred_head_round_trips_and_a_bad_bias_is_refused():
    feats, outputs = _shared_direction(0)
    head = LabelHead.fit(feats, outputs, ["a", "b"], center=True)
    back = LabelHead.from_dict(json.loads(json.dumps(head.to_dict())), hidden_size=40)
    torch.testing.assert_close(back.bias, head.bias)
    torch.testing.assert_close(back.scores(feats), head.scores(feats))
    plain = LabelHead.fit(feats, outputs, ["a", "b"])
    assert "bias" not in plain.to_dict() and LabelHead.from_dict(plain.to_dict(), 40).bias is None
    with pytest.raises(ValueError, match=r"bias of shape \(3,\) does not fit 2 labels"):
        LabelHead.from_dict(head.to_dict() | {"bias": [0.0, 1.0, 2.0]}, 40)
    with pytest.raises(ValueError, match="label head bias"):
        LabelHead.from_dict(head.to_dict() | {"bias": [0.0, float("nan")]}, 40)
    with pytest.raises(ValueError, match="malformed label head"):
        LabelHead.from_dict(head.to_dict() | {"bias": "high"}, 40)


def test_fit_head_center_reaches_every_layer_choice():
    task = make_task()
    examples = rule_examples(40)
    task.fit(examples, progress=False)
    layers = candidate_layers(2)
    feats = task.prompt_layer_features(examples, layers)
    outputs = [e.output for e in examples]
    auto = task.fit_head(examples, center=True)
    groups = [e.input for e in examples]  # the inputs repeat: fit_head holds their copies out together
    ref = LabelHead.fit_layers(feats, layers, outputs, task.spec.labels, center=True, groups=groups)
    assert auto.layer == ref.layer and auto.held_out == ref.held_out
    torch.testing.assert_close(auto.bias, ref.bias)
    fixed = task.fit_head(examples, layer=0, center=True)
    torch.testing.assert_close(
        fixed.weight, LabelHead.fit(feats[:, 0], outputs, task.spec.labels, center=True).weight
    )
    assert fixed.bias is not None and task.fit_head(examples, layer=0).bias is None


def _weak_layers(seed, n=24):
    """(n, 3, 5) states where block 0 carries the labels a little more clearly than the head input
    (layer 2) and block 1 not at all, and the outputs."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 3, 5))
    y = rng.integers(0, 2, n)
    feats[:, 0, 0] += 0.6 * (2 * y - 1)
    feats[:, 2, 0] += 0.4 * (2 * y - 1)
    return torch.as_tensor(feats), ["ab"[v] for v in y]


@pytest.mark.parametrize("seed", range(8))
def test_fit_layers_guard_is_the_sign_flip_test_of_the_held_out_gains(seed):
    """The guarded choice is the unguarded one when max_gain_p_value of the held-out right/wrong
    gains over the head input is below SIGN_FLIP_LEVEL, else the head input."""
    feats, outputs = _weak_layers(seed)
    layers = [0, 1, None]
    free = LabelHead.fit_layers(feats, layers, outputs, ["a", "b"], guard=False)
    guarded = LabelHead.fit_layers(feats, layers, outputs, ["a", "b"])
    assert guarded.held_out == free.held_out and free.p_value is None
    if free.layer is None:
        assert guarded.layer is None and guarded.p_value is None
        return
    y = np.array([["a", "b"].index(o) for o in outputs])
    right = held_out_right(feats, y, "squared")
    p = max_gain_p_value(torch.as_tensor(right[:, :2] - right[:, 2:]))
    assert guarded.p_value == p
    assert guarded.layer == (free.layer if p < SIGN_FLIP_LEVEL else None)


def test_fit_layers_guard_keeps_the_head_input_on_a_small_gain():
    feats, outputs = _weak_layers(2)  # block 0 wins the held-out count, not significantly
    free = LabelHead.fit_layers(feats, [0, 1, None], outputs, ["a", "b"], guard=False)
    guarded = LabelHead.fit_layers(feats, [0, 1, None], outputs, ["a", "b"])
    assert free.layer == 0 and guarded.layer is None and guarded.p_value >= SIGN_FLIP_LEVEL
    torch.testing.assert_close(guarded.weight, LabelHead.fit(feats[:, 2], outputs, ["a", "b"]).weight)
    feats, outputs = _weak_layers(14)  # here its gain is significant
    strong = LabelHead.fit_layers(feats, [0, 1, None], outputs, ["a", "b"])
    assert strong.layer == 0 and strong.p_value < SIGN_FLIP_LEVEL


def test_grouped_folds_hold_out_whole_groups():
    """With groups the held-out right/wrong are those of StratifiedGroupKFold refits done by hand,
    no group is ever both fitted and held out, and a wrong number of groups is refused."""
    from sklearn.model_selection import StratifiedGroupKFold

    feats, outputs = _layered(36, 1, seed=5)
    y = np.array([["a", "b"].index(o) for o in outputs])
    groups = [f"doc{i % 6}" for i in range(36)]
    right = held_out_right(feats, y, "squared", groups=groups)
    codes = np.array([i % 6 for i in range(36)])
    want = np.zeros_like(right)
    for train, held in StratifiedGroupKFold(5, shuffle=True, random_state=0).split(feats[:, 0], y, codes):
        assert not set(codes[train]) & set(codes[held])
        for c in range(3):
            clf = FaastClassifier(tau="auto", fit_intercept=False).fit(feats[train, c].numpy(), y[train])
            want[held, c] = clf.predict(feats[held, c].numpy()) == y[held]
    np.testing.assert_array_equal(right, want)
    assert not np.array_equal(right, held_out_right(feats, y, "squared"))  # other folds without groups
    head = LabelHead.fit_layers(feats, [0, 1, None], outputs, ["a", "b"], groups=groups)
    assert [a for _, a in head.held_out] == pytest.approx(list(right.mean(axis=0)))
    assert held_out_right(feats, y, "squared", groups=["one"] * 36) is None  # one group: no folds
    few = held_out_right(feats[:8], y[:8], "squared", groups=[f"doc{i}" for i in range(8)])
    assert few.shape == (8, 3)  # 8 groups, but a label with 3 or 4 examples: that many folds
    with pytest.raises(ValueError, match="35 groups for 36 examples"):
        held_out_right(feats, y, "squared", groups=groups[:35])


def test_a_fold_without_two_labels_to_fit_counts_as_wrong():
    """Every "a" example is in group g0: the fold holding g0 out has only "b" left to fit, so its
    examples count as wrong for every layer; the other folds are scored."""
    feats, _ = _layered(16, 0)
    y = np.array([0] * 4 + [1] * 12)
    groups = ["g0"] * 4 + [f"g{1 + i % 3}" for i in range(12)]
    right = held_out_right(feats, y, "squared", groups=groups)
    assert (right[:4] == 0).all()
    assert right[4:].any()  # held-out "b" examples fitted with both labels: some predicted right


@given(
    n_per_label=st.integers(2, 9),
    labels=st.integers(2, 4),
    d=st.integers(1, 12),
    loss=st.sampled_from(["squared", "logistic"]),
    seed=st.integers(0, 3),
)
def test_held_out_log_likelihood_is_that_of_refits_by_hand(n_per_label, labels, d, loss, seed):
    """Against a plain loop: StratifiedKFold(min(5, smallest count)) seeded by ``seed``, a
    FaastClassifier per fold and the log-probability of each held-out label; an example whose head
    predicts it right has at least 1/L of the probability."""
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(labels), n_per_label)
    feats = torch.as_tensor(rng.normal(size=(len(y), d)) + 0.8 * np.eye(labels, d)[y] * (d >= labels))
    got = held_out_log_likelihood(feats, y, loss, seed)
    want = np.zeros(len(y))
    folds = StratifiedKFold(min(5, n_per_label), shuffle=True, random_state=seed)
    for train, held in folds.split(feats.numpy(), y):
        clf = FaastClassifier(tau="auto", loss=loss, fit_intercept=False, random_state=seed)
        clf.fit(feats[train].numpy(), y[train])
        want[held] = clf.predict_log_proba(feats[held].numpy())[np.arange(len(held)), y[held]]
    np.testing.assert_allclose(got, np.maximum(want, -1e4), rtol=1e-10, atol=1e-12)
    assert (got <= 0).all()
    right = held_out_right(feats[:, None], y, loss, seed)[:, 0] > 0.5
    assert (got[right] >= -np.log(labels) - 1e-9).all()


def test_held_out_log_likelihood_floors_what_cannot_be_scored():
    """None with a label of one example; an example whose label no other fold holds (here all the
    "a" examples in one group) gets the floor; states that are not (n, d) are refused."""
    feats, _ = _layered(16, 0)
    y = np.array([0] * 4 + [1] * 12)
    groups = ["g0"] * 4 + [f"g{1 + i % 3}" for i in range(12)]
    loglik = held_out_log_likelihood(feats[:, 0], y, "squared", groups=groups, floor=-50.0)
    assert (loglik[:4] == -50.0).all() and (loglik[4:] > -50.0).all()
    assert held_out_log_likelihood(feats[:, 0], np.array([0] + [1] * 15), "squared") is None
    with pytest.raises(ValueError, match=r"are not \(n=16, d\)"):
        held_out_log_likelihood(feats, y, "squared")


def test_held_out_log_likelihood_is_high_where_the_labels_separate():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 20)
    clear = torch.as_tensor(rng.normal(size=(40, 4)) + 6.0 * np.eye(2, 4)[y])
    noise = torch.as_tensor(rng.normal(size=(40, 4)))
    clear_ll = held_out_log_likelihood(clear, y, "squared")
    noise_ll = held_out_log_likelihood(noise, y, "squared")
    assert clear_ll.mean() > -0.2  # near certainty on the held-out examples
    assert noise_ll.mean() < np.log(0.5) + 0.05  # no better than a coin on noise


def test_fit_head_and_the_cli_pass_groups_to_the_layer_choice(model_dir, tmp_path, monkeypatch):  # noqa: F811
    task = make_task()
    examples = rule_examples(40)
    task.fit(examples, progress=False)
    groups = [f"g{i % 5}" for i in range(40)]
    with pytest.warns(UserWarning, match="copies in more than one group"):  # rule_examples repeat inputs
        head = task.fit_head(examples, groups=groups)
    layers = candidate_layers(2)
    feats = task.prompt_layer_features(examples, layers)
    ref = LabelHead.fit_layers(feats, layers, [e.output for e in examples], task.spec.labels, groups=groups)
    assert head.held_out == ref.held_out and head.layer == ref.layer
    seen = {}
    real = TaskModel.fit_head

    def spy(self, examples, **kwargs):
        seen.update(kwargs)
        return real(self, examples, **kwargs)

    monkeypatch.setattr(TaskModel, "fit_head", spy)
    words = [" ".join(WORDS[10 + (i * 7 + j) % 60] for j in range(3)) for i in range(24)]
    rows = [{"input": w, "output": "w5" if i % 2 else "w6", "doc": f"d{i % 4}"} for i, w in enumerate(words)]
    path = tmp_path / "grouped.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "g.safetensors"
    args = ["task", "learn", "--model", str(model_dir), "--threads", "1", "--out", str(out), "--folds", "2"]
    args += ["--template", TEMPLATE, "--examples", str(path), "--group-field", "doc", "--head", "squared"]
    assert main(args) == 0
    assert seen["groups"] == [f"d{i % 4}" for i in range(24)]
    assert seen["layer"] == "auto" and seen["progress"] is True  # rank 0 of one process


def test_layer_states_show_progress_when_asked(capsys):
    task = make_task()
    task.prompt_layer_features(["w3", "w4", "w5"], [0, None], batch_size=1)
    assert "layer states" not in capsys.readouterr().err
    task.prompt_layer_features(["w3", "w4", "w5"], [0, None], batch_size=1, progress=True)
    assert "layer states" in capsys.readouterr().err


@pytest.mark.parametrize(("layer", "bar"), [(None, "prompt states"), (0, "layer states")])
def test_prompt_states_and_head_scores_show_progress_when_asked(capsys, layer, bar):
    task = make_task()
    examples = rule_examples(20)
    inputs = [e.input for e in examples[:3]]
    task.prompt_features(inputs, batch_size=1, layer=layer)
    assert bar not in capsys.readouterr().err
    task.prompt_features(inputs, batch_size=1, layer=layer, progress=True)
    assert bar in capsys.readouterr().err
    task.fit(examples, progress=False)  # the labels come from the examples
    task.fit_head(examples, layer=layer, progress=False)
    assert bar not in capsys.readouterr().err
    task.fit_head(examples, layer=layer, progress=True)
    assert bar in capsys.readouterr().err
    task.head_scores(inputs, batch_size=1)
    task.classify(inputs, batch_size=1)
    assert bar not in capsys.readouterr().err
    task.head_scores(inputs, batch_size=1, progress=True)
    assert bar in capsys.readouterr().err
    task.classify(inputs, batch_size=1, progress=True)
    assert bar in capsys.readouterr().err
