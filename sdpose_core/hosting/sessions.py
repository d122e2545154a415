"""Per-visitor folders of a hosted studio: uploads, reviews and exports of one browser session, under one data
dir, deleted some hours after their last use.

    dirs = SessionDirs("/data/sdpose-state", ttl_hours=6)
    folder = dirs.folder(request.session_hash)     # <state>/sessions/<digest>/ (created, its time touched)
    dirs.cleanup()                                  # removes sessions untouched for ttl_hours
    dirs.all_sessions()                             # the operator's view: every live session folder

A session's folder name is a digest of the session id, so no visitor string ever becomes a path part.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from sdpose_core.errors import AccessError

SESSIONS = "sessions"
TOUCH_FILE = ".last_use"
CLEANUP_EVERY_S = 600.0  # stale sessions are looked for on a session's use, at most this often


class SessionDirs:
    """Folders per session under `state_dir/sessions` (see the module docstring)."""

    def __init__(self, state_dir: str | os.PathLike, ttl_hours: float) -> None:
        self.root = Path(state_dir).expanduser().resolve() / SESSIONS
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl_s = float(ttl_hours) * 3600.0
        self._last_cleanup = float("-inf")  # the first use cleans up what an earlier server left

    @staticmethod
    def name_for(session_id: str) -> str:
        return hashlib.sha256(str(session_id).encode()).hexdigest()[:24]

    def folder(self, session_id: str | None) -> Path:
        """This session's folder (created; its last use set to now). AccessError without a session id."""
        if not session_id:
            raise AccessError("public demo: this request has no browser session; reload the page")
        folder = self.root / self.name_for(session_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TOUCH_FILE).touch()
        if time.monotonic() - self._last_cleanup > CLEANUP_EVERY_S:
            self._last_cleanup = time.monotonic()
            self.cleanup()
        return folder

    def last_use(self, folder: Path) -> float:
        marker = folder / TOUCH_FILE
        return (marker if marker.exists() else folder).stat().st_mtime

    def all_sessions(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.is_dir())

    def cleanup(self, now: float | None = None) -> list[Path]:
        """Delete the sessions unused for longer than the TTL; returns what was removed."""
        now = time.time() if now is None else now
        removed = []
        for folder in self.all_sessions():
            try:
                stale = now - self.last_use(folder) > self.ttl_s
            except FileNotFoundError:  # removed meanwhile by another cleanup
                continue
            if stale:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed
