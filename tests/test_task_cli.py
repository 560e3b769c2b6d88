"""`faast task` end to end on a tiny local model folder (random weights, word-level tokenizer)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.cli import main
from faast.cli.task_cmd import _label_scores
from faast.eval.stats import wilson_ci95
from faast.eval.text_metrics import label_accuracy, translation_scores
from faast.lm.examples import read_examples
from faast.lm.fastweights import read_file, read_task
from tests.test_lm_cli import WORDS, model_dir  # noqa: F401 - the tiny model folder fixture

TEMPLATE = "{input} w90"


def _write_examples(path, n: int, *, labelled: bool = True) -> None:
    """input = three words; label = w5 when the first word's index is even, else w6 (learnable)."""
    lines = []
    for i in range(n):
        words = [WORDS[10 + (i * 7 + j) % 60] for j in range(3)]
        label = "w5" if (10 + i * 7) % 2 == 0 else "w6"
        lines.append(" ".join(words) + (f"\t{label}" if labelled else ""))
    path.write_text("\n".join(lines) + "\n")


def parity_setup(folder, tmp_path) -> tuple[list[str], list[str], object, object]:
    """(model arguments, the `faast task learn` command line, test file, fast-weight file) for
    40 training and 12 test examples of the parity rule."""
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    _write_examples(train, 40)
    _write_examples(test, 12)
    out = tmp_path / "tasks.safetensors"
    base = ["--model", str(folder), "--threads", "1"]
    learn = ["task", "learn", *base, "--examples", str(train), "--out", str(out), "--template", TEMPLATE]
    return base, learn, test, out


def test_label_scores_keep_labels_as_written():
    """TSV cells hold JSON text with the labels themselves, not \\u escapes; JSONL an object."""
    labels, scores = ["café", "😀 good"], [-0.5, -1.25]
    cell = _label_scores(labels, scores, "pred.tsv")
    assert "café" in cell and "😀 good" in cell and json.loads(cell) == dict(zip(labels, scores, strict=True))
    assert _label_scores(labels, scores, "pred.jsonl") == {"café": -0.5, "😀 good": -1.25}


def test_learn_classify_evaluate_labels(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 labels" in printed and "read-out" in printed and "wrote task 'parity'" in printed
    _, tasks = read_file(out)
    assert set(tasks) == {"parity"} and tasks["parity"]["info"]["task"]["labels"] == ["w5", "w6"]

    preds = tmp_path / "pred.jsonl"
    use = [*base, "--fast-weights", str(out), "--task", "parity"]
    assert main(["task", "classify", *use, "--inputs", str(test), "--out", str(preds)]) == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 12 and {r["prediction"] for r in rows} <= {"w5", "w6"}
    assert all(set(r["log_probs"]) == {"w5", "w6"} for r in rows)  # an object in JSONL
    tsv = tmp_path / "pred.tsv"
    assert main(["task", "classify", *use, "--inputs", str(test), "--out", str(tsv)]) == 0
    header, *lines = tsv.read_text().splitlines()
    assert header.split("\t") == ["input", "prediction", "log_probs"]
    assert [json.loads(line.split("\t")[2]) for line in lines] == [r["log_probs"] for r in rows]  # JSON text
    capsys.readouterr()

    scores = tmp_path / "scores.json"
    pred_tsv = tmp_path / "eval.tsv"
    ev = ["task", "evaluate", *use, "--examples", str(test), "--json", str(scores)]
    assert main([*ev, "--predictions", str(pred_tsv)]) == 0
    result = json.loads(scores.read_text())
    refs = [e.output for e in read_examples(test)]
    predicted = [line.split("\t")[1] for line in pred_tsv.read_text().splitlines()[1:]]
    assert predicted == [r["prediction"] for r in rows]  # evaluate and classify agree
    assert result["accuracy"] == pytest.approx(label_accuracy(predicted, refs)["accuracy"])
    assert result["confusion"]["labels"] == ["w5", "w6"]  # the task's labels, in its order
    assert sum(map(sum, result["confusion"]["matrix"])) == len(refs)
    assert "macro-F1" in capsys.readouterr().out

    # Zero-shot: the same commands without fast weights need the template and labels.
    zs = ["task", "evaluate", *base, "--examples", str(test), "--template", TEMPLATE, "--labels", "w5,w6"]
    assert main(zs) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # --labels auto takes them from the references (once silently ignored: free-text BLEU)
    assert main([*zs[:-1], "auto"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == listed
    # without --labels, zero-shot evaluate scores labels 'auto' too, as --demonstrations and
    # --lora do (once free text: exact match and BLEU beside the learned task's accuracy), noting
    # where they come from; --labels none keeps free text
    assert main(zs[:-2]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out.strip().splitlines()[-1]) == listed
    assert "zero-shot --labels auto takes its 2 labels" in printed.err
    assert main([*zs[:-1], "none"]) == 0
    assert "exact match" in capsys.readouterr().out
    classify_zs = ["task", "classify", *base, "--inputs", str(test), "--out", str(tmp_path / "zs.tsv")]
    assert main([*classify_zs, "--template", TEMPLATE, "--labels", "auto"]) == 1
    assert "--labels auto: without --fast-weights" in capsys.readouterr().err
    one = tmp_path / "one-label.tsv"  # references of a single label: no label set to take from them
    one.write_text("".join(f"{e.input}\tw5\n" for e in read_examples(test)))
    assert main([*zs[:4], "--examples", str(one), "--template", TEMPLATE, "--labels", "auto"]) == 1
    assert "every output is 'w5', one label" in capsys.readouterr().err
    for rule in ("auto", "all", "none"):  # a learned task keeps its labels: a rule would be ignored
        assert main([*ev, "--labels", rule]) == 1
        assert f"--labels {rule}: a learned task keeps the labels" in capsys.readouterr().err


def test_learn_generate_free_text(model_dir, tmp_path, capsys):  # noqa: F811
    train = tmp_path / "train.jsonl"
    rows = [
        {"input": f"{WORDS[i]} {WORDS[i + 1]}", "output": f"{WORDS[i + 2]} {WORDS[i + 3]}"} for i in range(30)
    ]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "fw.safetensors"
    base = ["--model", str(model_dir), "--threads", "1"]
    learn = ["task", "learn", *base, "--examples", str(train), "--out", str(out), "--template", TEMPLATE]
    assert main([*learn, "--task", "shift", "--labels", "none", "--folds", "2"]) == 0
    assert "free-form outputs" in capsys.readouterr().out
    header = json.loads(out.read_bytes()[8 : 8 + int.from_bytes(out.read_bytes()[:8], "little")])

    def not_json(constant: str) -> None:
        raise AssertionError(f"{constant} is not standard JSON")

    fit = json.loads(header["__metadata__"]["tasks"], parse_constant=not_json)["shift"]["info"]["fit"]
    assert None in fit["scores"].values()  # the λ = 1 mixes' held-out loss: infinite, saved as null
    preds = tmp_path / "gen.tsv"
    use = [*base, "--fast-weights", str(out), "--task", "shift"]
    assert (
        main(["task", "generate", *use, "--inputs", str(train), "--out", str(preds), "--max-new-tokens", "4"])
        == 0
    )
    lines = preds.read_text().splitlines()
    assert lines[0] == "input\tprediction" and len(lines) == 31
    gen = ["task", "generate", *use, "--inputs", str(train), "--max-new-tokens", "8"]
    assert main([*gen, "--out", str(preds), "--no-repeat-ngram", "1"]) == 0
    for line in preds.read_text().splitlines()[1:]:
        words = line.split("\t")[1].split()
        assert len(words) == len(set(words))  # n = 1: no word of an output twice
    ev = ["task", "evaluate", *use, "--examples", str(train), "--max-new-tokens", "4"]
    assert main([*ev, "--predictions", str(preds)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"bleu", "chrf", "answer_nll_per_token"} <= set(result) and result["n"] == 30
    scored = [line.split("\t") for line in preds.read_text().splitlines()[1:]]
    assert result["exact_match"] == pytest.approx(sum(p.strip() == r for _, p, r in scored) / 30)
    # two-word references: BLEU is reported only where some output holds four words
    assert (result["bleu"] is None) == (not any(len(p.split()) >= 4 for _, p, _ in scored))


def test_answer_end_option_is_stored_with_the_task(model_dir, tmp_path, capsys):  # noqa: F811
    """Outputs of several lines need another end marker than the default newline (learn refuses
    them otherwise); --answer-end is stored with the task and read back by generate."""
    train = tmp_path / "lines.jsonl"
    rows = [{"input": f"{WORDS[i]}", "output": f"{WORDS[i + 1]}\n{WORDS[i + 2]}"} for i in range(12)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "fw.safetensors"
    base = ["--model", str(model_dir), "--threads", "1"]
    learn = ["task", "learn", *base, "--examples", str(train), "--out", str(out), "--template", TEMPLATE]
    assert main([*learn, "--labels", "none", "--folds", "2"]) == 1
    assert "its output holds the answer end '\\n'" in capsys.readouterr().err and not out.exists()
    assert main([*learn, "--labels", "none", "--folds", "2", "--answer-end", " w91"]) == 0
    _, _, signature = read_task(out, "default")
    assert signature["info"]["task"]["template"]["answer_end"] == " w91"
    use = ["--fast-weights", str(out), "--inputs", str(train), "--out", str(tmp_path / "g.tsv")]
    assert main(["task", "generate", *base, *use, "--max-new-tokens", "3"]) == 0
    assert main(["task", "generate", *base, *use, "--answer-end", "w92"]) == 1
    assert "--answer-end is stored with the task" in capsys.readouterr().err
    zero_shot = [
        "task",
        "evaluate",
        *base,
        "--examples",
        str(train),
        "--template",
        TEMPLATE,
        "--labels",
        "none",
    ]
    assert main([*zero_shot, "--max-new-tokens", "2"]) == 0
    assert "12 of 12 reference outputs hold the answer end '\\n'" in capsys.readouterr().err
    assert main([*zero_shot, "--max-new-tokens", "2", "--answer-end", " w91"]) == 0
    assert "reference outputs hold" not in capsys.readouterr().err


def test_result_paths_are_checked_before_the_model_runs(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    """A predictions or JSON path under a file, or of an unknown type, failed only after every
    example was scored ("File exists")."""
    from faast.lm.task import TaskModel

    test = tmp_path / "test.tsv"
    _write_examples(test, 4)
    (tmp_path / "notes").write_text("x")
    monkeypatch.setattr(TaskModel, "label_scores", lambda *a, **k: pytest.fail("scored before the check"))
    zs = ["task", "evaluate", "--model", str(model_dir), "--threads", "1", "--examples", str(test)]
    zs += ["--template", TEMPLATE, "--labels", "w5,w6"]
    for extra, message in (
        (["--predictions", str(tmp_path / "notes" / "p.tsv")], "notes is a file, not a folder"),
        (["--json", str(tmp_path / "notes" / "r.json")], "notes is a file, not a folder"),
        (["--predictions", str(tmp_path / "p.xlsx")], "unknown file type '.xlsx'"),
    ):
        assert main([*zs, *extra]) == 1
        assert message in capsys.readouterr().err
    classify = ["task", "classify", *zs[2:6], "--inputs", str(test), *zs[8:]]
    assert main([*classify, "--out", str(tmp_path / "notes" / "c.tsv")]) == 1
    assert "notes is a file, not a folder" in capsys.readouterr().err


def test_task_cli_errors(model_dir, tmp_path, capsys):  # noqa: F811
    base = ["--model", str(model_dir), "--threads", "1"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("only an input\n")
    assert (
        main(["task", "learn", *base, "--examples", str(bad), "--out", str(tmp_path / "o.safetensors")]) == 1
    )
    assert "bad.tsv:1: no output" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(WORDS[:40]))
    fw = tmp_path / "lm.safetensors"
    assert main(["lm", "learn", *base, "--text", str(text), "--out", str(fw), "--window", "16"]) == 0
    good = tmp_path / "in.tsv"
    _write_examples(good, 3, labelled=False)
    cmd = [
        "task",
        "classify",
        *base,
        "--fast-weights",
        str(fw),
        "--inputs",
        str(good),
        "--out",
        str(tmp_path / "p.tsv"),
    ]
    assert main(cmd) == 1
    assert "not written by `faast task learn`" in capsys.readouterr().err
    zero = ["task", "classify", *base, "--inputs", str(good), "--out", str(tmp_path / "p.tsv")]
    assert main(zero) == 1
    assert "at least two labels" in capsys.readouterr().err
    assert main([*zero, "--labels", "w5,"]) == 1
    assert "empty label" in capsys.readouterr().err


def test_metrics_on_fixed_inputs():
    got = label_accuracy(["a", "b", "a", "a"], ["a", "b", "b", "a"])
    assert got["accuracy"] == 0.75 and got["n"] == 4
    assert got["ci95"] == pytest.approx(1.959964 * (0.75 * 0.25 / 4) ** 0.5)
    assert got["ci95_wilson"] == pytest.approx(list(wilson_ci95(3, 4)))
    perfect = translation_scores(["el perro come pan en la casa"], ["el perro come pan en la casa"])
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    partial = translation_scores(["el gato come pan en la casa"], ["el perro come pan en la casa"])
    assert 0 < partial["bleu"] < 100 and 0 < partial["chrf"] < 100
    assert perfect["exact_match"] == 1.0 and perfect["bleu_defined"]
    assert partial["exact_match"] == 0.0 and partial["exact_match_ci95_wilson"] == pytest.approx(
        list(wilson_ci95(0, 1))
    )
    # one-word answers, every one right: sacrebleu's BLEU is 0.00 (no 4-gram to match), so it
    # is marked undefined and exact match carries the score
    words = translation_scores(["gato", " perro", "pan"], ["gato", "perro", "casa"])
    assert not words["bleu_defined"] and words["bleu"] == 0.0
    assert words["exact_match"] == pytest.approx(2 / 3) and words["chrf"] > 50
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        label_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="not labels: \\['c'\\]"):
        label_accuracy(["a", "c"], ["a", "b"], ["a", "b"])


@settings(max_examples=80, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd")), min_size=1, max_size=40),
    extra=st.booleans(),
)
def test_label_scores_match_scikit_learn(pairs, extra):
    """Balanced accuracy, macro-F1, per-label scores and the confusion matrix equal scikit-learn's
    on random predictions, including labels the references never hold and labels nobody uses."""
    from sklearn import metrics

    preds, refs = map(list, zip(*pairs, strict=True))
    labels = sorted(set(preds) | set(refs)) + (["z"] if extra else [])
    got = label_accuracy(preds, refs, labels if extra else None)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # scikit-learn warns about labels absent from one side or a single label
        assert got["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(refs, preds))
        assert got["macro_f1"] == pytest.approx(
            metrics.f1_score(refs, preds, average="macro", zero_division=0)
        )
        assert got["confusion"]["matrix"] == metrics.confusion_matrix(refs, preds, labels=labels).tolist()
    assert got["confusion"]["labels"] == labels
    for label in labels:
        support = refs.count(label)
        right = sum(p == r == label for p, r in pairs)
        assert got["per_label"][label]["support"] == support
        assert got["per_label"][label]["recall"] == pytest.approx(right / support if support else 0.0)
        said = preds.count(label)
        assert got["per_label"][label]["precision"] == pytest.approx(right / said if said else 0.0)
    with pytest.raises(ValueError, match="no predictions"):
        translation_scores([], [])


def test_learn_and_evaluate_with_the_correction_memory(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2", "--mix", "correction"]) == 0
    printed = capsys.readouterr().out
    assert "read-out correction(" in printed
    _, tasks = read_file(out)
    assert tasks["parity"]["config"]["output_mix"] == "correction"
    scores = tmp_path / "scores.json"
    use = [*base, "--fast-weights", str(out), "--task", "parity"]
    assert main(["task", "evaluate", *use, "--examples", str(test), "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["n"] == 12


def test_forget_examples_rewrites_the_task_as_if_never_learned(model_dir, tmp_path, capsys):  # noqa: F811
    base, learn, _, out = parity_setup(model_dir, tmp_path)
    train = tmp_path / "train.tsv"
    lines = train.read_text().splitlines()
    keep, drop = tmp_path / "keep.tsv", tmp_path / "drop.tsv"
    keep.write_text("\n".join(lines[:30]) + "\n")
    drop.write_text("\n".join(lines[30:]) + "\n")
    assert main([*learn, "--task", "all", "--folds", "2"]) == 0
    rest = ["task", "learn", *base, "--examples", str(keep), "--out", str(out), "--template", TEMPLATE]
    assert main([*rest, "--task", "rest", "--folds", "2"]) == 0
    capsys.readouterr()
    forget = ["task", "forget", *base, "--fast-weights", str(out), "--task", "all"]
    assert main([*forget, "--examples", str(drop)]) == 0
    assert "forgot 10 examples" in capsys.readouterr().out
    _, tasks = read_file(out)
    got, want = read_task(out, "all")[1], read_task(out, "rest")[1]
    assert int(got["output/count"]) == int(want["output/count"]) > 0
    assert torch.equal(got["output/counts"], want["output/counts"])
    for key in ("output/gram", "output/cross"):
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-9 * float(want[key].abs().max()))
    forgotten = tasks["all"]["info"]["forgotten"]
    assert forgotten[0]["examples"] == "drop.tsv" and forgotten[0]["count"] == 10
    assert tasks["all"]["info"]["task"] == tasks["rest"]["info"]["task"]  # template and labels kept

    before = out.read_bytes()
    never = tmp_path / "never.tsv"
    never.write_text(lines[0].split("\t")[0] + "\tw7\n")  # an answer token no example had
    assert main([*forget, "--examples", str(never)]) == 1
    assert "never learned" in capsys.readouterr().err
    use_rest = ["task", "forget", *base, "--fast-weights", str(out), "--task", "rest"]
    assert main([*use_rest, "--examples", str(keep)]) == 1
    assert "leaves task 'rest' empty" in capsys.readouterr().err
    assert out.read_bytes() == before  # refused: the file is unchanged
    assert main([*learn, "--task", "headed", "--folds", "2", "--head", "squared"]) == 0
    headed = ["task", "forget", *base, "--fast-weights", str(out), "--task", "headed"]
    assert main([*headed, "--examples", str(drop)]) == 1
    assert "label head" in capsys.readouterr().err


def test_in_context_learning_from_the_command_line(model_dir, tmp_path, capsys):  # noqa: F811
    from faast.lm.icl import InContextModel
    from faast.lm.prompts import PromptCodec, PromptTemplate
    from faast.lm.text import load_causal_lm

    base, _, test, out = parity_setup(model_dir, tmp_path)
    train = tmp_path / "train.tsv"
    preds = tmp_path / "icl.jsonl"
    icl_args = ["--demonstrations", str(train), "--shots", "5", "--template", TEMPLATE]
    assert main(["task", "classify", *base, *icl_args, "--inputs", str(test), "--out", str(preds)]) == 0
    assert "5 of 5 demonstrations fit" in capsys.readouterr().err
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    model, tok = load_causal_lm(str(model_dir))
    codec = PromptCodec(tok, PromptTemplate(TEMPLATE), model.config.max_position_embeddings)
    demos = [(e.input, e.output) for e in read_examples(train)[:5]]
    inputs = [e.input for e in read_examples(test)]
    expected = InContextModel(model, codec, demos, reserve=16).label_scores(inputs, ["w5", "w6"])
    got = torch.tensor([[r["log_probs"][x] for x in ("w5", "w6")] for r in rows], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)  # labels 'auto': the demonstrations' outputs

    assert main(["task", "evaluate", *base, *icl_args, "--examples", str(test)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        result["n"] == 12
        and result["accuracy"]
        == label_accuracy([r["prediction"] for r in rows], [e.output for e in read_examples(test)])[
            "accuracy"
        ]
    )
    gen = tmp_path / "gen.tsv"
    cmd = ["task", "generate", *base, *icl_args, "--labels", "none", "--inputs", str(test), "--out", str(gen)]
    assert main([*cmd, "--max-new-tokens", "3"]) == 0
    assert len(gen.read_text().splitlines()) == 13

    assert main(["task", "classify", *base, "--shots", "3", "--inputs", str(test), "--out", str(preds)]) == 1
    assert "--shots needs --demonstrations" in capsys.readouterr().err
    assert (
        main(
            [
                "task",
                "classify",
                *base,
                *icl_args,
                "--fast-weights",
                str(out),
                "--inputs",
                str(test),
                "--out",
                str(preds),
            ]
        )
        == 1
    )
    assert "drop --fast-weights" in capsys.readouterr().err


def test_in_context_labels_auto_come_from_every_demonstration_not_only_the_shots(model_dir, tmp_path, capsys):  # noqa: F811
    base, _, test, _ = parity_setup(model_dir, tmp_path)
    preds = tmp_path / "one.jsonl"
    one_shot = ["--demonstrations", str(tmp_path / "train.tsv"), "--shots", "1", "--template", TEMPLATE]
    assert main(["task", "classify", *base, *one_shot, "--inputs", str(test), "--out", str(preds)]) == 0
    assert "1 of 1 demonstrations fit" in capsys.readouterr().err
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    # one shot shows one label; the task still has both (before, it became free text and classify refused)
    assert all(sorted(r["log_probs"]) == ["w5", "w6"] for r in rows)


def test_group_field_holds_out_whole_groups(model_dir, tmp_path, capsys):  # noqa: F811
    """--group-field names a JSONL field; the saved fit says its folds held out whole groups. A
    TSV file without a header or an example without the field is refused before the model loads."""
    rows = []
    for i in range(24):
        words = " ".join(WORDS[10 + (i * 7 + j) % 60] for j in range(3))
        rows.append({"input": words, "output": "w5" if i % 2 else "w6", "source": f"doc{i % 4}"})
    examples = tmp_path / "grouped.jsonl"
    examples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "g.safetensors"
    learn = [
        "task",
        "learn",
        "--model",
        str(model_dir),
        "--threads",
        "1",
        "--out",
        str(out),
        "--template",
        TEMPLATE,
    ]
    assert main([*learn, "--examples", str(examples), "--group-field", "source", "--folds", "2"]) == 0
    _, tasks = read_file(out)
    assert "folds of whole groups, 4 groups" in json.dumps(tasks["default"]["info"])
    capsys.readouterr()
    tsv = tmp_path / "plain.tsv"
    _write_examples(tsv, 12)
    assert main([*learn, "--examples", str(tsv), "--group-field", "source"]) == 1
    assert "has no fields besides the input and output" in capsys.readouterr().err
    rows[3].pop("source")
    examples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*learn, "--examples", str(examples), "--group-field", "source"]) == 1
    assert "example 4 ('" in capsys.readouterr().err


def test_a_csv_of_other_column_names_learns_what_the_jsonl_learns(model_dir, tmp_path, capsys):  # noqa: F811
    """The same examples as a CSV of columns text,label,source (--input-column/--output-column,
    --group-field on a column) give the very fast weights of the JSONL input/output file; the
    evaluation reads the CSV and writes its predictions as a CSV that reads back."""
    import csv

    rows = []
    for i in range(24):
        words = " ".join(WORDS[10 + (i * 7 + j) % 60] for j in range(3))
        rows.append({"input": words, "output": "w5" if i % 2 else "w6", "source": f"doc{i % 4}"})
    jsonl, table = tmp_path / "e.jsonl", tmp_path / "e.csv"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source", "text", "label"])
        writer.writerows([r["source"], r["input"], r["output"]] for r in rows)
    base = ["--model", str(model_dir), "--threads", "1"]
    learn = ["task", "learn", *base, "--template", TEMPLATE, "--folds", "2", "--group-field", "source"]
    named = ["--input-column", "text", "--output-column", "label"]
    assert main([*learn, "--examples", str(jsonl), "--out", str(tmp_path / "a.safetensors")]) == 0
    assert main([*learn, *named, "--examples", str(table), "--out", str(tmp_path / "b.safetensors")]) == 0
    assert main([*learn, "--examples", str(table), "--out", str(tmp_path / "c.safetensors")]) == 1
    assert (
        "no column 'input' or 'output' in the header ['source', 'text', 'label']" in capsys.readouterr().err
    )
    (a, tasks_a), (b, tasks_b) = (read_file(tmp_path / f"{n}.safetensors") for n in "ab")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    info = tasks_b["default"]["info"]
    assert "folds of whole groups, 4 groups" in json.dumps(info)
    assert json.dumps(tasks_a["default"]["info"]["fit"]) == json.dumps(info["fit"])

    preds = tmp_path / "p.csv"
    use = [*base, "--fast-weights", str(tmp_path / "b.safetensors")]
    assert (
        main(["task", "evaluate", *use, *named, "--examples", str(table), "--predictions", str(preds)]) == 0
    )
    got = read_examples(preds, outputs=False, output_column="prediction")
    assert [e.input for e in got] == [r["input"] for r in rows]
    assert {e.output for e in got} <= {"w5", "w6"}
    assert set(got[0].extra) == {"reference", "reference_label", "source"}


def test_evaluate_after_lora_backprop_on_the_examples(model_dir, tmp_path, capsys):  # noqa: F811
    """``--lora FILE``: the gradient baseline on the same examples, from the command line; labels
    'auto' from its examples; the other ways to adapt the model and bad settings are refused."""
    base, _, test, out = parity_setup(model_dir, tmp_path)
    train = tmp_path / "train.tsv"
    scores = tmp_path / "lora.json"
    lora = ["--lora", str(train), "--lora-epochs", "1", "--lora-lrs", "1e-3,3e-2", "--template", TEMPLATE]
    ev = ["task", "evaluate", *base, "--examples", str(test)]  # no --labels: 'auto' from --lora's examples
    assert main([*ev, *lora, "--json", str(scores)]) == 0
    err = capsys.readouterr().err
    assert "LoRA (backprop) on 40 examples of" in err and "chosen on a held-out fifth" in err
    result = json.loads(scores.read_text())
    assert result["examples"] == 12 and result["confusion"]["labels"] == ["w5", "w6"]
    assert 0.0 <= result["accuracy"] <= 1.0
    # classify gives each label's score: those of the library's recipe applied by hand, not zero-shot's
    from faast.lm.lora_baseline import LoraRecipe, fit_lora
    from faast.lm.prompts import PromptTemplate
    from faast.lm.task import TaskModel, TaskSpec
    from faast.lm.text import load_causal_lm

    preds = tmp_path / "lora.jsonl"
    classify = [
        "task",
        "classify",
        *base,
        "--inputs",
        str(test),
        "--labels",
        "auto",
        *lora,
        "--lora-seed",
        "1",
        "--out",
        str(preds),
    ]
    assert main(classify) == 0
    got = torch.tensor([[r["log_probs"][x] for x in ("w5", "w6")] for r in map(json.loads, preds.open())])
    model, tok = load_causal_lm(str(model_dir))
    task = TaskModel.create(model, tok, TaskSpec(PromptTemplate(TEMPLATE), labels=["w5", "w6"]))
    inputs = [e.input for e in read_examples(test)]
    zero_shot = task.label_scores(inputs)
    recipe = LoraRecipe(epochs=1, batch_size=16, learning_rates=(1e-3, 3e-2), seed=1)
    with task.model.disabled():
        fit_lora(model, task.codec, read_examples(train), recipe)
    torch.testing.assert_close(got, task.label_scores(inputs).to(got.dtype), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, zero_shot.to(got.dtype), rtol=1e-3, atol=1e-3)

    for extra, message in (
        (["--fast-weights", str(out)], "drop --fast-weights"),
        (["--demonstrations", str(train)], "drop --demonstrations"),
        (["--shots", "2"], "--shots needs --demonstrations"),
    ):
        assert main([*ev, *lora, *extra]) == 1
        assert message in capsys.readouterr().err
    for option, value, message in (
        ("--lora-lrs", "fast", "--lora-lrs: expected comma-separated numbers"),
        ("--lora-lrs", "0,1e-3", "--lora-lrs: learning_rates must be positive"),
        ("--lora-epochs", "0", "--lora-epochs: epochs must be an integer >= 1"),
        ("--lora-seed", "-1", "--lora-seed: seed must be an integer >= 0"),
    ):
        assert main([*ev, *lora, option, value]) == 1
        assert message in capsys.readouterr().err
    for option, value in (("--lora-epochs", "2"), ("--lora-lrs", "1e-3"), ("--lora-seed", "1")):
        assert main([*ev, "--template", TEMPLATE, option, value]) == 1
        assert f"{option} needs --lora" in capsys.readouterr().err


def test_labels_all_for_more_outputs_than_auto_reads(model_dir, tmp_path, capsys):  # noqa: F811
    """25 distinct outputs: ``--labels auto`` learns free text and says that ``--labels all``
    classifies among them; with it the task has 25 labels, and zero-shot evaluation takes them
    from the references."""
    rows = [f"{WORDS[10 + i % 12]}\t{WORDS[40 + i % 25]}" for i in range(50)]
    examples = tmp_path / "many.tsv"
    examples.write_text("\n".join(rows) + "\n")
    base = ["--model", str(model_dir), "--threads", "1"]
    learn = ["task", "learn", *base, "--examples", str(examples), "--template", TEMPLATE, "--folds", "2"]
    assert main([*learn, "--out", str(tmp_path / "a.safetensors")]) == 0
    printed = capsys.readouterr().out
    assert "free-form outputs (25 distinct outputs, more than the 20 that 'auto' reads as labels" in printed
    assert main([*learn, "--out", str(tmp_path / "b.safetensors"), "--labels", "all"]) == 0
    assert "25 labels" in capsys.readouterr().out
    _, tasks = read_file(tmp_path / "b.safetensors")
    assert tasks["default"]["info"]["task"]["labels"] == [WORDS[40 + i] for i in range(25)]
    scores = tmp_path / "s.json"
    ev = [
        "task",
        "evaluate",
        *base,
        "--examples",
        str(examples),
        "--template",
        TEMPLATE,
        "--json",
        str(scores),
    ]
    assert main([*ev, "--labels", "all"]) == 0
    assert len(json.loads(scores.read_text())["per_label"]) == 25


def test_evaluate_counts_references_outside_the_labels_as_errors(model_dir, tmp_path, capsys):  # noqa: F811
    """A test file whose references hold a label the learned examples never had (a rare class) is
    evaluated, not refused: those examples can never be predicted, count as errors, and are
    named in a warning and counted in the JSON."""
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--folds", "2"]) == 0
    lines = test.read_text().splitlines()
    lines[:3] = [line.split("\t")[0] + "\tw7" for line in lines[:3]]
    test.write_text("\n".join(lines) + "\n")
    scores = tmp_path / "s.json"
    capsys.readouterr()
    ev = [
        "task",
        "evaluate",
        *base,
        "--fast-weights",
        str(out),
        "--examples",
        str(test),
        "--json",
        str(scores),
    ]
    assert main([*ev, "--predictions", str(tmp_path / "p.tsv")]) == 0
    assert "3 of 12 reference outputs of" in capsys.readouterr().err
    result = json.loads(scores.read_text())
    rows = read_examples(tmp_path / "p.tsv", output_column="prediction")
    right = sum(e.output == e.extra["reference"] for e in rows)
    assert result["accuracy"] == right / 12 and result["references_outside_labels"] == 3
    assert result["per_label"]["w7"]["recall"] == 0.0 and result["per_label"]["w7"]["support"] == 3


def test_the_predictions_file_holds_the_references_as_scored(model_dir, tmp_path, capsys):  # noqa: F811
    """A reference that names a label with other whitespace around it ("w5 ") is scored as that
    label; the predictions file wrote it only as it was, so accuracy recomputed from the file
    differed from the one evaluate printed. It also writes the label scored now
    (``reference_label``), the reference as written kept."""
    base, learn, test, out = parity_setup(model_dir, tmp_path)
    assert main([*learn, "--task", "parity", "--folds", "2"]) == 0
    spaced = tmp_path / "spaced.jsonl"
    rows = [{"input": e.input, "output": e.output + " " * (i % 2)} for i, e in enumerate(read_examples(test))]
    spaced.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds, scores = tmp_path / "p.jsonl", tmp_path / "s.json"
    use = [*base, "--fast-weights", str(out), "--task", "parity", "--examples", str(spaced)]
    assert main(["task", "evaluate", *use, "--predictions", str(preds), "--json", str(scores)]) == 0
    written = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [w["reference"] for w in written] == [r["output"] for r in rows]
    assert [w["reference_label"] for w in written] == [r["output"].strip() for r in rows]
    recomputed = label_accuracy([w["prediction"] for w in written], [w["reference_label"] for w in written])
    assert json.loads(scores.read_text())["accuracy"] == pytest.approx(recomputed["accuracy"])
    capsys.readouterr()
    # zero-shot without --labels takes the same two labels from these references (the spaced
    # spelling is no third label: it was refused, "differ only by surrounding whitespace")
    zero_shot = ["task", "evaluate", *base, "--examples", str(spaced), "--template", TEMPLATE]
    assert main([*zero_shot, "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["confusion"]["labels"] == ["w5", "w6"]
    assert "zero-shot --labels auto takes its 2 labels" in capsys.readouterr().err
