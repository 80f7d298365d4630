"""bench/ runs in the normal test run as plain tests: pytest-benchmark is disabled by the
``--benchmark-disable`` in pyproject's addopts, every case runs once at a small shape and
its result is checked against PyTorch.

The benchmark shapes (0.26-1 GB arrays) are marked ``bench_full`` and deselected unless
benchmarks are switched on: ``--benchmark-enable`` (or ``--benchmark-only``) on the command
line, or ``FASTLOSS_BENCH_FULL=1`` in the environment.
"""

from __future__ import annotations

import os

import pytest


def full_mode(config) -> bool:
    if os.environ.get("FASTLOSS_BENCH_FULL", "").lower() in ("1", "true", "yes", "on"):
        return True
    try:
        return bool(config.getoption("benchmark_enable") or config.getoption("benchmark_only"))
    except ValueError:  # pytest-benchmark not installed
        return False


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "bench_full: benchmark shape; runs only with --benchmark-enable or FASTLOSS_BENCH_FULL=1",
    )


def pytest_collection_modifyitems(config, items):
    if full_mode(config):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("bench_full") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _bench_threads():
    """Both sides on the same thread count, as in report.py."""
    import numba
    import torch

    import fastloss

    old_fl, old_torch = fastloss.get_num_threads(), torch.get_num_threads()
    fastloss.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(2)
    yield
    fastloss.set_num_threads(old_fl)
    torch.set_num_threads(old_torch)
