"""Pixel-level pieces of crowd synthesis: donor cut-outs, placement, body-region masks, compositing.

`crowd_synthesis` (the public entry point, whose docstring states the rules) drives these. Coordinates
follow the rest of the project: continuous, pixel centres at integers (cv2 convention), so a 2x3
affine `M` moves a keypoint exactly where `cv2.warpAffine(..., M)` moves the pixel under it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sdpose_core.keypoints import COCO17

SCALE_JITTER = (0.7, 1.2)  # donor size relative to the anchor person's, uniform
IOU_RANGE = (0.1, 0.6)  # target IoU of the donor's and the anchor's boxes, uniform
VERTICAL_JITTER = 0.08  # of the anchor's box height
MAX_UPSCALE = 2.0  # donors that would have to grow more than this are not drawn (blurry)
MAX_EXTENT = 1.5  # the pasted box's longer side is at most this times the anchor box's
MIN_IN_IMAGE = 0.6  # fraction of the pasted box that must lie inside the image
MIN_VISIBLE_BEHIND = 0.4  # fraction of a "behind" donor's mask that must stay visible
ALPHA_ON = 0.5  # an alpha (or mask) value above this is a pixel of the person
FEATHER_SIGMA = (0.7, 0.004)  # Gaussian sigma of the mask edge: max(a, b * pasted height) px
BODY_LIMB_WIDTH = 0.12  # body-region limb thickness and head radius, times sqrt(box w * h)
TONE_STRENGTH = 0.5  # a donor's brightness moves this far (log scale) toward its new surroundings
TONE_GAIN_RANGE = (0.6, 1.6)
CUTOUT_MARGIN = 4  # px of context kept around a donor's mask so that warping has clean edges

_SHOULDERS, _HIPS = (5, 6), (11, 12)
_HEAD = (0, 1, 2, 3, 4)


@dataclass
class Cutout:
    """A donor person cut from its image: RGB and polygon mask of its box, keypoints in crop pixels."""

    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) float32 in {0, 1}
    keypoints: np.ndarray  # (17, 3) x, y in crop pixels, v
    mask_box: np.ndarray  # (x0, y0, x1, y1) extent of the mask in crop pixels (inclusive)


@dataclass
class Placement:
    """Where and how one donor goes into the picture."""

    matrix: np.ndarray  # (2, 3) crop pixels -> image pixels
    flipped: bool
    front: bool  # in front of the base people (else behind them)
    scale: float


@dataclass
class Layer:
    """A warped donor: its region of the image, colours, feathered alpha and the hard full mask."""

    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in the image
    rgb: np.ndarray  # (roi h, roi w, 3) float32
    alpha: np.ndarray  # (roi h, roi w) float32 in [0, 1]
    keypoints: np.ndarray  # (17, 3) in image pixels; v=0 joints and joints outside the image are (0, 0, 0)


def _distance(keypoints: np.ndarray, first: tuple[int, ...], second: tuple[int, ...]) -> float | None:
    """Distance between the mean of the labelled joints of two groups; None when a group has none."""
    a = [j for j in first if keypoints[j, 2] > 0]
    b = [j for j in second if keypoints[j, 2] > 0]
    if not a or not b:
        return None
    return float(np.hypot(*(keypoints[b, :2].mean(axis=0) - keypoints[a, :2].mean(axis=0)))) or None


def person_size(keypoints: np.ndarray, box_xywh: np.ndarray) -> tuple[float | None, float | None, float]:
    """(torso length, shoulder width, box height): the measures that match a donor to an anchor, from
    the steadiest to the least steady (a box may hold half a person); None where joints are missing."""
    return (_distance(keypoints, _SHOULDERS, _HIPS), _distance(keypoints, (5,), (6,)), float(box_xywh[3]))


def size_ratio(anchor: tuple[float | None, ...], donor: tuple[float | None, ...]) -> float:
    """How much the donor must grow to match the anchor, by the first measure both people have."""
    for mine, theirs in zip(anchor, donor, strict=True):
        if mine is not None and theirs is not None:
            return mine / max(theirs, 1.0)
    raise AssertionError("the box height is always there")


def _level(keypoints: np.ndarray, group: tuple[int, ...]) -> float:
    labelled = [j for j in group if keypoints[j, 2] > 0]
    return float(keypoints[labelled, 1].mean())


def matching_heights(
    donor_keypoints: np.ndarray, donor_box: np.ndarray, anchor_keypoints: np.ndarray, anchor_box: np.ndarray
) -> tuple[float, float]:
    """(donor y, anchor y) of the same body level: mid-hip when both have a hip labelled, else
    mid-shoulder, else the box centres; lining these up puts the two people side by side."""
    for group in (_HIPS, _SHOULDERS):
        if (donor_keypoints[list(group), 2] > 0).any() and (anchor_keypoints[list(group), 2] > 0).any():
            return _level(donor_keypoints, group), _level(anchor_keypoints, group)
    return float(donor_box[1] + donor_box[3] / 2), float(anchor_box[1] + anchor_box[3] / 2)


def plan_placement(
    rng: np.random.Generator, cutout: Cutout, anchor_keypoints: np.ndarray, anchor_box: np.ndarray,
    scale: float, image_hw: tuple[int, int],
) -> Placement | None:
    """Flip, depth and offset for one donor next to the anchor; None when it would mostly leave the image."""
    flipped = bool(rng.random() < 0.5)
    front = bool(rng.random() < 0.5)
    x0, y0, x1, y1 = cutout.mask_box
    donor_box = np.array([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dtype=np.float64)
    donor_y, anchor_y = matching_heights(cutout.keypoints, donor_box, anchor_keypoints, anchor_box)
    anchor_y += rng.uniform(-VERTICAL_JITTER, VERTICAL_JITTER) * anchor_box[3]
    ty = anchor_y - scale * donor_y
    height = scale * donor_box[3]
    width = scale * donor_box[2]
    top = ty + scale * y0
    # horizontal offset: the left edge that gives the sampled IoU on the sampled side
    target_iou = rng.uniform(*IOU_RANGE)
    side = 1.0 if rng.random() < 0.5 else -1.0
    ax, ay, aw, ah = anchor_box
    lefts = np.linspace(ax - width, ax + aw, 256)
    overlap_w = np.clip(np.minimum(lefts + width, ax + aw) - np.maximum(lefts, ax), 0, None)
    overlap_h = max(0.0, min(top + height, ay + ah) - max(top, ay))
    inter = overlap_w * overlap_h
    iou = inter / (width * height + aw * ah - inter)
    on_side = side * ((lefts + width / 2) - (ax + aw / 2)) >= 0
    left = float(lefts[on_side][np.argmin(np.abs(iou[on_side] - target_iou))])
    inside_w = max(0.0, min(left + width, image_hw[1]) - max(left, 0.0))
    inside_h = max(0.0, min(top + height, image_hw[0]) - max(top, 0.0))
    if inside_w * inside_h < MIN_IN_IMAGE * width * height:
        return None
    a = -scale if flipped else scale
    # the mask box's left edge lands on `left`: x1 when mirrored, x0 otherwise
    tx = left - a * (x1 if flipped else x0)
    matrix = np.array([[a, 0.0, tx], [0.0, scale, ty]], dtype=np.float64)
    return Placement(matrix=matrix, flipped=flipped, front=front, scale=scale)


def transform_keypoints(keypoints: np.ndarray, placement: Placement, image_hw: tuple[int, int]) -> np.ndarray:
    """Donor keypoints in image pixels (left/right swapped when mirrored); unlabelled joints and joints
    that land outside the image become (0, 0, 0)."""
    moved = keypoints.copy()
    moved[:, :2] = keypoints[:, :2] @ placement.matrix[:, :2].T + placement.matrix[:, 2]
    if placement.flipped:
        moved = moved[COCO17.flip_index()]
    height, width = image_hw
    inside = (moved[:, 0] >= 0) & (moved[:, 0] <= width - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= height - 1)
    moved[~(inside & (moved[:, 2] > 0))] = 0.0
    return moved


def warp_layer(cutout: Cutout, placement: Placement, image_hw: tuple[int, int]) -> Layer | None:
    """The donor warped into the region of the image it covers; None when that region is empty."""
    matrix = placement.matrix
    h, w = cutout.mask.shape
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    moved = corners @ matrix[:, :2].T + matrix[:, 2]
    x0 = max(0, int(np.floor(moved[:, 0].min())))
    y0 = max(0, int(np.floor(moved[:, 1].min())))
    x1 = min(image_hw[1], int(np.ceil(moved[:, 0].max())) + 1)
    y1 = min(image_hw[0], int(np.ceil(moved[:, 1].max())) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    local = matrix.copy()
    local[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    source = cutout.rgb
    if placement.scale < 0.7:  # anti-alias before shrinking; the geometry is unchanged
        source = cv2.GaussianBlur(source, (0, 0), 0.4 / placement.scale)
    rgb = cv2.warpAffine(source, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(cutout.mask, local, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    sigma = max(FEATHER_SIGMA[0], FEATHER_SIGMA[1] * placement.scale * h)
    alpha = cv2.GaussianBlur(mask, (0, 0), sigma)
    return Layer(roi=(x0, y0, x1, y1), rgb=rgb.astype(np.float32), alpha=alpha,
                 keypoints=transform_keypoints(cutout.keypoints, placement, image_hw))


def match_tone(layer: Layer, image: np.ndarray) -> float:
    """Brighten or darken the donor part-way toward the mean brightness of the picture region it is
    pasted into, so that a sunlit person does not glow in a dark bar. Changes `layer.rgb`; returns the gain."""
    x0, y0, x1, y1 = layer.roi
    body = layer.alpha > ALPHA_ON
    if body.sum() < 16:
        return 1.0
    surroundings = float(image[y0:y1, x0:x1].mean())
    donor = float(layer.rgb[body].mean())
    gain = float(np.clip(((surroundings + 1.0) / (donor + 1.0)) ** TONE_STRENGTH, *TONE_GAIN_RANGE))
    layer.rgb *= gain
    np.clip(layer.rgb, 0.0, 255.0, out=layer.rgb)
    return gain


def layer_mask(layer: Layer, image_hw: tuple[int, int]) -> np.ndarray:
    """Full-image boolean mask of the pixels the layer's person covers (before anything hides it)."""
    mask = np.zeros(image_hw, dtype=bool)
    x0, y0, x1, y1 = layer.roi
    mask[y0:y1, x0:x1] = layer.alpha > ALPHA_ON
    return mask


def body_region_mask(keypoints: np.ndarray, box_xywh: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Where a person without a segmentation mask is, from its labelled joints: thick limbs along the
    COCO skeleton, the shoulder-hip polygon filled, and a disc over the head joints. Boolean (H, W)."""
    canvas = np.zeros(image_hw, dtype=np.uint8)
    labelled = keypoints[:, 2] > 0
    if not labelled.any():
        return canvas.astype(bool)
    width = max(2, int(round(BODY_LIMB_WIDTH * np.sqrt(max(box_xywh[2] * box_xywh[3], 1.0)))))
    points = np.round(keypoints[:, :2]).astype(np.int32)
    for a, b in COCO17.skeleton:
        if labelled[a] and labelled[b]:
            cv2.line(canvas, tuple(points[a].tolist()), tuple(points[b].tolist()), 1, width)
    torso = [j for j in (5, 6, 12, 11) if labelled[j]]
    if len(torso) >= 3:
        cv2.fillConvexPoly(canvas, cv2.convexHull(points[torso]), 1)
    head = [j for j in _HEAD if labelled[j]]
    if head:
        centre = np.round(keypoints[head, :2].mean(axis=0)).astype(int)
        cv2.circle(canvas, tuple(centre.tolist()), width, 1, -1)
    for j in np.flatnonzero(labelled):
        cv2.circle(canvas, tuple(points[j].tolist()), width // 2, 1, -1)
    return canvas.astype(bool)


def occlude_keypoints(keypoints: np.ndarray, occluder: np.ndarray) -> tuple[np.ndarray, int]:
    """Visible joints (v=2) that fall on an occluder's pixel become labelled-but-occluded (v=1).

    Returns the updated copy and how many joints flipped. v=1 and v=0 joints are left as they are."""
    updated = np.array(keypoints, dtype=np.float64, copy=True)
    height, width = occluder.shape
    xs = np.clip(np.round(updated[:, 0]).astype(int), 0, width - 1)
    ys = np.clip(np.round(updated[:, 1]).astype(int), 0, height - 1)
    hidden = (updated[:, 2] == 2) & occluder[ys, xs]
    updated[hidden, 2] = 1
    return updated, int(hidden.sum())


def composite(image: np.ndarray, layer: Layer, hide: np.ndarray | None = None) -> np.ndarray:
    """Alpha-blend a layer onto `image` (float32 (H, W, 3), changed in place); where `hide` (a soft
    full-image mask in [0, 1] of something in front of the layer) is on, the layer is not painted.
    Returns the layer's effective alpha within its region."""
    x0, y0, x1, y1 = layer.roi
    alpha = layer.alpha if hide is None else layer.alpha * (1.0 - hide[y0:y1, x0:x1])
    region = image[y0:y1, x0:x1]
    region += alpha[..., None] * (layer.rgb - region)
    return alpha
