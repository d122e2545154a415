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
from sdpose_core.media.images import load_image


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


@dataclass
class BoxReport:
    """The shared detectors README's measures, per score threshold: greedy matching by descending score
    to the best still-unmatched ground-truth box at IoU >= 0.5.

    `recall`: on the non-crowd persons with >= `min_visible` visible keypoints (as `detection_recall`),
    `recall_kp`: on all non-crowd persons with keypoints; each matched against those boxes only.
    `false_positives`: detections matched to no non-crowd person (all of them), not counting those
    lying mostly (>= 50 % of their area) inside a crowd region; duplicates of a matched person count."""

    threshold: float
    images: int = 0
    people: int = 0  # non-crowd, >= min_visible visible keypoints
    found: int = 0
    people_kp: int = 0  # non-crowd, any keypoint
    found_kp: int = 0
    false_positives: int = 0
    detections: int = 0

    @property
    def recall(self) -> float:
        return self.found / self.people if self.people else float("nan")

    @property
    def recall_kp(self) -> float:
        return self.found_kp / self.people_kp if self.people_kp else float("nan")

    @property
    def fp_per_image(self) -> float:
        return self.false_positives / self.images if self.images else float("nan")


def greedy_matches(detections: np.ndarray, truth: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """For detections (xywh, best first): the index of the ground-truth box each one takes, -1 for none."""
    taken = np.zeros(len(truth), dtype=bool)
    matches = np.full(len(detections), -1)
    if not len(truth) or not len(detections):
        return matches
    ious = iou_xywh(detections, truth)
    for index, row in enumerate(ious):
        row = np.where(taken, -1.0, row)
        best = int(np.argmax(row))
        if row[best] >= iou_threshold:
            taken[best] = True
            matches[index] = best
    return matches


def _inside_fraction(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """For each box: the largest fraction of its area inside any one region (all xywh)."""
    if not len(regions) or not len(boxes):
        return np.zeros(len(boxes))
    x0 = np.maximum(boxes[:, None, 0], regions[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], regions[None, :, 1])
    x1 = np.minimum((boxes[:, 0] + boxes[:, 2])[:, None], (regions[:, 0] + regions[:, 2])[None])
    y1 = np.minimum((boxes[:, 1] + boxes[:, 3])[:, None], (regions[:, 1] + regions[:, 3])[None])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return (inter / np.maximum(boxes[:, 2] * boxes[:, 3], 1e-12)[:, None]).max(axis=1)


def box_reports(detector: PersonDetectorLike, ann_file: str | Path, image_dir: str | Path,
                thresholds: tuple[float, ...], reports: list[BoxReport] | None = None,
                min_visible: int = 6) -> list[BoxReport]:
    """Run `detector` once per image of a COCO keypoint file; score its boxes at each of `thresholds`
    (the detector's own threshold must be at or below the lowest)."""
    try:
        data = json.loads(Path(ann_file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read COCO annotations {ann_file}: {exc}") from exc
    reports = reports if reports is not None else [BoxReport(t) for t in thresholds]
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in data["images"]}
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    for info in data["images"]:
        anns = by_image[info["id"]]
        people = np.array([a["bbox"] for a in anns if not a.get("iscrowd", 0)], dtype=np.float64).reshape(-1, 4)
        with_kp = np.array([a["bbox"] for a in anns if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0],
                           dtype=np.float64).reshape(-1, 4)
        visible = np.array([a["bbox"] for a in anns if not a.get("iscrowd", 0)
                            and int(np.sum(np.asarray(a.get("keypoints", []))[2::3] == 2)) >= min_visible],
                           dtype=np.float64).reshape(-1, 4)
        crowd = np.array([a["bbox"] for a in anns if a.get("iscrowd", 0)], dtype=np.float64).reshape(-1, 4)
        detections = detector.detect(load_image(Path(image_dir) / info["file_name"]))
        boxes = np.array([d.box_xywh for d in detections], dtype=np.float64).reshape(-1, 4)
        scores = np.array([d.score for d in detections], dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        boxes, scores = boxes[order], scores[order]
        for report in reports:
            kept = boxes[scores >= report.threshold]
            report.images += 1
            report.detections += len(kept)
            report.people += len(visible)
            report.found += int(np.sum(greedy_matches(kept, visible) >= 0))
            report.people_kp += len(with_kp)
            report.found_kp += int(np.sum(greedy_matches(kept, with_kp) >= 0))
            unmatched = kept[greedy_matches(kept, people) < 0]
            report.false_positives += int(np.sum(_inside_fraction(unmatched, crowd) < 0.5))
    return reports
