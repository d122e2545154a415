"""Predictor inputs: reading and converting images, checking person boxes, and cropping them for the model.

Image reading and conversion live in `sdpose_core.media.images` (`load_image`, `to_rgb_uint8`, re-exported here).

Boxes are (x, y, w, h) in image pixels, clipped to the image; boxes with nothing left (outside the
image, zero or negative size, NaN) are dropped with a note instead of failing.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from sdpose_core.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from sdpose_core.data.transforms import box_to_center_scale, get_affine_matrix, invert_affine
from sdpose_core.errors import DataError
from sdpose_core.inference.results import CropBatch
from sdpose_core.media.images import load_image, to_rgb_uint8  # noqa: F401  (re-exported)

BOX_PADDING = 1.25  # mmpose top-down test: the box padded by 25% (and fixed to the input aspect ratio)
# Below this zoom (crop pixels per image pixel) crops are area-averaged before warping. Bilinear warping
# (what mmpose trains and tests with) aliases when it shrinks a lot; at COCO resolutions people shrink
# by less than 4x, so crops there are exactly mmpose's, while a 6000x4000 photo is not point-sampled.
ANTIALIAS_BELOW_ZOOM = 0.25
_MEAN_255 = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
_INV_STD_255 = 1.0 / (torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)


def parse_boxes(boxes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Detections, an [N, 4] xywh array or an [N, 5] array with scores -> (boxes (N, 4), scores (N,)).

    Boxes given without scores get score 1.0. A wrong layout raises DataError (that is a caller bug, not
    a bad box); bad values (NaN, outside the image) are handled by `sanitize_boxes`.
    """
    if isinstance(boxes, np.ndarray) or not hasattr(boxes, "__iter__"):
        items = None
    else:
        items = list(boxes)
        if items and all(hasattr(b, "box_xywh") for b in items):
            array = np.array([np.asarray(b.box_xywh, dtype=np.float64) for b in items]).reshape(-1, 4)
            return array, np.array([float(getattr(b, "score", 1.0)) for b in items], dtype=np.float64)
    array = np.asarray(boxes if items is None else items, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4)), np.zeros(0)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] not in (4, 5):
        raise DataError(f"boxes must be Detections or an [N, 4] (x, y, w, h) / [N, 5] (+ score) array; "
                        f"got shape {array.shape}")
    scores = array[:, 4].copy() if array.shape[1] == 5 else np.ones(len(array))
    return array[:, :4].copy(), scores


def sanitize_boxes(
    boxes: np.ndarray, scores: np.ndarray, image_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Clip boxes to the image and drop those with no area left. Returns (boxes, scores, kept index, notes)."""
    height, width = image_shape[:2]
    notes: list[str] = []
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    safe = np.where(finite[:, None], boxes, 0.0)
    x0 = np.clip(safe[:, 0], 0, width)
    y0 = np.clip(safe[:, 1], 0, height)
    x1 = np.clip(safe[:, 0] + np.maximum(safe[:, 2], 0), 0, width)
    y1 = np.clip(safe[:, 1] + np.maximum(safe[:, 3], 0), 0, height)
    clipped = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    keep = finite & (clipped[:, 2] > 0) & (clipped[:, 3] > 0)
    for index in np.flatnonzero(~keep):
        reason = "has NaN/infinite values" if not finite[index] else (
            "has zero or negative size" if min(boxes[index, 2], boxes[index, 3]) <= 0 else
            f"lies outside the {width}x{height} image")
        notes.append(f"box {index} {np.round(boxes[index], 1).tolist()} {reason}: dropped")
    moved = keep & (np.abs(clipped - safe).max(axis=1) > 1e-6)
    for index in np.flatnonzero(moved):
        notes.append(f"box {index} {np.round(boxes[index], 1).tolist()} reaches outside the {width}x{height} "
                     f"image: clipped to {np.round(clipped[index], 1).tolist()}")
    kept = np.flatnonzero(keep)
    return clipped[kept], scores[kept], kept, notes


def warp_person_crop(
    image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int], antialias: bool = True
) -> np.ndarray:
    """`cv2.warpAffine` of the crop; when it shrinks by more than 4x, the crop's source region is first
    area-averaged to the crop's resolution (bilinear sampling alone would alias), so a huge photo crops
    like the same photo taken at a lower resolution. The result stays `matrix`'s crop either way."""
    out_h, out_w = output_size
    zoom = float(np.hypot(matrix[0, 0], matrix[0, 1]))
    if zoom >= ANTIALIAS_BELOW_ZOOM or not antialias:
        return cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    height, width = image.shape[:2]
    corners = np.array([[0, 0], [out_w, 0], [0, out_h], [out_w, out_h]], dtype=np.float64)
    inverse = invert_affine(matrix)
    source = corners @ inverse[:, :2].T + inverse[:, 2]
    margin = 2.0 / zoom  # a couple of output pixels of context for the bilinear taps at the border
    x0 = int(np.clip(np.floor(source[:, 0].min() - margin), 0, width))
    y0 = int(np.clip(np.floor(source[:, 1].min() - margin), 0, height))
    x1 = int(np.clip(np.ceil(source[:, 0].max() + margin), 0, width))
    y1 = int(np.clip(np.ceil(source[:, 1].max() + margin), 0, height))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies (almost) entirely outside the image: black either way
        return cv2.warpAffine(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    small_w = max(1, int(round((x1 - x0) * zoom)))
    small_h = max(1, int(round((y1 - y0) * zoom)))
    small = cv2.resize(image[y0:y1, x0:x1], (small_w, small_h), interpolation=cv2.INTER_AREA)
    sx, sy = small_w / (x1 - x0), small_h / (y1 - y0)
    # cv2.resize maps small pixel (u, v) to region pixel ((u + 0.5) / sx - 0.5, (v + 0.5) / sy - 0.5)
    small_to_image = np.array([[1.0 / sx, 0.0, 0.5 / sx - 0.5 + x0], [0.0, 1.0 / sy, 0.5 / sy - 0.5 + y0],
                               [0.0, 0.0, 1.0]])
    return cv2.warpAffine(small, matrix @ small_to_image, (out_w, out_h), flags=cv2.INTER_LINEAR)


def normalize_batch(crops_rgb: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32, (x / 255 - mean) / std in one multiply-add."""
    count, height, width = crops_rgb.shape[:3]
    batch = torch.empty((count, 3, height, width), dtype=torch.float32)
    batch.copy_(torch.from_numpy(crops_rgb).permute(0, 3, 1, 2))  # one pass: HWC uint8 -> CHW float
    return batch.sub_(_MEAN_255).mul_(_INV_STD_255)


def crop_people(
    image_rgb: np.ndarray,
    boxes_xywh: np.ndarray,
    box_scores: np.ndarray,
    image_size: tuple[int, int],
    source_index: np.ndarray | None = None,
    notes: list[str] | None = None,
    antialias: bool = True,
) -> CropBatch:
    """Crop already-sanitised boxes: mmpose top-down test geometry (box padded 1.25, aspect fixed to the
    input's, unrotated), one warp per person (`warp_person_crop`), normalised as one batch."""
    count = int(boxes_xywh.shape[0])
    out_h, out_w = image_size
    centers, scales = box_to_center_scale(boxes_xywh.reshape(-1, 4), out_w / out_h, padding=BOX_PADDING)
    crops = np.empty((count, out_h, out_w, 3), dtype=np.uint8)
    matrices = np.empty((count, 2, 3), dtype=np.float64)
    for person in range(count):
        matrices[person] = get_affine_matrix(centers[person], scales[person], 0.0, image_size)
        crops[person] = warp_person_crop(image_rgb, matrices[person], image_size, antialias)
    return CropBatch(
        images=normalize_batch(crops), crops_rgb=crops, boxes_xywh=boxes_xywh.reshape(-1, 4),
        box_scores=np.asarray(box_scores, dtype=np.float64).reshape(-1), centers=centers, scales=scales,
        matrices=matrices,
        source_index=np.arange(count) if source_index is None else np.asarray(source_index, dtype=np.int64),
        notes=list(notes or []),
    )
