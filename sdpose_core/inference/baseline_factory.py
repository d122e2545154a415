"""The baselines that can be built by name (`sdpose evaluate --baseline`, scripts): one factory above both baseline
modules, so neither imports the other (`tinypose` uses `baselines.PosePrediction`).

    from sdpose_core.inference.baseline_factory import build_baseline
    with build_baseline("pp-tinypose", flip=True) as pose:
        people = pose.predict(image_rgb, boxes)          # one PosePrediction per box

Every baseline runs on the crop our models see: MediaPipe BlazePose with `MODEL_CROP_PADDING` of context on each
side, PP-TinyPose on the mmpose top-down crop itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdpose_core.errors import ConfigError

# name -> what it is (for --help and error messages)
BASELINES: dict[str, str] = {
    "mediapipe": "MediaPipe BlazePose full on the same person crops",
    "pp-tinypose": "PP-TinyPose 256x192 (ncnn; ../shared/teachers or $SDPOSE_TEACHERS), DARK decoding",
    "pp-tinypose-128x96": "PP-TinyPose 128x96, the student's input size",
}
FLIP_BASELINES = ("pp-tinypose", "pp-tinypose-128x96")  # MediaPipe has no flip test


def build_baseline(name: str, flip: bool = False, folder: str | Path | None = None, threads: int = 1) -> Any:
    """The baseline `name` (a key of BASELINES), a context manager (`with build_baseline(...) as pose`).
    `flip`: the flip test, for PP-TinyPose; `folder`: PP-TinyPose's model files (default: the shared teachers)."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}")
    if flip and name not in FLIP_BASELINES:
        raise ConfigError(f"--flip: baseline {name} has no flip test (only {', '.join(FLIP_BASELINES)})")
    if name == "mediapipe":
        from sdpose_core.inference.baselines import MODEL_CROP_PADDING, MediaPipePose

        return MediaPipePose(padding=MODEL_CROP_PADDING)
    from sdpose_core.inference.tinypose import TinyPoseTeacher

    size = (128, 96) if name == "pp-tinypose-128x96" else (256, 192)
    return TinyPoseTeacher(size, flip=flip, folder=folder, threads=threads)
