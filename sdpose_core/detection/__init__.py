"""Person detection for top-down pose estimation, offline on CPU.

    from sdpose_core.detection import PersonDetector
    detector = PersonDetector()                 # SSDLite-MobileNetV2 via cv2.dnn
    people = detector.detect(image_rgb)         # [Detection(box_xywh, score), ...], best first

`as_detector(fn)` plugs in any other detector (a callable image -> boxes/scores); `WholeImage()` treats
the whole image as one person.
"""

from sdpose_core.detection.ssdlite import (
    INSTALL_HINT,
    CallableDetector,
    Detection,
    DetectorFn,
    PersonDetector,
    PersonDetectorLike,
    WholeImage,
    as_detector,
    as_rgb_uint8,
    find_frozen_graph,
    frozen_graph_path,
    postprocess_boxes,
)
from sdpose_core.detection.textgraph import SSDGraphSpec, build_text_graph, inspect_ssd_graph, ssd_anchors

__all__ = [
    "INSTALL_HINT",
    "CallableDetector",
    "Detection",
    "DetectorFn",
    "PersonDetector",
    "PersonDetectorLike",
    "SSDGraphSpec",
    "WholeImage",
    "as_detector",
    "as_rgb_uint8",
    "build_text_graph",
    "find_frozen_graph",
    "frozen_graph_path",
    "inspect_ssd_graph",
    "postprocess_boxes",
    "ssd_anchors",
]
