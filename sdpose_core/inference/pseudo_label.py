"""Teacher pseudo-labels: a teacher's COCO-17 keypoints on unlabeled person media, written as COCO JSON.

    sdpose pseudo-label ../shared/data/unlabeled/ccp_fullbody --out runs/pseudo/ccp.json --holdout-every 20
    sdpose pseudo-label ../shared/data/unlabeled/videos --frames-dir runs/pseudo/frames --stride 5 ...
    sdpose pseudo-label ../shared/data/unlabeled/har_actions --teacher pp-tinypose --detector rtmdet-nano ...

Teachers (`build_teacher`): "mediapipe" (BlazePose full, the default; its visibility is the score) and
"pp-tinypose" (PP-TinyPose 256x192 with the flip test; the heatmap peak is the score). For every image (or
every `stride`-th video frame, so near-duplicate frames don't dominate) the person detector finds the
people (or the whole image is one box, `--whole-image`, for person crops), the teacher predicts 17 COCO
keypoints per box, and only confident people and joints are kept:

- a joint is labelled (v=2) when the teacher's score is >= `joint_threshold` and it lies inside the
  image; every other joint is unlabelled (v=0), so it adds no loss; `keypoint_scores` on each annotation
  holds the teacher's score of every labelled joint (0 for unlabelled ones), for a trainer to weight by;
- a person is kept when at least `min_joints` joints are labelled, including a shoulder and a hip (a
  torso to anchor the skeleton), and the labelled joints span at least `min_height` pixels.

Boxes: COCO boxes are tight around the person's pixels, not around its joints. The box is the extent of
the labelled joints grown by margins measured on real COCO people (`keypoint_box_margins`: median gap
between joint extent and GT box, as a fraction of the joint-extent height, over people with >= 15
labelled joints) and `area` is the box area times the measured median segment-area / box-area ratio
(it sets the OKS scale when the held-out pseudo-labels are evaluated). The JSON's `info` records the
teacher, thresholds, margins, source and counts kept / dropped.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import COCO17
from sdpose_core.media.images import IMAGE_SUFFIXES, load_image
from sdpose_core.media.video import VIDEO_SUFFIXES, iter_video_frames
from sdpose_core.paths import data_root

logger = logging.getLogger(__name__)

SHOULDERS = (5, 6)
HIPS = (11, 12)
TEACHERS = ("mediapipe", "pp-tinypose")
DEFAULT_TEACHER = "mediapipe"


def build_teacher(name: str = DEFAULT_TEACHER) -> Any:
    """The teacher `name` (one of TEACHERS): MediaPipe BlazePose on the box with 0.25 of it added on each side (as
    before teachers could be chosen), or PP-TinyPose 256x192 with the flip test on the mmpose crop (box x 1.25)."""
    if name == "mediapipe":
        from sdpose_core.inference.baselines import MediaPipePose

        return MediaPipePose()
    if name == "pp-tinypose":
        from sdpose_core.inference.tinypose import TinyPoseTeacher

        return TinyPoseTeacher()
    raise ConfigError(f"unknown teacher {name!r}; choose one of {', '.join(TEACHERS)}")


def describe_teacher(teacher: Any) -> str:
    """One line naming the teacher and how it runs, for the JSON's provenance."""
    if not hasattr(teacher, "describe"):
        return type(teacher).__name__
    about = teacher.describe()
    if about.get("name") == "mediapipe":
        return (f"mediapipe=={_version('mediapipe')} solutions.pose model_complexity=1 (BlazePose full), per "
                f"person box + {about.get('crop_padding_each_side')} of it on each side")
    return f"{about.get('name')}: {about.get('detail')}"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


@dataclass
class BoxMargins:
    """Gap between the labelled-joint extent and the person box, as fractions of the extent's height."""

    left: float = 0.06
    right: float = 0.06
    top: float = 0.11
    bottom: float = 0.11
    area_ratio: float = 0.5  # segment area / box area
    measured_on: str = "defaults (no COCO file given)"
    people: int = 0


def default_margins_file() -> Path:
    """The real COCO people box margins are measured on when no file is given: the shared coco_mini_train."""
    return data_root() / "coco" / "coco_mini_train" / "person_keypoints.json"


def keypoint_box_margins(coco_json: str | os.PathLike, min_labelled: int = 15) -> BoxMargins:
    """Median margins of real COCO boxes around their labelled joints (people with >= min_labelled joints)."""
    data = json.loads(Path(coco_json).read_text())
    rows = []
    for ann in data.get("annotations", []):
        kps = np.asarray(ann.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
        if ann.get("iscrowd", 0) or len(kps) == 0 or (kps[:, 2] > 0).sum() < min_labelled:
            continue
        pts = kps[kps[:, 2] > 0, :2]
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        height = y1 - y0
        bx, by, bw, bh = ann["bbox"]
        if height <= 1 or bw * bh <= 0:
            continue
        rows.append([(x0 - bx) / height, (bx + bw - x1) / height, (y0 - by) / height, (by + bh - y1) / height,
                     ann["area"] / (bw * bh)])
    if not rows:
        raise DataError(f"{coco_json}: no person with >= {min_labelled} labelled keypoints to measure box margins on")
    med = np.median(np.asarray(rows), axis=0)
    return BoxMargins(*(round(float(v), 4) for v in med), measured_on=str(coco_json), people=len(rows))


@dataclass
class PseudoLabelConfig:
    joint_threshold: float = 0.5
    min_joints: int = 8
    min_height: float = 48.0  # pixels spanned by the labelled joints
    video_stride: int = 5
    frame_max_side: int = 640  # extracted frames are saved downscaled (the crops are 256x192 or less)
    whole_image: bool = False
    duplicate_oks: float = 0.5
    holdout_every: int = 0  # 0: no split; N: every N-th source item goes to the held-out file
    margins: BoxMargins = field(default_factory=BoxMargins)


def select_person(keypoints: np.ndarray, image_shape: tuple[int, ...], cfg: PseudoLabelConfig) -> np.ndarray | None:
    """COCO keypoints (17, 3) with v in {0, 2}, or None when the teacher's person is not confident enough."""
    height, width = image_shape[:2]
    x, y, score = keypoints[:, 0], keypoints[:, 1], keypoints[:, 2]
    inside = (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    labelled = (score >= cfg.joint_threshold) & inside
    if labelled.sum() < cfg.min_joints or not labelled[list(SHOULDERS)].any() or not labelled[list(HIPS)].any():
        return None
    if np.ptp(y[labelled]) < cfg.min_height:
        return None
    out = np.zeros((len(keypoints), 3), dtype=np.float64)
    out[labelled, 0] = x[labelled]
    out[labelled, 1] = y[labelled]
    out[labelled, 2] = 2
    return out


def box_from_keypoints(keypoints: np.ndarray, image_shape: tuple[int, ...], margins: BoxMargins) -> list[float]:
    """COCO xywh box: the labelled joints' extent grown by the measured margins, clipped to the image."""
    height, width = image_shape[:2]
    pts = keypoints[keypoints[:, 2] > 0, :2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    span = max(y1 - y0, 1.0)
    x0, x1 = max(0.0, x0 - margins.left * span), min(width - 1.0, x1 + margins.right * span)
    y0, y1 = max(0.0, y0 - margins.top * span), min(height - 1.0, y1 + margins.bottom * span)
    return [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]


@dataclass
class SourceItem:
    """One image to label: where to read it from (or its pixels) and the file_name to record."""

    file_name: str
    group: str  # items of one group (a video) share the split
    load: Callable[[], np.ndarray]  # RGB uint8


def iter_sources(source: Path, cfg: PseudoLabelConfig, frames_dir: Path | None) -> Iterator[SourceItem]:
    """Images of a folder (file_name relative to it) or frames of videos (saved under frames_dir)."""
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if videos and frames_dir is None:
        raise DataError(f"{source} holds videos: give --frames-dir DIR to write the sampled frames to")
    if not videos and not images:
        raise DataError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos found")
    root = source if source.is_dir() else source.parent
    for path in images:
        yield SourceItem(path.relative_to(root).as_posix(), path.relative_to(root).as_posix(),
                         lambda p=path: load_image(p))
    for video in videos:
        yield from _video_frames(video, cfg, frames_dir)  # type: ignore[arg-type]


def _video_frames(video: Path, cfg: PseudoLabelConfig, frames_dir: Path) -> Iterator[SourceItem]:
    out = frames_dir / video.stem
    out.mkdir(parents=True, exist_ok=True)
    for frame in iter_video_frames(video, stride=cfg.video_stride):
        image = frame.image
        scale = cfg.frame_max_side / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        name = f"{video.stem}/{frame.index:06d}.jpg"
        path = frames_dir / name
        if not path.exists():
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        yield SourceItem(name, video.name, lambda im=image: im)


def _coco_skeleton() -> list[list[int]]:
    return [[a + 1, b + 1] for a, b in COCO17.skeleton]


def _empty_coco(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "info": info, "images": [], "annotations": [],
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": list(COCO17.joints), "skeleton": _coco_skeleton()}],
    }


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def pseudo_label(
    source: str | os.PathLike,
    out: str | os.PathLike,
    cfg: PseudoLabelConfig | None = None,
    frames_dir: str | os.PathLike | None = None,
    teacher: Any = None,
    detector: Any = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Label `source` with the teacher; write `out` (and `out` with `.holdout.json` when splitting).

    `teacher`: a name of TEACHERS, an object with `predict(image_rgb, boxes)` -> PosePrediction list, or None
    (MediaPipe). `detector`: an object with `.detect`, or None (the best present). Returns the counts recorded
    in the JSON's info.
    """
    cfg = cfg or PseudoLabelConfig()
    source, out = Path(source), Path(out)
    if not source.exists():
        raise DataError(f"pseudo-label source {source} does not exist")
    if teacher is None or isinstance(teacher, str):
        teacher = build_teacher(teacher or DEFAULT_TEACHER)
    if detector is None and not cfg.whole_image:
        from sdpose_core.detection import build_detector

        detector = build_detector()  # the best present, as everywhere else
    counts = {"images_seen": 0, "images_kept": 0, "boxes": 0, "people_kept": 0, "dropped_teacher_none": 0,
              "dropped_unconfident": 0, "dropped_duplicate": 0, "joints_labelled": 0}
    info = {
        "description": f"{getattr(teacher, 'name', 'teacher')} pseudo-labels of {source.name}",
        "teacher": describe_teacher(teacher),
        "detector": "whole image is one box" if cfg.whole_image else getattr(detector, "name", type(detector).__name__),
        "source": str(source), "frames_dir": str(frames_dir) if frames_dir else None,
        "config": asdict(cfg), "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rules": "\n\n".join(__doc__.split("\n\n")[2:4]).strip() if __doc__ else "",
    }
    splits = {"train": _empty_coco(info), "holdout": _empty_coco(info)}
    groups: dict[str, int] = {}
    items = iter_sources(source, cfg, Path(frames_dir) if frames_dir else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"pseudo-label {source.name}", unit="img")
    ann_id = 1
    for image_id, item in enumerate(items, start=1):
        if limit is not None and image_id > limit:
            break
        group_index = groups.setdefault(item.group, len(groups))
        split = "holdout" if cfg.holdout_every and group_index % cfg.holdout_every == cfg.holdout_every - 1 else "train"
        image = item.load()
        counts["images_seen"] += 1
        boxes = None if cfg.whole_image else np.array([d.box_xywh for d in detector.detect(image)]).reshape(-1, 4)
        people = teacher.predict(image, boxes) if boxes is None or len(boxes) else []
        kept, scores = [], []
        for person in people:
            counts["boxes"] += 1
            if not person.found:
                counts["dropped_teacher_none"] += 1
                continue
            keypoints = select_person(person.keypoints, image.shape, cfg)
            if keypoints is None:
                counts["dropped_unconfident"] += 1
                continue
            kept.append(keypoints)
            scores.append(np.where(keypoints[:, 2] > 0, person.keypoints[:, 2], 0.0))
        if len(kept) > 1:
            order = _drop_duplicates(kept, person_scores=None, image_shape=image.shape, cfg=cfg, counts=counts)
            kept, scores = [kept[i] for i in order], [scores[i] for i in order]
        if bar is not None:
            bar.update(1)
        if not kept:
            continue
        coco = splits[split]
        coco["images"].append({"id": image_id, "file_name": item.file_name, "height": int(image.shape[0]),
                               "width": int(image.shape[1])})
        counts["images_kept"] += 1
        for keypoints, joint_scores in zip(kept, scores, strict=True):
            box = box_from_keypoints(keypoints, image.shape, cfg.margins)
            labelled = int((keypoints[:, 2] > 0).sum())
            coco["annotations"].append({
                "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
                "area": round(box[2] * box[3] * cfg.margins.area_ratio, 2),
                "num_keypoints": labelled, "keypoints": [round(float(v), 2) for v in keypoints.ravel()],
                "keypoint_scores": [round(float(v), 3) for v in joint_scores],
            })
            ann_id += 1
            counts["people_kept"] += 1
            counts["joints_labelled"] += labelled
    if bar is not None:
        bar.close()
    counts["people_train"] = len(splits["train"]["annotations"])
    counts["people_holdout"] = len(splits["holdout"]["annotations"])
    for coco in splits.values():
        coco["info"]["counts"] = counts
    write_json_atomic(splits["train"], out)
    if cfg.holdout_every:
        write_json_atomic(splits["holdout"], holdout_path(out))
    return counts


def _drop_duplicates(kept: list[np.ndarray], person_scores: Any, image_shape: tuple[int, ...],
                     cfg: PseudoLabelConfig, counts: dict[str, int]) -> list[int]:
    """Indices into `kept` of the people left after OKS-NMS (the same person found in two boxes), in order."""
    from sdpose_core.evaluation.nms import oks_nms

    keypoints = np.stack(kept)
    labelled = (keypoints[:, :, 2] > 0).sum(1).astype(np.float64)
    areas = np.array([b[2] * b[3] for b in (box_from_keypoints(k, image_shape, cfg.margins) for k in kept)])
    keep = oks_nms(keypoints, labelled, areas * cfg.margins.area_ratio, thr=cfg.duplicate_oks)
    counts["dropped_duplicate"] = counts.get("dropped_duplicate", 0) + len(kept) - len(keep)
    return sorted(int(i) for i in keep)


def holdout_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".holdout.json")


def format_counts(counts: dict[str, Any], names: Sequence[str] | None = None) -> str:
    names = names or list(counts)
    return ", ".join(f"{k} {counts[k]}" for k in names)
