"""The run's weights folders (`best/`, `final/`, `epochs/epoch_NNN/`), each written atomically.

A folder is written in full under a temporary name beside its place and then renamed into it, so a run
killed while saving never leaves a half-written `model.safetensors` where the studio or `sdpose evaluate`
would load it. A folder that is already there (a resumed run writing `final/` again, a better `best/`) is
first renamed aside and removed after the new one is in place: between the two renames the name is
briefly absent, never incomplete.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from torch import nn

EPOCHS_DIR = "epochs"
_SNAPSHOT = re.compile(r"epoch_(\d+)")
_TEMPORARY = (".writing-", ".replaced-")  # prefixes of the folders save_weights_folder uses on the way


def save_weights_folder(model: nn.Module, folder: str | Path) -> Path:
    """`save_pretrained(model, folder)` atomically: written under a temporary name, then renamed."""
    from sdpose_core.weights.checkpoint import save_pretrained

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    writing = folder.with_name(f"{_TEMPORARY[0]}{folder.name}")
    replaced = folder.with_name(f"{_TEMPORARY[1]}{folder.name}")
    for leftover in (writing, replaced):  # from a run killed while it saved
        shutil.rmtree(leftover, ignore_errors=True)
    save_pretrained(model, writing)
    if folder.exists():
        os.replace(folder, replaced)
    os.replace(writing, folder)
    shutil.rmtree(replaced, ignore_errors=True)
    return folder


def snapshot_name(epoch_number: int) -> str:
    """`epoch_003` for epoch 3 (1-based, as the logs count)."""
    return f"epoch_{epoch_number:03d}"


def epoch_snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(epoch number, folder) of every `epochs/epoch_NNN/` of a run, oldest first."""
    root = Path(run_dir) / EPOCHS_DIR
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in root.iterdir()
             if path.is_dir() and (match := _SNAPSHOT.fullmatch(path.name))]
    return sorted(found)


def save_epoch_snapshot(model: nn.Module, run_dir: str | Path, epoch_number: int, keep: int) -> Path:
    """Write `epochs/epoch_NNN/` and remove the older snapshots beyond the newest `keep` (>= 1).

    Snapshots numbered after this epoch are removed too: they come from a run that went further before it
    was killed and resumed from an older last.pt (`save_every` > 1), and this run is redoing those epochs."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1 to write a snapshot, got {keep}")
    folder = save_weights_folder(model, Path(run_dir) / EPOCHS_DIR / snapshot_name(epoch_number))
    snapshots = epoch_snapshots(run_dir)
    kept = [path for number, path in snapshots if number <= epoch_number][-keep:]
    for _, path in snapshots:
        if path not in kept:
            shutil.rmtree(path)
    return folder
