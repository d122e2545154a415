"""Box rules shared by every person detector: merging the boxes that are parts of one person."""

from __future__ import annotations

import numpy as np

PART_CONTAINMENT = 0.8  # a box this much inside a better one (or holding it) may be a part of it: merge_parts
PART_SPAN = 0.8  # a part box spans at least this much of the other box's width (see merge_parts)


def merge_parts(boxes_xywh: np.ndarray, containment: float) -> np.ndarray:
    """Indices of the boxes (given best first) that are not parts of a better box.

    Box B is a part of a better box A when one of them lies at least `containment` of its area inside
    the other AND the inner one spans at least PART_SPAN of the outer one's width: the upper or lower
    body of the same upright person, which NMS keeps because their IoU is low (0.3-0.6). A large person
    gets these from the one-pass detectors (a head-to-knees box beside the full one) and from a tile of
    the multi-pass SSDLite. B is dropped and A kept as it is (taking the union instead made a seated
    person's box the size of a wrong, taller low-score box). Different people do not match this: a child
    in front of an adult, people hugging or a crowd behind lie inside a box but span a small part of its
    width; no two annotated people of the shared COCO / CrowdPose sets are merged
    (tests/detection/test_detection_onnx.py).
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    kept: list[int] = []
    for index, (x0, y0, w, h) in enumerate(boxes):
        part = False
        for ox0, oy0, ow, oh in boxes[kept]:
            inter_w = min(x0 + w, ox0 + ow) - max(x0, ox0)
            inter_h = min(y0 + h, oy0 + oh) - max(y0, oy0)
            if inter_w <= 0 or inter_h <= 0:
                continue
            inter = inter_w * inter_h
            part = ((inter >= containment * w * h and inter_w >= PART_SPAN * ow)
                    or (inter >= containment * ow * oh and inter_w >= PART_SPAN * w))
            if part:
                break
        if not part:
            kept.append(index)
    return np.asarray(kept, dtype=np.int64)
