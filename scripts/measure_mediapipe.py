"""Measure the MediaPipe BlazePose baseline on the shared COCO people (ground-truth boxes).

Prints how many people MediaPipe finds a pose for, the median keypoint error (in units of
sqrt(box area), annotated joints only) and the median milliseconds per person (after a warm-up).
Run: `python scripts/measure_mediapipe.py [--runs 3] [--min-visible 6]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from sdpose_core.inference.baselines import MediaPipePose
from sdpose_core.media.images import load_image
from sdpose_core.paths import data_root

SPLITS = ("coco/coco_mini_train", "coco/mmpose_coco")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed passes over the people")
    parser.add_argument("--min-visible", type=int, default=6, help="people with at least this many visible joints")
    args = parser.parse_args()

    people = []
    for split in SPLITS:
        data = json.loads((data_root() / split / "person_keypoints.json").read_text())
        files = {image["id"]: data_root() / split / "images" / image["file_name"] for image in data["images"]}
        people += [(files[ann["image_id"]], ann) for ann in data["annotations"]
                   if not ann["iscrowd"] and sum(v == 2 for v in ann["keypoints"][2::3]) >= args.min_visible]
    images = {path: load_image(path) for path in {path for path, _ in people}}

    with MediaPipePose() as pose:
        pose.predict(images[people[0][0]], [people[0][1]["bbox"]])  # warm-up: builds the graph
        errors, found, per_person = [], 0, []
        for run in range(args.runs):
            for path, ann in people:
                start = time.perf_counter()
                [person] = pose.predict(images[path], [ann["bbox"]])
                per_person.append((time.perf_counter() - start) * 1000)
                if run == 0 and person.found:
                    found += 1
                    truth = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
                    labelled = truth[:, 2] > 0
                    distance = np.linalg.norm(person.keypoints[labelled, :2] - truth[labelled, :2], axis=1)
                    errors.append(distance.mean() / np.sqrt(ann["bbox"][2] * ann["bbox"][3]))
    print(f"MediaPipe BlazePose (model_complexity=1) on {len(people)} GT boxes "
          f"(>= {args.min_visible} visible joints): pose found for {found}")
    print(f"keypoint error where found: median {np.median(errors):.3f}, mean {np.mean(errors):.3f} x sqrt(box area)")
    print(f"median {statistics.median(per_person):.1f} ms/person over {len(per_person)} calls")


if __name__ == "__main__":
    main()
