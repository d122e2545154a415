"""Shared fixtures: where the real data and the official golden files are.

Tests that need `../shared` skip with a clear reason when it is absent, so the suite still runs
on a machine without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpose_core.paths import data_root, reference_root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if not (root / "coco").is_dir():
        pytest.skip(f"shared data not found at {root} (set SDPOSE_DATA to the folder with coco/, crowdpose/)")
    return root


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    root = reference_root()
    if not (root / "golden_tiny.pt").is_file():
        pytest.skip(f"official reference files not found at {root} (set SDPOSE_REFERENCE)")
    return root


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine an OpenMP thread
    team competing with other processes can run 10x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
