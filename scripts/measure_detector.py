"""Measure every person detector present on the shared COCO person annotations: one table, one run.

For each detector (RTMDet-nano and YOLOX-Nano when their ONNX files are found, see
sdpose_core/detection/factory.py; SSDLite with 6 passes and with 1 pass when its graph is installed), at its
default settings, on the 40 images of coco/coco_mini_train and coco/mmpose_coco:
- recall: non-crowd people with >= 6 visible keypoints found at IoU >= 0.5 (the project's goal measure),
  and "recall kp": all non-crowd people with keypoints (the measure of ../shared/detectors/README.md);
  each detection matched greedily, best score first, to the best still-unmatched person;
- FP/img: detections matched to no non-crowd person, not counting those >= 50 % inside a crowd region
  (duplicates of a found person count), per image;
- ms/image: median wall-clock milliseconds per image (whole `detect` call), `--threads` CPU threads
  (default 1) for onnxruntime and OpenCV, after a warm-up; "CPU ms" the same calls' thread CPU time,
  which other work on the machine disturbs less.
The CPU is named with its SIMD / VNNI / bf16 class (sdpose_core.precision.cpu_summary). `--sweep` adds recall / FP per input size and score threshold for RTMDet-nano
and per threshold for YOLOX-Nano (how the defaults were chosen); `--misses` lists every person the default
detector misses and why; `--video` counts the people found per frame of the shared sports2d clip.
Run: `python scripts/measure_detector.py [--runs 3] [--threads 1] [--sweep] [--video] [--misses]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from typing import Any

import cv2
import numpy as np

from sdpose_core.detection import BEST, available_detectors, build_detector
from sdpose_core.detection.onnx_detectors import OnnxPersonDetector, RTMDetNano, YoloxNano
from sdpose_core.detection.recall import BoxReport, box_reports, iou_xywh
from sdpose_core.media.images import load_image
from sdpose_core.paths import data_root
from sdpose_core.precision import cpu_summary

SPLITS = ("coco/coco_mini_train", "coco/mmpose_coco")
MIN_VISIBLE = 6
GOAL = {"recall": 0.88, "fp_per_image": 0.5, "ms": 40.0}
SWEEP_SIZES = (320, 352, 384, 416, 448, 480, 512, 576, 640)
SWEEP_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5)


def score(detector: Any, thresholds: tuple[float, ...]) -> list[BoxReport]:
    root = data_root()
    reports = None
    for split in SPLITS:
        reports = box_reports(detector, root / split / "person_keypoints.json", root / split / "images", thresholds,
                              reports, min_visible=MIN_VISIBLE)
    return reports


def timing(detector: Any, runs: int) -> tuple[float, float]:
    """(median wall ms, median thread-CPU ms) per image over `runs` passes over the shared images."""
    root = data_root()
    images = [load_image(path) for split in SPLITS for path in sorted((root / split / "images").iterdir())]
    detector.detect(images[0])  # warm-up: the first call allocates
    wall, cpu = [], []
    for _ in range(runs):
        for image in images:
            start, start_cpu = time.perf_counter(), time.thread_time()
            detector.detect(image)
            wall.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.thread_time() - start_cpu) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def detectors(threads: int) -> list[Any]:
    present = available_detectors()
    names = [n for n in ("rtmdet-nano", "yolox-nano", "ssdlite", "ssdlite-fast") if n in present]
    return [build_detector(name, num_threads=threads) for name in names]


def table(threads: int, runs: int) -> None:
    best = build_detector(BEST).name
    import onnxruntime

    print(f"CPU: {cpu_summary()}; {threads} thread(s); onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__}; "
          f"{runs} timed passes over the images")
    print("| detector | settings | recall (>= 6 visible kp) | recall kp | FP/img | ms/image | CPU ms/image |")
    print("|---|---|---|---|---|---|---|")
    met = []
    for detector in detectors(threads):
        [report] = score(detector, (detector.score_threshold,))
        wall, cpu = timing(detector, runs) if runs > 0 else (float("nan"), float("nan"))
        size = f"{detector.input_size} px" if isinstance(detector, OnnxPersonDetector) else f"{detector.passes} pass(es)"
        settings = f"{size}, score >= {detector.score_threshold:g}, NMS {detector.nms_iou:g}"
        label = f"{detector.name}{' (default)' if detector.name == best else ''}"
        print(f"| {label} | {settings} | {report.found}/{report.people} = {report.recall:.3f} | "
              f"{report.found_kp}/{report.people_kp} = {report.recall_kp:.3f} | {report.fp_per_image:.2f} | "
              f"{wall:.1f} | {cpu:.1f} |")
        if (report.recall >= GOAL["recall"] and report.fp_per_image <= GOAL["fp_per_image"]
                and wall <= GOAL["ms"]):
            met.append(detector.name)
    print(f"goal (recall >= {GOAL['recall']} at <= {GOAL['fp_per_image']} FP/img, <= {GOAL['ms']:.0f} ms/image): "
          f"{', '.join(met) if met else 'met by none'}; 'best' here is {best}")


def sweep(threads: int) -> None:
    """Recall / FP per input size and threshold (one network run per size, thresholds applied after)."""
    low = min(SWEEP_THRESHOLDS)
    print("\nsweep: recall (>= 6 visible kp) / FP per image at score >= t (NMS and part merging as the defaults)")
    print("| detector | " + " | ".join(f"t = {t:g}" for t in SWEEP_THRESHOLDS) + " |")
    print("|---|" + "---|" * len(SWEEP_THRESHOLDS))
    rows: list[OnnxPersonDetector] = []
    present = available_detectors()
    if "rtmdet-nano" in present:
        path = build_detector("rtmdet-nano").path
        rows += [RTMDetNano(path, size, low, num_threads=threads) for size in SWEEP_SIZES]
    if "yolox-nano" in present:
        rows.append(YoloxNano(build_detector("yolox-nano").path, None, low, num_threads=threads))
    for detector in rows:
        reports = score(detector, SWEEP_THRESHOLDS)
        print(f"| {detector.name} | " + " | ".join(f"{r.recall:.3f} / {r.fp_per_image:.2f}" for r in reports) + " |")


def video_counts(threads: int, clip: str = "sports2d_demo.mp4", stride: int = 5) -> None:
    """People found per frame of a shared clip, frames shrunk to the live view's 480 px: how often each
    detector finds the two people (the man on the roof and the walker), or nobody."""
    from sdpose_core.media.video import iter_video_frames

    path = data_root() / "unlabeled" / "videos" / clip
    counts = {detector.name: Counter() for detector in detectors(threads)}
    found = detectors(threads)
    for frame in iter_video_frames(path, stride=stride):
        scale = 480 / max(frame.image.shape[:2])  # as sdpose_core.inference.live.shrink: area averaging to a 480 px long side
        image = cv2.resize(frame.image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for detector in found:
            counts[detector.name][len(detector.detect(image))] += 1
    print(f"\n{clip}, every {stride}th frame at 480 px: frames by number of people found")
    for name, counter in counts.items():
        print(f"  {name}: " + ", ".join(f"{people} people: {frames}" for people, frames in sorted(counter.items())))


def _why_missed(detector: Any, box: np.ndarray, candidates: tuple[np.ndarray, np.ndarray]) -> tuple[str, float, float]:
    """(reason, best candidate IoU, its score) for a person no final detection covers at IoU >= 0.5."""
    boxes, scores = candidates
    ious = iou_xywh(box[None], boxes)[0] if len(boxes) else np.zeros(0)
    matching = ious >= 0.5
    if not matching.any():
        return "no candidate", float(ious.max(initial=0.0)), 0.0
    best = float(scores[matching].max())
    reason = "score under threshold" if best < detector.score_threshold else "merged away (NMS or part merging)"
    return reason, float(ious[matching][scores[matching].argmax()]), best


def list_misses(detector: Any) -> None:
    root = data_root()
    reasons: Counter[str] = Counter()
    heights = {"missed": [], "found": []}
    print(f"\npeople the default detector ({detector.name}) misses (score threshold {detector.score_threshold}, "
          f"NMS IoU {detector.nms_iou}):")
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
    parser.add_argument("--runs", type=int, default=3, help="timed passes over the 40 images (0: no timing)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for onnxruntime and OpenCV (default 1)")
    parser.add_argument("--sweep", action="store_true", help="recall / FP per input size and threshold")
    parser.add_argument("--misses", action="store_true", help="list the people the default detector misses")
    parser.add_argument("--video", action="store_true", help="people found per frame of sports2d_demo.mp4")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    table(args.threads, args.runs)
    if args.sweep:
        sweep(args.threads)
    if args.video:
        video_counts(args.threads)
    if args.misses:
        list_misses(build_detector(BEST, num_threads=args.threads))


if __name__ == "__main__":
    main()
