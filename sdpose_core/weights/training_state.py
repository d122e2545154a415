"""A training run's state file (`RUN_DIR/last.pt`): its format tag and the one reader of it, shared by resuming
(`sdpose_core.train.state.load_train_state`) and by weights loading (a last.pt is also a weights spec).

Everything in it is tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(..., weights_only=True)`: no pickled code runs when a state is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sdpose_core.errors import CheckpointError

STATE_FORMAT = "sdpose-train-state/1"
STATE_SUFFIX = ".pt"


def read_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a run's last.pt; CheckpointError saying why `path` is not one (missing, unreadable,
    another format)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path} is not a readable training state ({exc})") from exc
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not an SDPose training state (expected format {STATE_FORMAT!r})")
    return dict(state)


def training_state_or_none(path: str | os.PathLike) -> dict[str, Any] | None:
    """`read_training_state` for a file that may hold weights of another kind (an official .pth, a state
    dict): None unless it is a readable .pt training state; the weights reader reports on the others."""
    if Path(path).suffix != STATE_SUFFIX:
        return None
    try:
        return read_training_state(path)
    except CheckpointError:
        return None
