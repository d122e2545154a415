"""Object keypoint similarity and CrowdPose's crowd index, vectorised over people and joints.

`compute_oks` is the similarity COCOeval uses to match a prediction to a ground-truth person
(the per-image helpers of the app use it to say which prediction matched whom);
`compute_crowd_index` is CrowdPose's measure of how much people overlap in an image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# CrowdPose's difficulty buckets: easy < 0.1 <= medium <= 0.8 < hard (Li et al., CVPR 2019).
CROWD_THRESHOLDS: tuple[float, float] = (0.1, 0.8)
CROWD_BUCKETS: tuple[str, str, str] = ("easy", "medium", "hard")

# COCOeval's stand-in for a person's segment area when ground truth has none (CrowdPose):
# box width x height x 0.53.
BOX_AREA_FACTOR = 0.53


def _as_people(keypoints: np.ndarray | Sequence, name: str) -> np.ndarray:
    """Accept (N, K, 3) or flat COCO (N, 3K) keypoints; return float64 (N, K, 3)."""
    array = np.asarray(keypoints, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] % 3 == 0:
        array = array.reshape(array.shape[0], -1, 3)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must have shape (N, K, 3) or (N, 3K); got {array.shape}")
    return array


def oks_area(annotation: dict, use_area: bool = True) -> float:
    """The scale COCOeval divides by for one ground-truth person.

    COCO (use_area=True): the segment `area`. CrowdPose and other files without areas
    (use_area=False, as mmpose evaluates CrowdPose): bbox width x height x 0.53.
    """
    if use_area and "area" in annotation:
        return float(annotation["area"])
    _, _, width, height = annotation["bbox"]
    return float(width) * float(height) * BOX_AREA_FACTOR


def compute_oks(
    gt_keypoints: np.ndarray,
    gt_area: np.ndarray | Sequence[float] | float,
    pred_keypoints: np.ndarray,
    sigmas: np.ndarray | Sequence[float],
    gt_boxes: np.ndarray | None = None,
) -> np.ndarray:
    """OKS of every (ground-truth person, prediction) pair, exactly as COCOeval.computeOks.

    Args:
        gt_keypoints: (G, K, 3) or flat (G, 3K); the third value is the visibility flag
            (joints with flag 0 are unlabelled and do not count).
        gt_area: (G,) the scale of each person (see `oks_area`).
        pred_keypoints: (D, K, 3) or flat (D, 3K); prediction scores are ignored here.
        sigmas: (K,) per-joint falloff (a layout's `sigmas_array()`).
        gt_boxes: (G, 4) xywh boxes. Only used for people with no labelled joint: COCOeval then
            measures how far each predicted joint lies outside the box grown by its own size on
            every side. Without boxes such pairs get OKS 0 (COCOeval ignores those people anyway,
            but they can still absorb a prediction).

    Returns:
        (G, D) float64 array.
    """
    gt = _as_people(gt_keypoints, "gt_keypoints")
    pred = _as_people(pred_keypoints, "pred_keypoints")
    sigmas = np.asarray(sigmas, dtype=np.float64)
    num_gt, num_pred = gt.shape[0], pred.shape[0]
    if num_gt == 0 or num_pred == 0:
        return np.zeros((num_gt, num_pred))
    if gt.shape[1] != pred.shape[1] or gt.shape[1] != sigmas.shape[0]:
        raise ValueError(
            f"joint counts differ: gt {gt.shape[1]}, predictions {pred.shape[1]}, sigmas {sigmas.shape[0]}"
        )
    areas = np.broadcast_to(np.asarray(gt_area, dtype=np.float64), (num_gt,))
    variances = (2.0 * sigmas) ** 2
    scale = variances[None, None, :] * (areas[:, None, None] + np.spacing(1)) * 2.0  # (G, 1, K)

    dx = pred[None, :, :, 0] - gt[:, None, :, 0]  # (G, D, K)
    dy = pred[None, :, :, 1] - gt[:, None, :, 1]
    similarity = np.exp(-(dx**2 + dy**2) / scale)
    labelled = gt[:, :, 2] > 0  # (G, K)
    num_labelled = labelled.sum(axis=1)
    oks = (similarity * labelled[:, None, :]).sum(axis=2) / np.maximum(num_labelled, 1)[:, None]

    unlabelled = num_labelled == 0
    if unlabelled.any():
        oks[unlabelled] = 0.0
        if gt_boxes is not None:
            boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(num_gt, 4)[unlabelled]
            x0 = boxes[:, 0] - boxes[:, 2]
            x1 = boxes[:, 0] + 2.0 * boxes[:, 2]
            y0 = boxes[:, 1] - boxes[:, 3]
            y1 = boxes[:, 1] + 2.0 * boxes[:, 3]
            px, py = pred[None, :, :, 0], pred[None, :, :, 1]
            out_x = np.maximum(0.0, x0[:, None, None] - px) + np.maximum(0.0, px - x1[:, None, None])
            out_y = np.maximum(0.0, y0[:, None, None] - py) + np.maximum(0.0, py - y1[:, None, None])
            oks[unlabelled] = np.exp(-(out_x**2 + out_y**2) / scale[unlabelled]).mean(axis=2)
    return oks


def compute_crowd_index(annotations: Sequence[dict]) -> float:
    """CrowdPose's crowd index of one image from its person annotations.

    For each person with at least one labelled joint: the number of OTHER people's labelled joints
    inside its box, divided by its own number of labelled joints; the image's index is the mean
    over those people (0.0 for an image with fewer than two). All joints of the layout count
    (14 for CrowdPose). The CrowdPose files store this value rounded to 2 decimals.
    """
    people = [a for a in annotations if "keypoints" in a and "bbox" in a]
    if len(people) < 2:
        return 0.0
    keypoints = np.stack([np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in people])
    boxes = np.asarray([a["bbox"] for a in people], dtype=np.float64)  # (P, 4) xywh
    labelled = keypoints[:, :, 2] > 0  # (P, K)
    own = labelled.sum(axis=1)
    x, y = keypoints[None, :, :, 0], keypoints[None, :, :, 1]  # joint owner on axis 1
    x0, y0 = boxes[:, 0, None, None], boxes[:, 1, None, None]  # box owner on axis 0
    inside = (x >= x0) & (x <= x0 + boxes[:, 2, None, None]) & (y >= y0) & (y <= y0 + boxes[:, 3, None, None])
    inside &= labelled[None, :, :]
    inside[np.arange(len(people)), np.arange(len(people))] = False  # a person's own joints do not count
    others_inside = inside.sum(axis=2).sum(axis=1)
    counted = own > 0
    if not counted.any():
        return 0.0
    return float(np.mean(others_inside[counted] / own[counted]))


def crowd_index(image: dict, annotations: Sequence[dict] | None = None) -> float:
    """An image entry's `crowdIndex`; computed from `annotations` when the entry has none."""
    if "crowdIndex" in image:
        return float(image["crowdIndex"])
    if annotations is None:
        raise KeyError(
            f"image {image.get('id')} has no 'crowdIndex'; pass its annotations to compute one"
        )
    return round(compute_crowd_index(annotations), 2)


def crowd_bucket(index: float, thresholds: tuple[float, float] = CROWD_THRESHOLDS) -> str:
    """'easy' (index < 0.1), 'medium' (0.1 <= index <= 0.8) or 'hard' (index > 0.8)."""
    low, high = thresholds
    if index < low:
        return "easy"
    if index <= high:
        return "medium"
    return "hard"
