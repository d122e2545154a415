"""Hugging Face Hub downloads that cannot hang: model weights and sample datasets share this.

`fetch_snapshot` runs `huggingface_hub.snapshot_download` in a daemon thread and waits at most
3 x `timeout_s`, because a stalled connection can outlast the Hub client's own timeouts. In offline mode
(HF_HUB_OFFLINE) only the local cache is read. Failures come back as one `HubFetchError` that the
callers turn into their own clear message (CheckpointError, DataError).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

OFFLINE_MODE = "offline mode (HF_HUB_OFFLINE=1): only the local Hub cache is used"
ONLINE_MODE = "online mode"


def hub_offline() -> bool:
    """True when huggingface_hub is told to stay offline (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


class HubFetchError(Exception):
    """The snapshot could not be had: `cause` is the Hub's exception, or None when it did not answer in
    `waited_s` seconds; `mode` says whether the Hub was reachable at all (online / offline)."""

    def __init__(self, repo_id: str, mode: str, waited_s: float, cause: BaseException | None) -> None:
        self.repo_id, self.mode, self.waited_s, self.cause = repo_id, mode, waited_s, cause
        super().__init__(f"{repo_id}: {cause!r}" if cause else f"{repo_id}: no answer within {waited_s:.0f} s")

    def reason(self) -> str:
        """`ExceptionType: first line of its message`, for one-line errors."""
        text = str(self.cause).strip()
        return f"{type(self.cause).__name__}: {text.splitlines()[0].rstrip('.') if text else ''}".rstrip(": ")


def fetch_snapshot(repo_id: str, timeout_s: float, revision: str | None = None, repo_type: str | None = None,
                   cache_dir: str | os.PathLike | None = None, allow_patterns: list[str] | None = None) -> Path:
    """The local folder of a Hub repo snapshot (downloaded, or from the cache in offline mode)."""
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    outcome: dict[str, Any] = {}

    def download() -> None:
        try:
            outcome["path"] = snapshot_download(
                repo_id, repo_type=repo_type, revision=revision, cache_dir=cache_dir, local_files_only=offline,
                allow_patterns=allow_patterns, etag_timeout=timeout_s,
            )
        except Exception as exc:  # the Hub raises many error types; the caller words one message
            outcome["error"] = exc

    worker = threading.Thread(target=download, daemon=True)
    worker.start()
    worker.join(timeout_s * 3)
    mode = OFFLINE_MODE if offline else ONLINE_MODE
    if worker.is_alive():
        raise HubFetchError(repo_id, mode, timeout_s * 3, None)
    if "error" in outcome:
        raise HubFetchError(repo_id, mode, timeout_s * 3, outcome["error"])
    return Path(outcome["path"])
