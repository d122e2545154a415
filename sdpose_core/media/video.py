"""Video in and out, and One-Euro smoothing of keypoint tracks.

    for frame in iter_video_frames("clip.mp4", stride=2):     # VideoFrame(index, time_s, image RGB uint8)
        ...
    with VideoWriter("out.mp4", fps=30) as writer:            # size taken from the first frame
        writer.write(image_rgb)

    smoother = KeypointSmoother(min_cutoff=1.0, beta=0.05)
    people = smoother(people_keypoints, time_s)               # list of (K, 3) arrays, one per person

Writing: browsers play H.264 in mp4 (and VP8/VP9 in webm). OpenCV's pip wheels bundle FFmpeg without
an H.264 encoder, so `VideoWriter` writes .mp4 through PyAV (`av`, whose wheels bundle FFmpeg with
libx264) and only falls back to OpenCV's 'avc1' / 'mp4v' (MPEG-4 Part 2: plays in VLC, ffplay and
OpenCV, not in Chrome / Firefox) when PyAV is missing, with a logged warning; `.webm` files use VP8
through OpenCV. `VideoWriter.codec` / `.browser_playable` say what was written; `transcode_for_browser`
re-encodes an uploaded video for a browser. Reading stays with OpenCV (it decodes H.264).
`VIDEO_SUFFIXES`: the file types taken as videos wherever media files are listed (predict, pseudo-label).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from sdpose_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
H264 = "h264"  # libx264 through PyAV; every other codec name is an OpenCV FOURCC
CODECS_BY_SUFFIX = {".mp4": (H264, "avc1", "mp4v"), ".m4v": (H264, "avc1", "mp4v"),
                    ".mov": (H264, "avc1", "mp4v"), ".webm": ("VP80", "VP90"), ".avi": ("MJPG", "XVID"),
                    ".mkv": (H264, "avc1", "VP80", "mp4v")}
# what Chrome, Firefox and Safari play in <video> (H.264 in mp4; VP8 / VP9 in webm)
BROWSER_PLAYABLE_CODECS = frozenset({H264, "avc1", "VP80", "VP90"})


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


class _OpenCVSink:
    """cv2.VideoWriter with one FOURCC; `opened` is False when OpenCV's FFmpeg lacks that encoder."""

    def __init__(self, path: Path, codec: str, fps: float, width: int, height: int) -> None:
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
        self.opened = self._writer.isOpened()
        if not self.opened:
            self._writer.release()

    def write(self, image_rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()


class _H264Sink:
    """H.264 (libx264, yuv420p) in mp4 through PyAV, whose wheels bundle FFmpeg with libx264.

    yuv420p needs even sides: an odd last column / row is repeated once. `+faststart` puts the index
    (moov atom) first, so browsers start playing before the whole file has arrived.
    """

    def __init__(self, path: Path, fps: float, width: int, height: int, crf: int, preset: str) -> None:
        import av  # optional: ImportError makes the writer fall back to OpenCV

        try:
            self._container = av.open(str(path), "w", options={"movflags": "+faststart"})
        except (av.FFmpegError, OSError) as exc:
            raise DataError(f"cannot create {path}: {exc}") from exc
        try:
            stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        except Exception:
            self._container.close()
            raise
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": preset, "crf": str(int(crf))}
        self._pad = (stream.height - height, stream.width - width)
        self._stream = stream
        self._av = av
        self._index = 0
        self.opened = True

    def write(self, image_rgb: np.ndarray) -> None:
        if any(self._pad):
            image_rgb = cv2.copyMakeBorder(image_rgb, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
        frame = self._av.VideoFrame.from_ndarray(image_rgb, format="rgb24")
        frame.pts = self._index
        self._index += 1
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        try:
            self._container.mux(self._stream.encode(None))  # flush the frames x264 holds back
        finally:
            self._container.close()


class VideoWriter:
    """Write RGB frames to a video file; the size comes from the first frame unless given.

    Codecs are tried in order (`codecs`, or by suffix, CODECS_BY_SUFFIX) until one opens; `codec` says
    which and `browser_playable` whether Chrome / Firefox / Safari play the result. 'h264' is libx264
    through PyAV (`pip install av`); 'avc1', 'mp4v', 'VP80', ... are OpenCV FOURCCs. An .mp4 is H.264
    when PyAV is installed, otherwise OpenCV's 'avc1' (missing from the pip wheels) or 'mp4v' (plays in
    VLC / ffplay / OpenCV, not in browsers); `fallback_reason` then says why H.264 was not used.
    Frames of another size are resized to the first one's.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None,
                 codecs: Sequence[str] | None = None, crf: int = 23, preset: str = "veryfast") -> None:
        self.path = Path(path)
        if fps <= 0 or not math.isfinite(fps):
            raise ConfigError(f"fps must be a positive number, got {fps}")
        self.fps = float(fps)
        suffix = self.path.suffix.lower()
        self.codecs = tuple(codecs) if codecs else CODECS_BY_SUFFIX.get(suffix, ())
        if not self.codecs:
            raise ConfigError(f"no codec known for {suffix!r} files; use one of {sorted(CODECS_BY_SUFFIX)}")
        self.crf, self.preset = int(crf), str(preset)
        self.size = size  # (width, height)
        self.codec: str | None = None
        self.fallback_reason: str | None = None
        self.frames_written = 0
        self._sink: _OpenCVSink | _H264Sink | None = None

    @property
    def browser_playable(self) -> bool:
        return self.codec in BROWSER_PLAYABLE_CODECS

    def _open_h264(self, width: int, height: int) -> _H264Sink | None:
        try:
            return _H264Sink(self.path, self.fps, width, height, self.crf, self.preset)
        except ImportError:
            reason = "PyAV is not installed (pip install av)"
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. an FFmpeg build without libx264
            reason = f"PyAV cannot encode H.264 here ({type(exc).__name__}: {exc})"
        self.fallback_reason = reason
        return None

    def _open(self, width: int, height: int) -> _OpenCVSink | _H264Sink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a codec that failed once in this process is not tried again (each failure logs FFmpeg errors)
        codecs = [c for c in self.codecs if c not in _MISSING_CODECS] or list(self.codecs)
        level = cv2.getLogLevel()
        cv2.setLogLevel(0)  # silent: a missing encoder is expected and handled by the fallback
        failed = []
        try:
            for codec in codecs:
                sink = self._open_h264(width, height) if codec == H264 else \
                    _OpenCVSink(self.path, codec, self.fps, width, height)
                if sink is not None and sink.opened:
                    self.codec = codec
                    _MISSING_CODECS.update(failed)  # another codec worked here: the path and size were fine
                    if not self.browser_playable and any(c in BROWSER_PLAYABLE_CODECS for c in self.codecs):
                        logger.warning("%s is written as %s, which browsers do not play: %s", self.path, codec,
                                       self.fallback_reason or "no H.264 encoder")
                    return sink
                if codec != H264:  # PyAV fails fast and silently: no need to remember it
                    failed.append(codec)
        finally:
            cv2.setLogLevel(level)
        raise DataError(f"cannot write {self.path}: none of the codecs {self.codecs} is available"
                        + (f" ({self.fallback_reason})" if self.fallback_reason else ""))

    def write(self, image_rgb: np.ndarray) -> None:
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"frames must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if self._sink is None:
            if self.size is None:
                self.size = (image.shape[1], image.shape[0])
            self._sink = self._open(*self.size)
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._sink.write(np.ascontiguousarray(image))
        self.frames_written += 1

    def close(self) -> Path:
        if self._sink is not None:
            sink, self._sink = self._sink, None
            sink.close()
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def transcode_for_browser(source: str | os.PathLike, target: str | os.PathLike,
                          max_frames: int | None = None) -> VideoWriter:
    """Re-encode any video OpenCV reads (e.g. an uploaded mp4v / AVI) into `target` (.mp4: H.264 when
    PyAV is installed), at the source's frame rate; returns the closed writer (`codec`, `browser_playable`)."""
    info = video_info(source)
    with VideoWriter(target, fps=info.fps) as writer:
        for frame in iter_video_frames(source, max_frames=max_frames):
            writer.write(frame.image)
    return writer


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
