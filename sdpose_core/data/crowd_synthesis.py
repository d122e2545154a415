"""Crowd synthesis: real COCO people pasted beside the people of other pictures, for crowded training crops.

    json_path = synthesize_crowds(base_ann, base_images, donor_ann, donor_images, out_dir, count=500, seed=0)

writes `out_dir/images/crowd_NNNNNN.jpg` and `out_dir/person_keypoints.json` (COCO-17 keypoint format,
pycocotools-readable) so that top-down crops contain overlapping people, as CrowdPose's do.

Rules (the numbers live in `crowd_paste` and are recorded in the JSON's `info.rules`):
- Base pictures: every image of the base file with at least one non-crowd person with labelled
  keypoints; they are used in a seeded random order, cycling when `count` exceeds them. Every base
  person with keypoints is kept (visibility updated); crowd regions and people without keypoints are
  dropped. One base person (box >= 48 px high, >= 4 labelled joints) is the anchor of the pastes.
- Donors: non-crowd people of the donor file with a polygon segmentation and >= 8 labelled joints,
  except those whose image id is excluded or whose image is the base picture itself. A donor is cut
  out with its polygon mask, mirrored with probability 1/2 (left/right joints swapped), scaled to the
  anchor's size (by the first measure both have: torso length, shoulder width, box height) times a
  uniform 0.7-1.2, never enlarged more than 2x (donors that would be are not drawn), its box's longer
  side at most 1.5x the anchor box's (else shrunk to that), put at the
  anchor's hip (else shoulder, else box-centre) height +- 8 % of its box height, and shifted sideways
  to the left or right so that the IoU of the two boxes is a uniform 0.1-0.6. Placements with less
  than 60 % of the donor inside the picture, or fewer than 3 labelled joints inside it, are redrawn
  (up to 8 tries, then that paste is skipped). Up to `max_pasted` donors (uniform 1..max_pasted), no
  donor twice in one picture. A donor's brightness is moved half-way (in log scale) toward the mean
  of the picture region it is pasted into (gain clipped to 0.6-1.6), so it does not glow in a dark room.
- Depth: each donor goes in FRONT of the base people or BEHIND them (probability 1/2). Back to front:
  behind-donors in paste order, then the base picture's people, then front-donors in paste order.
  Pixels are alpha-blended in that order with the donor's mask feathered by a small Gaussian.
  A base person has no mask in a pseudo-labelled file, so its body region is drawn from its joints
  (limbs as thick lines, the shoulder-hip polygon, a disc over the head; a COCO polygon is used
  instead when the base file has one): behind-donors are not painted there. A behind-donor that
  this would hide by more than 60 % is redrawn.
- Visibility from depth: a joint with v=2 that falls on a pixel of someone nearer (a later front
  donor's mask, the base people's body regions for behind-donors) becomes v=1 (labelled, occluded).
  v=1 and v=0 stay. Donor joints that land outside the picture become (0, 0, 0).
- Donor annotations: bbox = extent of the pasted mask inside the picture (hidden parts included, so
  the top-down crop holds the whole person); area and `segmentation` (RLE) = the pixels that stay
  visible. Base annotations keep their bbox; a base polygon becomes the RLE of what stays visible
  (area updated), without a polygon the file's area is kept.
- Determinism: picture i draws from numpy's generator seeded with (seed, i); the same arguments give
  the same JSON and the same JPEG bytes (the JSON records no date for that reason).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sdpose_core.data import crowd_paste as paste
from sdpose_core.data.crowd_sources import (
    MIN_ANCHOR_HEIGHT,
    MIN_ANCHOR_KEYPOINTS,
    MIN_DONOR_KEYPOINTS,
    BaseImage,
    Donor,
    can_anchor,
    cut_out,
    encode_mask,
    keypoints_of,
    load_base,
    load_donors,
    polygon_mask,
)
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import COCO17
from sdpose_core.media.images import load_image
from sdpose_core.paths import data_root

logger = logging.getLogger(__name__)

OUTPUT_NAME = "person_keypoints.json"
DEFAULT_DONOR_SPLIT = "coco/coco_mini_train"  # under the shared data root: real COCO people with masks
MIN_PASTED_KEYPOINTS = 3
PLACEMENT_TRIES = 8
JPEG_QUALITY = 95


class _DonorPool:
    """Draws donors for an anchor and keeps their cut-outs (each donor image is read once)."""

    def __init__(self, donors: list[Donor]) -> None:
        self.donors = donors
        self._files = [d.image_path.resolve() for d in donors]
        self._cutouts: dict[int, paste.Cutout] = {}

    def cutout(self, index: int) -> paste.Cutout:
        if index not in self._cutouts:
            self._cutouts[index] = cut_out(self.donors[index])
        return self._cutouts[index]

    def draw(self, rng: np.random.Generator, anchor_keypoints: np.ndarray, anchor_box: np.ndarray,
             base_path: Path, used: Collection[int]) -> tuple[int, float] | None:
        """(donor index, scale): uniform over donors not yet `used` in this picture whose jittered scale
        stays <= MAX_UPSCALE; the least-enlarged such donor when none does. The pasted box's longer side
        is capped at MAX_EXTENT times the anchor box's (a person lying down would otherwise fill the picture)."""
        jitter = rng.uniform(*paste.SCALE_JITTER)
        anchor_size = paste.person_size(anchor_keypoints, anchor_box)
        longest = paste.MAX_EXTENT * max(anchor_box[2], anchor_box[3])
        scales = np.array([min(paste.size_ratio(anchor_size, d.size) * jitter, longest / max(d.box[2], d.box[3], 1.0))
                           for d in self.donors])
        base_file = base_path.resolve()
        allowed = np.array([file != base_file and i not in used for i, file in enumerate(self._files)])
        if not allowed.any():
            return None
        eligible = np.flatnonzero(allowed & (scales <= paste.MAX_UPSCALE))
        if eligible.size == 0:
            index = int(np.flatnonzero(allowed)[np.argmin(scales[allowed])])
        else:
            index = int(rng.choice(eligible))
        return index, float(scales[index])


def _person_annotation(keypoints: np.ndarray, box: list[float], area: float, extra: dict) -> dict:
    flat: list[float] = []
    for x, y, v in keypoints:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {"category_id": 1, "iscrowd": 0, "bbox": [round(float(b), 2) for b in box], "area": round(float(area), 2),
            "num_keypoints": int((keypoints[:, 2] > 0).sum()), "keypoints": flat, **extra}


def synthesize_image(
    base: BaseImage, pool: _DonorPool, rng: np.random.Generator, max_pasted: int, counts: dict[str, int]
) -> tuple[np.ndarray, list[dict]]:
    """One synthesized picture (uint8 RGB) and its person annotations (without ids), by the rules above."""
    image = load_image(base.path)
    hw = (int(base.entry["height"]), int(base.entry["width"]))
    if image.shape[:2] != hw:
        raise DataError(f"{base.path}: decoded size {image.shape[:2]} differs from the base file's {hw}; "
                        "use the images the base annotation file was made for")
    keypoints = [keypoints_of(ann, base.path) for ann in base.people]
    boxes = [np.asarray(ann["bbox"], dtype=np.float64) for ann in base.people]
    polygons = [ann.get("segmentation") if isinstance(ann.get("segmentation"), (list, dict)) and ann.get("segmentation")
                else None for ann in base.people]
    regions = [polygon_mask(seg, hw) if seg is not None else paste.body_region_mask(kp, box, hw)
               for seg, kp, box in zip(polygons, keypoints, boxes, strict=True)]
    base_union = np.logical_or.reduce(regions)
    anchors = [i for i, ann in enumerate(base.people) if can_anchor(ann, base.path)]
    anchor = anchors[int(rng.integers(len(anchors)))]
    pasted: list[tuple[paste.Layer, paste.Placement, int]] = []  # donor index
    for _ in range(int(rng.integers(1, max_pasted + 1))):
        for _attempt in range(PLACEMENT_TRIES):
            drawn = pool.draw(rng, keypoints[anchor], boxes[anchor], base.path, {p[2] for p in pasted})
            if drawn is None:
                break
            cutout = pool.cutout(drawn[0])
            placement = paste.plan_placement(rng, cutout, keypoints[anchor], boxes[anchor], drawn[1], hw)
            layer = None if placement is None else paste.warp_layer(cutout, placement, hw)
            if layer is None or (layer.keypoints[:, 2] > 0).sum() < MIN_PASTED_KEYPOINTS:
                continue
            if not placement.front:
                x0, y0, x1, y1 = layer.roi
                body = layer.alpha > paste.ALPHA_ON
                if (body & ~base_union[y0:y1, x0:x1]).sum() < paste.MIN_VISIBLE_BEHIND * body.sum():
                    continue
            paste.match_tone(layer, image)
            pasted.append((layer, placement, drawn[0]))
            break
        else:
            counts["pastes_skipped"] += 1
    # back to front: behind-donors, the base people, front-donors (each group in paste order)
    order = [p for p in pasted if not p[1].front] + [p for p in pasted if p[1].front]
    masks = [paste.layer_mask(layer, hw) for layer, _, _ in order]
    canvas = image.astype(np.float32)
    soft_base = cv2.GaussianBlur(base_union.astype(np.float32), (0, 0), paste.FEATHER_SIGMA[0])
    for layer, placement, _ in order:
        paste.composite(canvas, layer, None if placement.front else soft_base)
    front_union = np.logical_or.reduce([m for m, p in zip(masks, order, strict=True) if p[1].front]
                                       + [np.zeros(hw, dtype=bool)])
    annotations = []
    for ann, kp, seg, box in zip(base.people, keypoints, polygons, boxes, strict=True):
        updated, hidden = paste.occlude_keypoints(kp, front_union)
        counts["base_joints_occluded"] += hidden
        extra = {k: v for k, v in ann.items() if k not in ("id", "image_id", "keypoints", "num_keypoints")}
        area = ann.get("area", box[2] * box[3])
        if seg is not None:
            visible = polygon_mask(seg, hw) & ~front_union
            extra["segmentation"], area = encode_mask(visible), float(visible.sum())
        extra.pop("area", None)
        extra.pop("bbox", None)
        extra["synthesis"] = {"source": "base", "base_ann_id": ann["id"], "anchor": ann is base.people[anchor]}
        annotations.append(_person_annotation(updated, ann["bbox"], area, extra))
    for depth, (layer, placement, donor_index) in enumerate(order):
        donor = pool.donors[donor_index]
        nearer = np.logical_or.reduce(masks[depth + 1:] + [np.zeros(hw, dtype=bool)])
        if not placement.front:
            nearer = nearer | base_union
        updated, hidden = paste.occlude_keypoints(layer.keypoints, nearer)
        counts["pasted_joints_occluded"] += hidden
        counts["pasted_front" if placement.front else "pasted_behind"] += 1
        ys, xs = np.nonzero(masks[depth])
        box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        visible = masks[depth] & ~nearer
        extra = {"segmentation": encode_mask(visible), "synthesis": {
            "source": "donor", "donor_ann_id": donor.ann_id, "donor_image_id": donor.image_id,
            "depth": "front" if placement.front else "behind", "scale": round(placement.scale, 4),
            "mirrored": placement.flipped}}
        annotations.append(_person_annotation(updated, box, float(visible.sum()), extra))
    counts["base_people"] += len(base.people)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), annotations


def _rules() -> dict[str, Any]:
    return {
        "donors": f"non-crowd, polygon segmentation, >= {MIN_DONOR_KEYPOINTS} labelled joints, not excluded, "
                  "not from the base picture, not twice in a picture; mirrored with p=0.5",
        "scale": "anchor torso length (else shoulder width, else box height) / donor's, times uniform "
                 f"{list(paste.SCALE_JITTER)}, at most {paste.MAX_UPSCALE}x enlargement, pasted box's longer side "
                 f"<= {paste.MAX_EXTENT}x the anchor box's",
        "placement": f"anchor hip/shoulder height +- {paste.VERTICAL_JITTER} box heights; box IoU uniform "
                     f"{list(paste.IOU_RANGE)} on a random side; >= {paste.MIN_IN_IMAGE} of the box in the picture",
        "depth": "front or behind the base people with p=0.5; back to front: behind-donors, base people, "
                 "front-donors, each in paste order",
        "base_masks": "COCO polygon when present, else a body region drawn from the joints",
        "tone": f"donor brightness gain = (region mean / donor mean) ** {paste.TONE_STRENGTH}, clipped to "
                f"{list(paste.TONE_GAIN_RANGE)}",
        "visibility": "v=2 joints under a nearer person's pixels become v=1; donor joints outside the picture "
                      "become (0, 0, 0)",
        "donor_bbox": "extent of the pasted mask in the picture; area/segmentation = visible pixels",
        "anchor": f"base person with box >= {MIN_ANCHOR_HEIGHT:.0f} px high and >= {MIN_ANCHOR_KEYPOINTS} joints",
    }


def default_donors() -> tuple[Path, Path]:
    """(annotation file, image folder) of the shared set whose people are pasted when no donors are given."""
    split = data_root() / DEFAULT_DONOR_SPLIT
    return split / OUTPUT_NAME, split / "images"


def synthesize_crowds(
    base_ann: str | Path, base_images: str | Path, donor_ann: str | Path, donor_images: str | Path,
    out_dir: str | Path, count: int, seed: int = 0, max_pasted: int = 2,
    exclude_donor_image_ids: Collection[int] = (),
) -> Path:
    """Write `count` synthesized crowd pictures and their COCO keypoint file into `out_dir` (rules in the
    module docstring); returns the path of `out_dir/person_keypoints.json`."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ConfigError(f"count must be a positive integer (pictures to write), got {count!r}")
    if isinstance(max_pasted, bool) or not isinstance(max_pasted, (int, np.integer)) or max_pasted < 1:
        raise ConfigError(f"max_pasted must be a positive integer (donors per picture), got {max_pasted!r}")
    excluded = sorted({int(i) for i in exclude_donor_image_ids})
    pool = _DonorPool(load_donors(donor_ann, donor_images, excluded))
    bases, base_info = load_base(base_ann, base_images)
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for stale in images_dir.glob("crowd_*.jpg"):  # pictures of an earlier, larger run into the same folder
        stale.unlink()
    counts = dict.fromkeys(("images", "base_people", "pasted_front", "pasted_behind", "pastes_skipped",
                            "base_joints_occluded", "pasted_joints_occluded"), 0)
    order = np.random.default_rng(seed).permutation(len(bases))
    images, annotations = [], []
    for index in range(int(count)):
        base = bases[int(order[index % len(bases)])]
        rng = np.random.default_rng([int(seed), index])
        picture, people = synthesize_image(base, pool, rng, int(max_pasted), counts)
        file_name = f"crowd_{index:06d}.jpg"
        if not cv2.imwrite(str(images_dir / file_name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise DataError(f"could not write {images_dir / file_name}; check that the folder is writable")
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name, "height": picture.shape[0],
                       "width": picture.shape[1], "synthesis": {
                           "base_image_id": base.entry["id"], "base_file_name": base.entry["file_name"]}})
        for person in people:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **person})
        counts["images"] += 1
        if (index + 1) % 100 == 0:
            logger.info("crowd synthesis: %d / %d pictures", index + 1, count)
    info = {
        "description": "SDPose Studio crowd synthesis: real COCO people pasted beside and over the people "
                       "of other pictures (sdpose_core.data.crowd_synthesis)",
        "sources": {
            "base": {"annotations": str(base_ann), "images": str(base_images),
                     "description": base_info.get("description", "")},
            "donors": {"annotations": str(donor_ann), "images": str(donor_images),
                       "people": len(pool.donors), "excluded_image_ids": excluded},
        },
        "seed": int(seed), "count": int(count), "max_pasted": int(max_pasted),
        "rules": _rules(), "counts": counts,
    }
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17.joints),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO17.skeleton]}]
    path = out / OUTPUT_NAME
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps({"info": info, "images": images, "annotations": annotations,
                                   "categories": categories}), encoding="utf-8")
    partial.replace(path)
    return path
