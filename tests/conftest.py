"""Shared fixtures and marker handling.

- `slow` tests run only with RUN_SLOW=1 (CI on 2 cores skips them).
- `gpu` tests run only when CUDA is available.
- `shared_data` gives ../shared/data or skips with a message naming the missing folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from src.paths import shared_data_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = os.environ.get("RUN_SLOW") == "1"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_slow = pytest.mark.skip(reason="slow: set RUN_SLOW=1 to run")
    skip_gpu = pytest.mark.skip(reason="gpu: no CUDA device here")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Test models are tiny and gain nothing from threads; on a busy 2-core machine a second OpenMP
    thread waiting for a core makes every op slow. Restored after each test."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (../shared/data beside the checkout)")
    return root


@pytest.fixture
def tmp_tracking_uri(tmp_path: Path) -> str:
    """An MLflow sqlite store private to one test."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
