"""`faast lm`: `learn --append` onto a task learned with `--steps K` > 1 is refused up front (it was
accepted, and the text could then never be forgotten); the `--weight`, `--cut`, `--mix` and
`--damping` help of `generate`, `perplexity` and `stream` names only what each command reads."""

from __future__ import annotations

import argparse

import pytest

from faast.cli import build_parser, main
from tests.lm_wordlevel import WORDS, save_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def test_append_to_a_task_learned_in_steps_is_refused_before_anything_is_written(model_dir, tmp_path, capsys):
    first, more = tmp_path / "first.txt", tmp_path / "more.txt"
    first.write_text(" ".join(WORDS[(7 * i) % 50] for i in range(300)))
    more.write_text(" ".join(WORDS[(5 * i) % 60] for i in range(200)))
    base = ["--model", str(model_dir), "--threads", "1", "--window", "48"]

    def learn(out, text, *options: str) -> int:
        return main(["lm", "learn", *base, "--out", str(out), "--text", str(text), *options])

    stepped = tmp_path / "stepped.safetensors"
    assert learn(stepped, first, "--mix", "correction", "--steps", "2") == 0
    written = stepped.read_bytes()
    capsys.readouterr()
    assert learn(stepped, more, "--append") == 1
    err = capsys.readouterr().err
    assert "--append: task 'default' of" in err and "was learned with --steps 2" in err
    assert "could never be forgotten" in err and "--task NAME" in err
    assert stepped.read_bytes() == written
    # a one-step correction task still takes more text, and forgets it
    one = tmp_path / "one.safetensors"
    assert learn(one, first, "--mix", "correction") == 0
    assert learn(one, more, "--append") == 0
    assert main(["lm", "forget", *base, "--fast-weights", str(one), "--text", str(more)]) == 0


def _option_help(action: str) -> dict[str, str]:
    """``--option`` → its help (``argparse.SUPPRESS`` where hidden) in ``faast lm ACTION``."""
    lm = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["lm"]
    sub = next(a for a in lm._actions if isinstance(a, argparse._SubParsersAction)).choices[action]
    return {opt: act.help for act in sub._actions for opt in act.option_strings}


@pytest.mark.parametrize("action", ["generate", "perplexity", "stream"])
def test_read_option_help_names_only_what_the_command_reads(action, capsys):
    helps = _option_help(action)
    for option in ("--weight", "--cut", "--mix"):
        assert "--mix correction" not in helps[option] and "--mix paper" not in helps[option]
    with pytest.raises(SystemExit):
        main(["lm", action, "--help"])
    shown = capsys.readouterr().out
    if action == "stream":  # learns with --mix prob or logit only: no other mix is named
        assert "correction" not in shown and "paper" not in shown and "--damping" not in shown
        assert helps["--weight"] == "λ (prob) or β (logit): larger follows it more"
    else:  # reads --fast-weights with the mix and read config they were learned with
        assert helps["--weight"].startswith("λ (prob) or β (logit)")
        assert "fast weights learned with the paper or correction mix" in helps["--weight"]
        assert "fast weights learned with the correction mix" in helps["--damping"]
        for option in ("--cut", "--mix"):
            assert "the one the fast weights were learned with" in helps[option]


def test_learn_help_still_names_every_mix():
    helps = _option_help("learn")
    assert (
        helps["--weight"]
        == "λ (prob), β (logit), r (paper) or the step β (correction): larger follows it more"
    )
    assert "with --mix correction prior=2*key_dim" in helps["--cut"]
