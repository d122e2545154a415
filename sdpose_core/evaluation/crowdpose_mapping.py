"""Scoring a COCO-17 model on CrowdPose-14 ground truth.

The 12 limb joints are shared (CrowdPose joint i is COCO joint i + 5,
`sdpose_core.keypoints.CROWDPOSE_FROM_COCO`). CrowdPose's head_top and neck have no COCO joint.
Two treatments, named by `head_neck`:

- "drop" (default): evaluate only the 12 shared joints. Ground truth, predictions and sigmas are all
  cut to those 12 joints and CrowdPose's `num_keypoints` is recounted on them, so a person labelled
  only at head/neck is ignored. The numbers are NOT comparable to 14-joint CrowdPose AP.
- "synthesize": fill the two joints and evaluate all 14 with CrowdPose's rules.
  neck = midpoint of the shoulders (score: the lower shoulder score);
  head_top = face centre + `head_top_factor` x (face centre - neck), where the face centre is the mean
  of nose, eyes and ears (score: their mean score). The factor 0.5 is an anatomical rule of thumb
  (eye level sits about two thirds of the way from the shoulder line to the top of the head), not
  fitted to data, so head_top adds error of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdpose_core.evaluation.metrics import evaluate_predictions
from sdpose_core.keypoints import COCO17, CROWDPOSE14, CROWDPOSE_FROM_COCO

HEAD_NECK_MODES = ("drop", "synthesize")
SHARED_CROWDPOSE_JOINTS: tuple[int, ...] = tuple(sorted(CROWDPOSE_FROM_COCO))
HEAD_TOP = CROWDPOSE14.joints.index("head_top")
NECK = CROWDPOSE14.joints.index("neck")
_SHOULDERS = (COCO17.joints.index("left_shoulder"), COCO17.joints.index("right_shoulder"))
_FACE = tuple(COCO17.joints.index(name) for name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))


def coco_keypoints_to_crowdpose(
    keypoints: np.ndarray, head_neck: str = "drop", head_top_factor: float = 0.5
) -> np.ndarray:
    """(..., 17, 3) COCO keypoints to (..., 14, 3) CrowdPose keypoints.

    With head_neck="drop", head_top and neck are zeros (x, y, score) and must be left out of the
    evaluation (`evaluate_coco_on_crowdpose` does); with "synthesize" they are filled as the module
    docstring says.
    """
    if head_neck not in HEAD_NECK_MODES:
        raise ValueError(f"head_neck must be one of {HEAD_NECK_MODES}, got {head_neck!r}")
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.shape[-2:] != (COCO17.num_keypoints, 3):
        raise ValueError(f"expected (..., 17, 3) COCO keypoints, got shape {keypoints.shape}")
    out = np.zeros(keypoints.shape[:-2] + (CROWDPOSE14.num_keypoints, 3))
    crowd_index = np.asarray(SHARED_CROWDPOSE_JOINTS)
    out[..., crowd_index, :] = keypoints[..., [CROWDPOSE_FROM_COCO[i] for i in SHARED_CROWDPOSE_JOINTS], :]
    if head_neck == "synthesize":
        shoulders = keypoints[..., list(_SHOULDERS), :]
        neck_xy = shoulders[..., :2].mean(axis=-2)
        face = keypoints[..., list(_FACE), :]
        face_xy = face[..., :2].mean(axis=-2)
        out[..., NECK, :2] = neck_xy
        out[..., NECK, 2] = shoulders[..., 2].min(axis=-1)
        out[..., HEAD_TOP, :2] = face_xy + head_top_factor * (face_xy - neck_xy)
        out[..., HEAD_TOP, 2] = face[..., 2].mean(axis=-1)
    return out


def coco_results_to_crowdpose(
    results: Sequence[dict], head_neck: str = "drop", head_top_factor: float = 0.5
) -> list[dict]:
    """Copies of COCO-17 keypoint results with 14-joint CrowdPose keypoints (other fields kept)."""
    converted = []
    for index, entry in enumerate(results):
        flat = np.asarray(entry["keypoints"], dtype=np.float64)
        if flat.size != 3 * COCO17.num_keypoints:
            raise ValueError(f"result #{index} has {flat.size} keypoint values; a COCO-17 result has 51")
        mapped = coco_keypoints_to_crowdpose(flat.reshape(-1, 3), head_neck, head_top_factor)
        converted.append({**entry, "keypoints": mapped.reshape(-1).tolist()})
    return converted


def evaluate_coco_on_crowdpose(
    ann_file_or_dict: str | Path | dict,
    coco_results: Sequence[dict],
    head_neck: str = "drop",
    head_top_factor: float = 0.5,
) -> dict[str, float]:
    """CrowdPose metrics (AP ... AP_hard) of COCO-17 predictions on CrowdPose-14 ground truth.

    head_neck="drop" scores the 12 shared joints only; "synthesize" scores all 14 with head_top
    and neck built from COCO joints. Say which one you used wherever you report the number.
    """
    converted = coco_results_to_crowdpose(coco_results, head_neck, head_top_factor)
    subset = SHARED_CROWDPOSE_JOINTS if head_neck == "drop" else None
    return evaluate_predictions(ann_file_or_dict, converted, "crowdpose", keypoint_subset=subset)
