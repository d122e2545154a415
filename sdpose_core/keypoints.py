"""Keypoint layouts: COCO-17 and CrowdPose-14 names, left/right flip pairs, OKS sigmas, skeletons."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KeypointLayout:
    """Everything that depends on which joints a dataset annotates."""

    name: str
    joints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]  # OKS per-joint falloff (already divided by 10)
    skeleton: tuple[tuple[int, int], ...]
    upper_body: tuple[int, ...]  # joints used by half-body augmentation
    joint_weights: tuple[float, ...] | None = None  # loss weight per joint (mmpose uses 1.0 by default)

    @property
    def num_keypoints(self) -> int:
        return len(self.joints)

    def flip_index(self) -> np.ndarray:
        """Permutation that swaps left and right joints."""
        index = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            index[a], index[b] = b, a
        return index

    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)


COCO17 = KeypointLayout(
    name="coco",
    joints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    sigmas=tuple(s / 10.0 for s in (
        0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72,
        0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89,
    )),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12),
        (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2),
        (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    upper_body=tuple(range(11)),
)

CROWDPOSE14 = KeypointLayout(
    name="crowdpose",
    joints=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
        "head_top", "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    sigmas=tuple(s / 10.0 for s in (
        0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79,
    )),
    skeleton=(
        (12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5),
        (0, 6), (1, 7), (6, 7), (6, 8), (8, 10), (7, 9), (9, 11),
    ),
    upper_body=(0, 1, 2, 3, 4, 5, 12, 13),
)

LAYOUTS: dict[str, KeypointLayout] = {"coco": COCO17, "crowdpose": CROWDPOSE14}

# COCO-17 index of each CrowdPose-14 joint that COCO also annotates (the 12 limb joints).
# head_top and neck have no COCO counterpart: they are left out when a COCO-17 model is scored
# against CrowdPose ground truth.
CROWDPOSE_FROM_COCO: dict[int, int] = {i: i + 5 for i in range(12)}


def get_layout(name_or_count: str | int) -> KeypointLayout:
    """Look a layout up by dataset name ('coco', 'crowdpose') or keypoint count (17, 14)."""
    if isinstance(name_or_count, int):
        for layout in LAYOUTS.values():
            if layout.num_keypoints == name_or_count:
                return layout
        raise ValueError(
            f"no keypoint layout has {name_or_count} joints; supported: 17 (COCO) and 14 (CrowdPose)"
        )
    key = name_or_count.lower()
    if key not in LAYOUTS:
        raise ValueError(f"unknown dataset {name_or_count!r}; choose one of {sorted(LAYOUTS)}")
    return LAYOUTS[key]


TORSO_ORIENTATIONS = ("upright", "sideways", "upside down", "unknown")


def torso_orientation(keypoints: np.ndarray, layout: KeypointLayout) -> str:
    """How a person's torso points in the image, from its labelled shoulders and hips (either side of each):
    'upright' when the shoulders lie above the hips by more than they lie beside them, 'upside down' when
    below, else 'sideways'; 'unknown' without a labelled shoulder and a labelled hip."""
    index = {name: i for i, name in enumerate(layout.joints)}
    points = np.asarray(keypoints, dtype=np.float64).reshape(layout.num_keypoints, -1)

    def middle(left: str, right: str) -> np.ndarray | None:
        labelled = [points[index[name], :2] for name in (left, right) if points[index[name], 2] > 0]
        return np.mean(labelled, axis=0) if labelled else None

    shoulders, hips = middle("left_shoulder", "right_shoulder"), middle("left_hip", "right_hip")
    if shoulders is None or hips is None:
        return "unknown"
    beside, above = abs(shoulders[0] - hips[0]), hips[1] - shoulders[1]  # image y grows downwards
    if above > beside:
        return "upright"
    if -above > beside:
        return "upside down"
    return "sideways"
