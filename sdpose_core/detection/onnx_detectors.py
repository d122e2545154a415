"""Person detectors run by onnxruntime: RTMDet-nano (person-only) and YOLOX-Nano (COCO, class 0 = person).

Both follow their own test pipelines (../shared/detectors/README.md):
- letterbox: scale r = min(S / height, S / width), resize by r (bilinear), paste at the TOP-LEFT of an
  S x S canvas filled with 114; boxes come back in letterboxed pixels and are divided by r;
- OpenCV's BGR channel order (the order they were trained on: RGB input costs RTMDet box AP);
- RTMDet normalises with the BGR ImageNet mean / std and has NMS in the graph (`dets` [1, N, 5] =
  x1, y1, x2, y2, score; `labels` [1, N]); YOLOX takes raw 0-255 pixels and returns raw grid rows
  (`output` [1, A, 85] = tx, ty, tw, th, objectness, 80 class probabilities, sigmoids applied) that
  `decode_yolox` turns into boxes before NMS.

The network sees one S x S letterbox per image (one pass): video, webcam and photos run the same thing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sdpose_core.detection.ssdlite import PART_CONTAINMENT, Detection, _Postprocessing
from sdpose_core.errors import CheckpointError, DataError
from sdpose_core.media.images import to_rgb_uint8

PAD_VALUE = 114
RTMDET_MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
RTMDET_STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
YOLOX_STRIDES = (8, 16, 32)
YOLOX_PERSON_CLASS = 0


def letterbox(image_rgb: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """(S x S x 3 BGR uint8 canvas, scale r): the image resized by r = min(S / h, S / w) at the top left,
    the rest filled with 114. Bilinear, as both models' pipelines; area averaging when shrinking more than
    2x, where bilinear (4 source pixels per output pixel) would alias. The channels are swapped after the
    resize, on the small image (swapping the full photo first costs a pass over every pixel)."""
    height, width = image_rgb.shape[:2]
    ratio = min(size / height, size / width)
    new_w, new_h = max(1, min(size, int(width * ratio + 0.5))), max(1, min(size, int(height * ratio + 0.5)))
    interpolation = cv2.INTER_AREA if ratio < 0.5 else cv2.INTER_LINEAR
    resized = cv2.cvtColor(cv2.resize(image_rgb, (new_w, new_h), interpolation=interpolation), cv2.COLOR_RGB2BGR)
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, ratio


def corners_to_xywh(corners: np.ndarray) -> np.ndarray:
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)


def decode_rtmdet(dets: np.ndarray, labels: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """RTMDet end2end outputs of one image -> (boxes xywh in image pixels, scores), persons only.

    `dets` [1, N, 5] or [N, 5] (x1, y1, x2, y2, score in letterboxed pixels; NMS already done in the graph),
    `labels` [1, N] or [N] (0 = person). N may be 0."""
    rows = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    classes = np.asarray(labels).reshape(-1)
    if len(classes) != len(rows):
        raise DataError(f"RTMDet returned {len(rows)} boxes but {len(classes)} labels")
    rows = rows[classes == 0]
    return corners_to_xywh(rows[:, :4] / ratio), rows[:, 4]


def yolox_grid(input_size: int, strides: tuple[int, ...] = YOLOX_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """(cells [A, 2] as gx, gy; stride [A]) in the output's row order: stride 8, 16, 32 maps, row by row."""
    cells, cell_strides = [], []
    for stride in strides:
        side = input_size // stride
        gy, gx = np.mgrid[0:side, 0:side]
        cells.append(np.stack([gx.reshape(-1), gy.reshape(-1)], axis=1))
        cell_strides.append(np.full(side * side, stride))
    return np.concatenate(cells).astype(np.float64), np.concatenate(cell_strides).astype(np.float64)


def decode_yolox(output: np.ndarray, ratio: float, input_size: int, score_floor: float = 0.01,
                 person_class: int = YOLOX_PERSON_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX raw rows of one image -> (person boxes xywh in image pixels, scores >= score_floor), before NMS.

    Row (tx, ty, tw, th, obj, p_0..p_79) of cell (gx, gy) at stride s: centre ((tx + gx) s, (ty + gy) s),
    size (exp(tw) s, exp(th) s); person score = obj x p_person."""
    rows = np.asarray(output, dtype=np.float64).reshape(-1, np.asarray(output).shape[-1])
    cells, strides = yolox_grid(input_size)
    if len(rows) != len(cells):
        raise DataError(f"YOLOX output has {len(rows)} rows; a {input_size}x{input_size} input gives {len(cells)}")
    scores = rows[:, 4] * rows[:, 5 + person_class]
    keep = scores >= score_floor
    rows, cells, strides, scores = rows[keep], cells[keep], strides[keep], scores[keep]
    centre = (rows[:, :2] + cells) * strides[:, None]
    size = np.exp(np.clip(rows[:, 2:4], -20, 20)) * strides[:, None]  # clip: exp must not overflow
    corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / ratio
    return corners_to_xywh(corners), scores


def _session(path: Path, num_threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad / truncated file
        raise CheckpointError(f"onnxruntime cannot load the person detector {path}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}; delete it and download it "
                              "again (sdpose_core.detection.download_detector)") from exc


class OnnxPersonDetector(_Postprocessing, ABC):
    """Shared part of the onnxruntime detectors: session, letterbox, post-processing (clip, threshold,
    minimum size, NMS, part merging, cap). Subclasses set the defaults below, `_blob` and `_decode`.

    `input_size` (None: `default_size`; a graph with a fixed input size takes only that), `score_threshold`
    and `nms_iou` (None: the measured defaults, see factory.py), `containment` (None: no part merging),
    `num_threads`: onnxruntime intra-op threads (None: its default). One session serves several threads."""

    label = "onnx detector"
    default_size = 416
    default_threshold = 0.3
    default_nms_iou = 0.6

    def __init__(self, path: str | Path, input_size: int | None = None, score_threshold: float | None = None,
                 nms_iou: float | None = None, min_box_size: float = 8, max_persons: int = 20,
                 containment: float | None = PART_CONTAINMENT, num_threads: int | None = None):
        super().__init__(self.default_threshold if score_threshold is None else score_threshold,
                         self.default_nms_iou if nms_iou is None else nms_iou, min_box_size, max_persons,
                         containment)
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"person detector file {self.path} not found")
        self.session = _session(self.path, num_threads)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        fixed = [d for d in model_input.shape[2:] if isinstance(d, int)]
        if fixed and (len(fixed) != 2 or fixed[0] != fixed[1]):
            raise CheckpointError(f"{self.path}: expected a square input, the graph has {model_input.shape}")
        if fixed and input_size is not None and input_size != fixed[0]:
            raise DataError(f"{self.path.name} takes {fixed[0]}x{fixed[0]} inputs only, {input_size} asked for")
        self.input_size = int(fixed[0] if fixed else (input_size or self.default_size))
        if self.input_size < 32 or self.input_size % 32:
            raise DataError(f"input_size must be a multiple of 32 (>= 32), got {self.input_size}")

    @property
    def passes(self) -> int:
        """Network forward passes per image (one letterbox)."""
        return 1

    @property
    def name(self) -> str:
        """Short name for the UI and logs, e.g. 'RTMDet-nano 384'."""
        return f"{self.label} {self.input_size}"

    def describe(self) -> str:
        return (f"{self.name} (onnxruntime, one {self.input_size}x{self.input_size} pass, score >= "
                f"{self.score_threshold:g}; {self.path})")

    @abstractmethod
    def _blob(self, canvas_bgr: np.ndarray) -> np.ndarray:
        """The network input [1, 3, S, S] float32 from the letterboxed BGR canvas."""

    @abstractmethod
    def _decode(self, outputs: list[np.ndarray], ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """(person boxes xywh in image pixels, scores) from the session's outputs."""

    def raw_detections(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All person candidates the network returns (xywh image pixels, scores), before thresholding."""
        image = to_rgb_uint8(image_rgb)
        canvas, ratio = letterbox(image, self.input_size)
        outputs = self.session.run(None, {self.input_name: self._blob(canvas)})
        return self._decode(outputs, ratio)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        image = to_rgb_uint8(image_rgb)
        boxes, scores = self.raw_detections(image)
        return self._finish(boxes, scores, image)


class RTMDetNano(OnnxPersonDetector):
    """RTMDet-nano person detector (mmpose RTMPose project, Apache-2.0); NMS inside the graph (IoU 0.6),
    again here at 0.5. 384 px: on the shared COCO people it found the most at <= 0.5 false positives per
    image of the sizes 320-640 (scripts/measure_detector.py --sweep), and at 480 and above a person filling
    the frame comes back split into a head-to-knees and a full box (larger than it was trained on at 320)."""

    label = "RTMDet-nano"
    default_size = 384
    default_threshold = 0.3  # its scores run low (README of ../shared/detectors)
    default_nms_iou = 0.5

    def _blob(self, canvas_bgr: np.ndarray) -> np.ndarray:
        blob = cv2.dnn.blobFromImage(canvas_bgr, 1.0, mean=tuple(float(m) for m in RTMDET_MEAN_BGR), swapRB=False)
        blob *= (1.0 / RTMDET_STD_BGR).astype(np.float32)[None, :, None, None]  # per channel, on CHW planes
        return blob

    def _decode(self, outputs: list[np.ndarray], ratio: float) -> tuple[np.ndarray, np.ndarray]:
        dets, labels = outputs[:2]
        return decode_rtmdet(dets[0], labels[0], ratio)


class YoloxNano(OnnxPersonDetector):
    """YOLOX-Nano (Megvii, Apache-2.0, 80 COCO classes; only persons kept); NMS here."""

    label = "YOLOX-Nano"
    default_size = 416  # the graph's fixed input
    default_threshold = 0.25
    default_nms_iou = 0.65  # YOLOX's own COCO evaluation setting
    score_floor = 0.01  # YOLOX's own COCO evaluation floor

    def _blob(self, canvas_bgr: np.ndarray) -> np.ndarray:
        return cv2.dnn.blobFromImage(canvas_bgr, 1.0, swapRB=False)  # raw 0-255, [1, 3, S, S] float32

    def _decode(self, outputs: list[np.ndarray], ratio: float) -> tuple[np.ndarray, np.ndarray]:
        return decode_yolox(outputs[0][0], ratio, self.input_size, score_floor=self.score_floor)
