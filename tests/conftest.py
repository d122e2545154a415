"""Shared fixtures: where the real data and the official golden files are.

Tests that need `../shared` skip with a clear reason when it is absent, so the suite still runs
on a machine without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdpose_core.paths import data_root, reference_root

# Tests of other features run the plain torch backend (deterministic, no export); backend="auto" has its own
# tests (tests/deploy/test_backend_auto.py). SDPOSE_BACKEND=auto python -m pytest runs everything under auto.
os.environ.setdefault("SDPOSE_BACKEND", "torch")


def _share_cores_between_xdist_workers() -> None:
    """Under `pytest -n N` each worker (and every process it starts: the CLI, torchrun ranks) gets its share of
    the cores, so N thread teams do not fight over them (2-core AVX2 EPYC, `-n 2`: a first try with the thread share but
    spinning OpenMP waits and two ncnn threads in the LSP teacher test took 695 s, that test alone 297 s; as here,
    493 s and 68 s)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = threads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # an idle OpenMP thread sleeps instead of spinning
    import torch

    torch.set_num_threads(int(threads))


_share_cores_between_xdist_workers()


@pytest.fixture(scope="session", autouse=True)
def isolated_sdpose_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The auto backend caches exported graphs under SDPOSE_CACHE_DIR: tests use a temporary folder, never
    the user's ~/.cache/sdpose (nor the package)."""
    folder = tmp_path_factory.mktemp("sdpose_cache")
    previous = os.environ.get("SDPOSE_CACHE_DIR")
    os.environ["SDPOSE_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("SDPOSE_CACHE_DIR", None)
    else:
        os.environ["SDPOSE_CACHE_DIR"] = previous


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


@pytest.fixture(scope="session")
def png_claiming_size():
    """bytes of a PNG whose header claims width x height, with one tiny IDAT: a decompression-bomb upload."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def make(width: int, height: int) -> bytes:
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + chunk(b"IEND", b""))

    return make


@pytest.fixture(scope="session")
def quick_benchmark(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[dict, Path]:
    """One `run_benchmark(quick=True)` at 128x96 for every test that reads its result (it takes ~40 s on two
    cores): PP-TinyPose is timed too when the ncnn package and its files are there. (result, its JSON file).
    Needs the shared data: static int8 calibration reads real person crops from coco_mini_train."""
    from sdpose_core.benchmark.speed import run_benchmark
    from sdpose_core.inference import tinypose

    out = tmp_path_factory.mktemp("benchmark") / "bench.json"
    folder = tinypose.default_folder() if tinypose.available((128, 96)) is None else None
    return run_benchmark(json_out=out, quick=True, image_size=(128, 96), verbose=False, tinypose_folder=folder), out
