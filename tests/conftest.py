"""Shared test configuration: deterministic hypothesis runs, threads, asset discovery."""

from __future__ import annotations

import os

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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``assets`` need the real offline assets; without them they skip locally but
    fail under CI (CI=true), where the test command fetches them first."""
    del config, items
