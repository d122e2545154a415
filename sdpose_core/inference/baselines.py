"""Baselines to compare SDPose against: MediaPipe BlazePose (offline, CPU), run top-down per person box.

    from sdpose_core.inference.baselines import MediaPipePose
    with MediaPipePose() as pose:
        people = pose.predict(image_rgb, boxes)     # boxes: Detections or [N,4] xywh; None = whole image
        people[0].keypoints                         # (17, 3) COCO order: x, y (image pixels), score

BlazePose is a single-person model, so each box is cropped (with `padding` of context on every side,
clipped to the image), run through MediaPipe's legacy `solutions.pose` in static-image mode, and its
landmarks are mapped back to image coordinates. Of its 33 landmarks, the 17 that COCO also has are
kept (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles; MediaPipe's "left" is the
person's left, as in COCO); MediaPipe's `visibility` becomes the keypoint score. Coordinates are not
clipped: BlazePose also predicts joints outside the crop, with low visibility. When MediaPipe finds
no pose in a box, that person gets all-zero keypoints (score 0) and `found=False`.

Only `model_complexity=1` works offline: the weights for 0 and 2 are downloaded on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import COCO17
from sdpose_core.media.images import to_rgb_uint8

# The crop our models see is the aspect-fixed box x 1.25 (mmpose padding); MediaPipePose adds `padding`
# of the box on EACH side, so 0.125 hands BlazePose exactly that crop.
MODEL_CROP_PADDING = 0.125

# BlazePose landmark index for each COCO-17 joint, in COCO order.
BLAZEPOSE_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
assert len(BLAZEPOSE_TO_COCO17) == COCO17.num_keypoints


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous
class PosePrediction:
    """One person: `keypoints` (17, 3) = x, y in image pixels and score; `box_xywh` the box it came from."""

    keypoints: np.ndarray
    box_xywh: np.ndarray
    found: bool

    @property
    def score(self) -> float:
        """Mean keypoint score (0 when no pose was found)."""
        return float(self.keypoints[:, 2].mean())


def _boxes_array(boxes: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    height, width = image_shape[:2]
    if boxes is None:
        return np.array([[0, 0, width, height]], dtype=np.float64)
    if isinstance(boxes, np.ndarray):
        array = boxes.astype(np.float64)
    else:
        items = list(boxes) if isinstance(boxes, Iterable) else [boxes]
        array = np.array([getattr(b, "box_xywh", b) for b in items], dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4 or not np.isfinite(array).all():
        raise DataError(f"boxes must be Detections or an [N, 4] array of finite x, y, w, h; got shape {array.shape}")
    return array


class MediaPipePose:
    """MediaPipe BlazePose (full, `model_complexity=1`) as a top-down COCO-17 baseline.

    One MediaPipe graph is created lazily and reused (creating it costs far more than a frame).
    It is not safe to feed from several threads at once, so `predict` holds a lock: a shared instance
    serialises calls; create one instance per thread for parallel work. Call `close()` (or use it as a
    context manager) to free the graph.
    """

    name = "mediapipe"

    def __init__(self, padding: float = 0.25, min_detection_confidence: float = 0.5, model_complexity: int = 1):
        if model_complexity != 1:
            raise ConfigError("only model_complexity=1 is available offline (0 and 2 download their weights)")
        if padding < 0:
            raise ConfigError(f"padding must be >= 0 (fraction of the box added on each side), got {padding}")
        self.padding = float(padding)
        self.min_detection_confidence = float(min_detection_confidence)
        self.model_complexity = model_complexity
        self._pose: Any = None
        self._lock = threading.Lock()

    def _graph(self) -> Any:
        if self._pose is None:
            try:  # imported here: mediapipe takes seconds to import and is optional
                from mediapipe.python.solutions import pose as mp_pose
            except ImportError as exc:
                raise ConfigError("MediaPipe is not installed: pip install mediapipe==0.10.21") from exc
            self._pose = mp_pose.Pose(static_image_mode=True, model_complexity=self.model_complexity,
                                      enable_segmentation=False,
                                      min_detection_confidence=self.min_detection_confidence)
        return self._pose

    def crop_region(self, box_xywh: np.ndarray, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) pixels: the box grown by `padding` on each side, clipped to the image."""
        height, width = image_shape[:2]
        x, y, w, h = (float(v) for v in box_xywh)
        x0 = int(np.floor(max(0.0, x - self.padding * w)))
        y0 = int(np.floor(max(0.0, y - self.padding * h)))
        x1 = int(np.ceil(min(float(width), x + w + self.padding * w)))
        y1 = int(np.ceil(min(float(height), y + h + self.padding * h)))
        return x0, y0, x1, y1

    def predict(self, image_rgb: np.ndarray, boxes: Sequence[Any] | np.ndarray | None = None) -> list[PosePrediction]:
        """COCO-17 keypoints for each box (None: the whole image is one person), in box order."""
        image = to_rgb_uint8(image_rgb)
        results = []
        for box in _boxes_array(boxes, image.shape):
            x0, y0, x1, y1 = self.crop_region(box, image.shape)
            keypoints = np.zeros((COCO17.num_keypoints, 3), dtype=np.float32)
            found = False
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                crop = np.ascontiguousarray(image[y0:y1, x0:x1])
                with self._lock:
                    landmarks = self._graph().process(crop).pose_landmarks
                if landmarks is not None:
                    found = True
                    points = [landmarks.landmark[i] for i in BLAZEPOSE_TO_COCO17]
                    keypoints[:, 0] = [x0 + p.x * (x1 - x0) for p in points]
                    keypoints[:, 1] = [y0 + p.y * (y1 - y0) for p in points]
                    keypoints[:, 2] = [p.visibility for p in points]
            results.append(PosePrediction(keypoints=keypoints, box_xywh=box.astype(np.float32), found=found))
        return results

    __call__ = predict

    def describe(self) -> dict[str, Any]:
        """What runs, for evaluation reports."""
        return {"name": self.name, "detail": f"MediaPipe BlazePose full (model_complexity={self.model_complexity}), "
                "33 -> COCO-17", "crop_padding_each_side": self.padding}

    def close(self) -> None:
        with self._lock:
            if self._pose is not None:
                self._pose.close()
                self._pose = None

    def __enter__(self) -> MediaPipePose:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

