"""Fixes from a hunt of ``faast task`` on its users' own data (s82): free-text references longer than
``--max-new-tokens`` warned, in-context shots (and ``learn --in-context`` lead demonstrations) that
leave out labels warned, zero-shot ``evaluate`` on references of one output refused instead of
scored as free text, label twins that look alike (Unicode forms, invisible characters) warned, and
an in-context query too long for the context named."""

from __future__ import annotations

import json
import unicodedata
import warnings

import pytest

from faast.cli import main
from faast.lm.task_spec import labels_of_outputs, lookalike_key
from tests.test_lm_cli import WORDS, model_dir  # noqa: F401 - the tiny model folder fixture
from tests.test_task_cli import TEMPLATE, parity_setup
from tests.test_task_hunt_fixes import _no_model

#: The context of the short tiny model (positions it encodes).
SHORT_CONTEXT = 64


@pytest.fixture(scope="module")
def short_model_dir(tmp_path_factory, model_dir):  # noqa: F811
    """The tiny model folder with a context of :data:`SHORT_CONTEXT` positions."""
    path = tmp_path_factory.mktemp("tiny-llama-short")
    for item in model_dir.iterdir():
        (path / item.name).write_bytes(item.read_bytes())
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = SHORT_CONTEXT
    (path / "config.json").write_text(json.dumps(config))
    return path


def _sorted_by_label(path, n: int = 8) -> None:
    """``n`` examples, the w5 ones first, then the w6 ones (a file sorted by label)."""
    rows = [(f"{WORDS[10 + i]} {WORDS[30 + i]}", "w5" if i < n // 2 else "w6") for i in range(n)]
    path.write_text("".join(f"{x}\t{y}\n" for x, y in rows))


# ----------------------------------------------------------------- F2: references past --max-new-tokens
def test_evaluate_warns_of_references_longer_than_max_new_tokens(model_dir, tmp_path, capsys):  # noqa: F811
    """A free-text reference of five answer tokens cannot be generated whole in 4 new tokens: exact
    match then read 0 % with no word said (the hunt: every 81-token reference cut at the default
    64). Warned, naming the counts and the flag; 5 new tokens are enough, and nothing is said."""
    base, _, _, _ = parity_setup(model_dir, tmp_path)
    examples = tmp_path / "long.tsv"
    examples.write_text("w10 w11\tw20 w21 w22 w23 w24\nw12 w13\tw25 w26\nw14 w15\tw27 w28 w29 w30 w31\n")
    argv = ["task", "evaluate", *base, "--examples", str(examples), "--template", TEMPLATE]
    argv += ["--labels", "none"]
    assert main([*argv, "--max-new-tokens", "4"]) == 0
    err = capsys.readouterr().err
    assert "2 of 3 reference outputs of" in err and "longer than --max-new-tokens 4 tokens" in err
    assert (
        "(the longest, 5 tokens: 'w20 w21 w22 w23 w24')" in err
        and "raise --max-new-tokens (to 5 or more)" in err
    )
    assert main([*argv, "--max-new-tokens", "5"]) == 0
    assert "--max-new-tokens 5 tokens" not in capsys.readouterr().err


# ----------------------------------------------------------------- F3: shots that leave out labels
def test_in_context_shots_of_a_label_sorted_file_are_warned(model_dir, tmp_path, capsys):  # noqa: F811
    """The first 3 of a file sorted by label show only 'w5': the model never sees a 'w6' and leans
    to 'w5' (the hunt: 8 of 10 predictions). Warned, naming the missing label; shots that show
    both labels, or free text, are not."""
    base, _, test, _ = parity_setup(model_dir, tmp_path)
    demos = tmp_path / "sorted.tsv"
    _sorted_by_label(demos)
    argv = ["task", "evaluate", *base, "--examples", str(test), "--template", TEMPLATE]
    assert main([*argv, "--demonstrations", str(demos), "--shots", "3"]) == 0
    err = capsys.readouterr().err
    assert "the 3 in-context demonstrations show 1 of the task's 2 labels, not 'w6', so the model" in err
    assert "is the file sorted by label?" in err and "shuffle the file's examples or pass more --shots" in err
    assert main([*argv, "--demonstrations", str(demos), "--shots", "5"]) == 0  # the fifth is a w6
    assert "in-context demonstrations show" not in capsys.readouterr().err
    assert main([*argv, "--demonstrations", str(demos), "--shots", "3", "--labels", "none"]) == 0
    assert "in-context demonstrations show" not in capsys.readouterr().err
    # a listed label the file never shows: shuffling would not help, and is not advised
    assert main([*argv, "--demonstrations", str(demos), "--labels", "w5,w6,w7"]) == 0
    err = capsys.readouterr().err
    assert "the 8 in-context demonstrations show 2 of the task's 3 labels, not 'w7'" in err
    assert "has no example of it: give demonstrations of every label" in err and "shuffle" not in err


def test_learn_in_context_lead_demonstrations_of_a_sorted_file_are_warned(model_dir, tmp_path, capsys):  # noqa: F811
    """``learn --in-context 3`` takes the first 3 examples: of a label-sorted file, one label."""
    _, learn, _, _ = parity_setup(model_dir, tmp_path)
    train = tmp_path / "train.tsv"
    lines = train.read_text().splitlines()
    train.write_text("\n".join(sorted(lines, key=lambda line: line.split("\t")[1])) + "\n")
    assert main([*learn, "--folds", "2", "--in-context", "3"]) == 0
    err = capsys.readouterr().err
    assert "the 3 --in-context lead demonstrations show 1 of the task's 2 labels, not 'w6'" in err
    assert "shuffle the file's examples or raise --in-context" in err
    train.write_text("\n".join(lines) + "\n")  # as written: w5 and w6 alternate
    assert main([*learn, "--folds", "2", "--in-context", "3"]) == 0
    assert "lead demonstrations show" not in capsys.readouterr().err


# ----------------------------------------------------------------- F4: zero-shot, one reference output
def test_zero_shot_evaluate_refuses_references_of_one_output(model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    """Zero-shot evaluate on one class's slice of a test set switched to free-text scoring silently
    (exact match, BLEU) while `--labels auto` given was refused: refused alike, before the model
    loads, with both ways on; `--labels none` still scores free text."""
    base, _, test, _ = parity_setup(model_dir, tmp_path)
    one = tmp_path / "one.tsv"
    one.write_text("".join(f"{line.split(chr(9))[0]}\tw5\n" for line in test.read_text().splitlines()))
    argv = ["task", "evaluate", *base, "--examples", str(one), "--template", TEMPLATE]
    with monkeypatch.context() as patch:
        _no_model(patch)
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert "zero-shot evaluate takes its labels from the reference outputs (--labels auto, the default)" in (
        err
    )
    assert "every output is 'w5', one label" in err
    assert "score the outputs as free text (--labels none) or, if they are labels, list them all" in err
    assert main([*argv, "--labels", "none", "--max-new-tokens", "2"]) == 0
    assert "exact match" in capsys.readouterr().out


# ----------------------------------------------------------------- F5: label twins that look alike
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("café", unicodedata.normalize("NFD", "café")),  # composed and decomposed accent
        ("positive", "positive\u200b"),  # a zero-width space (category Cf)
        ("neg\u00adative", "negative"),  # a soft hyphen
        ("ＡＢ", "AB"),  # full-width letters (NFKC)
        ("ｶﾞ", "ガ"),  # half-width katakana and its sound mark, composed after the folding (review)
        ("e\u200b\u0301", "é"),  # an accent after a zero-width space
    ],
)
def test_label_twins_that_look_alike_are_warned(first, second):
    """Two outputs that read the same split one class into two labels (half its references then
    count as errors): warned like case twins, the labels shown escaped so the difference shows."""
    with pytest.warns(UserWarning, match="look the same but differ in their Unicode characters") as caught:
        assert labels_of_outputs([first, second, "other"]) == [first, second, "other"]
    message = str(caught[0].message)
    assert ascii(first) in message and ascii(second) in message and "normalised to NFC" in message


def test_labels_that_differ_visibly_are_not_twins():
    assert lookalike_key("cafe") != lookalike_key("café")  # an accent is a letter of its own
    # compatibility forms that read differently (review: NFKC folded them)
    for a, b in [("m²", "m2"), ("Ⅳ", "IV"), ("½", "1⁄2"), ("℃", "°C")]:
        assert lookalike_key(a) != lookalike_key(b), (a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert labels_of_outputs(["cafe", "café", "caff"]) == ["cafe", "café", "caff"]
    with pytest.warns(UserWarning, match="differ only in case"):  # case twins keep their message
        labels_of_outputs(["Positive", "positive"])


# ----------------------------------------------------------------- F6: an in-context query past the context
def test_in_context_query_too_long_for_the_context_is_named(short_model_dir, tmp_path, capsys):
    """A query that does not fit the context with its answer said `reserve=... leaves no room in the
    context`: now the error names the input and its size, as zero-shot and FAAST do."""
    demos, inputs = tmp_path / "demos.tsv", tmp_path / "inputs.tsv"
    _sorted_by_label(demos, 2)
    inputs.write_text(" ".join(WORDS[10:80]) + "\n")
    argv = ["task", "classify", "--model", str(short_model_dir), "--threads", "1", "--template", TEMPLATE]
    argv += ["--demonstrations", str(demos), "--inputs", str(inputs), "--out", str(tmp_path / "p.jsonl")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "the prompt of 'w10 w11 w12" in err and "with its answer (1 tokens at most) is" in err
    assert f"more than the model's context of {SHORT_CONTEXT}, even before any demonstration" in err
    assert "reserve=" not in err


def test_in_context_query_that_fits_alone_runs_without_demonstrations(short_model_dir, tmp_path, capsys):
    """A query that fits the context alone but not with a few tokens spare was refused (`reserve=65
    leaves no room`): it now runs with no demonstration before it, as said."""
    demos, inputs = tmp_path / "demos.tsv", tmp_path / "inputs.tsv"
    _sorted_by_label(demos, 2)
    inputs.write_text(" ".join(WORDS[10:69]) + "\n")  # 59 words: the prompt is 60 tokens
    out = tmp_path / "p.jsonl"
    argv = ["task", "classify", "--model", str(short_model_dir), "--threads", "1", "--template", TEMPLATE]
    assert main([*argv, "--demonstrations", str(demos), "--inputs", str(inputs), "--out", str(out)]) == 0
    assert "0 of 2 demonstrations fit" in capsys.readouterr().err
    assert json.loads(out.read_text())["prediction"] in ("w5", "w6")
