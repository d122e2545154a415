"""Measure the offline person detector on the shared COCO person annotations.

For the default detector (full image + 2 tiles, each also mirrored: 6 passes) and the single-pass
one, prints recall (non-crowd people with >= 6 visible keypoints found at IoU >= 0.5) at the default
score threshold, and the median milliseconds per image (several timed runs after a warm-up).
Run: `python scripts/measure_detector.py [--threshold 0.3] [--runs 5] [--threads N]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2

from sdpose_core.detection import PersonDetector
from sdpose_core.detection.recall import RecallReport, detection_recall
from sdpose_core.image_io import load_image
from sdpose_core.paths import data_root

SPLITS = ("coco/coco_mini_train", "coco/mmpose_coco")
CONFIGS = {"default (6 passes)": {}, "single pass": {"tiles": 0, "flip": False}}


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

    detector.detect(images[0])  # warm-up: the first forward pass allocates
    per_image = []
    for _ in range(runs):
        for image in images:
            start = time.perf_counter()
            detector.detect(image)
            per_image.append((time.perf_counter() - start) * 1000)
    sizes = sorted({image.shape[:2] for image in images})
    print(f"  median {statistics.median(per_image):.1f} ms/image over {len(per_image)} runs "
          f"({len(images)} images, {sizes[0]} to {sizes[-1]} px, cv2 threads {cv2.getNumThreads()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threshold", type=float, default=None, help="score threshold (default: detector's)")
    parser.add_argument("--runs", type=int, default=5, help="timed passes over the images")
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's)")
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    threshold = {} if args.threshold is None else {"score_threshold": args.threshold}
    for name, options in CONFIGS.items():
        print(f"{name}:")
        measure(PersonDetector(**threshold, **options), args.runs)


if __name__ == "__main__":
    main()
