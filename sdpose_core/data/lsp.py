"""LSP-extended (../shared/data/lsp_extended, CrowdPose-14 order) as COCO-17 training and validation sets.

    sdpose lsp-coco --split val --out runs/data/lsp_val_coco17.json                  # no teacher needed
    sdpose lsp-coco --split train --out runs/data/lsp_train_coco17.json --teacher pp-tinypose

Both files go with the images folder `lsp_extended/images` (file names and image ids are LSP's).

- Joints: LSP's 12 limb joints (shoulders, elbows, wrists, hips, knees, ankles) land on COCO-17's (CrowdPose
  joint i is COCO joint i + 5, `keypoints.CROWDPOSE_FROM_COCO`). Both sets label left / right from the
  person's viewpoint, so nothing is swapped. head_top and neck have no COCO joint and are dropped.
- Split (the data README's): ids 1-9000 train, 9001-10000 validation (never trained on).
- Validation: the 12 limb joints only, the face (nose, eyes, ears) unlabelled (v=0), so COCO's evaluation with
  COCO's sigmas scores the limbs; `area` = 0.53 x box w x h (what CrowdPose's evaluation uses as OKS scale when
  there is no segment area) on both splits.
- Training: the limbs as above plus the 5 face joints from a teacher on the ground-truth box where it is
  confident (`teacher_sets.fill_unlabelled`, threshold 0.5) and the face lies near LSP's own head: the
  joint is within `head_check` head lengths (head_top to neck) of the head's centre (their midpoint),
  which refuses a face taken from a team-mate or spectator in the crop. A person without a labelled head
  top and neck gets no check. Without a teacher the face stays unlabelled.

Every labelled LSP joint is v=2 (LSP has no occlusion flag); `keypoint_scores` is 1.0 on LSP's joints.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import COCO17, CROWDPOSE14, CROWDPOSE_FROM_COCO
from sdpose_core.paths import data_root

SPLITS = {"train": (1, 9000), "val": (9001, 10000)}  # inclusive image-id ranges
AREA_FACTOR = 0.53
HEAD_TOP = CROWDPOSE14.joints.index("head_top")
NECK = CROWDPOSE14.joints.index("neck")
DEFAULT_HEAD_CHECK = 1.0  # head lengths; see the module docstring


def lsp_folder() -> Path:
    return data_root() / "lsp_extended"


def lsp_to_coco17(keypoints: Any) -> np.ndarray:
    """(14, 3) CrowdPose-order LSP joints (flat or not) -> (17, 3) COCO-17; face joints zero (unlabelled)."""
    src = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    if src.shape != (CROWDPOSE14.num_keypoints, 3):
        raise DataError(f"an LSP person has 14 joints (42 values), got {src.size} values")
    out = np.zeros((COCO17.num_keypoints, 3))
    for crowd_index, coco_index in CROWDPOSE_FROM_COCO.items():
        out[coco_index] = src[crowd_index]
    return out


def _categories() -> list[dict[str, Any]]:
    return [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17.joints),
             "skeleton": [[a + 1, b + 1] for a, b in COCO17.skeleton]}]


def lsp_coco17(lsp: dict[str, Any], split: str) -> dict[str, Any]:
    """The `split` people of a loaded LSP-extended CrowdPose file as a COCO-17 dict (limbs only, face v=0)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown LSP split {split!r}; choose one of {', '.join(SPLITS)}")
    low, high = SPLITS[split]
    names = lsp.get("categories", [{}])[0].get("keypoints", [])
    if len(names) != CROWDPOSE14.num_keypoints:
        raise DataError(f"not an LSP-extended CrowdPose file: its category lists {len(names)} joints, not 14")
    images = [dict(im) for im in lsp.get("images", []) if low <= im["id"] <= high]
    ids = {im["id"] for im in images}
    annotations = []
    for ann in lsp.get("annotations", []):
        if ann["image_id"] not in ids:
            continue
        keypoints = lsp_to_coco17(ann["keypoints"])
        labelled = keypoints[:, 2] > 0
        keypoints[labelled, 2] = 2
        x, y, w, h = ann["bbox"]
        annotations.append({
            "id": ann["id"], "image_id": ann["image_id"], "category_id": 1, "iscrowd": 0, "bbox": list(ann["bbox"]),
            "area": round(AREA_FACTOR * w * h, 2), "num_keypoints": int(labelled.sum()),
            "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(keypoints.ravel())],
            "keypoint_scores": [float(v) for v in labelled],
        })
    if not annotations:
        raise DataError(f"no LSP-extended people with image ids {low}-{high} in this file")
    info = {"description": f"LSP-extended {split} (ids {low}-{high}) as COCO-17: the 12 limb joints, face "
                           "unlabelled, head_top and neck dropped", "images_dir": "lsp_extended/images",
            "area_rule": f"{AREA_FACTOR} x bbox w x h", "rules": (__doc__ or "").split("\n\n")[2].strip(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return {"info": info, "images": images, "annotations": annotations, "categories": _categories()}


def head_check(lsp_by_id: dict[int, dict[str, Any]], max_head_lengths: float = DEFAULT_HEAD_CHECK
               ) -> Callable[[dict[str, Any], np.ndarray], np.ndarray]:
    """A `fill_unlabelled` check: teacher joints within `max_head_lengths` head lengths of LSP's head centre."""
    def check(ann: dict[str, Any], teacher_keypoints: np.ndarray) -> np.ndarray:
        src = np.asarray(lsp_by_id[ann["id"]]["keypoints"], dtype=np.float64).reshape(-1, 3)
        if src[HEAD_TOP, 2] <= 0 or src[NECK, 2] <= 0:
            return np.ones(len(teacher_keypoints), dtype=bool)
        centre = (src[HEAD_TOP, :2] + src[NECK, :2]) / 2
        length = max(float(np.linalg.norm(src[HEAD_TOP, :2] - src[NECK, :2])), 1.0)
        return np.linalg.norm(teacher_keypoints[:, :2] - centre, axis=1) <= max_head_lengths * length

    return check


def lsp_coco17_with_teacher(lsp: dict[str, Any], split: str, images_dir: str | Path, teacher: Any,
                            threshold: float | None = None, max_head_lengths: float = DEFAULT_HEAD_CHECK,
                            progress: bool = True) -> tuple[dict[str, Any], dict[str, int]]:
    """`lsp_coco17` plus the teacher's confident face joints (train: see the module docstring)."""
    from sdpose_core.data.teacher_sets import DEFAULT_THRESHOLD, FACE_JOINTS, fill_unlabelled

    if split == "val":
        raise ConfigError("the LSP validation split keeps its face unlabelled (limbs only); give no teacher for it")
    coco = lsp_coco17(lsp, split)
    by_id = {ann["id"]: ann for ann in lsp["annotations"]}
    filled, counts = fill_unlabelled(coco, images_dir, teacher, threshold=DEFAULT_THRESHOLD if threshold is None
                                     else threshold, joints=FACE_JOINTS, check=head_check(by_id, max_head_lengths),
                                     progress=progress)
    filled["info"]["teacher_fill"]["head_check_head_lengths"] = max_head_lengths
    return filled, counts


def load_lsp(path: str | Path | None = None) -> dict[str, Any]:
    """The LSP-extended CrowdPose file (default: the shared one), with a clear error when it is absent."""
    from sdpose_core.data.annotations import read_json

    path = Path(path) if path is not None else lsp_folder() / "crowdpose.json"
    if not path.is_file():
        raise DataError(f"{path} not found: LSP-extended lives in ../shared/data/lsp_extended (set SDPOSE_DATA)")
    data = read_json(path, "LSP-extended annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path} is not a COCO-style annotation file (no 'annotations' list)")
    return data
