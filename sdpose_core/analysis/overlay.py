"""Pictures for the failure analysis: ground truth against predictions, joints coloured by error class,
and the display geometry that maps a click on a shown (scaled, cropped) picture back to image pixels.

Ground truth is drawn as thin white limbs with hollow white joints; predictions with the usual
side-coloured skeleton (`sdpose_core.media.draw.draw_pose`); with error classes on, each classified
predicted joint that is not good gets a ring in its class colour and a line to where the ground truth
puts that joint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sdpose_core.analysis.taxonomy import ERROR_CLASSES
from sdpose_core.keypoints import KeypointLayout
from sdpose_core.media.draw import draw_pose

# RGB, chosen to stay apart from the skeleton's side colours (orange / blue / green)
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "good": (0, 200, 83), "jitter": (255, 214, 0), "inversion": (255, 61, 0), "swap": (213, 0, 249),
    "miss": (255, 23, 68),
}
GT_COLOR = (255, 255, 255)
SHADOW_COLOR = (20, 20, 20)
DARK_MEAN = 60.0  # mean grey level below which `brighten_if_dark` lifts the picture


@dataclass(frozen=True)
class DisplayTransform:
    """How a shown picture relates to the image: shown pixel (u, v) covers image pixels from
    (x0 + u / scale_x, y0 + v / scale_y); pixel centres sit at integer coordinates in both."""

    x0: float = 0.0
    y0: float = 0.0
    scale_x: float = 1.0
    scale_y: float = 1.0

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        return (self.x0 + (u + 0.5) / self.scale_x - 0.5, self.y0 + (v + 0.5) / self.scale_y - 0.5)

    def to_display(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.x0 + 0.5) * self.scale_x - 0.5, (y - self.y0 + 0.5) * self.scale_y - 0.5)


def brighten_if_dark(image: np.ndarray, threshold: float = DARK_MEAN) -> tuple[np.ndarray, bool]:
    """A gamma-lifted copy of a dark picture (mean grey below `threshold`), for display only."""
    mean = float(image.mean())
    if mean >= threshold:
        return image, False
    gamma = np.log(110.0 / 255.0) / np.log(max(mean, 1.0) / 255.0)
    table = (255.0 * (np.arange(256) / 255.0) ** gamma).clip(0, 255).astype(np.uint8)
    return cv2.LUT(image, table), True


def fit_to(image: np.ndarray, max_side: int) -> tuple[np.ndarray, DisplayTransform]:
    """The picture shrunk to at most `max_side` pixels on its long side, and its transform."""
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor >= 1.0:
        return image, DisplayTransform()
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    shown = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return shown, DisplayTransform(0.0, 0.0, size[0] / width, size[1] / height)


def crop_view(image: np.ndarray, box_xywh: Sequence[float], padding: float = 0.3, display_side: int = 560,
              max_zoom: float = 4.0) -> tuple[np.ndarray, DisplayTransform]:
    """A view of one person: the box grown by `padding` on each side, scaled so its long side is about
    `display_side` pixels (at most `max_zoom` x), and the transform back to image pixels."""
    height, width = image.shape[:2]
    x, y, w, h = (float(v) for v in box_xywh[:4])
    x0 = int(np.clip(np.floor(x - padding * w), 0, width - 1))
    y0 = int(np.clip(np.floor(y - padding * h), 0, height - 1))
    x1 = int(np.clip(np.ceil(x + w * (1 + padding)), x0 + 1, width))
    y1 = int(np.clip(np.ceil(y + h * (1 + padding)), y0 + 1, height))
    crop = image[y0:y1, x0:x1]
    factor = min(max_zoom, display_side / max(crop.shape[:2]))
    size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    shown = cv2.resize(crop, size, interpolation=interpolation)
    return shown, DisplayTransform(float(x0), float(y0), size[0] / crop.shape[1], size[1] / crop.shape[0])


def _point(xy: np.ndarray) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def _width_for(canvas: np.ndarray) -> int:
    return max(1, int(round(min(canvas.shape[:2]) / 300)))


def draw_ground_truth(canvas: np.ndarray, people: np.ndarray, layout: KeypointLayout) -> np.ndarray:
    """White skeletons (dark shadow underneath) with hollow joints for every labelled joint; in place."""
    width = _width_for(canvas)
    for person in np.asarray(people, dtype=np.float64).reshape(-1, layout.num_keypoints, 3):
        labelled = person[:, 2] > 0
        for a, b in layout.skeleton:
            if labelled[a] and labelled[b]:
                pa, pb = _point(person[a]), _point(person[b])
                cv2.line(canvas, pa, pb, SHADOW_COLOR, width + 2, cv2.LINE_AA)
                cv2.line(canvas, pa, pb, GT_COLOR, width, cv2.LINE_AA)
        for joint in np.flatnonzero(labelled):
            center = _point(person[joint])
            cv2.circle(canvas, center, width + 3, SHADOW_COLOR, width + 1, cv2.LINE_AA)
            cv2.circle(canvas, center, width + 3, GT_COLOR, max(1, width), cv2.LINE_AA)
    return canvas


def draw_errors(canvas: np.ndarray, pose: np.ndarray, gt: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class-coloured rings around predicted joints with an error, lines to the true joint; in place."""
    width = _width_for(canvas)
    for joint, class_index in enumerate(np.asarray(classes).tolist()):
        if class_index <= 0 or not np.isfinite(pose[joint, :2]).all():
            continue  # good joints get no ring: with many people, rings on every joint hide the errors
        color = CLASS_COLORS[ERROR_CLASSES[class_index]]
        center = _point(pose[joint])
        cv2.line(canvas, center, _point(gt[joint]), color, max(1, width), cv2.LINE_AA)
        cv2.circle(canvas, center, 2 * width + 5, color, width + 1, cv2.LINE_AA)
    return canvas


def label_people(canvas: np.ndarray, boxes_xywh: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """A small tag with `labels[i]` at the top-left corner of each box; in place."""
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    thickness = max(1, int(round(scale * 2)))
    for box, text in zip(np.asarray(boxes_xywh).reshape(-1, 4), labels, strict=True):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x, y = int(max(0, box[0])), int(max(th + base + 2, box[1]))
        cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 4, y), SHADOW_COLOR, -1)
        cv2.putText(canvas, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, GT_COLOR, thickness,
                    cv2.LINE_AA)
    return canvas


def render_comparison(
    image: np.ndarray,
    layout: KeypointLayout,
    gt_people: np.ndarray,
    poses: np.ndarray,
    matches: Sequence[tuple[int, int, np.ndarray]] = (),
    show_gt: bool = True,
    show_pred: bool = True,
    show_errors: bool = True,
    boxes_xywh: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Ground truth and predictions over a copy of `image` (all in image pixels).

    poses: (D, K, 3) predictions in the set's layout (NaN joints are not drawn); matches: (person index,
    pose index, classes (K,)) per matched person, for the error rings; boxes/labels: person tags.
    """
    canvas = np.array(image, dtype=np.uint8, copy=True)
    if show_gt and len(gt_people):
        draw_ground_truth(canvas, gt_people, layout)
    if show_pred and len(poses):
        canvas = draw_pose(canvas, np.asarray(poses, dtype=np.float64), score_threshold=0.2)
    if show_errors:
        for person, pose_index, classes in matches:
            draw_errors(canvas, poses[pose_index], gt_people[person], classes)
    if boxes_xywh is not None and labels is not None:
        label_people(canvas, boxes_xywh, labels)
    return canvas
