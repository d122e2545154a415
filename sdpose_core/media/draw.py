"""Drawing skeletons on images (used by the app, `predict_media` and the predict command).

    drawn = draw_pose(image_rgb, keypoints, score_threshold=0.3)     # keypoints (K, 3) or (N, K, 3)

Limbs are colour-coded by body side (person's left orange, right blue, centre green) when the joint
names are known (COCO-17 / CrowdPose-14, picked by the keypoint count). A joint scoring below
`score_threshold` is drawn as a hollow grey ring and its limbs as thin grey lines, so uncertain parts
of a pose are visibly different; joints with non-finite coordinates (NaN) are skipped with their limbs.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from sdpose_core.errors import DataError
from sdpose_core.keypoints import KeypointLayout, get_layout

# RGB
LEFT_COLOR = (255, 140, 0)
RIGHT_COLOR = (30, 144, 255)
CENTER_COLOR = (50, 205, 50)
LOW_CONFIDENCE_COLOR = (160, 160, 160)
OUTLINE_COLOR = (255, 255, 255)
BOX_COLOR = (255, 215, 0)
_MAX_COORD = 1e5  # cv2 takes int32 pixel coordinates; far-away points are clamped before rounding


def _side(name: str) -> str:
    return "left" if name.startswith("left") else "right" if name.startswith("right") else "center"


def limb_colors(layout: KeypointLayout | None, skeleton: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """One RGB colour per limb: by body side when the layout names the joints, else all centre green."""
    palette = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "center": CENTER_COLOR}
    if layout is None:
        return [CENTER_COLOR] * len(skeleton)
    colors = []
    for a, b in skeleton:
        sides = {_side(layout.joints[a]), _side(layout.joints[b])}
        colors.append(palette[sides.pop()] if len(sides) == 1 else CENTER_COLOR)
    return colors


def joint_colors(layout: KeypointLayout | None, count: int) -> list[tuple[int, int, int]]:
    palette = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "center": CENTER_COLOR}
    if layout is None:
        return [CENTER_COLOR] * count
    return [palette[_side(name)] for name in layout.joints]


def _as_people(keypoints: np.ndarray) -> np.ndarray:
    array = np.asarray(keypoints, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[2] not in (2, 3):
        raise DataError(f"keypoints must be (K, 2|3) or (N, K, 2|3), got shape {np.shape(keypoints)}")
    if array.shape[2] == 2:  # no scores: every joint counts as confident
        array = np.concatenate([array, np.ones((*array.shape[:2], 1))], axis=2)
    return array


def _point(xy: np.ndarray) -> tuple[int, int]:
    x, y = np.clip(xy, -_MAX_COORD, _MAX_COORD)
    return int(round(x)), int(round(y))


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Sequence[tuple[int, int]] | None = None,
    score_threshold: float = 0.3,
    boxes_xywh: np.ndarray | Sequence[Sequence[float]] | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """A copy of `image` (H, W, 3) uint8 RGB with every person's skeleton drawn.

    `keypoints`: (K, 3) for one person or (N, K, 3) (x, y in pixels, score); (.., 2) means all confident.
    `skeleton`: joint index pairs; None uses the COCO-17 / CrowdPose-14 skeleton for K = 17 / 14 (other
    K: joints only). `boxes_xywh`: optional person boxes drawn as thin rectangles.
    """
    canvas = np.array(image, dtype=np.uint8, copy=True)
    if canvas.ndim != 3 or canvas.shape[2] != 3:
        raise DataError(f"image must be (H, W, 3) uint8 RGB, got shape {canvas.shape}")
    people = _as_people(keypoints)
    count = people.shape[1]
    try:
        layout: KeypointLayout | None = get_layout(count)
    except ValueError:
        layout = None
    if skeleton is None:
        skeleton = layout.skeleton if layout is not None else ()
    bad = [pair for pair in skeleton if not (0 <= pair[0] < count and 0 <= pair[1] < count)]
    if bad:
        raise DataError(f"skeleton pairs {bad} refer to joints outside 0..{count - 1}")
    width = thickness or max(1, int(round(min(canvas.shape[:2]) / 300)))
    radius = width + 2
    limbs = limb_colors(layout, skeleton)
    joints = joint_colors(layout, count)
    if boxes_xywh is not None:
        for x, y, w, h in np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4):
            cv2.rectangle(canvas, _point(np.array([x, y])), _point(np.array([x + w, y + h])), BOX_COLOR, 1, cv2.LINE_AA)
    for person in people:
        finite = np.isfinite(person[:, :2]).all(axis=1)
        confident = finite & (np.nan_to_num(person[:, 2], nan=-1.0) >= score_threshold)
        # uncertain limbs first so that confident ones are drawn over them
        for sure in (False, True):
            for (a, b), color in zip(skeleton, limbs, strict=True):
                if not (finite[a] and finite[b]) or (confident[a] and confident[b]) != sure:
                    continue
                pa, pb = _point(person[a, :2]), _point(person[b, :2])
                if sure:
                    cv2.line(canvas, pa, pb, color, width + 1, cv2.LINE_AA)
                else:
                    cv2.line(canvas, pa, pb, LOW_CONFIDENCE_COLOR, max(1, width // 2), cv2.LINE_AA)
        for index in np.flatnonzero(finite):
            center = _point(person[index, :2])
            if confident[index]:
                cv2.circle(canvas, center, radius + 1, OUTLINE_COLOR, -1, cv2.LINE_AA)
                cv2.circle(canvas, center, radius, joints[index], -1, cv2.LINE_AA)
            else:
                cv2.circle(canvas, center, radius, LOW_CONFIDENCE_COLOR, max(1, width // 2), cv2.LINE_AA)
    return canvas
