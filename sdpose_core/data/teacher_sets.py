"""Labelled COCO-17 sets completed by a teacher: joints the annotators left unlabelled (v=0) get the teacher's
confident prediction on the person's ground-truth box; every labelled ground-truth joint stays exactly as it is.

    from sdpose_core.inference.tinypose import TinyPoseTeacher
    filled, counts = fill_unlabelled(json.loads(Path(GT).read_text()), IMAGES, TinyPoseTeacher())
    # or: sdpose pseudo-label IMAGES --fill-ann GT.json --teacher pp-tinypose --out OUT.json

Rules (the same confidence rule as `inference.pseudo_label.select_person` for one joint):

- only non-crowd people with at least `min_gt_joints` labelled joints are filled (COCO's people with no
  keypoints are mostly tiny or hidden ones its annotators skipped; the teacher is unreliable there too);
- a joint is filled (v=2) when it is unlabelled in the ground truth, one of `joints` (default all 17), the
  teacher scores it >= `threshold`, it lies inside the image, and `check` (when given) accepts it;
- `keypoint_scores` on each annotation: 1.0 for ground-truth joints, the teacher's score for filled ones, 0 for
  the rest (a weight a trainer may use), and `teacher_joints` lists the filled indices; `num_keypoints` is
  recounted. Box, area and everything else of the annotation are kept.

The threshold 0.5 for PP-TinyPose 256x192 (flip) was chosen with `scripts/measure_teacher_confidence.py`.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.errors import DataError
from sdpose_core.keypoints import COCO17

FACE_JOINTS: tuple[int, ...] = tuple(range(5))  # nose, eyes, ears
DEFAULT_THRESHOLD = 0.5
JointCheck = Callable[[dict[str, Any], np.ndarray], np.ndarray]  # (annotation, teacher (17, 3)) -> (17,) bool


def confident_joints(teacher_keypoints: np.ndarray, image_shape: tuple[int, ...], threshold: float) -> np.ndarray:
    """(17,) bool: the teacher's joints scoring >= threshold that lie inside the image."""
    height, width = image_shape[:2]
    x, y, score = teacher_keypoints[:, 0], teacher_keypoints[:, 1], teacher_keypoints[:, 2]
    return (score >= threshold) & (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)


def fill_person(annotation: dict[str, Any], teacher_keypoints: np.ndarray, fillable: np.ndarray) -> dict[str, Any]:
    """A copy of `annotation` whose unlabelled joints in `fillable` take the teacher's x, y (v=2)."""
    gt = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)
    if gt.shape != (COCO17.num_keypoints, 3):
        raise DataError(f"annotation {annotation.get('id')}: {gt.size} keypoint values; a COCO-17 person has 51")
    previous = annotation.get("keypoint_scores")
    scores = np.asarray(previous, dtype=np.float64) if previous is not None else (gt[:, 2] > 0).astype(np.float64)
    fill = fillable & (gt[:, 2] == 0)
    flat = list(annotation["keypoints"])  # ground-truth values are copied as they are, never re-rounded
    for joint in np.flatnonzero(fill):
        flat[3 * joint: 3 * joint + 3] = [round(float(teacher_keypoints[joint, 0]), 2),
                                          round(float(teacher_keypoints[joint, 1]), 2), 2]
    scores = np.where(fill, teacher_keypoints[:, 2], scores)
    filled = sorted(set(annotation.get("teacher_joints", [])) | {int(j) for j in np.flatnonzero(fill)})
    return {**annotation, "keypoints": flat, "num_keypoints": int(sum(v > 0 for v in flat[2::3])),
            "keypoint_scores": [round(float(v), 3) for v in scores], "teacher_joints": filled}


def fill_unlabelled(
    coco: dict[str, Any],
    images_dir: str | Path,
    teacher: Any,
    threshold: float = DEFAULT_THRESHOLD,
    joints: Sequence[int] | None = None,
    min_gt_joints: int = 1,
    check: JointCheck | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, int]]:
    """(filled copy of `coco`, counts): see the module docstring. `teacher.predict(image_rgb, boxes)` gives one
    PosePrediction (keypoints (17, 3)) per [x, y, w, h] box, as MediaPipePose and TinyPoseTeacher do."""
    from sdpose_core.media.images import load_image

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"images folder {images_dir} does not exist (give the folder the annotation's file_names "
                        "are relative to)")
    allowed = np.zeros(COCO17.num_keypoints, dtype=bool)
    allowed[list(range(COCO17.num_keypoints) if joints is None else joints)] = True
    out = copy.deepcopy(coco)
    by_image: dict[int, list[int]] = {}
    for index, ann in enumerate(out.get("annotations", [])):
        labelled = sum(v > 0 for v in ann.get("keypoints", [])[2::3])
        if not ann.get("iscrowd", 0) and labelled >= min_gt_joints:
            by_image.setdefault(ann["image_id"], []).append(index)
    counts = {"people": len(out.get("annotations", [])), "people_considered": 0, "people_filled": 0,
              "joints_gt": 0, "joints_filled": 0, "joints_refused_by_check": 0}
    images = [im for im in out.get("images", []) if im["id"] in by_image]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(images, desc=f"teacher fill ({getattr(teacher, 'name', 'teacher')})", unit="img")
    for image in bar if bar is not None else images:
        path = images_dir / image["file_name"]
        if not path.is_file():
            raise DataError(f"{path} is missing: the images folder does not match the annotation file")
        rgb = load_image(path)
        rows = by_image[image["id"]]
        boxes = np.array([out["annotations"][i]["bbox"] for i in rows], dtype=np.float64).reshape(-1, 4)
        for index, person in zip(rows, teacher.predict(rgb, boxes), strict=True):
            ann = out["annotations"][index]
            predicted = np.asarray(person.keypoints, dtype=np.float64)
            fillable = confident_joints(predicted, rgb.shape, threshold) & allowed
            if check is not None:
                accepted = np.asarray(check(ann, predicted), dtype=bool)
                counts["joints_refused_by_check"] += int((fillable & ~accepted).sum())
                fillable &= accepted
            before = int(sum(v > 0 for v in ann["keypoints"][2::3]))
            out["annotations"][index] = filled = fill_person(ann, predicted, fillable)
            counts["people_considered"] += 1
            counts["joints_gt"] += before
            gained = filled["num_keypoints"] - before
            counts["joints_filled"] += gained
            counts["people_filled"] += int(gained > 0)
    if bar is not None:
        bar.close()
    info = dict(out.get("info") or {})
    info["teacher_fill"] = {
        "teacher": teacher.describe() if hasattr(teacher, "describe") else type(teacher).__name__,
        "threshold": threshold, "joints": [COCO17.joints[j] for j in np.flatnonzero(allowed)],
        "min_gt_joints": min_gt_joints, "images_dir": str(images_dir), "counts": counts,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rules": __doc__.split("\n\n")[2].strip() if __doc__ else "",
    }
    out["info"] = info
    return out, counts
