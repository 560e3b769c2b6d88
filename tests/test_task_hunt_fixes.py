"""Fixes from a bug hunt of ``faast task`` / :class:`faast.lm.task.TaskModel`: copies of an input
held out together in the cross-validation, one file for two results refused, ``faast lm learn
--append`` into a task learned from examples refused, the stratified hold-out's cap taking labels
in turn, and ``faast task learn`` settings refused before the model loads."""

from __future__ import annotations

import random
import warnings

import pytest

import faast.cli.lm_cmd
import faast.cli.task_cmd
from faast.cli import main
from faast.lm import ReadConfig
from faast.lm.examples import Example
from faast.lm.fastweights import read_file, read_task
from faast.lm.task import TaskModel
from faast.lm.task_choice import MEMORY_OFF, ReadCandidate, split_examples
from tests.test_lm_cli import WORDS, model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_lm_task import make_task
from tests.test_task_cli import parity_setup

ONE_CANDIDATE = [MEMORY_OFF, ReadCandidate("logit", ReadConfig(weight=1.0))]


def _distinct_examples(n: int) -> list[Example]:
    """``n`` examples with distinct inputs (wA, A from 3 on), label w40 for even A, else w41."""
    return [Example(f"w{a}", "w40" if a % 2 == 0 else "w41") for a in range(3, 3 + n)]


def _scored_folds(monkeypatch) -> list[tuple[list[Example], int]]:
    """Record, for every fold scored, its examples and the pairs the memory holds meanwhile."""
    seen: list[tuple[list[Example], int]] = []
    real = TaskModel._label_fold_scores

    def spy(self, part, target, lp, calibrate):
        seen.append((list(part), self.model.output_memory.memory.num_pairs))
        return real(self, part, target, lp, calibrate)

    monkeypatch.setattr(TaskModel, "_label_fold_scores", spy)
    return seen


def _no_model(monkeypatch) -> None:
    """Make loading a model fail loudly: a refusal must come before it."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(faast.cli.task_cmd, "_load", refuse)
    monkeypatch.setattr(faast.cli.lm_cmd, "_load", refuse)


# ----------------------------------------------------------------- 1. copies held out together
def test_copies_of_an_input_are_held_out_together(monkeypatch):
    """A file holding each example twice: while a fold is scored, no copy of its inputs is learned
    (the copy left in the memory was scored as memorised: random labels reached CV accuracy 1.0)."""
    seen = _scored_folds(monkeypatch)
    examples = _distinct_examples(10)
    twice = examples + [Example(e.input, e.output) for e in examples]
    report = make_task().fit(twice, candidates=ONE_CANDIDATE, progress=False)
    assert report.n_validation == 20
    assert "copies of an input held out together: 10 examples repeat one" in report.metric
    for part, learned in seen:
        inputs = {e.input for e in part}
        assert learned == 2 * sum(e.input not in inputs for e in twice)  # label + end marker each
        # both copies of a held-out input are scored in the same fold
        assert sorted(e.input for e in part) == sorted(e.input for e in twice if e.input in inputs)


def test_copies_with_other_outputs_are_one_group_too(monkeypatch):
    seen = _scored_folds(monkeypatch)
    examples = _distinct_examples(11)  # 11: a copy lands in another fold of single examples
    flipped = [Example(e.input, "w41" if e.output == "w40" else "w40") for e in examples[:4]]
    make_task().fit(examples + flipped, candidates=ONE_CANDIDATE, progress=False)
    for part, learned in seen:
        inputs = {e.input for e in part}
        assert learned == 2 * sum(e.input not in inputs for e in examples + flipped)


def test_without_copies_the_folds_are_those_of_single_examples(monkeypatch):
    """No input repeated: the folds, what they learn and the metric are as before the fix."""
    from faast.lm.task_folds import copies_as_groups

    seen = _scored_folds(monkeypatch)
    examples = _distinct_examples(12)
    report = make_task().fit(examples, candidates=ONE_CANDIDATE, folds=5, progress=False)
    assert copies_as_groups(examples) == (None, 0)
    assert "copies" not in report.metric and "groups" not in report.metric
    _, held = split_examples(examples, 12, ["w40", "w41"], 0)
    expected = [held[f::5] for f in range(5)]
    folds = [part for part, _ in seen[:: len(ONE_CANDIDATE)]]
    assert [[id(e) for e in p] for p in folds] == [[id(e) for e in p] for p in expected]
    assert all(learned == 2 * (12 - len(part)) for part, learned in seen)


def test_explicit_groups_keep_precedence_over_copies(monkeypatch):
    examples = _distinct_examples(10)
    twice = examples + [Example(e.input, e.output) for e in examples]
    groups = [i % 4 for i in range(20)]  # copies fall in other groups: the groups given decide
    with pytest.warns(UserWarning, match="groups: 10 input text"):  # ... with a warning
        report = make_task().fit(twice, candidates=ONE_CANDIDATE, groups=groups, progress=False)
    assert "folds of whole groups, 4 groups" in report.metric and "copies" not in report.metric
    with warnings.catch_warnings():  # copies kept in their group: no warning
        warnings.simplefilter("error")
        make_task().fit(
            twice, candidates=ONE_CANDIDATE, groups=[i % 5 for i in range(10)] * 2, progress=False
        )


def test_the_head_layer_choice_holds_copies_out_together_too(monkeypatch):
    """fit_head(layer="auto") chooses its layer by cross-validation on the examples: copies of an
    input go to one fold there too (groups given still decide; without copies, no groups)."""
    from faast.lm.label_head import LabelHead

    seen = []
    real = LabelHead.fit_layers

    def spy(*args, **kwargs):
        seen.append(kwargs.get("groups"))
        return real(*args, **kwargs)

    monkeypatch.setattr(LabelHead, "fit_layers", spy)
    examples = _distinct_examples(10)
    twice = examples + [Example(e.input, e.output) for e in examples]
    task = make_task(labels=["w40", "w41"])
    task.fit_head(twice, layer="auto", progress=False)
    task.fit_head(examples, layer="auto", progress=False)
    with pytest.warns(UserWarning, match="copies in more than one group"):
        task.fit_head(twice, layer="auto", groups=[i % 3 for i in range(20)], progress=False)
    assert seen == [[e.input for e in twice], None, [i % 3 for i in range(20)]]


# ----------------------------------------------------------------- 2. one file for two results
@pytest.mark.parametrize("spelled", ["same", "dotted"])
def test_evaluate_refuses_one_file_for_predictions_and_json(
    model_dir,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
    spelled,
):
    _, _, test, _ = parity_setup(model_dir, tmp_path)
    _no_model(monkeypatch)
    target = tmp_path / "same.json"
    other = target if spelled == "same" else tmp_path / "sub" / ".." / "same.json"
    (tmp_path / "sub").mkdir()
    argv = ["task", "evaluate", "--model", str(model_dir), "--labels", "w5,w6", "--examples", str(test)]
    assert main([*argv, "--predictions", str(target), "--json", str(other)]) == 1
    err = capsys.readouterr().err
    assert "--predictions and --json both name" in err and "give each its own file" in err
    assert not target.exists()


# ----------------------------------------------------------------- 3. lm learn --append into a task
def test_lm_learn_append_refuses_a_task_learned_from_examples(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2"]) == 0
    before = out.read_bytes()
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[i % 40] for i in range(60)))
    capsys.readouterr()
    _no_model(monkeypatch)
    lm = ["lm", "learn", "--model", str(model_dir), "--threads", "1", "--text", str(text), "--out", str(out)]
    assert main([*lm, "--task", "parity", "--append"]) == 1
    err = capsys.readouterr().err
    assert "learned from examples by `faast task learn`" in err and "faast task learn` on all its" in err
    assert out.read_bytes() == before


def test_task_learn_over_a_text_task_replaces_it_with_a_warning(model_dir, tmp_path, capsys):  # noqa: F811
    """The reverse: `faast task learn` has no --append; over a text learned by `faast lm learn` it
    replaces the task, saying so before the work, and the result is a task of examples."""
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[i % 40] for i in range(60)))
    lm = ["lm", "learn", "--model", str(model_dir), "--threads", "1", "--text", str(text), "--out", str(out)]
    assert main([*lm, "--task", "parity"]) == 0
    capsys.readouterr()
    assert main([*learn, "--task", "parity", "--folds", "2"]) == 0
    assert "already holds task 'parity': it will be replaced" in capsys.readouterr().err
    info = read_task(out, "parity")[2]["info"]
    assert "task" in info and "learned" not in info


# ----------------------------------------------------------------- 4. the stratified hold-out
def _old_split_members(examples, n_val, labels, seed):
    """The validation indices of split_examples before the fix (labels concatenated, then cut)."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    by_label: dict[str, list[int]] = {}
    for i in order:
        by_label.setdefault(examples[i].output, []).append(i)
    share = n_val / len(examples)
    val_idx = []
    for idx in by_label.values():
        val_idx += idx[: max(1, round(share * len(idx)))] if len(idx) > 1 else []
    return set(val_idx[:n_val])


def _labelled(counts: dict[str, int]) -> list[Example]:
    return [Example(f"x{label}{i}", label) for label, n in counts.items() for i in range(n)]


def test_the_cap_takes_labels_in_turn_so_none_is_dropped_by_position():
    """Shares that round up past the cap: every label with two examples or more keeps one held out
    (the cut at the end of the concatenated labels dropped the last label's whole share)."""
    examples = _labelled({"a": 10, "b": 10, "c": 2})
    for seed in range(20):
        _, held = split_examples(examples, 6, ["a", "b", "c"], seed)
        assert len(held) == 6
        assert {e.output for e in held} == {"a", "b", "c"}, seed


def test_the_split_is_unchanged_where_the_cap_does_not_bind():
    """Where the labels' shares fit under n_val (every published configuration but where the
    rounding overshoots), the examples held out are those held out before the fix."""
    for counts, n_val in [({"a": 7, "b": 5}, 12), ({"a": 30, "b": 20, "c": 1}, 25), ({"a": 9, "b": 9}, 6)]:
        examples = _labelled(counts)
        for seed in range(10):
            _, held = split_examples(examples, n_val, sorted(counts), seed)
            index = {id(e): i for i, e in enumerate(examples)}
            assert {index[id(e)] for e in held} == _old_split_members(examples, n_val, sorted(counts), seed)


def test_a_label_with_one_example_is_never_held_out():
    examples = _labelled({"a": 6, "b": 5, "c": 1})
    for seed in range(10):
        _, held = split_examples(examples, 12, ["a", "b", "c"], seed)
        assert len(held) == 11 and "c" not in {e.output for e in held}


def test_none_held_out_as_every_label_has_one_example_says_so():
    examples = [Example(f"w{3 + i}", f"w{40 + i}") for i in range(8)]
    report = make_task().fit(examples, candidates=ONE_CANDIDATE, progress=False)
    assert report.chosen == MEMORY_OFF and report.n_validation == 0
    assert "none held out, as every label has a single example" in report.metric


def test_fit_labels_resolves_without_a_model_as_fit_does():
    from faast.lm.task import fit_labels

    examples = _distinct_examples(4)
    assert fit_labels(examples, "auto", [("w9", "w42")]) == ["w41", "w40", "w42"]
    assert fit_labels(examples, None) is None
    with pytest.raises(ValueError, match=r"outputs that are not labels: \['w41'\]"):
        fit_labels(examples, ["w40", "w42"])


# ----------------------------------------------------------------- 5. refused before the model loads
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--folds", "0"], "--folds must be an integer >= 1, got 0"),
        (["--folds", "1"], "folds=1 with hold_out=1 holds out every example at once"),
        (["--max-validation", "-1"], "--max-validation must be an integer >= 0, got -1"),
        (["--guard", "bogus"], "unknown guard 'bogus'"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
        (["--labels", "w5,w7"], "examples have outputs that are not labels: ['w6']"),
        (["--key-features", "-1"], "--key-features must be an integer >= 0, got -1"),
        (["--head", "squared", "--head-layer", "99"], "--head-layer 99: the model has 2 decoder blocks"),
        (["--head", "squared", "--labels", "none"], "--head needs labels"),
        (
            ["--calibrated", "all", "--labels", "none"],
            "--calibrated all: calibrated read-outs (prob(λ=0,T=1;default)+calibrated, ...) need labels",
        ),
        (["--head", "squared", "--labels", "w5,w6,w7"], "--head: the labels ['w7'] have no example"),
    ],
)
def test_learn_settings_are_refused_before_the_model_loads(
    model_dir,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
    options,
    message,
):
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2"]) == 0  # the file already holds the task
    before = out.read_bytes()
    capsys.readouterr()
    _no_model(monkeypatch)
    assert main([*learn, "--task", "parity", *options]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "already holds" not in err  # nothing is replaced: no warning that it will be
    assert out.read_bytes() == before


def test_a_head_label_only_the_lead_demonstrations_show_is_refused_before_the_model_loads(
    model_dir,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    train = tmp_path / "lead.tsv"
    rows = ["w11 w12 w13\tw7", "w14 w15 w16\tw7", *(tmp_path / "train.tsv").read_text().splitlines()]
    train.write_text("\n".join(rows) + "\n")
    _no_model(monkeypatch)
    argv = [*learn, "--examples", str(train), "--in-context", "2", "--head", "squared"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--head: the labels ['w7'] have no example" in err
    assert "only the --in-context demonstrations show them" in err
    assert not out.exists()


def test_learn_still_runs_with_good_settings_and_a_head(model_dir, tmp_path, capsys):  # noqa: F811
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2", "--head", "squared", "--head-layer", "1"]) == 0
    assert "label head on block 1" in capsys.readouterr().out
    assert read_file(out)[1]["parity"]["info"]["head"]


def test_zero_shot_labels_auto_says_they_come_from_the_examples_scored(model_dir, tmp_path, capsys):  # noqa: F811
    """Zero-shot `task evaluate --labels auto` takes its label set from the references of the
    examples it scores, where a learned task takes the training labels: said, so that a comparison
    lists the training labels (in a review's scratch run the zero-shot accuracy differed by many
    points between the references' labels and the training labels)."""
    base, _, test, _ = parity_setup(model_dir, tmp_path)
    argv = ["task", "evaluate", *base, "--examples", str(test), "--template", "{input} ->"]
    assert main([*argv, "--labels", "auto"]) == 0
    assert "zero-shot --labels auto takes its 2 labels from the outputs of the examples scored" in (
        capsys.readouterr().err
    )
    assert main([*argv, "--labels", "w5,w6"]) == 0
    assert "takes its" not in capsys.readouterr().err
