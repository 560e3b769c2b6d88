"""What the installed package ships besides its modules."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import faast


def test_the_package_is_marked_typed_and_declares_the_marker():
    """PEP 561: ``py.typed`` inside the package (so type checkers read faast's hints) and listed
    in the package data (so a wheel carries it)."""
    assert (importlib.resources.files(faast) / "py.typed").is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    package_data = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"faast" = ["py.typed"]' in package_data
