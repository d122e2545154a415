"""Sample sets from a Hugging Face Hub dataset repository.

    folder = download_dataset("hf://datasets/org/name")        # or hf://org/name, [@revision][/subdir]
    entries = find_sample_sets(folder)

The repository is fetched once with `huggingface_hub.snapshot_download` into the Hub cache. With
`HF_HUB_OFFLINE=1` only the cache is used; any failure (offline, unknown repo, private repo, a stalled
connection) becomes one DataError saying what happened and how to get the data some other way.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sdpose_core.errors import DataError

HUB_DATASET_PREFIX = "hf://"
DEFAULT_TIMEOUT_S = 20.0


def is_hub_address(spec: str | os.PathLike | None) -> bool:
    return isinstance(spec, str) and spec.strip().startswith(HUB_DATASET_PREFIX)


def hub_offline() -> bool:
    """True when huggingface_hub is told to stay offline (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def parse_hub_address(spec: str) -> tuple[str, str | None, str]:
    """hf://[datasets/]org/name[@revision][/subdir] -> (repo_id, revision, subdir)."""
    parts = [p for p in spec.strip()[len(HUB_DATASET_PREFIX):].split("/") if p]
    if parts and parts[0] == "datasets":
        parts = parts[1:]
    if len(parts) < 2:
        raise DataError(f"bad Hub dataset address {spec!r}; expected hf://datasets/org/name[/subfolder]")
    repo_id, subdir = "/".join(parts[:2]), "/".join(parts[2:])
    revision = None
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    return repo_id, revision, subdir


def download_dataset(
    spec: str, cache_dir: str | os.PathLike | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Path:
    """The local folder of a Hub dataset repo (downloaded or from the cache); DataError when unavailable."""
    from huggingface_hub import snapshot_download

    repo_id, revision, subdir = parse_hub_address(spec)
    offline = hub_offline()
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["path"] = snapshot_download(
                repo_id, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                local_files_only=offline, etag_timeout=timeout_s,
                allow_patterns=[f"{subdir}/*"] if subdir else None,
            )
        except Exception as exc:  # the Hub raises many error types; each becomes one message below
            outcome["error"] = exc

    # a daemon thread bounds the wait even when a connection stalls past the Hub client's own timeouts
    worker = threading.Thread(target=fetch, daemon=True)
    worker.start()
    worker.join(timeout_s * 3)
    mode = "offline (HF_HUB_OFFLINE=1: only the local Hub cache is used)" if offline else "online"
    if worker.is_alive():
        raise DataError(f"Hub dataset {repo_id!r}: no answer within {timeout_s * 3:.0f} s ({mode}); check the "
                        "network, or download the dataset yourself and open its folder")
    if "error" in outcome:
        error = outcome["error"]
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(
            f"cannot get Hub dataset {repo_id!r}{' @' + revision if revision else ''} ({mode}): "
            f"{type(error).__name__}: {reason}. Check the name and the network (or log in for a private "
            "repo), or download it while online and open the local folder instead"
        ) from error
    folder = Path(outcome["path"]) / subdir
    if not folder.is_dir():
        raise DataError(f"Hub dataset {repo_id!r} has no folder {subdir!r}")
    return folder
