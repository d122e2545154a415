"""Where shared data lives. `SDPOSE_DATA` overrides the default `../shared/data` beside the project
(`SDPOSE_REFERENCE`, `SDPOSE_TEACHERS` the other shared folders)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The shared data folder: `$SDPOSE_DATA`, else `<project>/../shared/data`."""
    env = os.environ.get("SDPOSE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def reference_root() -> Path:
    """Golden files from the official SDPose code: `$SDPOSE_REFERENCE`, else `../shared/reference`."""
    env = os.environ.get("SDPOSE_REFERENCE")
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "reference").resolve()


def teachers_root() -> Path:
    """Pretrained teacher / baseline models: `$SDPOSE_TEACHERS`, else `<project>/../shared/teachers`."""
    env = os.environ.get("SDPOSE_TEACHERS")
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "teachers").resolve()
