"""Reading the two inputs of crowd synthesis: base pictures with their people, and donor people with
their polygon masks (cut out of their pictures). Every problem raises a DataError naming the file.

The rules are stated in `sdpose_core.data.crowd_synthesis`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sdpose_core.data import crowd_paste as paste
from sdpose_core.data.annotations import detect_layout, person_category, read_json, validate_coco
from sdpose_core.errors import DataError
from sdpose_core.keypoints import COCO17
from sdpose_core.media.images import load_image

MIN_DONOR_KEYPOINTS = 8
MIN_ANCHOR_HEIGHT = 48.0
MIN_ANCHOR_KEYPOINTS = 4

@dataclass
class Donor:
    ann_id: int
    image_id: int
    image_path: Path
    image_hw: tuple[int, int]
    keypoints: np.ndarray  # (17, 3) image pixels
    box: np.ndarray  # xywh
    segmentation: list
    size: tuple[float | None, float | None, float]  # paste.person_size


@dataclass
class BaseImage:
    entry: dict
    path: Path
    people: list[dict]  # non-crowd annotations with labelled keypoints


def polygon_mask(segmentation: Any, image_hw: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of a COCO segmentation: polygons, uncompressed or compressed RLE."""
    height, width = image_hw
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def encode_mask(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _read_person_file(path: Path, what: str) -> tuple[dict, dict]:
    data = read_json(path, what)
    validate_coco(data, path)
    category = person_category(data["categories"], path)
    people = [a for a in data["annotations"] if a.get("category_id") == category["id"]]
    layout = detect_layout(category, people, path, None)
    if layout.name != COCO17.name:
        raise DataError(f"{path}: crowd synthesis needs COCO-17 keypoints, the file has the {layout.name} "
                        "layout; convert it or pass a COCO keypoint file")
    return data, category


def keypoints_of(ann: dict, path: Path) -> np.ndarray:
    values = ann.get("keypoints")
    if not isinstance(values, list) or len(values) != 3 * COCO17.num_keypoints:
        raise DataError(f"{path}: annotation {ann.get('id')} has no list of 51 'keypoints' numbers; fix or remove it")
    return np.asarray(values, dtype=np.float64).reshape(COCO17.num_keypoints, 3)


def _image_table(data: dict, images_dir: Path, path: Path, image_ids: set) -> dict[int, tuple[Path, dict]]:
    table = {}
    missing = []
    for entry in data["images"]:
        if entry["id"] not in image_ids:
            continue
        file = images_dir / entry["file_name"]
        if not file.is_file():
            missing.append(str(file))
        table[entry["id"]] = (file, entry)
    if missing:
        raise DataError(f"{path}: {len(missing)} image file(s) it names are missing, e.g. {missing[:3]}; "
                        f"pass the images folder that its 'file_name's are relative to")
    return table


def load_donors(donor_ann: str | os.PathLike, donor_images: str | os.PathLike,
                exclude_image_ids: Collection[int] = ()) -> list[Donor]:
    """The usable donor people (rules in crowd_synthesis); DataError naming the file when none are."""
    path, images_dir = Path(donor_ann), Path(donor_images)
    data, category = _read_person_file(path, "donor annotation file")
    excluded = {int(i) for i in exclude_image_ids}
    candidates, without_polygon = [], 0
    for ann in data["annotations"]:
        if ann.get("category_id") != category["id"] or ann.get("iscrowd", 0):
            continue
        keypoints = keypoints_of(ann, path)
        if (keypoints[:, 2] > 0).sum() < MIN_DONOR_KEYPOINTS:
            continue
        segmentation = ann.get("segmentation")
        if not (isinstance(segmentation, list) and segmentation and all(len(p) >= 6 for p in segmentation)):
            without_polygon += 1
            continue
        if ann["image_id"] not in excluded:
            candidates.append((ann, keypoints, segmentation))
    if not candidates:
        why = (f"all {without_polygon} people with >= {MIN_DONOR_KEYPOINTS} labelled joints lack a polygon "
               "'segmentation'" if without_polygon else
               f"no non-crowd person with >= {MIN_DONOR_KEYPOINTS} labelled joints and a polygon 'segmentation' "
               f"is left (excluded image ids: {len(excluded)})")
        raise DataError(f"donor annotation file {path}: {why}; donors are cut out with their polygon masks, "
                        "so pass a COCO keypoint file with segmentation polygons (e.g. coco_mini_train)")
    table = _image_table(data, images_dir, path, {ann["image_id"] for ann, _, _ in candidates})
    donors = []
    for ann, keypoints, segmentation in candidates:
        file, entry = table[ann["image_id"]]
        box = np.asarray(ann["bbox"], dtype=np.float64)
        donors.append(Donor(
            ann_id=int(ann["id"]), image_id=int(ann["image_id"]), image_path=file,
            image_hw=(int(entry["height"]), int(entry["width"])), keypoints=keypoints, box=box,
            segmentation=segmentation, size=paste.person_size(keypoints, box)))
    return donors


def cut_out(donor: Donor) -> paste.Cutout:
    """The donor's pixels and polygon mask inside its mask's box (plus a small margin)."""
    image = load_image(donor.image_path)
    if image.shape[:2] != donor.image_hw:
        raise DataError(f"{donor.image_path}: decoded size {image.shape[:2]} differs from the annotation file's "
                        f"{donor.image_hw}; use the images the donor file was made for")
    mask = polygon_mask(donor.segmentation, donor.image_hw)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise DataError(f"donor annotation {donor.ann_id}: its polygon covers no pixel of {donor.image_path}")
    margin = paste.CUTOUT_MARGIN
    x0, y0 = max(0, xs.min() - margin), max(0, ys.min() - margin)
    x1, y1 = min(mask.shape[1], xs.max() + margin + 1), min(mask.shape[0], ys.max() + margin + 1)
    keypoints = donor.keypoints.copy()
    keypoints[:, :2] -= (x0, y0)
    keypoints[donor.keypoints[:, 2] <= 0] = 0.0
    return paste.Cutout(
        rgb=np.ascontiguousarray(image[y0:y1, x0:x1]), mask=mask[y0:y1, x0:x1].astype(np.float32),
        keypoints=keypoints,
        mask_box=np.array([xs.min() - x0, ys.min() - y0, xs.max() - x0, ys.max() - y0], dtype=np.float64))


def load_base(base_ann: str | os.PathLike, base_images: str | os.PathLike) -> tuple[list[BaseImage], dict]:
    """Base pictures with at least one anchor-able person, and the file's `info`."""
    path, images_dir = Path(base_ann), Path(base_images)
    data, category = _read_person_file(path, "base annotation file")
    people: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if ann.get("category_id") != category["id"] or ann.get("iscrowd", 0):
            continue
        if "keypoints" not in ann or not (keypoints_of(ann, path)[:, 2] > 0).any():
            continue
        if not isinstance(ann.get("bbox"), list) or len(ann["bbox"]) != 4:
            raise DataError(f"{path}: annotation {ann['id']} has no 'bbox' [x, y, w, h]; add one")
        people.setdefault(ann["image_id"], []).append(ann)
    usable = {image_id for image_id, anns in people.items() if any(can_anchor(a, path) for a in anns)}
    if not usable:
        raise DataError(f"base annotation file {path}: no person with keypoints whose box is >= "
                        f"{MIN_ANCHOR_HEIGHT:.0f} px high with >= {MIN_ANCHOR_KEYPOINTS} labelled joints; "
                        "pass a COCO keypoint file of people to paste next to")
    table = _image_table(data, images_dir, path, usable)
    bases = [BaseImage(entry=entry, path=file, people=people[image_id])
             for image_id, (file, entry) in sorted(table.items(), key=lambda item: str(item[0]))]
    return bases, data.get("info") or {}


def can_anchor(ann: dict, path: Path) -> bool:
    keypoints = keypoints_of(ann, path)
    return ann["bbox"][3] >= MIN_ANCHOR_HEIGHT and (keypoints[:, 2] > 0).sum() >= MIN_ANCHOR_KEYPOINTS
