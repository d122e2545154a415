"""Pose estimation over images, videos and folders: drawn skeletons plus JSON.

    from sdpose_core.inference.predictor import Predictor
    from sdpose_core.inference.media import predict_media
    report = predict_media(Predictor(), ["photo.jpg", "clip.mp4", "folder/"], "out/", smooth=True)

Writes into `out_dir`:
- for every image: `<stem>_pose.jpg` (skeletons drawn);
- `coco_results.json`: COCO keypoint results of all images (image_id = the image's `id` below: its id in
  `annotations` when given, matched by file name, so the file scores with `sdpose eval-preds`; else 0, 1, 2...);
- for every video: `<stem>_pose.mp4` (annotated, every processed frame; H.264, which browsers play, when
  PyAV is installed: the entry's `codec` / `browser_playable` say so), `<stem>_frames.json` (per frame:
  index, time, people with box, score and keypoints; raw keypoints too when smoothed) and
  `<stem>_coco_results.json` (image_id = frame index);
- `predictions.json`: what ran (model, weights, cycles, smoothing) and one entry per image / video.
Keypoints are those of the last cycle run (`cycles`; the single deployed pass with cycles=1).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sdpose_core.errors import DataError
from sdpose_core.media.draw import draw_pose
from sdpose_core.media.images import IMAGE_SUFFIXES, load_image
from sdpose_core.media.video import (
    VIDEO_SUFFIXES,
    KeypointSmoother,
    VideoWriter,
    iter_video_frames,
    video_info,
)

# beta is in 1 / (pixels per second): 0.05 suits full-HD to VGA people (see tests/media/test_video.py)
DEFAULT_SMOOTHING = dict(min_cutoff=1.0, beta=0.05, d_cutoff=1.0)


@dataclass
class MediaReport:
    out_dir: Path
    images: list[dict[str, Any]] = field(default_factory=list)
    videos: list[dict[str, Any]] = field(default_factory=list)
    summary_json: Path | None = None

    @property
    def outputs(self) -> list[Path]:
        return [Path(entry["output"]) for entry in [*self.images, *self.videos]]


def collect_media(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """(path, "image" | "video") for every input; folders contribute their images and videos (sorted,
    not recursive). Missing files and unknown suffixes raise DataError naming them."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    media: list[tuple[Path, str]] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = [(p, _kind(p)) for p in sorted(path.iterdir()) if p.is_file() and _kind(p, strict=False)]
            if not found:
                raise DataError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) or videos")
            media += found
        elif path.is_file():
            media.append((path, _kind(path)))
        else:
            raise DataError(f"input not found: {path}")
    return media


def _kind(path: Path, strict: bool = True) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if strict:
        raise DataError(f"{path}: unknown media type {suffix!r}; images: {', '.join(IMAGE_SUFFIXES)}; "
                        f"videos: {', '.join(VIDEO_SUFFIXES)}")
    return ""


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem


def image_ids_from_annotations(annotations: str | os.PathLike, images: Sequence[Path],
                               num_keypoints: int | None = None) -> list[int]:
    """The COCO image id of each image in `images`, looked up by file name (without folders) in the
    `annotations` JSON, so predictions can be scored against it. Raises DataError naming the files that
    the annotations do not list (or list twice), and when the keypoint layouts differ."""
    from sdpose_core.evaluation.validation import check_annotations, load_json, resolve_dataset

    ann = check_annotations(load_json(annotations, "annotation"), str(annotations))
    layout = resolve_dataset(None, ann, str(annotations))
    if num_keypoints is not None and layout.num_keypoints != num_keypoints:
        raise DataError(f"{annotations} has {layout.num_keypoints} keypoints per person ({layout.name}) but the "
                        f"model predicts {num_keypoints}: pass annotations of the model's dataset")
    ids_by_name: dict[str, list[int]] = {}
    for entry in ann["images"]:
        if entry.get("file_name"):
            ids_by_name.setdefault(Path(str(entry["file_name"])).name, []).append(int(entry["id"]))
    ids: list[int] = []
    unknown: list[str] = []
    twice: list[str] = []
    for path in images:
        found = ids_by_name.get(path.name, [])
        if len(found) != 1 or found[0] in ids:
            (unknown if not found else twice).append(path.name)
        else:
            ids.append(found[0])
    for names, problem in ((unknown, "not listed in"),
                           (twice, "given twice, or whose file name is listed twice, in")):
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            raise DataError(f"{len(names)} image(s) {problem} {annotations} (image ids are looked up by file "
                            f"name): {shown}; pass only images that the annotation file lists once, or leave "
                            "--ann out")
    return ids


def _people_json(result: Any, keypoints: Sequence[np.ndarray], raw: Sequence[np.ndarray] | None) -> list[dict]:
    people = []
    for index, person in enumerate(result.people):
        entry = {"box_xywh": [round(float(v), 2) for v in person.box_xywh], "box_score": float(person.box_score),
                 "score": float(person.score()), "cycles_used": int(person.cycles_used),
                 "keypoints": np.round(keypoints[index], 3).tolist()}
        if raw is not None:
            entry["raw_keypoints"] = np.round(raw[index], 3).tolist()
        people.append(entry)
    return people


def _coco_results(image_id: int, result: Any, keypoints: Sequence[np.ndarray]) -> list[dict]:
    """COCO keypoint results with the given (possibly smoothed) keypoints and the Predictor's rescoring."""
    return [{"image_id": int(image_id), "category_id": 1, "keypoints": np.asarray(k, dtype=float).reshape(-1).tolist(),
             "score": float(person.score())} for person, k in zip(result.people, keypoints, strict=True)]


def _progress(iterable: Iterable[Any], enabled: bool, **kwargs: Any) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def predict_media(
    predictor: Any,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    cycles: int | None = None,
    json_output: bool = True,
    smooth: bool = False,
    flip: bool = False,
    stride: int = 1,
    score_threshold: float = 0.3,
    max_frames: int | None = None,
    smoothing: dict[str, float] | None = None,
    progress: bool = True,
    dynamic: bool = False,
    dynamic_tolerance: float | None = None,
    annotations: str | os.PathLike | None = None,
) -> MediaReport:
    """Run `predictor` (a `sdpose_core.inference.predictor.Predictor`) over images / videos / folders.

    `stride`: every stride-th video frame; `max_frames`: at most this many per video; `smooth`: One-Euro
    filter the video keypoints (`smoothing` overrides DEFAULT_SMOOTHING); `score_threshold`: joints
    below it are drawn as uncertain; `dynamic` / `dynamic_tolerance`: see `Predictor.predict`; `annotations`:
    a COCO-format JSON whose image ids (matched by file name) the image results take. Returns a
    MediaReport (also written to predictions.json).
    """
    media = collect_media(inputs)  # before creating anything: a bad input fails fast
    images = [path for path, kind in media if kind == "image"]
    layout = getattr(predictor, "layout", None)
    image_ids = list(range(len(images))) if annotations is None else image_ids_from_annotations(
        annotations, images, getattr(layout, "num_keypoints", None))
    options: dict[str, Any] = {"cycles": cycles, "flip": flip, "dynamic": dynamic}
    if dynamic_tolerance is not None:
        options["dynamic_tolerance"] = dynamic_tolerance
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = MediaReport(out)
    used: set[str] = set()
    all_results: list[dict] = []
    progress_images = _progress(images, progress and len(images) > 1, desc="images", unit="img")
    for image_id, path in zip(image_ids, progress_images, strict=True):
        image = load_image(path)
        result = predictor.predict(image, **options)
        keypoints = [p.keypoints for p in result.people]
        drawn = draw_pose(image, np.array(keypoints).reshape(len(keypoints), -1, 3) if keypoints else
                          np.zeros((0, result.layout.num_keypoints, 3)), result.layout.skeleton, score_threshold,
                          boxes_xywh=[p.box_xywh for p in result.people] or None)
        target = out / f"{_unique_stem(path, used)}_pose.jpg"
        if not cv2.imwrite(str(target), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
            raise DataError(f"cannot write {target}")
        all_results += _coco_results(image_id, result, keypoints)
        report.images.append({"id": image_id, "file": str(path), "output": str(target),
                              "width": int(image.shape[1]), "height": int(image.shape[0]),
                              "people": _people_json(result, keypoints, None),
                              "timings_ms": result.timings.to_dict(), "backend": result.backend_line,
                              "notes": list(result.notes)})
    for path in (p for p, kind in media if kind == "video"):
        report.videos.append(_predict_video(predictor, path, out, _unique_stem(path, used), options, stride,
                                            score_threshold, max_frames, smooth, smoothing, json_output, progress))
    weights = getattr(predictor, "weights_info", None)
    summary = {"model": str(getattr(getattr(predictor, "config", None), "name", "")),
               "backend": getattr(predictor, "backend", None),
               "weights": weights.to_dict() if hasattr(weights, "to_dict") else weights,
               "cycles": cycles, "flip": flip, "smooth": (smoothing or DEFAULT_SMOOTHING) if smooth else None,
               "annotations": str(annotations) if annotations is not None else None,
               "images": report.images, "videos": report.videos}
    if json_output:
        if report.images:
            (out / "coco_results.json").write_text(json.dumps(all_results))
        report.summary_json = out / "predictions.json"
        report.summary_json.write_text(json.dumps(summary, indent=1))
    return report


def _predict_video(predictor: Any, path: Path, out: Path, stem: str, options: dict[str, Any], stride: int,
                   score_threshold: float, max_frames: int | None, smooth: bool,
                   smoothing: dict[str, float] | None, json_output: bool, progress: bool) -> dict[str, Any]:
    info = video_info(path)
    smoother = KeypointSmoother(**(smoothing or DEFAULT_SMOOTHING)) if smooth else None
    target = out / f"{stem}_pose.mp4"
    frames_json, coco_results, timings, backends = [], [], [], {}
    expected = -(-info.frame_count // stride) if info.frame_count > 0 else None
    if max_frames is not None and expected is not None:
        expected = min(expected, max_frames)
    frames = iter_video_frames(path, stride=stride, max_frames=max_frames)
    # the output keeps the source's pace: one written frame per `stride` source frames
    with VideoWriter(target, fps=max(info.fps / stride, 1.0)) as writer:
        for frame in _progress(frames, progress, total=expected, desc=path.name, unit="frame"):
            result = predictor.predict(frame.image, **options)
            timings.append(result.timings.total_ms)
            backends[result.backend_line] = backends.get(result.backend_line, 0) + 1
            raw = [p.keypoints for p in result.people]
            keypoints = smoother(raw, frame.time_s) if smoother is not None else raw
            people = np.array(keypoints).reshape(len(keypoints), -1, 3) if keypoints else \
                np.zeros((0, result.layout.num_keypoints, 3))
            writer.write(draw_pose(frame.image, people, result.layout.skeleton, score_threshold,
                                   boxes_xywh=[p.box_xywh for p in result.people] or None))
            frames_json.append({"frame": frame.index, "time_s": round(frame.time_s, 4),
                                "people": _people_json(result, keypoints, raw if smoother is not None else None)})
            coco_results += _coco_results(frame.index, result, keypoints)
    entry: dict[str, Any] = {
        "file": str(path), "output": str(target), "codec": writer.codec,
        "browser_playable": writer.browser_playable, "fps": info.fps, "stride": stride,
        "frames": writer.frames_written, "width": info.width, "height": info.height,
        "median_ms_per_frame": round(statistics.median(timings), 2) if timings else None,
        # what ran the frames (an automatic choice made while the video runs shows up as two entries)
        "backend": "; ".join(f"{line} ({count} frames)" for line, count in backends.items()) or None,
        "smoothing_resets": smoother.resets if smoother is not None else None,
        "notes": [],
    }
    if expected is not None and writer.frames_written < expected:
        entry["notes"].append(f"{path.name} ended after {writer.frames_written} of the {expected} frames its "
                              "header announces (a truncated or damaged file): the frames decoded were used")
    if json_output:
        entry["frames_json"] = str(out / f"{stem}_frames.json")
        entry["coco_results"] = str(out / f"{stem}_coco_results.json")
        Path(entry["frames_json"]).write_text(json.dumps({**entry, "frames": frames_json,
                                                          "frames_written": writer.frames_written}))
        Path(entry["coco_results"]).write_text(json.dumps(coco_results))
    return entry
