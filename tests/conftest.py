"""Test configuration: markers for optional hardware and the slow reference checks.

``needs_cuda`` and ``needs_tensorrt`` tests are skipped at collection when the thing is absent, with the reason
shown in the summary (``-rs``). ``slow`` tests run only with ``-m slow`` (or ``--run-slow``).
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def pytest_configure(config):
    # Under pytest-xdist (the README's command runs two workers on a 2-core machine) each worker, and every
    # `maskrt` subprocess it starts, computes on one thread: two workers with two threads each oversubscribe the
    # cores (measured on a 2-core machine like CI's: 701 s that way, 531 s with one thread each, 663 s serial).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    markexpr = config.getoption("-m") or ""
    run_slow = config.getoption("--run-slow") or "slow" in markexpr
    has_cuda = _has_cuda()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow reference check: run with -m slow or --run-slow"))
        if "needs_cuda" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "needs_tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT (pip install maskrt[gpu])"))
