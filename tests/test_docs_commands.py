"""Every ``faast ...`` command the README and docs/*.md show names a sub-command that exists and
options that sub-command has, each given a value where it takes one. (Whole commands in code
blocks and the fragments quoted inline both count; placeholders and ``...`` are accepted.)"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from faast.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
#: docs/bad-inputs.md lists wrong commands and error messages on purpose
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "bad-inputs.md")]
FENCE = re.compile(r"^```(\w*)")
INLINE = re.compile(r"`(faast [^`]+)`")


def doc_commands(path: Path) -> list[tuple[int, str, bool]]:
    """(line, command, inline) of every ``faast`` command in the shell blocks of ``path``
    (continuations joined, the prompt ``$`` dropped) and in its inline code."""
    found: list[tuple[int, str, bool]] = []
    in_block, shell, pending, start = False, False, "", 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence:
            in_block = not in_block
            shell = in_block and fence.group(1) in ("bash", "sh", "shell", "console", "")
            pending = ""
            continue
        if in_block and not shell:
            continue
        if shell:
            text = line.strip().removeprefix("$ ")
            if pending:
                pending += " " + text
            elif text.startswith("faast "):
                pending, start = text, number
            if pending and not pending.endswith("\\"):
                found.append((start, pending, False))
                pending = ""
            elif pending:
                pending = pending[:-1]
        else:
            found += [(number, m.group(1), True) for m in INLINE.finditer(line)]
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


ELLIPSIS = ("...", "…")


def command_problems(command: str, parser: argparse.ArgumentParser, *, inline: bool = False) -> list[str]:
    """What is wrong with ``command`` for ``parser`` (empty: nothing). ``inline``: a fragment
    quoted in the text, which may stop after naming an option (``faast demo --threads``), name
    sub-commands as alternatives (``classify/evaluate``) or not be a command at all (a method's
    name in a table, a message); a code block's command must give every option its value."""
    try:
        tokens = shlex.split(command, comments=True)[1:]
    except ValueError as exc:
        return [] if inline else [f"not a shell command ({exc})"]
    if not tokens or tokens[0] in ELLIPSIS or tokens[0].endswith(":"):
        return []  # "faast ...", or a message: "faast classify: warning: ..."
    path = []
    while tokens and tokens[0].split("/")[0] in _subparsers(parser):
        path.append(tokens[0])
        parser = _subparsers(parser)[tokens.pop(0).split("/")[0]]
    if not path:
        return [] if inline or tokens[0].startswith("-") else [f"no sub-command {tokens[:1]}"]
    options = {name: action for action in parser._actions for name in action.option_strings}
    problems = []
    for i, token in enumerate(tokens):
        if not token.startswith("--") or token == "--":
            continue
        name = token.split("=", 1)[0]
        action = options.get(name)
        if action is None:
            problems.append(f"`faast {' '.join(path)}` has no option {name}")
        elif "=" not in token and action.nargs is None and action.const is None:  # takes one value
            following = tokens[i + 1] if i + 1 < len(tokens) else None
            if following is None and not inline and not command.rstrip().endswith(ELLIPSIS):
                problems.append(f"{name} takes a value, none given")
            elif following is not None and following.startswith("--") and following != "--":
                problems.append(f"{name} takes a value, none given")
    return problems


CASES = [(path, line, command, inline) for path in DOCS for line, command, inline in doc_commands(path)]


def test_the_docs_show_commands():
    assert len(CASES) > 50  # the extraction found them (README alone shows dozens)


@pytest.mark.parametrize(
    ("path", "line", "command", "inline"), CASES, ids=[f"{p.name}:{line}" for p, line, _, _ in CASES]
)
def test_a_documented_command_names_existing_options(path, line, command, inline):
    problems = command_problems(command, build_parser(), inline=inline)
    assert not problems, f"{path.name}:{line}: {command}: {problems}"


def test_the_check_finds_wrong_commands():
    parser = build_parser()
    for inline in (False, True):
        assert command_problems("faast task learn --head --head-center", parser, inline=inline) == [
            "--head takes a value, none given"
        ]
    assert command_problems("faast task learn --model", parser) == ["--model takes a value, none given"]
    assert command_problems("faast task learn --model", parser, inline=True) == []  # naming the option
    assert command_problems("faast task learn --no-such-flag 3", parser) == [
        "`faast task learn` has no option --no-such-flag"
    ]
    assert command_problems("faast tasks learn", parser) == ["no sub-command ['tasks']"]
    assert command_problems("faast task learn --head squared --head-center --model x", parser) == []
    assert command_problems("faast task classify/evaluate --calibrate", parser, inline=True) == []
    assert command_problems("faast task classify/evaluate --calibrat", parser, inline=True) == [
        "`faast task classify/evaluate` has no option --calibrat"
    ]
