"""Measure dynamic cycles against fixed cycles on the shared COCO sets (GT boxes), and Predictor speed.

For every configuration (fixed 1..N cycles, dynamic at each tolerance) the Predictor runs every image of
coco_mini_train and mmpose_coco with its ground-truth boxes (all people of an image in one batch) and the
table shows mean cycles per person, pose milliseconds per person (forward passes only; median over
images of pose_ms / people), process CPU milliseconds per person (whole predict calls, all threads: the
steadier figure on a busy machine) and COCO AP / AP50 / AR (sdpose_core.evaluation.evaluate_predictions).
The speed section times sdpose-t inside the Predictor at batch 1 and 8 (people per image), single pass
vs all cycles: median (and min) wall-clock pose ms of --runs calls after a warm-up, one process, plus
the median process CPU time of the whole call (all threads; less sensitive to other load on the machine).

The header says which weights were used; with UNTRAINED weights the AP columns are meaningless (and
dynamic convergence says nothing about a trained model): pass --weights or set SDPOSE_WEIGHTS.
Run: `python scripts/measure_dynamic_cycles.py [--weights W] [--tolerances 0.25 0.5 1] [--runs 7]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpose_core.data import clip_box_xywh
from sdpose_core.evaluation import evaluate_predictions
from sdpose_core.inference.predictor import Predictor, load_image
from sdpose_core.paths import data_root

SETS = ("coco/coco_mini_train", "coco/mmpose_coco")


def gt_images(split: Path) -> list[tuple[int, Path, np.ndarray]]:
    """(image id, file, mmpose-clipped GT boxes) of every image with a usable person (non-crowd, keypoints)."""
    data = json.loads((split / "person_keypoints.json").read_text())
    by_image: dict[int, list[np.ndarray]] = {}
    infos = {image["id"]: image for image in data["images"]}
    for ann in data["annotations"]:
        if ann.get("iscrowd") or ann.get("num_keypoints", 0) == 0 or ann.get("area", 1) <= 0:
            continue
        info = infos[ann["image_id"]]
        box = clip_box_xywh(np.asarray(ann["bbox"], dtype=np.float64), info["width"], info["height"])
        if box is not None:
            by_image.setdefault(ann["image_id"], []).append(box)
    return [(image_id, split / "images" / infos[image_id]["file_name"], np.array(boxes))
            for image_id, boxes in sorted(by_image.items())]


def run_config(predictor: Predictor, images: list[tuple[int, np.ndarray, np.ndarray]], **options: Any
               ) -> tuple[list[dict], list[int], list[float], float]:
    """COCO results, cycles used per person, pose ms per person per image, and total process CPU ms."""
    results, cycles_used, ms_per_person = [], [], []
    cpu_start = time.process_time()
    for image_id, image, boxes in images:
        result = predictor.predict(image, boxes=boxes, **options)
        results += result.to_coco_results(image_id)
        cycles_used += result.cycles_used
        ms_per_person.append(result.timings.pose_ms_per_person(len(result)))
    return results, cycles_used, ms_per_person, (time.process_time() - cpu_start) * 1e3


def compare_cycles(predictor: Predictor, tolerances: list[float], flip: bool) -> None:
    root = data_root()
    loaded = {split: [(i, load_image(f), b) for i, f, b in gt_images(root / split)] for split in SETS}
    people = sum(len(b) for images in loaded.values() for _, _, b in images)
    max_cycles = int(predictor.config.cycles)
    configs: list[tuple[str, dict[str, Any]]] = [(f"fixed {c}", {"cycles": c}) for c in range(1, max_cycles + 1)]
    configs += [(f"dynamic tol {t:g}", {"cycles": max_cycles, "dynamic": True, "dynamic_tolerance": t})
                for t in tolerances]
    first = next(iter(loaded.values()))[0]
    predictor.predict(first[1], boxes=first[2])  # warm-up
    print(f"\n{people} people (GT boxes) in {sum(len(v) for v in loaded.values())} images, flip={flip}; "
          "tolerance in heatmap pixels")
    header = f"{'config':<18} {'mean cycles':>11} {'ms/person':>9} {'cpu ms/person':>13}"
    for split in SETS:
        header += f" | {Path(split).name + ' AP':>20} {'AP50':>6} {'AR':>6}"
    print(header)
    for name, options in configs:
        row_cycles, row_ms, metrics, cpu_ms = [], [], [], 0.0
        for split, images in loaded.items():
            results, cycles_used, ms, cpu = run_config(predictor, images, flip=flip, **options)
            row_cycles += cycles_used
            row_ms += ms
            cpu_ms += cpu
            scores = evaluate_predictions(root / split / "person_keypoints.json", results, "coco")
            metrics.append((scores["AP"], scores["AP50"], scores["AR"]))
        line = (f"{name:<18} {np.mean(row_cycles):>11.2f} {statistics.median(row_ms):>9.1f} "
                f"{cpu_ms / len(row_cycles):>13.1f}")
        for ap, ap50, ar in metrics:
            line += f" | {ap:>20.3f} {ap50:>6.3f} {ar:>6.3f}"
        print(line, flush=True)


def speed(predictor: Predictor, runs: int) -> None:
    """ms/person at batch 1 and 8, single pass vs all cycles (median of `runs`)."""
    split = data_root() / SETS[0]
    image_id, path, boxes = max(gt_images(split), key=lambda item: len(item[2]))
    image = load_image(path)
    cycles = int(predictor.config.cycles)
    print(f"\nspeed: {predictor.config.name} on {path.name} (GT boxes), torch threads {torch.get_num_threads()}, "
          f"device {predictor.device}; median of {runs} runs")
    print(f"{'batch':>5} {'cycles':>6} {'pose ms/person':>15} {'(min)':>7} {'cpu ms/person':>14} "
          f"{'per-cycle ms, whole batch':>32}")
    for batch in (1, 8):
        chosen = boxes[:batch]
        for cycle_count in (1, cycles):
            predictor.predict(image, boxes=chosen, cycles=cycle_count)  # warm-up
            timings, cpu_ms = [], []
            for _ in range(runs):
                cpu_start = time.process_time()
                timings.append(predictor.predict(image, boxes=chosen, cycles=cycle_count).timings)
                cpu_ms.append((time.process_time() - cpu_start) * 1e3 / batch)
            per_person = [t.pose_ms / batch for t in timings]
            per_cycle = [statistics.median(t.cycle_ms[c] for t in timings) for c in range(cycle_count)]
            print(f"{batch:>5} {cycle_count:>6} {statistics.median(per_person):>15.1f} {min(per_person):>7.1f} "
                  f"{statistics.median(cpu_ms):>14.1f} {str([round(v, 1) for v in per_cycle]):>32}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="weights (default: SDPOSE_WEIGHTS, embedded default, else UNTRAINED)")
    parser.add_argument("--model", help="variant (default: what the weights are, else sdpose-t)")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--flip", action="store_true", help="flip test in every configuration")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per speed configuration")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: capped at the CPUs)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-cycles", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    # torch: dynamic cycles save compute there (an ONNX graph computes all its cycles in one call)
    predictor = Predictor(model=args.model, weights=args.weights, detector=None, num_threads=args.threads,
                          backend="torch")
    info = predictor.weights_info
    print(f"weights: {info.source} {info.location or ''} - {info.description}")
    if not info.trained:
        print("NOTE: untrained weights - the AP figures below are meaningless; the timings are real.")
    if not args.skip_cycles:
        compare_cycles(predictor, args.tolerances, args.flip)
    if not args.skip_speed:
        speed(predictor, args.runs)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
