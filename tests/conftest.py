"""Shared test configuration: deterministic hypothesis runs, threads, asset discovery."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "faast",
    derandomize=True,
    deadline=None,
    max_examples=int(os.environ.get("FAAST_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("faast")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def _missing_assets(names: tuple[str, ...]) -> list[str]:
    """Names (default: every asset of the ``tests`` group) that are not in the asset cache."""
    from faast.assets import core

    if not names:
        names = tuple(n for n, a in core.all_assets().items() if "tests" in a.groups)
    return [n for n in names if not core.get_asset(n).ready(core.asset_root(n))]


_MISSING = pytest.StashKey[str]()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``assets`` (optionally ``assets("name", ...)``) need the real offline assets;
    without them they skip locally but fail under CI (CI set), where the test command fetches
    them first."""
    del config
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    for item in items:
        marker = item.get_closest_marker("assets")
        if marker is None:
            continue
        missing = _missing_assets(tuple(marker.args))
        if not missing:
            continue
        message = f"offline assets missing: {', '.join(missing)}; run `faast assets fetch --group tests`"
        if ci:
            item.stash[_MISSING] = message  # failed in pytest_runtest_setup
        else:
            item.add_marker(pytest.mark.skip(reason=message))


def pytest_runtest_setup(item):
    message = item.stash.get(_MISSING, None)
    if message is not None:
        pytest.fail(message, pytrace=False)
