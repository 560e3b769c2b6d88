"""benchmarks/quote_results.py: the docs' quoted benchmark tables are the results files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import quote_results  # noqa: E402


@pytest.mark.parametrize("page", ["classifier.md", "tasks.md"])
def test_the_pages_quote_the_current_results(page):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert quote_results.PREFIX in text  # the page quotes at least one results file
    refreshed, changed = quote_results.refresh(text, quote_results.results_by_command())
    assert changed == [] and refreshed == text


def test_a_stale_block_is_replaced_and_an_unknown_command_refused(tmp_path):
    (tmp_path / "a.md").write_text("Command: `python benchmarks/a.py`  \n\n| x |\n|---|\n| 2 |\n")
    results = quote_results.results_by_command(tmp_path)
    page = "intro\n\n> Command: `python benchmarks/a.py`  \n>\n> | x |\n> |---|\n> | 1 |\n\nafter"
    refreshed, changed = quote_results.refresh(page, results)
    assert changed == ["a.md"]
    assert refreshed == page.replace("> | 1 |", "> | 2 |")
    with pytest.raises(ValueError, match="0 results files"):
        quote_results.refresh("> Command: `python benchmarks/b.py`\n> | y |", results)
