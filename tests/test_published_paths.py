"""Published files (results JSON/CSV, docs, model cards) carry repository-relative paths, never the
machine's absolute paths; the helper that makes them so."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from faast.publish import machine_paths, public_path, public_paths, write_public_csv, write_public_json

REPO = Path(__file__).resolve().parents[1]
PUBLISHED_SUFFIXES = (".json", ".csv", ".md", ".txt", ".tsv", ".jsonl")


def published_files() -> list[Path]:
    """Committed files of the published kinds (docs, results, README, model cards, data)."""
    try:
        out = subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        files = [REPO / f for f in out]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in REPO.rglob("*") if ".git" not in p.parts and ".venv" not in p.parts]
    return [p for p in files if p.suffix in PUBLISHED_SUFFIXES and p.is_file() and "tests" not in p.parts]


def test_committed_published_files_hold_no_machine_paths():
    files = published_files()
    assert any(p.parent.name == "results" for p in files)  # the scan does see the results
    offenders = {
        str(p.relative_to(REPO)): found
        for p in files
        if (found := machine_paths(p.read_text(encoding="utf-8", errors="replace")))
    }
    assert not offenders, f"absolute machine paths in published files: {offenders}"


def test_public_path(tmp_path):
    root = tmp_path / "repo"
    (root / "benchmarks").mkdir(parents=True)
    assert public_path(root / "benchmarks" / "x.json", root) == "benchmarks/x.json"
    assert public_path("benchmarks/x.json", root) == "benchmarks/x.json"
    assert public_path(Path.home() / ".cache" / "faast" / "m", root) == "~/.cache/faast/m"
    assert public_path("/opt/data/cifar/batch.bin", root) == ".../batch.bin"


def test_public_paths_of_nested_results(tmp_path):
    root = tmp_path / "repo"
    obj = {
        "out": str(root / "benchmarks" / "results" / "a.json"),
        "args": {"data": [str(root / "docs" / "x.md"), 3, None]},
        "command": f"python benchmarks/lm.py --out {root}/r.json --cache=/opt/c/faast",
        "url": "https://example.org/a/b.tar.gz",
        "rate": "tok/s, 1/2",
    }
    got = public_paths(obj, root)
    assert got == {
        "out": "benchmarks/results/a.json",
        "args": {"data": ["docs/x.md", 3, None]},
        "command": "python benchmarks/lm.py --out r.json --cache=.../faast",
        "url": "https://example.org/a/b.tar.gz",
        "rate": "tok/s, 1/2",
    }
    path = write_public_json(tmp_path / "out.json", obj, root=root)
    assert json.loads(path.read_text(encoding="utf-8")) == got
    assert not machine_paths(path.read_text(encoding="utf-8"))


def test_public_csv_has_every_column_relative_paths_and_replaces_atomically(tmp_path):
    root = tmp_path / "repo"
    rows = [{"k": 1, "file": str(root / "docs" / "a.csv")}, {"k": 2, "extra": "/opt/x/y.bin"}]
    path = tmp_path / "t.csv"
    path.write_text("old\n", encoding="utf-8")
    write_public_csv(path, rows, root=root)
    with open(path, newline="", encoding="utf-8") as fh:
        back = list(csv.DictReader(fh))
    assert back == [
        {"k": "1", "file": "docs/a.csv", "extra": ""},
        {"k": "2", "file": "", "extra": ".../y.bin"},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left beside it
    with pytest.raises(ValueError, match="no rows"):
        write_public_csv(path, [])
    assert path.read_text(encoding="utf-8").startswith("k,file,extra")  # a refused write keeps the file


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('"out": "/home/someone/faast/benchmarks/x.json"', ["/home/someone/faast/benchmarks/x.json"]),
        ("see /tmp/abc/x and /root/.cache/y", ["/root/.cache/y", "/tmp/abc/x"]),
        ("benchmarks/results/lm.json, ~/.cache/faast, https://x.org/tmp/", []),
    ],
)
def test_machine_paths(text, found):
    assert machine_paths(text) == found


def test_every_published_figure_is_written_atomically():
    """Plots go through ``faast.publish.save_figure`` (temporary file, then rename), never a bare
    ``savefig`` that an interrupted run would leave half-written in docs/ or results/."""
    code = [*sorted((REPO / "benchmarks").glob("*.py")), *sorted((REPO / "src" / "faast").rglob("*.py"))]
    bare = [
        f"{path.relative_to(REPO)}:{number}"
        for path in code
        if path.name != "publish.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ".savefig(" in line
    ]
    assert len(code) > 20 and bare == []
