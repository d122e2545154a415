"""Geometry of top-down crops: boxes <-> (center, scale), the crop affine, warping, and its inverse.

Conventions (mmpose 0.x top-down, non-UDP), except that `scale` is in PIXELS rather than pixels / 200:

- a person box is described by `center` (x, y) and `scale` (w, h): the box padded (1.25 for person
  boxes) and widened or heightened so that w / h equals the network input's width / height;
- sizes such as `image_size` and `heatmap_size` are (height, width), like `ModelConfig`;
- the crop affine maps `center` to the middle of the output and `scale[0]` pixels of width onto the
  output width (one uniform zoom: mmpose builds it from the width only), rotating by `rotation`
  degrees about the center;
- image coordinates are continuous with pixel centres at integers (cv2 convention), so a horizontal
  flip of an image of width W maps x to W - 1 - x.
"""

from __future__ import annotations

import cv2
import numpy as np


def aspect_ratio_of(image_size: tuple[int, int]) -> float:
    """Width / height of a (height, width) input size: the aspect every person box is fixed to."""
    height, width = image_size
    return float(width) / float(height)


def box_to_center_scale(
    boxes_xywh: np.ndarray, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) of boxes (x, y, w, h) in pixels, vectorised over leading dimensions.

    mmpose `bbox_xywh2cs`: the box is grown (never shrunk) to `aspect_ratio` = w / h around its
    centre, then multiplied by `padding`.
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    x, y, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    center = np.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    too_wide = w > aspect_ratio * h
    fixed_w = np.where(too_wide, w, h * aspect_ratio)
    fixed_h = np.where(too_wide, w / aspect_ratio, h)
    scale = np.stack([fixed_w, fixed_h], axis=-1) * padding
    return center, scale


def center_scale_to_box(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The (x, y, w, h) box covered by a crop (padding included), vectorised."""
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    return np.concatenate([center - scale * 0.5, scale], axis=-1)


def clip_box_xywh(box_xywh: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """mmpose's GT box sanitising; None when nothing with positive area is left.

    Reproduces mmpose exactly, including its quirk that the right/bottom edge is measured from the
    clipped left/top edge (x2 = min(W - 1, max(0, x) + w)).
    """
    x, y, w, h = (float(v) for v in box_xywh[:4])
    x1 = max(0.0, x)
    y1 = max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w))
    y2 = min(height - 1.0, y1 + max(0.0, h))
    if x2 > x1 and y2 > y1:
        return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)
    return None


def get_affine_matrix(
    center: np.ndarray,
    scale: np.ndarray,
    rotation: float,
    output_size: tuple[int, int],
    flip_image_width: int | None = None,
) -> np.ndarray:
    """The 2x3 matrix mapping image points into an output crop of `output_size` (height, width).

    Equals mmpose `get_affine_transform(center, scale / 200, rotation, (w, h))` (which builds the same
    similarity from three points) in closed form and float64. With `flip_image_width` set, the image
    is first mirrored (x -> W - 1 - x) and `center` is mirrored with it, as mmpose's TopDownRandomFlip
    does; `center` is always given in the unflipped image. Folding the flip into the matrix keeps the
    crop to one `cv2.warpAffine` call.
    """
    out_h, out_w = output_size
    cx, cy = float(center[0]), float(center[1])
    zoom = out_w / float(scale[0])
    theta = np.deg2rad(rotation)
    cos, sin = np.cos(theta) * zoom, np.sin(theta) * zoom
    if flip_image_width is not None:
        cx = flip_image_width - 1.0 - cx
    # zoom * R(-rotation), then move `center` to the middle of the output
    linear = np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    translation = np.array([out_w * 0.5, out_h * 0.5]) - linear @ np.array([cx, cy])
    matrix = np.concatenate([linear, translation[:, None]], axis=1)
    if flip_image_width is not None:
        mirror = np.array([[-1.0, 0.0, flip_image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = matrix @ mirror
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix, also 2x3."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to points (..., 2)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_crop(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Crop with bilinear interpolation (mmpose TopDownAffine); outside the image is black."""
    out_h, out_w = output_size
    return cv2.warpAffine(image, matrix, (int(out_w), int(out_h)), flags=cv2.INTER_LINEAR)

