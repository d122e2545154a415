"""Live pose on a stream of frames (webcam, video files): the one function the Webcam tab, the video upload
and scripts/measure_webcam_fps.py all run.

    session = LiveSession(LiveSettings(mode="single"))
    annotated, stats = session.process(frame_rgb, ctx)          # ctx: a PoseContext (the studio's AppContext)

What makes it fast on a small CPU (measured by scripts/measure_webcam_fps.py):
- frames are shrunk so the long side is at most `max_side` (480 px) before anything else: the detector
  sees 300x300 anyway and a person crop is 256x192 or smaller, so little is lost;
- the person detector (the same one photos use: "best", sdpose_core.detection.build_detector) runs on
  every `detect_every`-th frame only; in between, each person's box is the box around its confident
  keypoints of the previous frame, padded (sdpose_core.inference.tracking.BoxTracker); a tracked box that shrinks
  against the detected one or a person who loses joints triggers a fresh detection next frame;
- the pose model runs on the backend the app's Predictor uses (backend="auto": the fastest that matches
  fp32 on this machine); on the torch backend it is the BN-folded, channels-last copy (the Predictor's
  `cpu_speedups=True`) under bfloat16 autocast on CPUs with native bf16 only (the heatmaps change slightly;
  a live view cannot tell). Elsewhere bf16 is emulated and slower, so it stays fp32.
  `LiveSettings(fast_model=False)` runs the model as loaded instead, in fp32 torch (for comparisons).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from sdpose_core.analysis import compare
from sdpose_core.detection.factory import BEST as DEFAULT_DETECTOR
from sdpose_core.errors import DataError
from sdpose_core.inference.tracking import TRACK_MIN_JOINTS, BoxTracker, boxes_from_keypoints  # noqa: F401 - re-exported
from sdpose_core.media.images import to_rgb_uint8

if TYPE_CHECKING:
    from sdpose_core.detection.ssdlite import Detection
    from sdpose_core.inference.predictor import Predictor

MODES = ("single", "cycles")  # cycle 1 only (the deployed single pass) / all N cycles, drawing cycle N
MIN_FRAME_SIDE = 32


def native_bf16() -> bool:
    """True when this CPU runs bfloat16 natively (AVX512-BF16 / AMX): then bf16 autocast is faster."""
    from sdpose_core.precision import cpu_has_native_bf16

    return cpu_has_native_bf16()


class PoseContext(Protocol):
    """What a LiveSession takes from its host (the studio's AppContext): the current weights' Predictor and
    the shared person detectors by name."""

    def predictor(self) -> Predictor: ...

    def detect(self, image_rgb: np.ndarray, name: str) -> list[Detection]: ...


@dataclass
class LiveSettings:
    mode: str = "single"
    cycles: int = 3  # used in "cycles" mode
    score_threshold: float = 0.3
    smoothing: bool = False  # One-Euro smoothing of the keypoints over time (sdpose_core.media.video.KeypointSmoother)
    detect_every: int = 5  # run the detector on every k-th frame (1: every frame)
    max_side: int = 480  # frames are shrunk to this long side first
    max_people: int = 4
    detector: str = DEFAULT_DETECTOR  # the photos' detector: video must not get a weaker one
    bf16: bool | None = None  # None / True: when the CPU has native bf16 (never emulated); False: fp32
    fast_model: bool = True  # the context's Predictor (BN-folded copy on torch); False: the model as loaded

    def checked(self) -> LiveSettings:
        if self.mode not in MODES:
            raise DataError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= int(self.cycles) <= 8 or int(self.detect_every) < 1 or int(self.max_side) < 64:
            raise DataError(f"need cycles in 1..8, detect_every >= 1 and max_side >= 64; got {self.cycles}, "
                            f"{self.detect_every}, {self.max_side}")
        return self


@dataclass
class FrameStats:
    """Milliseconds per stage of one frame, and what happened."""

    resize_ms: float = 0.0
    detect_ms: float = 0.0  # 0 on frames that tracked boxes from the previous keypoints
    pose_ms: float = 0.0  # crops + model + decoding
    smooth_ms: float = 0.0
    draw_ms: float = 0.0
    total_ms: float = 0.0
    people: int = 0
    detected: bool = False
    cycles: int = 1
    frame_size: tuple[int, int] = (0, 0)  # (height, width) processed
    fps: float | None = None  # frames per second over recent frames (wall clock between calls)
    backend: str = ""  # what ran the pose model ("backend: ..." of the result)
    redetect: str | None = None  # why the next frame runs the detector before its turn (BoxTracker.reason)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        fps = f"**{self.fps:.1f} fps**" if self.fps else "fps: measuring..."
        source = "detector" if self.detected else "tracked from last keypoints"
        return (f"{fps} · {self.people} people · {self.cycles} cycle(s) · {self.frame_size[1]}x{self.frame_size[0]}"
                f"\n\n| stage | ms |\n|---|---|\n| resize | {self.resize_ms:.1f} |\n"
                f"| boxes ({source}) | {self.detect_ms:.1f} |\n| pose (crop + model + decode) | {self.pose_ms:.1f} |\n"
                f"| smoothing | {self.smooth_ms:.1f} |\n| drawing | {self.draw_ms:.1f} |\n"
                f"| **total** | **{self.total_ms:.1f}** |" + (f"\n\n{self.backend}" if self.backend else "")
                + (f"\n\nnext frame re-detects: {self.redetect}" if self.redetect else "")
                + "".join(f"\n\n{n}" for n in self.notes))


def shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    scale = compare.display_scale(frame.shape, max_side)
    if scale >= 1.0:
        return frame
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


class LiveSession:
    """Per-viewer state of a live stream: frame counter, tracked boxes, smoother, frame timing."""

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = (settings or LiveSettings()).checked()
        self.frame_index = 0
        self._boxes = np.zeros((0, 4))
        self._tracker = BoxTracker()
        self._smoother: Any = None
        self._smoother_key: tuple | None = None
        self._frame_times: list[float] = []
        self._plain_predictor: Predictor | None = None  # fast_model=False: the loaded module, run as it is
        self.last_error: str | None = None  # the stream shows each distinct problem once as a toast

    def update(self, settings: LiveSettings) -> None:
        """New settings from the UI; keeps the tracks (a new mode or cycle count needs no new detection)."""
        self.settings = settings.checked()

    def _smooth(self, keypoints: np.ndarray, time_s: float) -> np.ndarray:
        from sdpose_core.media.video import KeypointSmoother

        if self._smoother is None:
            self._smoother = KeypointSmoother(min_cutoff=1.0, beta=0.05, score_threshold=self.settings.score_threshold)
        return np.stack(self._smoother(list(keypoints), time_s)) if len(keypoints) else keypoints

    def pose_predictor(self, ctx: PoseContext) -> Predictor:
        """The Predictor this session's frames run: the context's (on CPU torch it runs the BN-folded copy,
        `Predictor(cpu_speedups=True)`), or for `fast_model=False` one over the same loaded module with
        `cpu_speedups=False`, fp32 torch (made again when the context's weights change). ONNX weights have
        no torch module: they run as they are either way."""
        predictor = ctx.predictor()
        if self.settings.fast_model or predictor.model is None:
            return predictor
        plain = self._plain_predictor
        if plain is None or plain.model is not predictor.model:
            from sdpose_core.inference.predictor import Predictor

            plain = Predictor(predictor.model, device=predictor.device, backend="torch", detector=None,
                              weights_info=predictor.weights_info, num_threads=predictor.num_threads,
                              cpu_speedups=False)
            self._plain_predictor = plain
        return plain

    def _fps(self, now: float) -> float | None:
        """Frames per second over the last (up to) 10 frames, wall clock: what the viewer sees."""
        self._frame_times = self._frame_times[-9:] + [now]
        if len(self._frame_times) < 2:
            return None
        return (len(self._frame_times) - 1) / max(1e-6, self._frame_times[-1] - self._frame_times[0])

    def process(self, frame: np.ndarray, ctx: PoseContext, time_s: float | None = None,
                ) -> tuple[np.ndarray, FrameStats]:
        """Detect or track people, estimate their poses, draw them. `time_s`: the frame's timestamp (video
        files); None uses the wall clock (webcam)."""
        import torch

        settings = self.settings
        start = time.perf_counter()
        stats = FrameStats()
        image = to_rgb_uint8(np.asarray(frame)) if not (isinstance(frame, np.ndarray) and frame.ndim == 3
                                                       and frame.shape[2] == 3 and frame.dtype == np.uint8) else frame
        if min(image.shape[:2]) < MIN_FRAME_SIDE:
            raise DataError(f"frame of {image.shape[1]}x{image.shape[0]} pixels is too small for pose estimation "
                            f"(need at least {MIN_FRAME_SIDE} px a side)")
        image = shrink(image, int(settings.max_side))
        stats.frame_size = (int(image.shape[0]), int(image.shape[1]))
        stats.resize_ms = (time.perf_counter() - start) * 1e3

        step = time.perf_counter()
        need_detection = (self.frame_index % int(settings.detect_every) == 0 or len(self._boxes) == 0
                          or self._boxes.shape[0] > 0 and not np.isfinite(self._boxes).all())
        if need_detection:
            detections = ctx.detect(image, settings.detector)[: int(settings.max_people)]
            boxes = np.array([d.box_xywh for d in detections], dtype=np.float64).reshape(-1, 4)
            stats.detected = True
        else:
            boxes = self._boxes[: int(settings.max_people)]
        stats.detect_ms = (time.perf_counter() - step) * 1e3

        step = time.perf_counter()
        cycles = 1 if settings.mode == "single" else int(settings.cycles)
        stats.cycles = cycles
        predictor = self.pose_predictor(ctx)
        use_bf16 = settings.bf16 is not False and native_bf16()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16 and predictor.backend == "torch"):
            result = predictor.predict(image, boxes=boxes, cycles=cycles)
        stats.backend = ("backend: torch bf16 (bf16 autocast: this CPU has native bf16)"
                         if use_bf16 and predictor.backend == "torch" else result.backend_line)
        keypoints = result.keypoints()
        stats.pose_ms = (time.perf_counter() - step) * 1e3
        stats.people = len(result.people)

        step = time.perf_counter()
        now = time.perf_counter() if time_s is None else float(time_s)
        if settings.smoothing:
            keypoints = self._smooth(keypoints, now)
        stats.smooth_ms = (time.perf_counter() - step) * 1e3
        used = np.stack([p.box_xywh for p in result.people]) if result.people else np.zeros((0, 4))
        # a person lost by tracking (box shrunk, joints lost) makes the next frame detect again
        self._boxes = self._tracker.update(keypoints, image.shape, settings.score_threshold, used, stats.detected)
        stats.redetect = self._tracker.reason if len(result.people) else None

        step = time.perf_counter()
        drawn_boxes = np.stack([p.box_xywh for p in result.people]) if result.people else None
        annotated = compare.draw_people(image, keypoints, drawn_boxes, settings.score_threshold)
        stats.draw_ms = (time.perf_counter() - step) * 1e3
        stats.total_ms = (time.perf_counter() - start) * 1e3
        if not result.weights_info.trained:
            stats.notes.append("**UNTRAINED weights: the poses are random** (load trained weights in the Model tab)")
        stats.fps = self._fps(time.perf_counter())
        self.frame_index += 1
        return annotated, stats
