"""The plateau's reference: what a model that outputs the average pose scores on a validation split.

    python scripts/average_pose_reference.py --train-ann A.json [--train-ann B.json ...] --val-ann V.json

The mean pose of the training people (each labelled joint relative to its person's box: (x - x0) / w,
(y - y0) / h, averaged per joint over the people where it is labelled) is placed in every validation GT box.
Printed: mean OKS over the GT people (each against the pose in its own box, the number validation logs as
`OKS`) and COCO AP. A trained model whose mean OKS is near this number has learnt the average pose only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdpose_core.evaluation import evaluate_predictions  # noqa: E402
from sdpose_core.evaluation.oks import compute_oks, oks_area  # noqa: E402
from sdpose_core.keypoints import COCO17  # noqa: E402


def mean_pose(ann_files: list[str]) -> np.ndarray:
    """(K, 2) mean joint position relative to the box, over the people where each joint is labelled."""
    sums = np.zeros((COCO17.num_keypoints, 2))
    counts = np.zeros(COCO17.num_keypoints)
    for path in ann_files:
        for person in json.loads(Path(path).read_text())["annotations"]:
            x0, y0, w, h = person["bbox"]
            if w <= 1 or h <= 1:
                continue
            joints = np.asarray(person["keypoints"], np.float64).reshape(-1, 3)
            labelled = joints[:, 2] > 0
            sums[labelled] += np.stack([(joints[labelled, 0] - x0) / w, (joints[labelled, 1] - y0) / h], 1)
            counts[labelled] += 1
    return sums / np.maximum(counts, 1)[:, None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-ann", action="append", required=True, help="training annotations (repeatable)")
    p.add_argument("--val-ann", required=True, help="the validation split (COCO-17, GT boxes)")
    args = p.parse_args()
    pose = mean_pose(args.train_ann)
    val = json.loads(Path(args.val_ann).read_text())
    sigmas = COCO17.sigmas_array()
    results, oks = [], []
    for person in val["annotations"]:
        x0, y0, w, h = person["bbox"]
        keypoints = np.concatenate([pose * [w, h] + [x0, y0], np.ones((len(pose), 1))], 1)
        results.append({"image_id": person["image_id"], "category_id": 1, "score": 1.0,
                        "keypoints": keypoints.reshape(-1).tolist()})
        gt = np.asarray(person["keypoints"], np.float64).reshape(1, -1, 3)
        if (gt[0, :, 2] > 0).any():
            oks.append(compute_oks(gt, oks_area(person), keypoints[None], sigmas)[0, 0])
    metrics = evaluate_predictions(val, results, dataset="coco")
    print(f"average pose of {', '.join(Path(a).name for a in args.train_ann)} in each GT box of "
          f"{Path(args.val_ann).name}: mean OKS {np.mean(oks):.3f} over {len(oks)} people, AP {metrics['AP']:.4f}")


if __name__ == "__main__":
    main()
