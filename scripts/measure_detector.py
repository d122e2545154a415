"""Measure the offline person detector on the shared COCO person annotations.

For the default detector (full image + 2 tiles, each also mirrored: 6 passes, merged by NMS at the
graph's own IoU 0.6), the same with the stricter merge IoU 0.5, and the single-pass detector: recall
(non-crowd people with >= 6 visible keypoints found at IoU >= 0.5) at the default score threshold,
and the median milliseconds per image (several timed runs after a warm-up).
`--misses` lists every person the default detector misses and why: no candidate box at all (the
network never proposes it), a candidate scoring under the threshold, or a candidate merged away by NMS;
with the person's size, whether the image border cuts it and its overlap with other annotated people.
Run: `python scripts/measure_detector.py [--threshold 0.3] [--runs 5] [--threads N] [--misses]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter

import cv2
import numpy as np

from sdpose_core.detection import PersonDetector
from sdpose_core.detection.recall import RecallReport, detection_recall, iou_xywh
from sdpose_core.image_io import load_image
from sdpose_core.paths import data_root

SPLITS = ("coco/coco_mini_train", "coco/mmpose_coco")
CONFIGS = {"default (6 passes, merge NMS IoU 0.6)": {}, "6 passes, merge NMS IoU 0.5": {"nms_iou": 0.5},
           "single pass": {"tiles": 0, "flip": False}}
MIN_VISIBLE = 6


def measure(detector: PersonDetector, runs: int) -> None:
    root = data_root()
    report = RecallReport()
    images = []
    for split in SPLITS:
        before = (report.people, report.found)
        detection_recall(detector, root / split / "person_keypoints.json", root / split / "images", report=report)
        print(f"  {split}: {report.found - before[1]}/{report.people - before[0]} people found")
        images += [load_image(path) for path in sorted((root / split / "images").iterdir())]
    print(f"  recall @IoU0.5, score >= {detector.score_threshold}: {report.found}/{report.people} = "
          f"{report.recall:.1%}  ({report.detections} detections on {report.images} images)")
    if runs < 1:
        return
    detector.detect(images[0])  # warm-up: the first forward pass allocates
    per_image = []
    for _ in range(runs):
        for image in images:
            start = time.perf_counter()
            detector.detect(image)
            per_image.append((time.perf_counter() - start) * 1000)
    sizes = sorted({image.shape[:2] for image in images})
    print(f"  median {statistics.median(per_image):.1f} ms/image over {len(per_image)} runs "
          f"({len(images)} images, {sizes[0]} to {sizes[-1]} px, {detector.passes} passes, "
          f"cv2 threads {cv2.getNumThreads()})")


def _why_missed(detector: PersonDetector, box: np.ndarray, candidates: tuple[np.ndarray, np.ndarray]) -> tuple[str, float, float]:
    """(reason, best candidate IoU, its score) for a person no final detection covers at IoU >= 0.5."""
    boxes, scores = candidates
    ious = iou_xywh(box[None], boxes)[0] if len(boxes) else np.zeros(0)
    matching = ious >= 0.5
    if not matching.any():
        return "no candidate", float(ious.max(initial=0.0)), 0.0
    best = float(scores[matching].max())
    reason = "score under threshold" if best < detector.score_threshold else "merged away by NMS"
    return reason, float(ious[matching][scores[matching].argmax()]), best


def list_misses(detector: PersonDetector) -> None:
    root = data_root()
    reasons: Counter[str] = Counter()
    heights = {"missed": [], "found": []}
    print(f"people the default detector misses (score threshold {detector.score_threshold}, merge NMS IoU "
          f"{detector.nms_iou}):")
    for split in SPLITS:
        data = json.loads((root / split / "person_keypoints.json").read_text())
        by_image: dict[int, list[dict]] = {image["id"]: [] for image in data["images"]}
        for ann in data["annotations"]:
            by_image[ann["image_id"]].append(ann)
        for info in data["images"]:
            anns = by_image[info["id"]]
            counted = [a for a in anns if not a["iscrowd"] and sum(v == 2 for v in a["keypoints"][2::3]) >= MIN_VISIBLE]
            if not counted:
                continue
            image = load_image(root / split / "images" / info["file_name"])
            found = np.array([d.box_xywh for d in detector.detect(image)]).reshape(-1, 4)
            candidates = detector.raw_detections(image)
            all_boxes = np.array([a["bbox"] for a in anns], dtype=np.float64)
            for ann in counted:
                box = np.asarray(ann["bbox"], dtype=np.float64)
                hit = len(found) and iou_xywh(box[None], found).max() >= 0.5
                heights["found" if hit else "missed"].append(box[3] / info["height"])
                if hit:
                    continue
                reason, cand_iou, cand_score = _why_missed(detector, box, candidates)
                reasons[reason] += 1
                others = all_boxes[[a["id"] != ann["id"] for a in anns]]
                overlap = float(iou_xywh(box[None], others).max()) if len(others) else 0.0
                border = (box[0] <= 1 or box[1] <= 1 or box[0] + box[2] >= info["width"] - 1
                          or box[1] + box[3] >= info["height"] - 1)
                print(f"  {info['file_name']} ann {ann['id']}: {box[2]:.0f}x{box[3]:.0f} px "
                      f"({box[3] / info['height']:.0%} of the image height), {len(anns)} people in the image, "
                      f"max IoU with another person {overlap:.2f}{', cut by the border' if border else ''} -> "
                      f"{reason} (best candidate IoU {cand_iou:.2f}, score {cand_score:.2f})")
    print(f"  reasons: {dict(reasons)}")
    print(f"  median box height / image height: missed {np.median(heights['missed']):.0%}, "
          f"found {np.median(heights['found']):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=None, help="score threshold (default: detector's)")
    parser.add_argument("--runs", type=int, default=5, help="timed passes over the images (0: recall only)")
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's)")
    parser.add_argument("--misses", action="store_true", help="list the people the default detector misses")
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    threshold = {} if args.threshold is None else {"score_threshold": args.threshold}
    for name, options in CONFIGS.items():
        print(f"{name}:")
        measure(PersonDetector(**threshold, **options), args.runs)
    if args.misses:
        list_misses(PersonDetector(**threshold))


if __name__ == "__main__":
    main()
