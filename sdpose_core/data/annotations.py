"""Reading and checking COCO-style keypoint annotation files and COCO-results detection files.

Everything here fails early with a `DataError` that names the file, the field and what to do.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.data.transforms import box_to_center_scale, clip_box_xywh
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import LAYOUTS, KeypointLayout, get_layout

# joint names that differ between annotation files and our layouts (CrowdPose calls head_top "head")
_NAME_ALIASES = {"head": "headtop"}


@dataclass
class BoxSamples:
    """One row per person crop, as arrays (cheap to share with DataLoader workers)."""

    image_index: np.ndarray  # (N,) index into the image table
    ann_id: np.ndarray  # (N,) annotation id, -1 for detections
    center: np.ndarray  # (N, 2) pixels
    scale: np.ndarray  # (N, 2) pixels, padded and aspect-fixed
    box_score: np.ndarray  # (N,)
    keypoints: np.ndarray  # (N, K, 3) x, y, visibility in image pixels; zeros for detections
    stats: dict[str, int] = field(default_factory=dict)
    # (N, K) per-joint label confidence: an annotation's `keypoint_scores` (1 = human label, else a teacher's
    # score; pseudo-label files write them), 1 where a file has none; a training option weights targets by it
    keypoint_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.image_index.shape[0])


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist; check the path")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{what} {path} is not valid JSON ({error}); re-export or re-download it") from error


def annotation_image_ids(path: str | Path) -> list[int]:
    """The `id` of every entry of a COCO file's `images` list; DataError naming the file when it has none."""
    data = read_json(Path(path), "annotation file")
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(im, dict) and "id" in im for im in images):
        raise DataError(f"annotation file {path} has no COCO 'images' list with an 'id' per image")
    return [int(im["id"]) for im in images]


def _normalise_name(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return _NAME_ALIASES.get(key, key)


def person_category(categories: list[dict], path: Path) -> dict:
    with_keypoints = [c for c in categories if isinstance(c, dict) and c.get("keypoints")]
    persons = [c for c in with_keypoints if c.get("name") == "person"]
    chosen = persons or with_keypoints
    if chosen:
        return chosen[0]
    persons = [c for c in categories if isinstance(c, dict) and c.get("name") == "person"]
    if persons:
        return persons[0]
    raise DataError(
        f"{path}: no category has 'keypoints' and none is named 'person'; a COCO keypoint file needs "
        "a person category such as {'id': 1, 'name': 'person', 'keypoints': [...]}"
    )


def detect_layout(category: dict, annotations: list[dict], path: Path, layout: str | None) -> KeypointLayout:
    """The layout named by `layout`, else the one whose joint names (or count) the file declares."""
    names = category.get("keypoints") or []
    if names:
        count = len(names)
    else:
        lengths = {len(a["keypoints"]) for a in annotations if isinstance(a.get("keypoints"), list)}
        if len(lengths) != 1 or next(iter(lengths)) % 3:
            raise DataError(
                f"{path}: the person category lists no keypoint names and annotation keypoint lengths are "
                f"{sorted(lengths)}; add 'keypoints' names to the category or pass layout='coco'|'crowdpose'"
            )
        count = next(iter(lengths)) // 3
    if layout is not None:
        try:
            chosen = get_layout(layout)
        except ValueError as error:
            raise ConfigError(f"layout: {error}") from error
        if chosen.num_keypoints != count:
            raise DataError(
                f"{path}: layout {layout!r} has {chosen.num_keypoints} joints but the file has {count}; "
                "pass the layout that matches the file (or leave layout=None to detect it)"
            )
        return chosen
    for candidate in LAYOUTS.values():
        if candidate.num_keypoints != count:
            continue
        if not names or [_normalise_name(n) for n in names] == [_normalise_name(n) for n in candidate.joints]:
            return candidate
        raise DataError(
            f"{path}: {count} keypoints named {names} do not match the {candidate.name} layout "
            f"{list(candidate.joints)}; reorder the file's joints or pass layout={candidate.name!r} to "
            "use it anyway"
        )
    raise DataError(
        f"{path}: {count} keypoints per person; supported layouts are COCO-17 and CrowdPose-14"
    )


def validate_coco(data: Any, path: Path) -> None:
    """Structural checks of a COCO keypoint file (what pycocotools would choke on later)."""
    if not isinstance(data, dict):
        kind = "a list (COCO results / detections?)" if isinstance(data, list) else type(data).__name__
        raise DataError(
            f"{path}: expected a COCO annotation object with 'images', 'annotations' and 'categories', "
            f"got {kind}; pass the person_keypoints*.json ground-truth file"
        )
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DataError(
            f"{path}: missing or non-list COCO field(s) {missing}; a keypoint annotation file needs "
            "'images', 'annotations' and 'categories' lists"
        )
    for image in data["images"]:
        absent = [k for k in ("id", "file_name", "width", "height") if not isinstance(image, dict) or k not in image]
        if absent:
            raise DataError(f"{path}: image entry {str(image)[:120]} lacks {absent}; every image needs them")
    image_ids = {image["id"] for image in data["images"]}
    for ann in data["annotations"]:
        absent = [k for k in ("id", "image_id", "category_id") if not isinstance(ann, dict) or k not in ann]
        if absent:
            raise DataError(f"{path}: annotation {str(ann)[:120]} lacks {absent}")
        if ann["image_id"] not in image_ids:
            raise DataError(f"{path}: annotation {ann['id']} refers to image_id {ann['image_id']}, "
                            "which is not in 'images'")


def check_keypoint_lengths(annotations: list[dict], category_id: int, num_joints: int, path: Path) -> None:
    """Every non-crowd person annotation carries 3 * K keypoint numbers."""
    for ann in annotations:
        if ann.get("category_id") != category_id or ann.get("iscrowd", 0):
            continue
        keypoints = ann.get("keypoints")
        if not isinstance(keypoints, list) or len(keypoints) != 3 * num_joints:
            got = f"length {len(keypoints)}" if isinstance(keypoints, list) else f"type {type(keypoints).__name__}"
            raise DataError(
                f"{path}: annotation {ann['id']} has 'keypoints' of {got}, expected a list of "
                f"{3 * num_joints} numbers ({num_joints} joints x (x, y, v)); fix or remove it"
            )


def load_coco_object(data: dict, layout: KeypointLayout) -> Any:
    """A pycocotools COCO index over already-checked data (xtcocotools for CrowdPose, which its
    'keypoints_crowd' evaluation needs). The libraries' progress prints are silenced."""
    if layout.name == "crowdpose":
        from xtcocotools.coco import COCO
    else:
        from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def gt_box_samples(
    coco: Any, category_id: int, image_ids: list[int], num_joints: int, aspect_ratio: float, path: Path
) -> BoxSamples:
    """mmpose `_load_coco_keypoint_annotation_kernel`: one sample per non-crowd person with keypoints.

    Boxes are clipped to the image; annotations with area 0 or nothing left after clipping are
    dropped (and counted in `stats`); keypoint visibility is clipped to {0, 1}.
    """
    rows: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    stats = {"annotations": 0, "crowd": 0, "no_keypoints": 0, "zero_area_boxes": 0, "images_without_people": 0}
    for image_index, image_id in enumerate(image_ids):
        info = coco.imgs[image_id]
        kept_here = 0
        for ann in coco.imgToAnns.get(image_id, []):
            if ann.get("category_id") != category_id:
                continue
            stats["annotations"] += 1
            if ann.get("iscrowd", 0):
                stats["crowd"] += 1
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) < 4:
                raise DataError(f"{path}: annotation {ann['id']} has no 'bbox' [x, y, w, h]; add one")
            keypoints = np.asarray(ann["keypoints"], dtype=np.float64).reshape(num_joints, 3)
            if keypoints.max() <= 0 or ann.get("num_keypoints", 1) == 0:
                stats["no_keypoints"] += 1
                continue
            clean = clip_box_xywh(np.asarray(bbox, dtype=np.float64), info["width"], info["height"])
            if clean is None or ann.get("area", 1) <= 0:
                stats["zero_area_boxes"] += 1
                continue
            keypoints[:, 2] = np.minimum(1.0, keypoints[:, 2])
            scores = ann.get("keypoint_scores")
            scores = (np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
                      if isinstance(scores, list) and len(scores) == num_joints else np.ones(num_joints))
            rows.append((image_index, int(ann["id"]), clean, keypoints, scores))
            kept_here += 1
        stats["images_without_people"] += kept_here == 0
    boxes = np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4)
    center, scale = box_to_center_scale(boxes, aspect_ratio)
    return BoxSamples(
        image_index=np.array([r[0] for r in rows], dtype=np.int64),
        ann_id=np.array([r[1] for r in rows], dtype=np.int64),
        center=center, scale=scale,
        box_score=np.ones(len(rows), dtype=np.float64),
        keypoints=np.array([r[3] for r in rows], dtype=np.float64).reshape(-1, num_joints, 3),
        stats=stats,
        keypoint_scores=np.array([r[4] for r in rows], dtype=np.float64).reshape(-1, num_joints),
    )


def detection_box_samples(
    det_path: Path, image_ids: list[int], category_id: int, num_joints: int, aspect_ratio: float,
    score_threshold: float,
) -> BoxSamples:
    """mmpose `_load_coco_person_detection_results`: one sample per person detection above the threshold.

    The file must be COCO results format: a list of {image_id, category_id, bbox: [x, y, w, h], score}.
    Detections of other categories are skipped, zero-area boxes dropped (both counted in `stats`).
    """
    data = read_json(det_path, "detections file")
    if isinstance(data, dict):
        raise DataError(
            f"{det_path}: expected COCO results format (a JSON list of {{image_id, bbox, score}}), got an "
            f"object with keys {sorted(data)[:6]}; is this a ground-truth file? pass it as ann_file instead"
        )
    if not isinstance(data, list):
        raise DataError(f"{det_path}: expected a JSON list of detections, got {type(data).__name__}")
    index_of = {image_id: i for i, image_id in enumerate(image_ids)}
    stats = {"detections": len(data), "other_category": 0, "below_threshold": 0, "zero_area_boxes": 0}
    unknown_images: set = set()
    rows: list[tuple[int, np.ndarray, float]] = []
    for position, det in enumerate(data):
        bbox = det.get("bbox") if isinstance(det, dict) else None
        score = det.get("score") if isinstance(det, dict) else None
        if (not isinstance(det, dict) or "image_id" not in det or not isinstance(bbox, list) or len(bbox) != 4
                or not isinstance(score, (int, float))):
            raise DataError(
                f"{det_path}: entry {position} ({str(det)[:120]}) is not a COCO detection result; each entry "
                "needs 'image_id', 'bbox' [x, y, w, h] and a numeric 'score'"
            )
        if det.get("category_id", category_id) != category_id:
            stats["other_category"] += 1
            continue
        if score < score_threshold:
            stats["below_threshold"] += 1
            continue
        if det["image_id"] not in index_of:
            unknown_images.add(det["image_id"])
            continue
        if not (bbox[2] > 0 and bbox[3] > 0):
            stats["zero_area_boxes"] += 1
            continue
        rows.append((index_of[det["image_id"]], np.asarray(bbox, dtype=np.float64), float(score)))
    if unknown_images:
        shown = sorted(unknown_images, key=str)[:5]
        raise DataError(
            f"{det_path}: {len(unknown_images)} detected image_id(s) are not in the annotation file "
            f"(e.g. {shown}); use the detections made for this annotation file"
        )
    boxes = np.array([r[1] for r in rows], dtype=np.float64).reshape(-1, 4)
    center, scale = box_to_center_scale(boxes, aspect_ratio)
    return BoxSamples(
        image_index=np.array([r[0] for r in rows], dtype=np.int64),
        ann_id=np.full(len(rows), -1, dtype=np.int64),
        center=center, scale=scale,
        box_score=np.array([r[2] for r in rows], dtype=np.float64),
        keypoints=np.zeros((len(rows), num_joints, 3), dtype=np.float64),
        stats=stats,
    )
