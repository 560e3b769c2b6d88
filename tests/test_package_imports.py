"""``import faast`` and the command line's parser load torch and scikit-learn only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import faast


def _loaded_after(code: str) -> set[str]:
    """The heavy modules loaded by a fresh interpreter that runs ``code``."""
    heavy = "('torch', 'sklearn', 'transformers')"
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_package_and_the_parser_import_nothing_heavy():
    assert _loaded_after("import faast") == set()
    assert _loaded_after("import faast.cli; faast.cli.build_parser()") == set()  # faast --help
    assert _loaded_after("from faast import FaastClassifier") >= {"torch", "sklearn"}


def test_public_names_resolve_on_first_use_and_others_are_named():
    from faast.classifier import FaastClassifier
    from faast.solver import GramStats

    assert faast.FaastClassifier is FaastClassifier and faast.GramStats is GramStats
    assert set(faast.__all__) <= set(dir(faast))
    for name in faast.__all__:
        assert getattr(faast, name) is not None
    with pytest.raises(AttributeError, match="module 'faast' has no attribute 'Nope'"):
        faast.Nope  # noqa: B018
