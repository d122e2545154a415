"""Saying what a weights file is when it cannot be read as one.

torch.load's own message for a file that is not a checkpoint (random bytes, an HTML page saved by a failed
download, a Git LFS pointer) is about unpickling security ("weights_only=False will likely succeed"),
which is misleading; these helpers look at the file's first bytes instead and put torch's errors in one line.
"""

from __future__ import annotations

import re
from pathlib import Path

EXPECTED_WEIGHTS = ("expected an official SDPose .pth, our folder with model.safetensors + config.json, a run's "
                    "last.pt, hf://org/repo[/subdir] or an .onnx export")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
# what a file that is no checkpoint at all often turns out to be
LOOKALIKES = ((b"version https://git-lfs", "a Git LFS pointer: fetch the real file with `git lfs pull`"),
              (b"<!doctype html", "a web page: the download saved a page instead of the file"),
              (b"<html", "a web page: the download saved a page instead of the file"))


def not_a_torch_file(path: Path) -> str | None:
    """Why `path` cannot be a torch.save file (a zip archive or a pickle of protocol 2+), else None."""
    with path.open("rb") as handle:
        head = handle.read(32)
    if head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return None
    if not head:
        return "an empty file (0 bytes)"
    found = next((what for start, what in LOOKALIKES if head.lower().startswith(start)), None)
    return f"not a zip/pickle checkpoint: {path.stat().st_size:,} bytes starting with {head[:16]!r}" + (
        f", {found}" if found else "")


def torch_load_problem(exc: Exception) -> str:
    """torch.load's error in one line (its weights-only message runs to a paragraph)."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused or "Weights only load failed" in text:
        what = f" ({refused.group(1)})" if refused else ""
        return (f"it stores Python objects besides tensors{what}. If it is a trusted official checkpoint with "
                "such metadata, pass allow_pickle=True (runs pickle code: only for files you trust)")
    if "failed finding central directory" in text:
        return "a truncated or damaged zip archive (an interrupted download or copy?); get the file again"
    first = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", (text.strip().splitlines() or [""])[0])
    return f"torch.load cannot read it ({first[:200] or type(exc).__name__})"
