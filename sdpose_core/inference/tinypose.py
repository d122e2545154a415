"""PP-TinyPose (PaddleDetection, Apache-2.0) on ncnn: a small COCO-17 top-down model, as a baseline and teacher.

    from sdpose_core.inference.tinypose import TinyPose
    pose = TinyPose((128, 96))                   # or (256, 192); files from ../shared/teachers/pp_tinypose
    maps = pose.heatmaps(crops)                  # crops: float32 (N, 3, H, W), RGB, ImageNet-normalised
    keypoints = pose.predict(image_rgb, boxes)   # (N, 17, 3) x, y (image pixels), score; one row per box
    teacher = TinyPoseTeacher()                  # 256x192 + flip, MediaPipePose's interface (PosePrediction per box)

The model files are not part of the project: they are read from `<teachers>/pp_tinypose/`
(`sdpose_core.paths.teachers_root()`: `$SDPOSE_TEACHERS`, else `../shared/teachers`) or from the
folder given; their README there describes them. It runs on the optional `ncnn` package
(`pip install ncnn`); nothing else of the studio needs it.

Preprocessing and decoding follow that README, which are also SDPose's: the person crop is the mmpose
top-down one (box centre, aspect fixed to 0.75, x1.25, affine warp; `inference.crops.crop_people`), RGB
normalised with the ImageNet mean / std (what `load_real_crops` and the Predictor feed SDPose, so the
same crops go to both), 17 heatmaps at stride 4 decoded with DARK; flip test with the one-column
shift. Each model's input size is fixed by its .param file (feed exactly 256x192 or 128x96).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.errors import ConfigError, DataError

SIZES = ((256, 192), (128, 96))  # (height, width) of the two models
INPUT_BLOB = "image"
OUTPUT_BLOB = "save_infer_model/scale_0.tmp_1"
NUM_KEYPOINTS = 17


def default_folder() -> Path:
    from sdpose_core.paths import teachers_root

    return teachers_root() / "pp_tinypose"


def model_files(input_size: Sequence[int], folder: str | Path | None = None) -> tuple[Path, Path]:
    """(.param, .bin) of the model for `input_size`; DataError naming the path when they are absent."""
    height, width = (int(v) for v in input_size)
    if (height, width) not in SIZES:
        raise ConfigError(f"PP-TinyPose exists at {' and '.join(f'{h}x{w}' for h, w in SIZES)}, not {height}x{width}")
    root = Path(folder) if folder is not None else default_folder()
    param, weights = root / f"tinypose_{height}x{width}.param", root / f"tinypose_{height}x{width}.bin"
    missing = [str(p) for p in (param, weights) if not p.is_file()]
    if missing:
        raise DataError(f"PP-TinyPose {height}x{width} not found: {', '.join(missing)} missing (set SDPOSE_TEACHERS "
                        "to the folder that holds pp_tinypose/, or pass folder=)")
    return param, weights


def available(input_size: Sequence[int] = SIZES[0], folder: str | Path | None = None) -> str | None:
    """None when PP-TinyPose can run here, else why not (no ncnn package, or no model files)."""
    try:
        import ncnn  # noqa: F401
    except ImportError:
        return "the optional ncnn package is not installed (pip install ncnn)"
    try:
        model_files(input_size, folder)
    except (DataError, ConfigError) as exc:
        return str(exc)
    return None


class TinyPose:
    """One PP-TinyPose model (see the module docstring). `threads`: ncnn threads; its README measured one
    thread as fast as two and far steadier on a busy 2-core machine. One extractor per call, so calls from
    several threads are safe."""

    def __init__(self, input_size: Sequence[int] = SIZES[0], folder: str | Path | None = None,
                 threads: int = 1) -> None:
        try:
            import ncnn
        except ImportError as exc:
            raise ConfigError("PP-TinyPose needs the optional ncnn package: pip install ncnn") from exc
        self.input_size = tuple(int(v) for v in input_size)
        self.param_path, self.bin_path = model_files(self.input_size, folder)
        self.net = ncnn.Net()
        self.net.opt.num_threads = int(threads)
        if self.net.load_param(str(self.param_path)) != 0 or self.net.load_model(str(self.bin_path)) != 0:
            raise DataError(f"ncnn could not load {self.param_path} / {self.bin_path} (damaged files?)")
        self._ncnn: Any = ncnn
        self.threads = int(threads)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return self.input_size[0] // 4, self.input_size[1] // 4

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """(N, 17, H/4, W/4) heatmaps of float32 crops (N, 3, H, W), RGB, ImageNet-normalised."""
        return self.extract(crops, [OUTPUT_BLOB])[0]

    def extract(self, crops: np.ndarray, blobs: Sequence[str]) -> list[np.ndarray]:
        """The named blobs of one forward per crop, each stacked to (N, C, h, w): the heatmaps (OUTPUT_BLOB) and,
        for feature hints, any intermediate blob of the .param file (e.g. "relu_143.tmp_0", the last features)."""
        crops = np.asarray(crops, dtype=np.float32)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:] != (3, *self.input_size):
            raise DataError(f"PP-TinyPose {self.input_size[0]}x{self.input_size[1]} takes crops of shape "
                            f"(N, 3, {self.input_size[0]}, {self.input_size[1]}), got {crops.shape}")
        if len(crops) == 0 and list(blobs) == [OUTPUT_BLOB]:
            return [np.empty((0, NUM_KEYPOINTS, *self.heatmap_size), dtype=np.float32)]
        out: list[list[np.ndarray]] = [[] for _ in blobs]
        for crop in crops:
            extractor = self.net.create_extractor()
            if len(blobs) > 1:  # light mode frees intermediate blobs once the next layer has run
                extractor.set_light_mode(False)
            extractor.input(INPUT_BLOB, self._ncnn.Mat(np.ascontiguousarray(crop)))
            for index, blob in enumerate(blobs):
                status, result = extractor.extract(blob)
                if status != 0:
                    raise DataError(f"ncnn failed on PP-TinyPose {self.param_path.name}, blob {blob!r} "
                                    f"(status {status})")
                out[index].append(np.array(result))
        stacked = [np.stack(arrays).astype(np.float32, copy=False) for arrays in out]
        if stacked and blobs[0] == OUTPUT_BLOB:
            stacked[0] = stacked[0].reshape(len(crops), NUM_KEYPOINTS, *self.heatmap_size)
        return stacked

    def predict(self, image_rgb: np.ndarray, boxes: Any, flip: bool = False, decode: str = "dark") -> np.ndarray:
        """(N, 17, 3) keypoints (image pixels, heatmap-peak score) of the people in `boxes` ([N, 4] x, y, w, h
        or Detections), one row per box in box order; a box with nothing inside the image gets zeros (score 0).
        `flip` adds the mirrored crops (with the one-column shift)."""
        from sdpose_core.heatmaps import flip_average, heatmap_peaks, heatmap_to_image_coords
        from sdpose_core.inference.crops import crop_people, parse_boxes, sanitize_boxes, to_rgb_uint8
        from sdpose_core.keypoints import get_layout

        image_rgb = to_rgb_uint8(image_rgb)
        raw_boxes, raw_scores = parse_boxes(boxes)
        out = np.zeros((len(raw_boxes), NUM_KEYPOINTS, 3))
        clean, scores, kept, notes = sanitize_boxes(raw_boxes, raw_scores, image_rgb.shape)
        if len(clean) == 0:
            return out
        batch = crop_people(image_rgb, clean, scores, self.input_size, kept, notes)
        crops = batch.images.numpy()
        maps = self.heatmaps(crops)
        if flip:
            mirrored = self.heatmaps(np.ascontiguousarray(crops[:, :, :, ::-1]))
            maps = flip_average(maps, mirrored, get_layout(NUM_KEYPOINTS).flip_index())
        coords, peak = heatmap_peaks(maps, decode)
        xy = heatmap_to_image_coords(coords, batch.centers, batch.scales, self.heatmap_size)
        out[kept] = np.concatenate([xy, peak[..., None]], axis=-1)
        return out

    def __repr__(self) -> str:
        return f"TinyPose({self.input_size[0]}x{self.input_size[1]}, {self.param_path.parent}, threads {self.threads})"


class TinyPoseTeacher:
    """PP-TinyPose as a teacher / baseline with MediaPipePose's interface: `predict(image_rgb, boxes)` gives one
    `PosePrediction` per box (None: the whole image is one person), `name`, `describe()`. Default: the 256x192
    model with the flip test and DARK, the setting its README measured best (and 0.511 AP on LSP-extended val,
    `tests/inference/test_tinypose.py`). A heatmap model always answers, so `found` is True for every box
    inside the image; the per-joint heatmap peak is the score a confidence threshold reads."""

    name = "pp-tinypose"

    def __init__(self, input_size: Sequence[int] = SIZES[0], flip: bool = True, folder: str | Path | None = None,
                 threads: int = 1) -> None:
        self.model = TinyPose(input_size, folder, threads)
        self.flip = bool(flip)

    def predict(self, image_rgb: np.ndarray, boxes: Any = None) -> list[Any]:
        from sdpose_core.inference.baselines import PosePrediction
        from sdpose_core.inference.crops import parse_boxes

        if boxes is None:
            boxes = np.array([[0.0, 0.0, image_rgb.shape[1], image_rgb.shape[0]]])
        box_array, _ = parse_boxes(boxes)
        keypoints = self.model.predict(image_rgb, box_array, flip=self.flip)
        return [PosePrediction(keypoints=k.astype(np.float32), box_xywh=b.astype(np.float32),
                               found=bool(k[:, 2].max() > 0)) for k, b in zip(keypoints, box_array, strict=True)]

    __call__ = predict

    def close(self) -> None:
        """Nothing to free beyond the ncnn net, which goes with the object; here so every baseline closes alike."""

    def __enter__(self) -> TinyPoseTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What runs, for evaluation reports and the provenance of pseudo-labels."""
        height, width = self.model.input_size
        return {"name": self.name, "detail": f"PP-TinyPose {height}x{width} (PaddleDetection, Apache-2.0) on ncnn, "
                f"{'flip test (one-column shift), ' if self.flip else ''}DARK decoding, heatmap peak = score",
                "files": str(self.model.param_path.parent)}
