"""Reading and converting images: every accepted image becomes a contiguous HxWx3 uint8 RGB array.

`to_rgb_uint8`:
- grayscale (HxW or HxWx1) is replicated to three channels;
- RGBA drops its alpha channel (not composited: what is under a transparent pixel is kept);
- 16-bit images keep their top 8 bits (value >> 8, as OpenCV's 8-bit reading scales them);
- float images are taken as [0, 1] (clipped) and scaled to 0-255;
- anything else (empty, NaN, other dtypes or channel counts) raises DataError.
`load_image(path)` reads a file like the datasets do (cv2.IMREAD_COLOR: EXIF orientation applied,
16-bit scaled, alpha dropped) and returns RGB; unreadable files raise DataError naming the file.
`IMAGE_SUFFIXES`: the file types taken as images wherever media files are listed (predict, pseudo-label).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sdpose_core.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")  # all read by cv2.imread


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Any supported image array -> contiguous HxWx3 uint8 RGB (conversions in the module docstring)."""
    if image is None:
        raise DataError("no image given (got None): pass an HxWx3 uint8 RGB array or a file path")
    if isinstance(image, (str, os.PathLike)):
        raise DataError(f"got a file path ({image}), not pixels: read it with "
                        "sdpose_core.media.images.load_image(path) first")
    if not isinstance(image, np.ndarray):
        raise DataError(f"image must be a numpy array or a file path, got {type(image).__name__}")
    if image.size == 0 or image.ndim < 2 or min(image.shape[:2]) == 0:
        raise DataError(f"image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4) or image.ndim > 3:
        raise DataError(f"image must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise DataError("float image contains NaN or infinity")
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DataError(f"unsupported image dtype {image.dtype}: use uint8 (0-255), uint16, or float in [0, 1]")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGBA2RGB)
    return np.ascontiguousarray(image)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; DataError naming the file when it cannot be used."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"image file {file} does not exist (or is not a file)")
    if file.stat().st_size == 0:
        raise DataError(f"image file {file} is empty (0 bytes)")
    bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise DataError(f"cannot decode {file}: not an image format OpenCV reads (JPEG, PNG, BMP, TIFF, WebP...) "
                        "or the file is corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
