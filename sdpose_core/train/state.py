"""The resumable training state (`RUN_DIR/last.pt`) and the random-number-generator snapshots in it.

Everything is stored as tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(..., weights_only=True)` (no pickled code is executed when resuming); the file's format and
its reader are `sdpose_core.weights.training_state`, which weights loading shares.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpose_core.errors import CheckpointError
from sdpose_core.weights.training_state import STATE_FORMAT, read_training_state


def capture_rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and python `random` generator states."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write atomically (temporary file + rename) so an interrupted save never leaves a broken last.pt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": STATE_FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a `last.pt`; a run directory is accepted too (its last.pt is used)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} does not exist (pass a run directory or its last.pt)")
    try:
        return read_training_state(path)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot resume: {exc}; to start from model weights use --init-weights instead") from exc
