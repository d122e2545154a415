"""Video in and out, and One-Euro smoothing of keypoint tracks.

    for frame in iter_video_frames("clip.mp4", stride=2):     # VideoFrame(index, time_s, image RGB uint8)
        ...
    with VideoWriter("out.mp4", fps=30) as writer:            # size taken from the first frame
        writer.write(image_rgb)

    smoother = KeypointSmoother(min_cutoff=1.0, beta=0.05)
    people = smoother(people_keypoints, time_s)               # list of (K, 3) arrays, one per person

Writing: OpenCV's pip wheels bundle FFmpeg without an H.264 encoder, so `VideoWriter` tries 'avc1'
(H.264, plays in browsers) and falls back to 'mp4v' (MPEG-4 Part 2: plays in VLC, ffplay, QuickTime and
OpenCV, but not in Chrome/Firefox); `.webm` files use VP8, which browsers play. The codec used is in
`VideoWriter.codec`; every writer is verified by reading the file back in tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from sdpose_core.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
CODECS_BY_SUFFIX = {".mp4": ("avc1", "mp4v"), ".m4v": ("avc1", "mp4v"), ".mov": ("avc1", "mp4v"),
                    ".webm": ("VP80", "VP90"), ".avi": ("MJPG", "XVID"), ".mkv": ("avc1", "VP80", "mp4v")}


_MISSING_CODECS: set[str] = set()


class VideoFrame(NamedTuple):
    index: int  # position in the file (0-based), counting skipped frames
    time_s: float  # index / fps
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    frame_count: int  # as the container reports it (may be approximate for some formats)
    width: int
    height: int


def _open(path: str | os.PathLike) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"cannot open {path} as a video (not a video file, or a codec OpenCV's FFmpeg lacks)")
    return capture


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, frame count and size from the container (raises DataError if it is not a video)."""
    capture = _open(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(Path(path), fps if fps > 0 else 30.0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
                         int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()


def iter_video_frames(path: str | os.PathLike, stride: int = 1, max_frames: int | None = None) -> Iterator[VideoFrame]:
    """Every `stride`-th frame (frames 0, stride, 2*stride, ...) as RGB, up to `max_frames` yielded.

    Skipped frames are only grabbed, not converted. Raises DataError when the file cannot be opened as
    a video or holds no decodable frame.
    """
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    capture = _open(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps > 0 else 30.0
        index = yielded = 0
        while max_frames is None or yielded < max_frames:
            if not capture.grab():
                break
            if index % stride == 0:
                ok, bgr = capture.retrieve()
                if not ok:
                    break
                yield VideoFrame(index, index / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                yielded += 1
            index += 1
        if index == 0:
            raise DataError(f"{path} opened as a video but no frame could be decoded")
    finally:
        capture.release()


class VideoWriter:
    """Write RGB frames to a video file; the size comes from the first frame unless given.

    Codecs are tried in order (`codecs`, or by suffix: .mp4 'avc1' then 'mp4v'; .webm 'VP80') until
    OpenCV opens one; `codec` says which. Frames of another size are resized to the first one's.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None,
                 codecs: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        if fps <= 0 or not math.isfinite(fps):
            raise ConfigError(f"fps must be a positive number, got {fps}")
        self.fps = float(fps)
        suffix = self.path.suffix.lower()
        self.codecs = tuple(codecs) if codecs else CODECS_BY_SUFFIX.get(suffix, ())
        if not self.codecs:
            raise ConfigError(f"no codec known for {suffix!r} files; use one of {sorted(CODECS_BY_SUFFIX)}")
        self.size = size  # (width, height)
        self.codec: str | None = None
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a codec that failed once in this process is not tried again (each failure logs FFmpeg errors)
        codecs = [c for c in self.codecs if c not in _MISSING_CODECS] or list(self.codecs)
        level = cv2.getLogLevel()
        cv2.setLogLevel(0)  # silent: a missing encoder is expected and handled by the fallback
        failed = []
        try:
            for codec in codecs:
                writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
                if writer.isOpened():
                    self.codec = codec
                    _MISSING_CODECS.update(failed)  # another codec worked here: the path and size were fine
                    return writer
                writer.release()
                failed.append(codec)
        finally:
            cv2.setLogLevel(level)
        raise DataError(f"OpenCV cannot write {self.path}: none of the codecs {self.codecs} is available")

    def write(self, image_rgb: np.ndarray) -> None:
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"frames must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if self._writer is None:
            if self.size is None:
                self.size = (image.shape[1], image.shape[0])
            self._writer = self._open(*self.size)
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> Path:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter (Casiez et al. 2012) over an array of signals at once, e.g. K joints x 2 coords.

    A low-pass filter whose cutoff rises with speed: `min_cutoff` (Hz) sets the smoothing at rest (lower
    = smoother, more lag), `beta` how fast the cutoff grows with the signal's speed (Hz per unit of
    speed: for pixel coordinates, per pixel/second; higher = less lag on fast moves; 0.05 suits people
    in VGA to full-HD video), `d_cutoff` (Hz) smooths the speed estimate.
    Non-finite inputs (NaN for a joint not seen) leave that entry's state unchanged and come out NaN.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ConfigError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self._value: np.ndarray | None = None
        self._speed: np.ndarray | None = None
        self._time: float | None = None

    def __call__(self, values: np.ndarray, time_s: float) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        seen = np.isfinite(x)
        if self._value is None or self._value.shape != x.shape:
            self._value, self._speed, self._time = np.where(seen, x, np.nan), np.zeros_like(x), float(time_s)
            return self._value.copy()
        dt = float(time_s) - self._time
        if dt <= 0:  # repeated or out-of-order timestamp: nothing to integrate over
            return np.where(seen, self._value, np.nan)
        self._time = float(time_s)
        first = seen & ~np.isfinite(self._value)  # entries seen for the first time start from the input
        speed = np.where(seen & ~first, (x - self._value) / dt, 0.0)
        self._speed = np.where(seen, self._speed + _smoothing_factor(self.d_cutoff, dt) * (speed - self._speed),
                               self._speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self._speed)
        alpha = _smoothing_factor(cutoff, dt)
        filtered = np.where(first, x, self._value + alpha * (x - self._value))
        self._value = np.where(seen, filtered, self._value)
        return np.where(seen, self._value, np.nan)


class KeypointSmoother:
    """One-Euro smoothing of the people in a video, one filter per track over (K, 2) coordinates.

    Each frame's people are matched to the previous frame's by the distance between their keypoint
    centroids (Hungarian assignment), so detector order may change freely. When the number of people
    changes, every track is reset (the identities can no longer be trusted; `resets` counts it). Joints scoring below
    `score_threshold` (or NaN) do not update their track and are returned unsmoothed. Scores pass through.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0,
                 score_threshold: float = 0.0) -> None:
        self.params = dict(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)
        OneEuroFilter(**self.params)  # validate now, not on the first frame
        self.score_threshold = float(score_threshold)
        self._tracks: list[OneEuroFilter] = []
        self._centroids = np.zeros((0, 2))
        self.resets = 0

    def reset(self) -> None:
        if self._tracks:
            self.resets += 1
        self._tracks, self._centroids = [], np.zeros((0, 2))

    @staticmethod
    def _centroid(keypoints: np.ndarray) -> np.ndarray:
        xy = keypoints[:, :2]
        finite = np.isfinite(xy).all(axis=1)
        return xy[finite].mean(axis=0) if finite.any() else np.zeros(2)

    def __call__(self, people: Sequence[np.ndarray], time_s: float) -> list[np.ndarray]:
        from scipy.optimize import linear_sum_assignment

        people = [np.asarray(p, dtype=np.float64) for p in people]
        centroids = np.array([self._centroid(p) for p in people]).reshape(-1, 2)
        if len(people) != len(self._tracks):
            self.reset()
            self._tracks = [OneEuroFilter(**self.params) for _ in people]
        else:
            cost = np.linalg.norm(centroids[:, None] - self._centroids[None], axis=-1)
            rows, cols = linear_sum_assignment(cost)
            order = cols[np.argsort(rows)]  # person i continues track order[i]
            self._tracks = [self._tracks[j] for j in order]
        self._centroids = centroids
        smoothed = []
        for person, track in zip(people, self._tracks, strict=True):
            xy = person[:, :2].copy()
            confident = person[:, 2] >= self.score_threshold if person.shape[1] > 2 else np.ones(len(person), bool)
            xy[~confident] = np.nan
            out = track(xy, time_s)
            result = person.copy()
            result[:, :2] = np.where(np.isfinite(out), out, person[:, :2])
            smoothed.append(result)
        return smoothed
