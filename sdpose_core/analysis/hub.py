"""Sample sets from a Hugging Face Hub dataset repository.

    folder = download_dataset("hf://datasets/org/name")        # or hf://org/name, [@revision][/subdir]
    entries = find_sample_sets(folder)

The repository is fetched once with `huggingface_hub.snapshot_download` into the Hub cache. With
`HF_HUB_OFFLINE=1` only the cache is used; any failure (offline, unknown repo, private repo, a stalled
connection) becomes one DataError saying what happened and how to get the data some other way.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdpose_core.errors import DataError
from sdpose_core.hub import HubFetchError, fetch_snapshot

HUB_DATASET_PREFIX = "hf://"
DEFAULT_TIMEOUT_S = 20.0


def is_hub_address(spec: str | os.PathLike | None) -> bool:
    return isinstance(spec, str) and spec.strip().startswith(HUB_DATASET_PREFIX)


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
    repo_id, revision, subdir = parse_hub_address(spec)
    try:
        snapshot = fetch_snapshot(repo_id, timeout_s, revision=revision, repo_type="dataset", cache_dir=cache_dir,
                                  allow_patterns=[f"{subdir}/*"] if subdir else None)
    except HubFetchError as exc:
        if exc.cause is None:
            raise DataError(f"Hub dataset {repo_id!r}: no answer within {exc.waited_s:.0f} s ({exc.mode}); check "
                            "the network, or download the dataset yourself and open its folder") from None
        raise DataError(
            f"cannot get Hub dataset {repo_id!r}{' @' + revision if revision else ''} ({exc.mode}): "
            f"{exc.reason()}. Check the name and the network (or log in for a private "
            "repo), or download it while online and open the local folder instead"
        ) from exc.cause
    folder = snapshot / subdir
    if not folder.is_dir():
        raise DataError(f"Hub dataset {repo_id!r} has no folder {subdir!r}")
    return folder
