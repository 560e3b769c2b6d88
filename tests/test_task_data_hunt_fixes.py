"""Fixes from a bug hunt of ``faast task`` on users' data files: labels that differ only in case
warned about, labels and references compared without the whitespace around them, a single
distinct output refused by ``task learn --labels auto``, JSON outputs without Infinity, a tab
inside a headerless inputs file refused, empty outputs / separator-only CSVs / JSON arrays read
with clear errors, ``classify`` on a free-text task explained, and the other columns of the
inputs carried into the predictions."""

from __future__ import annotations

import csv
import json
import math
import warnings

import pytest

import faast.cli.task_cmd
from faast.cli import main
from faast.cli.task_cmd import _label_scores
from faast.lm.examples import Example, read_examples, write_rows
from faast.lm.task import fit_labels
from faast.lm.task_spec import labels_of_outputs
from tests.test_lm_cli import model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_task_cli import TEMPLATE, parity_setup


def _strict_json(text: str) -> object:
    """``text`` parsed as standard JSON: NaN and Infinity, which Python's parser accepts, refused."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not standard JSON")

    return json.loads(text, parse_constant=refuse)


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make loading a model fail loudly: a refusal must come before it."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(faast.cli.task_cmd, "_load", refuse)


def _respaced(src, dst, suffix: str) -> None:
    """Copy the TSV ``src`` to ``dst`` with ``suffix`` after every output."""
    dst.write_text("".join(f"{line}{suffix}\n" for line in src.read_text().splitlines()))


# ----------------------------------------------------------------- 2. labels differing only in case
def test_labels_that_differ_only_in_case_are_warned_about_not_merged():
    """'Positive' and 'positive' in the outputs made two classes silently (25 % accuracy where the
    clean file scored 83 %): the labels taken from the outputs are warned about, naming both."""
    examples = [Example("a", "Positive"), Example("b", "negative"), Example("c", "positive")]
    with pytest.warns(UserWarning, match=r"labels 'Positive' and 'positive' differ only in case"):
        labels = fit_labels(examples, "auto")
    assert labels == ["Positive", "negative", "positive"]  # not merged: the case may be meant
    with pytest.warns(UserWarning, match="differ only in case"):  # zero-shot --labels auto too
        labels_of_outputs(["yes", "no", "Yes "], "all")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_labels([Example("a", "pos"), Example("b", "neg")], "auto") == ["pos", "neg"]


# ----------------------------------------------------------------- 3. whitespace around labels
@pytest.mark.parametrize(("train_end", "test_end"), [(" ", ""), ("", " ")])
def test_label_accuracy_ignores_whitespace_around_labels_and_references(
    model_dir,  # noqa: F811
    tmp_path,
    capsys,
    train_end,
    test_end,
):
    """Learned on 'w5 ' and evaluated on 'w5' (or the reverse), evaluate reported 0 % with a warning
    that every reference is outside the labels: labels are read without the spaces around them,
    as exact match compares free text."""
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    train = tmp_path / "train.tsv"
    _respaced(train, train, train_end)
    _respaced(test, test, test_end)
    assert main([*learn, "--folds", "2"]) == 0
    scores, preds = tmp_path / "scores.json", tmp_path / "preds.tsv"
    ev = ["task", "evaluate", *base, "--fast-weights", str(out), "--examples", str(test)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*ev, "--json", str(scores), "--predictions", str(preds)]) == 0
    assert not [w for w in caught if "not among the task's" in str(w.message)]
    assert "not among the task's" not in capsys.readouterr().err
    result = json.loads(scores.read_text())
    header, *lines = preds.read_text().splitlines()
    assert header.split("\t") == ["input", "prediction", "reference", "reference_label"]
    rows = [line.split("\t") for line in lines]
    right = sum(p.strip() == r.strip() for _, p, r, _ in rows)
    assert right > 0 and result["accuracy"] == pytest.approx(right / len(rows))
    assert result["references_outside_labels"] == 0
    assert rows[0][2] == rows[0][2].strip() + test_end  # the predictions file keeps the reference as written
    # and the label it was scored as (as the task holds it), from which evaluate's accuracy follows
    assert [r[3].strip() for r in rows] == [r[2].strip() for r in rows]
    assert result["accuracy"] == pytest.approx(sum(p == label for _, p, _, label in rows) / len(rows))


# ----------------------------------------------------------------- 4. one distinct output; JSON
def test_learn_labels_auto_refuses_a_single_distinct_output(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    """Every output 'w5': `task learn` made a free-text task silently (classify then failed); zero-shot
    evaluate already refused such data. Now learn refuses too, before the model loads."""
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{e.input}\tw5\n" for e in read_examples(train)))
    _no_model(monkeypatch)
    assert main(learn) == 1
    err = capsys.readouterr().err
    assert "--labels auto: every output of" in err and "is 'w5', one label" in err
    assert "--labels none" in err and not out.exists()
    monkeypatch.undo()  # with --in-context: refused once the model has checked the demonstrations fit
    assert main([*learn, "--in-context", "2"]) == 1
    assert "is 'w5', one label" in capsys.readouterr().err and not out.exists()


def test_fit_labels_auto_warns_of_a_single_distinct_output():
    """The library's TaskModel.fit(labels="auto") learns such examples as free text: said."""
    with pytest.warns(UserWarning, match=r"every output is 'w5', one label"):
        assert fit_labels([Example("a", "w5"), Example("b", "w5")], "auto") is None


def test_evaluate_writes_null_for_an_infinite_nll(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    """An answer of probability 0 gave "answer_nll_per_token": Infinity, which is not JSON."""
    base, _, test, _ = parity_setup(model_dir, tmp_path)
    monkeypatch.setattr(faast.cli.task_cmd, "_answer_nll", lambda *_args: (math.inf, 12))
    scores = tmp_path / "scores.json"
    argv = ["task", "evaluate", *base, "--examples", str(test), "--template", TEMPLATE, "--labels", "none"]
    assert main([*argv, "--max-new-tokens", "1", "--json", str(scores)]) == 0
    assert _strict_json(scores.read_text())["answer_nll_per_token"] is None
    assert _strict_json(capsys.readouterr().out.strip().splitlines()[-1])["answer_nll_per_token"] is None


def test_label_scores_of_probability_zero_are_written_null(tmp_path):
    """A label the model gives probability 0 (-inf) made the predictions invalid JSON."""
    assert _strict_json(_label_scores(["a", "b"], [-0.5, -math.inf], "p.tsv")) == {"a": -0.5, "b": None}
    assert _label_scores(["a", "b"], [-0.5, -math.inf], "p.jsonl") == {"a": -0.5, "b": None}
    path = write_rows(tmp_path / "p.jsonl", [{"input": "x", "score": math.nan}], ["input", "score"])
    assert _strict_json(path.read_text()) == {"input": "x", "score": None}


# ----------------------------------------------------------------- 5. a tab inside an input
def test_a_tab_inside_a_headerless_inputs_file_is_refused(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    """'a truly great film<TAB>I loved every minute' among tab-free lines was classified as 'a truly
    great film' silently: `task classify`/`generate`, which ignore outputs, refuse such a file; a file
    whose every line is input<TAB>output still reads, and `faast classify` keeps reading partly
    labelled lines."""
    mixed = tmp_path / "inputs.tsv"
    mixed.write_text("a truly great film\tI loved every minute\nboring\ndull\tawful\n")
    with pytest.raises(ValueError, match=r"inputs.tsv:1: the line holds a tab, line 2 does not") as info:
        read_examples(mixed, outputs=False, partial_outputs=False)
    assert "\\t" in str(info.value) and "input<TAB>output" in str(info.value)
    assert [e.output for e in read_examples(mixed, outputs=False)] == ["I loved every minute", None, "awful"]
    labelled = tmp_path / "labelled.tsv"
    labelled.write_text("good film\tpos\nbad film\tneg\n")
    assert [e.input for e in read_examples(labelled, outputs=False, partial_outputs=False)] == [
        "good film",
        "bad film",
    ]
    headed = tmp_path / "headed.tsv"  # a header: unlabelled lines among labelled ones
    headed.write_text("input\toutput\ngood film\tpos\nbad film\n")
    assert [e.output for e in read_examples(headed, outputs=False, partial_outputs=False)] == ["pos", None]
    base = ["--model", str(model_dir), "--threads", "1", "--template", TEMPLATE, "--inputs", str(mixed)]
    _no_model(monkeypatch)
    for action in ("classify", "generate"):
        assert main(["task", action, *base, "--labels", "w5,w6", "--out", str(tmp_path / "p.tsv")]) == 1
        assert "inputs.tsv:1: the line holds a tab" in capsys.readouterr().err


# ----------------------------------------------------------------- 7. reader errors
@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("e.tsv", "good film\tpos\nsome film\t\n", r"e.tsv:2: empty output"),
        (
            "e.jsonl",
            '{"input": "a", "output": ""}\n{"input": "b", "output": "neg"}\n',
            r"e.jsonl:1: empty output",
        ),
        ("e.csv", ",\n,\n", r"e.csv holds no header and no examples: every line is empty cells"),
        ("e.csv", ",,,\n", r"e.csv holds no header and no examples"),
        (
            "e.json",
            '[{"input": "a", "output": "pos"}, {"input": "b", "output": "neg"}]\n',
            r"e.json:1: expected a JSON object, got a JSON array; the file must hold one JSON object",
        ),
        (
            "e.json",
            '[\n  {"input": "a", "output": "pos"},\n  {"input": "b", "output": "neg"}\n]\n',
            r"e.json:1: a JSON array; the file must hold one JSON object per line \(JSON Lines",
        ),
        ("e.jsonl", '{\n"input": "a", "output": "pos"\n}\n', r"e.jsonl:1: a JSON object over several lines"),
    ],
)
def test_bad_example_files_get_clear_errors(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        read_examples(tmp_path / name)


def test_an_empty_output_in_a_file_of_inputs_is_an_unlabelled_line(tmp_path):
    tsv, jsonl = tmp_path / "i.tsv", tmp_path / "i.jsonl"
    tsv.write_text("good film\tpos\nsome film\t\n")
    jsonl.write_text('{"input": "a", "output": ""}\n')
    assert [e.output for e in read_examples(tsv, outputs=False)] == ["pos", None]
    assert [e.output for e in read_examples(jsonl, outputs=False)] == [None]


# ----------------------------------------------------------------- 9. classify on a free-text task
def test_classify_on_a_free_text_task_says_so(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--labels", "none", "--folds", "2"]) == 0
    capsys.readouterr()
    argv = ["task", "classify", *base, "--fast-weights", str(out), "--inputs", str(test)]
    assert main([*argv, "--out", str(tmp_path / "p.tsv")]) == 1
    err = capsys.readouterr().err
    assert "was learned as free text" in err and "faast task generate" in err
    assert "--labels all" in err


# ----------------------------------------------------------------- 8. other columns carried
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_predictions_carry_the_other_columns_of_the_inputs(model_dir, tmp_path, suffix):  # noqa: F811
    """An ``id`` column of the inputs was dropped: inputs that repeat could not be joined back."""
    base, _, test, _ = parity_setup(model_dir, tmp_path)
    inputs = tmp_path / "ids.csv"
    texts = [e.input for e in read_examples(test)][:3]
    inputs.write_text(
        "id,input,output\n" + "".join(f"r{i},{x},w5\n" for i, x in enumerate([*texts, texts[0]]))
    )
    out = tmp_path / f"pred{suffix}"
    argv = ["task", "classify", *base, "--inputs", str(inputs), "--out", str(out), "--template", TEMPLATE]
    assert main([*argv, "--labels", "w5,w6"]) == 0
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        rows = list(csv.DictReader(out.open(), delimiter="\t" if suffix == ".tsv" else ","))
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    assert [r["input"] for r in rows] == [*texts, texts[0]]


def test_learn_one_output_remedy_is_quoted_for_the_shell(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    """The remedy of a single distinct output that holds a space ('New York') names a --labels
    argument a shell reads as one word (it printed `--labels New York,...`, two words)."""
    _, learn, _, out = parity_setup(model_dir, tmp_path)
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{e.input}\tNew York\n" for e in read_examples(train)))
    _no_model(monkeypatch)
    assert main(learn) == 1
    err = capsys.readouterr().err
    assert "(--labels 'New York,...')" in err and not out.exists()
