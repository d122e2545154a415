"""How many annotated people a detector finds: recall at IoU >= 0.5 on COCO-format keypoint annotations.

Counted people: non-crowd annotations with at least `min_visible` keypoints marked visible (v == 2),
i.e. the people a top-down pose model is expected to handle. A person counts as found when any
detection's box overlaps its ground-truth box with IoU >= `iou_threshold`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sdpose_core.detection.ssdlite import PersonDetectorLike
from sdpose_core.errors import DataError
from sdpose_core.image_io import load_image


def iou_xywh(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [N,4] and [M,4] (x, y, w, h) boxes -> [N, M]."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1, bx1, by1 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter_w = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    inter_h = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = inter_w * inter_h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class RecallReport:
    people: int = 0
    found: int = 0
    images: int = 0
    detections: int = 0
    best_iou: list[float] = field(default_factory=list)  # per counted person, best IoU with any detection

    @property
    def recall(self) -> float:
        return self.found / self.people if self.people else float("nan")


def load_people(ann_file: str | Path, min_visible: int = 6) -> dict[str, list[np.ndarray]]:
    """file_name -> ground-truth boxes (xywh) of the counted people, for every image in the file."""
    try:
        data = json.loads(Path(ann_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read COCO annotations {ann_file}: {exc}") from exc
    names = {image["id"]: image["file_name"] for image in data["images"]}
    people: dict[str, list[np.ndarray]] = {name: [] for name in names.values()}
    for ann in data["annotations"]:
        visible = int(np.sum(np.asarray(ann.get("keypoints", []))[2::3] == 2))
        if not ann.get("iscrowd", 0) and visible >= min_visible:
            people[names[ann["image_id"]]].append(np.asarray(ann["bbox"], dtype=np.float64))
    return people


def detection_recall(detector: PersonDetectorLike, ann_file: str | Path, image_dir: str | Path,
                     min_visible: int = 6, iou_threshold: float = 0.5,
                     report: RecallReport | None = None) -> RecallReport:
    """Run `detector` on every image of a COCO keypoint file and count the people it finds."""
    report = report if report is not None else RecallReport()
    for file_name, boxes in load_people(ann_file, min_visible).items():
        detections = detector.detect(load_image(Path(image_dir) / file_name))
        report.images += 1
        report.detections += len(detections)
        if not boxes:
            continue
        found = np.stack([d.box_xywh for d in detections]) if detections else np.zeros((0, 4))
        ious = iou_xywh(np.stack(boxes), found)
        best = ious.max(axis=1) if found.size else np.zeros(len(boxes))
        report.people += len(boxes)
        report.found += int(np.sum(best >= iou_threshold))
        report.best_iou.extend(float(v) for v in best)
    return report
