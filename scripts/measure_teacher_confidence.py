"""How far PP-TinyPose's score can be trusted as a teacher: the figures behind the 0.5 threshold of
`sdpose pseudo-label --teacher pp-tinypose`, `--fill-ann` and `sdpose lsp-coco` (data/teacher_sets.py, data/lsp.py).

    OMP_NUM_THREADS=1 python scripts/measure_teacher_confidence.py            # about 2 min on a quiet 2-core CPU

PP-TinyPose 256x192 with the flip test runs on the ground-truth boxes of coco_mini_train (86 people, all 17
joints labelled by COCO) and of LSP-extended val (ids 9001-10000 as COCO-17: 12 limb joints). Printed:

1. per score threshold, the share of labelled joints the teacher scores at least that high ("kept") and how
   many of those are right: keypoint similarity exp(-d^2 / (2 area k^2)) >= 0.5 with COCO's k (the OKS term of
   one joint; 0.5 is a loose hit, about 1.2 k sqrt(area) away), split into face and limb joints;
2. LSP val keypoint AP (COCO evaluation, area 0.53 x box w x h) with the detection score = mean heatmap peak,
   and through `run_baseline_evaluation` (mmpose rescoring), the path `sdpose evaluate --baseline` takes;
3. left / right: how many LSP val people match the teacher clearly better as labelled than mirrored (OKS
   difference > 0.05), i.e. whether LSP's person-centric sides agree with COCO's;
4. the distance of the teacher's confident face joints from LSP's head centre (midpoint of head top and neck),
   in head lengths: what the head check of `lsp-coco` (1 head length) refuses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdpose_core.data.lsp import load_lsp, lsp_coco17, lsp_folder  # noqa: E402
from sdpose_core.evaluation import evaluate_predictions  # noqa: E402
from sdpose_core.inference.tinypose import TinyPoseTeacher  # noqa: E402
from sdpose_core.keypoints import COCO17  # noqa: E402
from sdpose_core.media.images import load_image  # noqa: E402
from sdpose_core.paths import data_root  # noqa: E402

THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)


def predict_on_gt(coco: dict, images: Path, teacher: TinyPoseTeacher) -> list[tuple[dict, np.ndarray]]:
    """(annotation, teacher keypoints (17, 3)) for every non-crowd person with labelled joints."""
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd") and ann["num_keypoints"] > 0:
            by_image.setdefault(ann["image_id"], []).append(ann)
    pairs = []
    for image in coco["images"]:
        people = by_image.get(image["id"], [])
        if people:
            rgb = load_image(images / image["file_name"])
            predicted = teacher.predict(rgb, np.array([a["bbox"] for a in people], dtype=np.float64))
            pairs += [(a, p.keypoints.astype(np.float64)) for a, p in zip(people, predicted, strict=True)]
    return pairs


def similarity(gt: np.ndarray, pred: np.ndarray, area: float) -> np.ndarray:
    k = 2 * COCO17.sigmas_array()
    return np.exp(-((gt[:, :2] - pred[:, :2]) ** 2).sum(1) / (2 * area * k**2 + np.spacing(1)))


def precision_table(name: str, pairs: list[tuple[dict, np.ndarray]]) -> None:
    rows = []
    for ann, pred in pairs:
        gt = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        ks = similarity(gt, pred, ann["area"])
        rows += [(j, pred[j, 2], ks[j]) for j in range(17) if gt[j, 2] > 0]
    table = np.asarray(rows)
    for part, joints in (("face", range(5)), ("limbs", range(5, 17))):
        mask = np.isin(table[:, 0], list(joints))
        if not mask.any():
            continue
        cells = []
        for threshold in THRESHOLDS:
            kept = mask & (table[:, 1] >= threshold)
            cells.append(f"{threshold:.1f}: kept {kept.sum() / mask.sum():.2f} right {np.mean(table[kept, 2] >= 0.5):.3f}")
        print(f"{name} {part} ({int(mask.sum())} labelled joints)\n  " + "\n  ".join(cells))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="ncnn threads")
    args = parser.parse_args()
    teacher = TinyPoseTeacher((256, 192), flip=True, threads=args.threads)
    coco_dir = data_root() / "coco" / "coco_mini_train"
    coco = json.loads((coco_dir / "person_keypoints.json").read_text())
    precision_table("coco_mini_train", predict_on_gt(coco, coco_dir / "images", teacher))

    lsp = load_lsp()
    val = lsp_coco17(lsp, "val")
    pairs = predict_on_gt(val, lsp_folder() / "images", teacher)
    precision_table("LSP-extended val", pairs)
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": p.ravel().tolist(),
                "score": float(p[:, 2].mean())} for a, p in pairs]
    print(f"LSP val AP (score = mean heatmap peak): {evaluate_predictions(val, results)['AP']:.4f}")
    from sdpose_core.evaluation.evaluate import run_baseline_evaluation

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lsp_val_coco17.json"
        path.write_text(json.dumps(val))
        report = run_baseline_evaluation(teacher, str(path), str(lsp_folder() / "images"), dataset="coco")
    print(f"LSP val AP (run_baseline_evaluation, mmpose rescoring): {report['metrics'][teacher.name]['AP']:.4f} "
          f"({report['num_instances']} people)")

    flip = COCO17.flip_index()
    as_is = mirrored = 0
    for ann, pred in pairs:
        gt = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)
        labelled = gt[:, 2] > 0
        plain, swapped = similarity(gt, pred, ann["area"]), similarity(gt, pred[flip], ann["area"])
        difference = plain[labelled].mean() - swapped[labelled].mean()
        as_is += difference > 0.05
        mirrored += difference < -0.05
    print(f"left/right on LSP val: {as_is} people match the teacher better as labelled, {mirrored} mirrored")

    source = {a["id"]: np.asarray(a["keypoints"], dtype=np.float64).reshape(14, 3) for a in lsp["annotations"]}
    distances = []
    for ann, pred in pairs:
        src = source[ann["id"]]
        if src[12, 2] > 0 and src[13, 2] > 0:
            centre, length = (src[12, :2] + src[13, :2]) / 2, max(np.linalg.norm(src[12, :2] - src[13, :2]), 1.0)
            face = pred[:5][pred[:5, 2] >= 0.5]
            distances += list(np.linalg.norm(face[:, :2] - centre, axis=1) / length)
    d = np.asarray(distances)
    print(f"confident (>= 0.5) face joints on LSP val: {len(d)}; head lengths from LSP's head centre: median "
          f"{np.median(d):.2f}, 95th percentile {np.percentile(d, 95):.2f}; beyond 1.0 (refused): {np.mean(d > 1):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
