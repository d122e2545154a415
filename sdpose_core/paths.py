"""Where shared data lives. `SDPOSE_DATA` overrides the default `../shared/data` beside the project
(`SDPOSE_REFERENCE`, `SDPOSE_TEACHERS` the other shared folders)."""

from __future__ import annotations

import os
from pathlib import Path

from sdpose_core.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
CACHE_ENV = "SDPOSE_CACHE_DIR"


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


def cache_root() -> Path:
    """The sdpose cache folder: `$SDPOSE_CACHE_DIR`, else `$XDG_CACHE_HOME/sdpose`, else `~/.cache/sdpose`.

    Raises ConfigError when it would lie inside the sdpose_core package or the project checkout."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sdpose"
    root = root.resolve()
    for forbidden, what in ((PACKAGE_DIR, "the sdpose_core package"), (PROJECT_ROOT.resolve(), "the project")):
        if root == forbidden or forbidden in root.parents:
            raise ConfigError(f"the sdpose cache folder {root} is inside {what} ({forbidden}); set {CACHE_ENV} "
                              "to a folder outside it (e.g. ~/.cache/sdpose)")
    return root
