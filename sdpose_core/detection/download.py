"""Download the ONNX person detectors from their official releases (where the network allows).

    path = download_detector("yolox-nano")          # -> <folder>/yolox_nano.onnx, checked against its SHA-256
    path = download_detector("rtmdet-nano")         # the mmpose SDK zip -> its end2end.onnx as rtmdet_nano_person.onnx

The default folder is `$SDPOSE_DETECTORS` when set, else `detectors/` in the sdpose cache folder
(`$SDPOSE_CACHE_DIR`, else `~/.cache/sdpose`); `sdpose_core.detection.factory` looks there. A download is
checked first (size and SHA-256 where the release records them), then written to a `.part` file that is
renamed into place, so an interrupted or wrong download never looks like a detector. Offline, the error says where to put the file by
hand. `python -m sdpose_core.detection download [NAME]` runs this.

The recorded sizes / digests of the official files come from ../shared/detectors/README.md (they were
recorded by other public projects; the copies in ../shared/detectors are other exports of the same
weights). The RTMDet SDK export is a fixed 320x320 graph; the detector reads its input size from the graph.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sdpose_core.errors import CheckpointError, ConfigError

DETECTORS_ENV = "SDPOSE_DETECTORS"
CHUNK = 1 << 16


@dataclass(frozen=True)
class DetectorRelease:
    """Where a detector's official ONNX comes from. `member`: the file inside a zip (None: the URL is the
    .onnx itself); `sha256` / `size`: of the .onnx (None: not recorded, not checked)."""

    name: str
    file_name: str  # what it is saved as (the name factory.py looks for)
    url: str
    licence: str
    member: str | None = None
    sha256: str | None = None
    size: int | None = None


RELEASES = {
    "rtmdet-nano": DetectorRelease(
        "rtmdet-nano", "rtmdet_nano_person.onnx",
        "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"
        "rtmdet_nano_8xb32-100e_coco-obj365-person-05d8511e.zip",
        "Apache-2.0 (OpenMMLab mmpose)", member="end2end.onnx",
        sha256="8297e829ccc5590c8e2d32d5a211f322a0585fb7467eec85eb12c9525b0b95d6"),
    "yolox-nano": DetectorRelease(
        "yolox-nano", "yolox_nano.onnx",
        "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx",
        "Apache-2.0 (Megvii YOLOX)",
        sha256="c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d", size=3_659_407),
}


def download_folder() -> Path:
    """Where downloads go: `$SDPOSE_DETECTORS`, else `<sdpose cache>/detectors`."""
    env = os.environ.get(DETECTORS_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    from sdpose_core.paths import cache_root

    return cache_root() / "detectors"


def _fetch(url: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - fixed https release URLs
            chunks = []
            while chunk := response.read(CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        raise CheckpointError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(f"cannot download {url}: {reason}") from exc


def _onnx_bytes(release: DetectorRelease, payload: bytes) -> bytes:
    if release.member is None:
        return payload
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names = [n for n in archive.namelist() if n == release.member or n.endswith("/" + release.member)]
            if not names:
                raise CheckpointError(f"{release.url} has no {release.member} (it holds "
                                      f"{', '.join(archive.namelist()[:8]) or 'nothing'})")
            return archive.read(names[0])
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{release.url} is not a zip archive ({len(payload)} bytes): {exc}") from exc


def _check(release: DetectorRelease, data: bytes) -> None:
    if release.size is not None and len(data) != release.size:
        raise CheckpointError(f"the download of {release.name} has {len(data):,} bytes, the official file "
                              f"{release.size:,}: incomplete or a different file; nothing was saved")
    digest = hashlib.sha256(data).hexdigest()
    if release.sha256 is not None and digest != release.sha256:
        raise CheckpointError(f"the download of {release.name} has SHA-256 {digest}, the official file "
                              f"{release.sha256}: a different file; nothing was saved")


def download_detector(name: str, folder: str | os.PathLike | None = None, timeout_s: float = 60.0,
                      release: DetectorRelease | None = None, overwrite: bool = False) -> Path:
    """Download detector `name` ("rtmdet-nano", "yolox-nano") into `folder` (default `download_folder()`)
    and return the .onnx path; an existing file is kept unless `overwrite`. `release` replaces the
    official entry (tests, mirrors). Raises CheckpointError naming the URL and what to do when the network
    is unreachable or the file does not match."""
    if release is None:
        if name not in RELEASES:
            raise ConfigError(f"no download known for detector {name!r}; choose one of {', '.join(RELEASES)}")
        release = RELEASES[name]
    target_dir = Path(folder).expanduser() if folder is not None else download_folder()
    target = target_dir / release.file_name
    if target.is_file() and not overwrite:
        return target
    try:
        data = _onnx_bytes(release, _fetch(release.url, timeout_s))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}. Where this machine cannot reach it, copy {release.file_name} "
                              f"({release.licence}) into {target_dir} by hand, or point {DETECTORS_ENV} to a folder "
                              "that has it") from exc
    _check(release, data)
    target_dir.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=release.file_name, suffix=".part", dir=target_dir)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return target
