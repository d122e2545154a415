"""The `hf://` vocabulary and Hub downloads that cannot hang: model weights and sample datasets share this.

    is_hub_address("hf://org/repo")                          # True: a Hub address, not a local path
    parse_hub_address("hf://org/repo@v1/coco/t")             # HubAddress("org/repo", "v1", "coco/t", "model")
    parse_hub_address("hf://datasets/org/name/val")          # HubAddress("org/name", None, "val", "dataset")

An address is `hf://[datasets/]org/repo[@revision][/subfolder]`; without `datasets/` the repo type is the
caller's (`default_repo_type`: weights are model repos, sample sets are dataset repos).

`fetch_snapshot` runs `huggingface_hub.snapshot_download` in a daemon thread and waits at most
3 x `timeout_s`, because a stalled connection can outlast the Hub client's own timeouts. In offline mode
(HF_HUB_OFFLINE) only the local cache is read. Failures come back as one `HubFetchError` that the
callers turn into their own clear message (CheckpointError, DataError).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, NamedTuple

from sdpose_core.errors import CheckpointError, DataError

HF_PREFIX = "hf://"
DATASETS_PART = "datasets"  # hf://datasets/org/name: a dataset repo, as in the Hub's own URLs
REPO_TYPES = ("model", "dataset")
HUB_ADDRESS_FORMS = ("hf://org/repo[@revision][/subfolder] "
                     "(a dataset repo: hf://datasets/org/name[@revision][/subfolder])")
OFFLINE_MODE = "offline mode (HF_HUB_OFFLINE=1): only the local Hub cache is used"
ONLINE_MODE = "online mode"


class HubAddressError(CheckpointError, DataError):
    """A malformed hf:// address. Weights callers catch it as a CheckpointError, sample-set callers as a
    DataError, so each reports it the way it reports its other bad input."""


class HubAddress(NamedTuple):
    """A parsed `hf://` address: what `fetch_snapshot` needs, and the folder inside the snapshot."""

    repo_id: str  # "org/repo"
    revision: str | None  # a branch, tag or commit; None: the default branch
    subfolder: str  # "" for the repo's top folder
    repo_type: str  # "model" or "dataset"


def is_hub_address(spec: str | os.PathLike | None) -> bool:
    """True for an `hf://` address (a string; a Path is always local)."""
    return isinstance(spec, str) and spec.strip().startswith(HF_PREFIX)


def parse_hub_address(spec: str, default_repo_type: str = "model") -> HubAddress:
    """`hf://[datasets/]org/repo[@revision][/subfolder]` -> HubAddress; HubAddressError when malformed."""
    if default_repo_type not in REPO_TYPES:
        raise ValueError(f"default_repo_type must be one of {REPO_TYPES}, got {default_repo_type!r}")
    if not is_hub_address(spec):
        raise HubAddressError(f"{spec!r} is not a Hub address; expected {HUB_ADDRESS_FORMS}")
    parts = [part for part in spec.strip()[len(HF_PREFIX):].split("/") if part]
    repo_type = default_repo_type
    if parts and parts[0] == DATASETS_PART:
        repo_type, parts = "dataset", parts[1:]
    if len(parts) < 2 or "@" in parts[0] or parts[1].startswith("@") or parts[1].endswith("@"):
        raise HubAddressError(f"bad Hub address {spec!r}; expected {HUB_ADDRESS_FORMS}")
    name, _, revision = parts[1].partition("@")
    return HubAddress(f"{parts[0]}/{name}", revision or None, "/".join(parts[2:]), repo_type)


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
