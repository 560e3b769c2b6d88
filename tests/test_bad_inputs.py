"""Run the bad-input catalogue (tests/bad_inputs_catalogue.py): each case fails with the documented
error naming the problem (or behaves as documented) and leaves learned state unchanged; each CLI
case prints one line on stderr, exits non-zero and shows no traceback (unless ``--debug``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from faast.cli import main
from tests.bad_inputs_catalogue import CASES, CLI, Ctx, run_case

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(tmp_path_factory.mktemp("bad-inputs"))


def test_the_catalogue_is_large_enough():
    assert len(CASES) + len(CLI) >= 100
    assert len({c.id for c in CASES} | {c.id for c in CLI}) == len(CASES) + len(CLI)  # unique names


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_api_case(case, ctx):
    kind, value = run_case(case, ctx)
    if case.error is None:
        assert kind == "result", f"expected {case.behaviour!r}, got {type(value).__name__}: {value}"
        assert case.check is not None and case.check(value), case.behaviour
        return
    assert kind == "error", f"expected {case.error.__name__}, the call returned {value!r}"
    assert isinstance(value, case.error), (
        f"expected {case.error.__name__}, got {type(value).__name__}: {value}"
    )
    assert re.search(case.match, str(value)), f"message {str(value)!r} does not match {case.match!r}"


def run_cli(argv: list[str], capfd, monkeypatch, missing: str | None = None) -> tuple[int, str]:
    """Run ``faast ARGV`` in this process; (exit status, everything written to file descriptor 2,
    including what loggers and progress bars write)."""
    if missing:
        monkeypatch.setitem(sys.modules, missing, None)
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return int(code or 0), capfd.readouterr().err


@pytest.mark.parametrize("case", CLI, ids=lambda c: c.id)
def test_cli_case(case, ctx, capfd, monkeypatch):
    argv = case.argv(ctx)  # builds the files first, so their progress bars are not captured
    code, err = run_cli(argv, capfd, monkeypatch, case.missing)
    assert code == case.code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("faast") and "error:" in lines[0]
    assert "Traceback" not in err
    assert re.search(case.match, lines[0]), f"{lines[0]!r} does not match {case.match!r}"


def _python_m(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "faast.cli", *argv], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_process_prints_one_line(tmp_path):
    """A real ``python -m faast.cli`` process: exit status 1, one line on stderr, no traceback."""
    bad = tmp_path / "notes.safetensors"
    bad.write_text("not safetensors")
    plain = _python_m("lm", "tasks", str(bad))
    assert plain.returncode == 1
    assert plain.stderr.strip().count("\n") == 0 and "Traceback" not in plain.stderr
    assert "not a readable safetensors file" in plain.stderr


def test_debug_shows_the_traceback(tmp_path, capsys):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("not safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        main(["--debug", "lm", "tasks", str(bad)])
    assert capsys.readouterr().err == ""


def test_the_published_table_lists_every_case():
    """docs/bad-inputs.md is regenerated (benchmarks/bad_inputs_table.py) when cases change."""
    table = (REPO / "docs" / "bad-inputs.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(CASES) + len(CLI)
    missing = [c.id for c in [*CASES, *CLI] if f"| {c.input.replace('|', chr(92) + '|')} |" not in table]
    assert not missing, f"not in docs/bad-inputs.md (rerun benchmarks/bad_inputs_table.py): {missing}"


def test_the_readme_counts_the_catalogue():
    """The README's Reliability section gives the number of catalogued cases: the current one."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    counted = re.search(r"\((\d+) catalogued cases", readme)
    assert counted is not None and int(counted.group(1)) == len(CASES) + len(CLI), (
        f"README.md says {counted and counted.group(1)} catalogued cases, "
        f"the catalogue holds {len(CASES) + len(CLI)}"
    )


def _bad_inputs_table():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bad_inputs_table
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return bad_inputs_table


def test_the_reliability_summary_counts_the_catalogue():
    """docs/reliability.md's table of cases per group is the one the generator writes now."""
    table = _bad_inputs_table()
    expected = table.group_table(table.catalogue_entries())
    page = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert f"{expected}\n<!-- faast:{table.GROUPS_BLOCK}:end -->" in page, (
        "docs/reliability.md is stale: rerun python benchmarks/bad_inputs_table.py"
    )


def test_the_reliability_summary_refuses_an_entry_of_no_group():
    table = _bad_inputs_table()
    with pytest.raises(ValueError, match="'NewThing' belongs to no group"):
        table.group_table(["GramStats.add", "NewThing.call"])
    counted = table.group_table(["GramStats.add", "Cut.apply", "CLI", "FaastClassifier.fit"])
    assert counted.startswith("The catalogue holds 4 cases:")
    assert "| Solver (`GramStats`, `Cut`) | 2 |" in counted and "| CLI (" in counted
