"""One place that builds person detectors: the Predictor, the studio (Compare, webcam, video), pseudo-labelling
and the benchmark all call `build_detector`, so they all run the same detector.

    detector = build_detector()                 # "best": RTMDet-nano > YOLOX-Nano > SSDLite, whichever is present
    detector.name, detector.describe()          # "RTMDet-nano 384", one line with the file and settings
    build_detector("yolox-nano")                # a named one (ConfigError saying where to put it when absent)

The ONNX files are looked up by name (rtmdet_nano_person.onnx, yolox_nano.onnx) in `$SDPOSE_DETECTORS`
when set (only there), else in `../shared/detectors` beside the project and then in the download folder
(`download.download_folder()`). Without either file "best" falls back to SSDLite and logs one warning line
saying so and how to get the better ones; the fallback's `describe()` repeats it.

Settings per detector, chosen with scripts/measure_detector.py on the shared COCO images (recall of the
people with >= 6 visible keypoints at IoU 0.5 against false positives per image, 1-thread ms per image):
RTMDet-nano at 384 px, score >= 0.3, NMS IoU 0.5 (on top of the graph's own 0.6); YOLOX-Nano at its fixed
416 px, score >= 0.25, NMS IoU 0.65 (YOLOX's own evaluation setting); SSDLite as before (6 passes). All of
them drop boxes that are parts of a better box (`ssdlite.merge_parts`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdpose_core.detection.download import DETECTORS_ENV, RELEASES, download_folder
from sdpose_core.errors import ConfigError
from sdpose_core.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from sdpose_core.detection.ssdlite import DetectorFn, PersonDetectorLike

logger = logging.getLogger(__name__)

BEST = "best"
ONNX_DETECTORS = ("rtmdet-nano", "yolox-nano")  # best first
DETECTOR_NAMES = (BEST, *ONNX_DETECTORS, "ssdlite", "ssdlite-fast", "whole-image")
DETECTOR_HELP = {
    BEST: "the best detector present: RTMDet-nano, else YOLOX-Nano, else SSDLite",
    "rtmdet-nano": "RTMDet-nano person detector (onnxruntime, one 384 px pass)",
    "yolox-nano": "YOLOX-Nano, persons of its 80 COCO classes (onnxruntime, one 416 px pass)",
    "ssdlite": "SSDLite-MobileNetV2 (OpenCV dnn): whole image + 2 tiles, each mirrored (6 passes)",
    "ssdlite-fast": "SSDLite-MobileNetV2, one pass (for speed comparisons)",
    "whole-image": "no detector: the whole image is one person (single-person crops)",
}
_warned: set[str] = set()


def detector_folders() -> list[Path]:
    """Where the ONNX detectors are looked for, in order: `$SDPOSE_DETECTORS` alone when set, else
    `<project>/../shared/detectors`, then the download folder."""
    env = os.environ.get(DETECTORS_ENV, "").strip()
    if env:
        return [Path(env).expanduser().resolve()]
    folders = [(PROJECT_ROOT.parent / "shared" / "detectors").resolve()]
    with contextlib.suppress(ConfigError):  # a cache folder set inside the project: the shared folder only
        folders.append(download_folder())
    return folders


def find_detector_file(name: str) -> Path | None:
    """The ONNX file of detector `name` ("rtmdet-nano", "yolox-nano") in `detector_folders()`, or None."""
    if name not in RELEASES:
        raise ConfigError(f"{name!r} is not an ONNX detector; choose one of {', '.join(RELEASES)}")
    for folder in detector_folders():
        candidate = folder / RELEASES[name].file_name
        if candidate.is_file():
            return candidate
    return None


def available_detectors() -> list[str]:
    """The detectors that can be built here, best first (SSDLite when its graph package is installed)."""
    from sdpose_core.detection.ssdlite import find_frozen_graph

    found = [name for name in ONNX_DETECTORS if find_detector_file(name) is not None]
    return found + (["ssdlite", "ssdlite-fast"] if find_frozen_graph() is not None else []) + ["whole-image"]


def best_detector_name() -> str:
    """"rtmdet-nano", else "yolox-nano", else "ssdlite" (whatever is present; SSDLite may still be missing)."""
    return next((name for name in ONNX_DETECTORS if find_detector_file(name) is not None), "ssdlite")


def _missing(name: str) -> str:
    release = RELEASES[name]
    folders = ", ".join(str(f) for f in detector_folders())
    return (f"{release.file_name} ({name}) is in none of {folders}; download it with `python -m "
            f"sdpose_core.detection download {name}` (from {release.url}) or point {DETECTORS_ENV} to a folder "
            "that has it")


def fallback_line() -> str:
    """What "best" says when it has to use SSDLite."""
    folders = ", ".join(str(f) for f in detector_folders())
    return (f"person detector: neither RTMDet-nano nor YOLOX-Nano found (looked in {folders}); using the weaker "
            f"SSDLite (6 passes). Get them with `python -m sdpose_core.detection download`, or set {DETECTORS_ENV}")


def build_detector(name: str = BEST, *, max_persons: int = 20, min_box_size: float = 8,
                   num_threads: int | None = None, score_threshold: float | None = None,
                   graph_path: str | os.PathLike | None = None) -> Any:
    """A person detector with `.detect(image_rgb)`, `.name` and `.describe()` (see the module docstring).

    `name`: one of DETECTOR_NAMES. `score_threshold` None keeps each detector's measured default;
    `num_threads` sets onnxruntime's intra-op threads (None: its default); `graph_path` is SSDLite's
    frozen graph (None: the installed package's)."""
    from sdpose_core.detection.onnx_detectors import RTMDetNano, YoloxNano
    from sdpose_core.detection.ssdlite import PersonDetector, WholeImage

    if name not in DETECTOR_NAMES:
        raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    fallback = None
    if name == BEST:
        name = best_detector_name()
        if name == "ssdlite":
            fallback = fallback_line()
            if fallback not in _warned:  # once per process and folder set, not on every image
                _warned.add(fallback)
                logger.warning(fallback)
    threshold = {} if score_threshold is None else {"score_threshold": float(score_threshold)}
    limits = {"max_persons": int(max_persons), "min_box_size": float(min_box_size)}
    if name in ONNX_DETECTORS:
        path = find_detector_file(name)
        if path is None:
            raise ConfigError(_missing(name))
        kind = RTMDetNano if name == "rtmdet-nano" else YoloxNano
        return kind(path, num_threads=num_threads, **threshold, **limits)
    if name == "whole-image":
        return WholeImage()
    single = {"tiles": 0, "flip": False} if name == "ssdlite-fast" else {}
    detector = PersonDetector(graph_path=graph_path, **single, **threshold, **limits)
    detector.fallback_note = fallback
    return detector


def as_detector(detector: PersonDetectorLike | DetectorFn | None, **postprocessing: Any) -> PersonDetectorLike:
    """An object with `.detect`: detectors pass through, callables are wrapped, None -> the best detector
    present (build_detector; of `postprocessing` it takes max_persons, min_box_size, score_threshold)."""
    from sdpose_core.detection.ssdlite import CallableDetector, PersonDetectorLike

    if detector is None:
        keys = ("max_persons", "min_box_size", "score_threshold")
        return build_detector(**{k: v for k, v in postprocessing.items() if k in keys})
    if isinstance(detector, PersonDetectorLike):
        return detector
    return CallableDetector(detector, **postprocessing)
