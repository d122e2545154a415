"""Checks on what a visitor uploads, before anything large is decoded or unpacked (public mode).

Each check reads only what it must: the file size from the file system, an image's width and height from its
header (Pillow's lazy open; nothing is decoded), a video's length from its container (frame count / fps), a
zip's member list from its central directory. Over a limit -> LimitError naming the limit and its flag.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

from sdpose_core.errors import DataError, LimitError
from sdpose_core.hosting.limits import LIMIT_FLAGS, Limits


def _over(name: str, shown: str, limits: Limits) -> str:
    flag = LIMIT_FLAGS[name][0]
    return f"{shown}; the limit here is {getattr(limits, name):g} (the operator sets it with {flag})"


def check_upload_size(path: str | os.PathLike, limits: Limits) -> int:
    """The file's size in bytes; LimitError over `upload_mb`."""
    size = Path(path).stat().st_size
    if size > limits.upload_bytes:
        raise LimitError(_over("upload_mb", f"the upload {Path(path).name} is {size / 1e6:.1f} MB", limits))
    return size


def check_image_file(path: str | os.PathLike, limits: Limits) -> tuple[int, int]:
    """(width, height) from the image's header; LimitError over `upload_mb` or `image_megapixels`."""
    from PIL import Image

    check_upload_size(path, limits)
    try:
        with Image.open(path) as image:  # lazy: reads the header only
            width, height = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires before ours on huge headers
        raise LimitError(_over("image_megapixels", f"the image {Path(path).name} is too large ({exc})", limits)) from None
    except (OSError, SyntaxError) as exc:
        raise DataError(f"{Path(path).name} is not an image that can be read ({exc}); upload a JPEG or PNG") from None
    if width * height > limits.image_pixels:
        raise LimitError(_over("image_megapixels", f"the image is {width}x{height} = "
                                                  f"{width * height / 1e6:.1f} megapixels", limits))
    return width, height


def check_video_file(path: str | os.PathLike, limits: Limits) -> float:
    """The video's length in seconds; LimitError over `upload_mb` or `video_seconds`."""
    import cv2

    check_upload_size(path, limits)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"{Path(path).name} is not a video that can be read; upload an mp4, webm or avi")
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    if not fps or fps <= 0 or frames <= 0:
        raise DataError(f"{Path(path).name}: its length cannot be read (no frame count / fps); re-encode it as mp4")
    seconds = float(frames / fps)
    if seconds > limits.video_seconds:
        raise LimitError(_over("video_seconds", f"the video is {seconds:.0f} s long", limits))
    return seconds


def extract_annotation_zip(zip_path: str | os.PathLike, dest: str | os.PathLike, limits: Limits) -> Path:
    """Unpack a visitor's COCO / CrowdPose zip (annotation JSON + images) into `dest` after checking its member
    list: no absolute paths, no '..', no links, at most `zip_members` files and `zip_unpacked_mb` unpacked.
    Returns `dest`. Nothing is written when a check fails."""
    check_upload_size(zip_path, limits)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise DataError(f"{Path(zip_path).name} is not a zip file; zip the annotation JSON with its images") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.zip_members:
            raise LimitError(_over("zip_members", f"the zip holds {len(members)} files", limits))
        unpacked = sum(m.file_size for m in members)
        if unpacked > limits.zip_unpacked_mb * 1e6:
            raise LimitError(_over("zip_unpacked_mb", f"the zip unpacks to {unpacked / 1e6:.0f} MB", limits))
        for member in members:
            name = member.filename
            mode = member.external_attr >> 16
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name or stat.S_ISLNK(mode):
                raise DataError(f"the zip member {name!r} points outside the zip (absolute, '..' or a link); "
                                "zip plain files only")
        target = Path(dest)
        target.mkdir(parents=True, exist_ok=True)
        try:
            for member in members:
                if member.is_dir():
                    continue
                out = target / member.filename
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(out, "wb") as sink:
                    # copy at most the declared size: a member that lies about its size is cut, not trusted
                    shutil.copyfileobj(_bounded(source, member.file_size), sink)
        except Exception:
            shutil.rmtree(target, ignore_errors=True)
            raise
    return target


class _bounded:
    """A reader that stops after `limit` bytes (a zip member whose data is longer than its header says)."""

    def __init__(self, source, limit: int) -> None:  # noqa: ANN001 - any binary reader
        self.source, self.left = source, int(limit)

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size is None or size < 0 else min(size, self.left)
        chunk = self.source.read(size)
        self.left -= len(chunk)
        return chunk
