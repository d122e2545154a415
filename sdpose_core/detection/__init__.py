"""Person detection for top-down pose estimation, offline on CPU.

    from sdpose_core.detection import build_detector
    detector = build_detector()                 # the best present: RTMDet-nano > YOLOX-Nano > SSDLite
    people = detector.detect(image_rgb)         # [Detection(box_xywh, score), ...], best first
    detector.name, detector.describe()          # which one it is, for the UI and logs

`build_detector` (factory.py) is the one place detectors are made; `download_detector` fetches the ONNX
ones from their official releases. `as_detector(fn)` plugs in any other detector (a callable image ->
boxes/scores); `WholeImage()` treats the whole image as one person.
"""

from sdpose_core.detection.boxes import PART_CONTAINMENT, merge_parts
from sdpose_core.detection.download import RELEASES, DetectorRelease, download_detector, download_folder
from sdpose_core.detection.factory import (
    BEST,
    DETECTOR_HELP,
    DETECTOR_NAMES,
    as_detector,
    available_detectors,
    best_detector_name,
    build_detector,
    detector_folders,
    find_detector_file,
)
from sdpose_core.detection.onnx_detectors import OnnxPersonDetector, RTMDetNano, YoloxNano
from sdpose_core.detection.ssdlite import (
    INSTALL_HINT,
    CallableDetector,
    Detection,
    DetectorFn,
    PersonDetector,
    PersonDetectorLike,
    WholeImage,
    find_frozen_graph,
    frozen_graph_path,
    postprocess_boxes,
)
from sdpose_core.detection.textgraph import SSDGraphSpec, build_text_graph, inspect_ssd_graph, ssd_anchors

__all__ = [
    "BEST",
    "DETECTOR_HELP",
    "DETECTOR_NAMES",
    "INSTALL_HINT",
    "PART_CONTAINMENT",
    "RELEASES",
    "DetectorRelease",
    "OnnxPersonDetector",
    "RTMDetNano",
    "YoloxNano",
    "available_detectors",
    "best_detector_name",
    "build_detector",
    "detector_folders",
    "download_detector",
    "download_folder",
    "find_detector_file",
    "merge_parts",
    "CallableDetector",
    "Detection",
    "DetectorFn",
    "PersonDetector",
    "PersonDetectorLike",
    "SSDGraphSpec",
    "WholeImage",
    "as_detector",
    "build_text_graph",
    "find_frozen_graph",
    "frozen_graph_path",
    "inspect_ssd_graph",
    "postprocess_boxes",
    "ssd_anchors",
]
