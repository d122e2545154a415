"""Boxes for the next video frame from this frame's keypoints, and when to run the person detector again.

    tracker = BoxTracker()
    boxes = tracker.update(keypoints, image.shape, threshold, used_boxes, detected=True)   # (M, 4) xywh
    if not len(boxes): ...  # run the detector on the next frame; tracker.reason says why

Between detections a live stream crops each person from the box around its confident keypoints of the
previous frame (`boxes_from_keypoints`). That feeds back: when a walking person's legs score under the
threshold for a frame, the box shrinks to the torso, the next crop shows only the torso, the legs are
found even less, and the box stays a strip around the torso until the next scheduled detection. So the
tracker compares every tracked box with the box the detector gave that person and asks for a fresh
detection when it shrinks (height under MIN_HEIGHT_RATIO or width under MIN_WIDTH_RATIO of it) or when the
person loses joints (confident joints under MIN_JOINT_RATIO of those it had on the detection frame, or
under TRACK_MIN_JOINTS).
"""

from __future__ import annotations

import numpy as np

TRACK_MIN_JOINTS = 5  # confident joints needed to keep tracking a person from its own keypoints
MIN_HEIGHT_RATIO = 0.75  # a tracked box shorter than this x the detected box: re-detect
MIN_WIDTH_RATIO = 0.4  # ... or narrower than this x the detected box (a walking person's legs together: ~0.5)
MIN_JOINT_RATIO = 0.7  # ... or with fewer confident joints than this x on the detection frame


def confident_joints(keypoints: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) number of joints per person with finite coordinates and a score >= threshold."""
    people = np.asarray(keypoints, dtype=np.float64).reshape(len(keypoints), -1, 3) if len(keypoints) else \
        np.zeros((0, 0, 3))
    return (np.isfinite(people[..., :2]).all(axis=-1) & (people[..., 2] >= threshold)).sum(axis=-1)


def boxes_from_keypoints(keypoints: np.ndarray, image_shape: tuple[int, ...], threshold: float) -> np.ndarray:
    """Tracking boxes (M, 4) xywh around each person's confident joints, padded (joints sit inside the body:
    the head top is above the eyes, the feet below the ankles); people with too few confident joints are
    left out (lost: the detector takes over)."""
    height, width = image_shape[:2]
    boxes = []
    for person in keypoints:
        confident = person[np.isfinite(person[:, :2]).all(axis=1) & (person[:, 2] >= threshold), :2]
        if len(confident) < TRACK_MIN_JOINTS:
            continue
        (x0, y0), (x1, y1) = confident.min(axis=0), confident.max(axis=0)
        w, h = max(x1 - x0, 8.0), max(y1 - y0, 8.0)
        x0, x1 = x0 - 0.12 * w, x1 + 0.12 * w
        y0, y1 = y0 - 0.18 * h, y1 + 0.08 * h
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(width), x1), min(float(height), y1)
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            boxes.append([x0, y0, x1 - x0, y1 - y0])
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


class BoxTracker:
    """Per-stream state: the detector's box and confident-joint count of every tracked person (same order
    as the people of each frame's result), and why the last `update` asked for a detection (`reason`)."""

    def __init__(self, min_height_ratio: float = MIN_HEIGHT_RATIO, min_width_ratio: float = MIN_WIDTH_RATIO,
                 min_joint_ratio: float = MIN_JOINT_RATIO) -> None:
        self.min_height_ratio, self.min_width_ratio = float(min_height_ratio), float(min_width_ratio)
        self.min_joint_ratio = float(min_joint_ratio)
        self._detected = np.zeros((0, 4))
        self._joints = np.zeros(0)
        self.reason: str | None = None

    def reset(self) -> None:
        self._detected, self._joints, self.reason = np.zeros((0, 4)), np.zeros(0), None

    def update(self, keypoints: np.ndarray, image_shape: tuple[int, ...], threshold: float,
               used_boxes: np.ndarray, detected: bool) -> np.ndarray:
        """Boxes to crop the same people from on the next frame; empty (and `reason` set) when the next frame
        should run the detector. `keypoints` (N, K, 3) of this frame's people, `used_boxes` (N, 4) the boxes
        they were cropped from, `detected`: whether those came from the detector this frame."""
        keypoints = np.asarray(keypoints, dtype=np.float64)
        used = np.asarray(used_boxes, dtype=np.float64).reshape(-1, 4)
        joints = confident_joints(keypoints, threshold)
        if detected:
            self._detected, self._joints = used.copy(), joints.astype(np.float64)
        tracked = boxes_from_keypoints(keypoints, image_shape, threshold)
        self.reason = self._lost(tracked, joints, len(keypoints))
        return tracked if self.reason is None else np.zeros((0, 4))

    def _lost(self, tracked: np.ndarray, joints: np.ndarray, people: int) -> str | None:
        if people == 0:
            return "nobody found"
        if len(tracked) != people:
            return f"{people - len(tracked)} of {people} people with under {TRACK_MIN_JOINTS} confident joints"
        if len(self._detected) != people:
            return "the people changed since the last detection"
        heights = tracked[:, 3] / np.maximum(self._detected[:, 3], 1e-6)
        widths = tracked[:, 2] / np.maximum(self._detected[:, 2], 1e-6)
        shrunk = (heights < self.min_height_ratio) | (widths < self.min_width_ratio)
        if shrunk.any():
            index = int(np.argmax(shrunk))
            return (f"person {index + 1}'s tracked box shrank to {heights[index]:.0%} of the detected height, "
                    f"{widths[index]:.0%} of its width")
        lost = joints < self.min_joint_ratio * self._joints
        if lost.any():
            index = int(np.argmax(lost))
            return (f"person {index + 1} lost joints: {int(joints[index])} confident, "
                    f"{int(self._joints[index])} on the detection frame")
        return None
