"""TopDownDataset on the real shared data: sizes, crop geometry, targets, flip, half-body and the
determinism of augmentation (input formats and bad input: test_data_errors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sdpose_core.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    TopDownDataset,
    affine_points,
    box_to_center_scale,
    clip_box_xywh,
    collate_topdown,
    get_affine_matrix,
    sample_augmentation,
    sample_rng,
)
from sdpose_core.keypoints import COCO17

SETS = {
    "coco_mini_train": ("coco/coco_mini_train/person_keypoints.json", "coco/coco_mini_train/images"),
    "mmpose_coco": ("coco/mmpose_coco/person_keypoints.json", "coco/mmpose_coco/images"),
    "mmpose_crowdpose": ("crowdpose/mmpose_crowdpose/crowdpose.json", "crowdpose/mmpose_crowdpose/images"),
    "exlpose_lowlight": ("crowdpose/exlpose_lowlight/crowdpose.json", "crowdpose/exlpose_lowlight/images"),
}
# person boxes with keypoints per set (data README: 86 non-crowd with keypoints in coco_mini_train)
EXPECTED_SAMPLES = {"coco_mini_train": 86, "mmpose_coco": 12, "mmpose_crowdpose": 4, "exlpose_lowlight": 6}
EXPECTED_LAYOUT = {"coco_mini_train": "coco", "mmpose_coco": "coco", "mmpose_crowdpose": "crowdpose",
                   "exlpose_lowlight": "crowdpose"}
FLIP_ONLY = AugmentConfig(flip_prob=1.0, shift_prob=0.0, half_body_prob=0.0, scale_factor=0.0,
                          rotation_factor=0.0, rotation_prob=0.0)


def make_dataset(shared_data: Path, name: str, train: bool = False, **kwargs) -> TopDownDataset:
    ann, images = SETS[name]
    return TopDownDataset(shared_data / ann, shared_data / images, train=train, **kwargs)


def mmpose_affine(center, scale, rotation, output_wh):
    """mmpose get_affine_transform (three-point construction), scale in pixels - an independent oracle."""
    src_w, (dst_w, dst_h) = scale[0], output_wh
    rad = np.deg2rad(rotation)
    src_dir = np.array([-(-src_w * 0.5) * np.sin(rad), (-src_w * 0.5) * np.cos(rad)])
    dst_dir = np.array([0.0, -dst_w * 0.5])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center, center + src_dir
    dst[0], dst[1] = [dst_w * 0.5, dst_h * 0.5], np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    for pts in (src, dst):
        direction = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-direction[1], direction[0]])
    return cv2.getAffineTransform(src, dst)


def denormalise(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised RGB -> (H, W, 3) RGB in 0..255."""
    mean = np.asarray(IMAGENET_MEAN)[:, None, None]
    std = np.asarray(IMAGENET_STD)[:, None, None]
    return ((image.numpy() * std + mean) * 255.0).transpose(1, 2, 0)


def raw_person_count(path: Path) -> int:
    data = json.loads(path.read_text())
    return sum(1 for a in data["annotations"]
               if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0 and max(a["keypoints"]) > 0)


@pytest.mark.parametrize("name", list(SETS))
def test_dataset_sizes_match_annotation_counts(shared_data, name):
    for train in (True, False):
        dataset = make_dataset(shared_data, name, train=train)
        assert len(dataset) == EXPECTED_SAMPLES[name] == raw_person_count(shared_data / SETS[name][0])
        assert dataset.layout.name == EXPECTED_LAYOUT[name]
        assert dataset.stats["zero_area_boxes"] == 0
    item = dataset[0]
    k = dataset.layout.num_keypoints
    assert item["image"].shape == (3, 256, 192) and item["image"].dtype == torch.float32
    assert item["target"].shape == (k, 64, 48) and item["target_weight"].shape == (k, 1)
    # CrowdPose uses xtcocotools (its 'keypoints_crowd' evaluation needs it), COCO pycocotools
    assert type(dataset.coco).__module__.split(".")[0] == ("xtcocotools" if k == 14 else "pycocotools")


def test_detected_boxes(shared_data):
    det_file = shared_data / "coco/mmpose_coco/person_detections.json"
    detections = json.loads(det_file.read_text())
    dataset = make_dataset(shared_data, "mmpose_coco", boxes=str(det_file))
    assert len(dataset) == len(detections) == 118
    strict = make_dataset(shared_data, "mmpose_coco", boxes=str(det_file), det_score_threshold=0.5)
    assert len(strict) == sum(d["score"] >= 0.5 for d in detections)
    assert strict.stats["below_threshold"] == len(detections) - len(strict)
    item = dataset[3]
    det = detections[3]
    x, y, w, h = det["bbox"]
    assert item["meta"]["ann_id"] == -1 and item["meta"]["image_id"] == det["image_id"]
    assert item["meta"]["box_score"] == pytest.approx(det["score"])
    np.testing.assert_allclose(item["meta"]["center"], [x + w / 2, y + h / 2])
    scale = item["meta"]["scale"]
    assert scale[0] / scale[1] == pytest.approx(192 / 256)
    assert scale[0] >= 1.25 * w - 1e-9 and scale[1] >= 1.25 * h - 1e-9
    assert min(scale[0] - 1.25 * w, scale[1] - 1.25 * h) == pytest.approx(0, abs=1e-9)
    assert item["meta"]["area"] == pytest.approx(scale[0] * scale[1])
    assert float(item["target"].abs().sum()) == 0 and float(item["target_weight"].sum()) == 0


def test_affine_matrix_matches_mmpose_construction():
    rng = np.random.default_rng(1)
    for _ in range(50):
        center = rng.uniform(0, 600, 2)
        scale = rng.uniform(20, 500) * np.array([0.75, 1.0])
        rotation = rng.uniform(-90, 90)
        ours = get_affine_matrix(center, scale, rotation, (256, 192))
        np.testing.assert_allclose(ours, mmpose_affine(center, scale, rotation, (192, 256)), rtol=1e-4, atol=2e-3)
    # flipping folded into the matrix == flipping the image (x -> W-1-x), then cropping at the mirrored center
    ours = get_affine_matrix(center, scale, rotation, (256, 192), flip_image_width=640)
    mirrored = mmpose_affine(np.array([639 - center[0], center[1]]), scale, rotation, (192, 256))
    points = rng.uniform(0, 600, (10, 2))
    np.testing.assert_allclose(affine_points(points, ours),
                               affine_points(np.c_[639 - points[:, 0], points[:, 1]], mirrored), atol=2e-3)


def test_crop_matches_independent_warp(shared_data):
    dataset = make_dataset(shared_data, "mmpose_coco")
    item = dataset[4]
    meta = item["meta"]
    rgb = cv2.cvtColor(cv2.imread(meta["image_file"]), cv2.COLOR_BGR2RGB)
    expected = cv2.warpAffine(rgb, mmpose_affine(meta["center"], meta["scale"], 0, (192, 256)), (192, 256),
                              flags=cv2.INTER_LINEAR).astype(np.float64)
    diff = np.abs(denormalise(item["image"]) - expected)
    assert np.mean(diff) < 0.05 and np.percentile(diff, 99.9) <= 1.01


@pytest.mark.parametrize("name", ["coco_mini_train", "mmpose_crowdpose"])
def test_target_peaks_at_affine_mapped_keypoints(shared_data, name):
    dataset = make_dataset(shared_data, name)
    checked = 0
    for index in range(len(dataset)):
        item = dataset[index]
        meta = item["meta"]
        keypoints = dataset.samples.keypoints[index]
        matrix = get_affine_matrix(meta["center"], meta["scale"], 0.0, (256, 192))
        mu = affine_points(keypoints[:, :2], matrix) / 4.0  # stride 4 on both axes
        target, weight = item["target"].numpy(), item["target_weight"].numpy()[:, 0]
        assert np.all(weight[keypoints[:, 2] == 0] == 0)
        for k in np.flatnonzero(weight > 0):
            peak = np.unravel_index(target[k].argmax(), target[k].shape)
            inside = 0 <= round(mu[k, 0]) < 48 and 0 <= round(mu[k, 1]) < 64
            if inside:
                assert (peak[1], peak[0]) == (round(mu[k, 0]), round(mu[k, 1])), (index, k)
                # the unbiased Gaussian is centred at the exact sub-pixel location
                assert target[k, peak[0], peak[1]] == pytest.approx(
                    np.exp(-((peak[1] - mu[k, 0]) ** 2 + (peak[0] - mu[k, 1]) ** 2) / 8.0), rel=1e-5)
                checked += 1
        # weight 0 for visible joints whose 3-sigma window misses the heatmap entirely (mmpose rule)
        far = (mu[:, 0] + 7 < 0) | (mu[:, 0] - 6 >= 48) | (mu[:, 1] + 7 < 0) | (mu[:, 1] - 6 >= 64)
        assert np.all(weight[far] == 0) and np.all(target[weight == 0] == 0)
    assert checked > 20


def test_augmented_targets_follow_the_crop(shared_data):
    dataset = make_dataset(shared_data, "coco_mini_train", train=True, seed=7)
    rotated = 0
    for index in range(0, len(dataset), 3):
        item = dataset[index]
        meta = item["meta"]
        rotated += meta["rotation"] != 0
        width = cv2.imread(meta["image_file"]).shape[1]
        matrix = get_affine_matrix(meta["center"], meta["scale"], meta["rotation"], (256, 192),
                                   flip_image_width=width if meta["flipped"] else None)
        keypoints = dataset.samples.keypoints[index]
        if meta["flipped"]:
            keypoints = keypoints[COCO17.flip_index()]
        mu = affine_points(keypoints[:, :2], matrix) / 4.0
        target, weight = item["target"].numpy(), item["target_weight"].numpy()[:, 0]
        for k in np.flatnonzero(weight > 0):
            if 1 <= mu[k, 0] <= 46 and 1 <= mu[k, 1] <= 62:
                peak = np.unravel_index(target[k].argmax(), target[k].shape)
                assert abs(peak[1] - mu[k, 0]) <= 0.5 + 1e-6 and abs(peak[0] - mu[k, 1]) <= 0.5 + 1e-6
    assert rotated > 0


def _shoulders_visible(dataset: TopDownDataset) -> int:
    for index in range(len(dataset)):
        keypoints = dataset.samples.keypoints[index]
        if keypoints[5, 2] > 0 and keypoints[6, 2] > 0 and abs(keypoints[5, 0] - keypoints[6, 0]) > 20:
            return index
    raise AssertionError("no person with both shoulders visible")


def test_flip_swaps_left_and_right_on_a_real_person(shared_data):
    plain = make_dataset(shared_data, "coco_mini_train", train=True, augment=AugmentConfig.disabled())
    flipped = make_dataset(shared_data, "coco_mini_train", train=True, augment=FLIP_ONLY)
    index = _shoulders_visible(plain)
    a, b = plain[index], flipped[index]
    assert not a["meta"]["flipped"] and b["meta"]["flipped"]
    from sdpose_core.heatmaps import heatmap_peaks

    peaks_a, _ = heatmap_peaks(a["target"][None].numpy())
    peaks_b, _ = heatmap_peaks(b["target"][None].numpy())
    left, right = COCO17.joints.index("left_shoulder"), COCO17.joints.index("right_shoulder")
    # the crop is mirrored about x = W / 2, i.e. heatmap x -> 48 - x
    for new, old in ((left, right), (right, left)):
        np.testing.assert_allclose(peaks_b[0, new], [48 - peaks_a[0, old, 0], peaks_a[0, old, 1]], atol=0.05)
    assert not np.allclose(peaks_b[0, left], peaks_a[0, left], atol=1.0)
    # the pixels follow: flipped column i is unflipped column W - i (cv2 sub-pixel rounding aside)
    diff = np.abs(denormalise(b["image"])[:, 1:] - denormalise(a["image"])[:, :0:-1])
    assert np.mean(diff) < 1.0


def test_half_body_crops_one_body_half(shared_data):
    half = AugmentConfig(flip_prob=0.0, shift_prob=0.0, half_body_prob=1.0, scale_factor=0.0,
                         rotation_factor=0.0, rotation_prob=0.0)
    dataset = make_dataset(shared_data, "coco_mini_train", train=True, augment=half)
    full = make_dataset(shared_data, "coco_mini_train")
    upper = np.isin(np.arange(17), COCO17.upper_body)
    applied = 0
    for index in range(len(dataset)):
        keypoints = dataset.samples.keypoints[index]
        visible = keypoints[:, 2] > 0
        params = dataset.crop_params(index)
        if visible.sum() <= 8:  # mmpose needs more than 8 visible joints
            np.testing.assert_allclose(params.center, full.samples.center[index])
            continue
        applied += 1
        means = [keypoints[visible & part, :2].mean(axis=0) for part in (upper, ~upper) if (visible & part).sum() > 2]
        assert any(np.allclose(params.center, m) for m in means)
        chosen = upper if np.allclose(params.center, means[0]) and (visible & upper).sum() > 2 else ~upper
        xy = keypoints[visible & chosen, :2]
        assert np.all(np.abs(xy - params.center) <= params.scale / 2 + 1e-9)
        extent = xy.max(axis=0) - xy.min(axis=0)
        assert params.scale[1] == pytest.approx(1.5 * max(extent[1], extent[0] / 0.75))  # padding 1.5
        assert params.scale[0] / params.scale[1] == pytest.approx(0.75)
    assert applied > 10


def test_augmentation_is_deterministic_per_seed_epoch_and_index(shared_data):
    first = make_dataset(shared_data, "mmpose_coco", train=True, seed=3)
    second = make_dataset(shared_data, "mmpose_coco", train=True, seed=3)
    for index in range(len(first)):
        a, b = first[index], second[index]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["target"], b["target"])
    before = [first.crop_params(i) for i in range(len(first))]
    first.set_epoch(1)
    after = [first.crop_params(i) for i in range(len(first))]
    assert any(not np.allclose(x.center, y.center) or x.rotation != y.rotation for x, y in zip(before, after, strict=True))
    first.set_epoch(0)
    again = [first.crop_params(i) for i in range(len(first))]
    assert all(np.array_equal(x.scale, y.scale) and x.rotation == y.rotation for x, y in zip(before, again, strict=True))
    other = make_dataset(shared_data, "mmpose_coco", train=True, seed=4)
    assert any(not np.allclose(x.scale, other.crop_params(i).scale) for i, x in enumerate(before))


def test_augmentation_ranges_and_rates(shared_data):
    dataset = make_dataset(shared_data, "mmpose_coco")
    center, scale = dataset.samples.center[0], dataset.samples.scale[0]
    no_joints = np.zeros((17, 3))  # no half-body without joints: scale changes only by the scale factor
    config = AugmentConfig()
    draws = [sample_augmentation(sample_rng(0, 0, i), center, scale, no_joints, COCO17.upper_body, 0.75, config)
             for i in range(4000)]
    factors = np.array([d.scale[0] / scale[0] for d in draws])
    rotations = np.array([d.rotation for d in draws])
    shifts = np.array([d.center - center for d in draws])
    assert factors.min() >= 0.65 - 1e-9 and factors.max() <= 1.35 + 1e-9 and factors.std() > 0.2
    assert np.abs(rotations).max() <= 90 and 0.55 < np.mean(rotations != 0) < 0.65
    assert 0.45 < np.mean([d.flipped for d in draws]) < 0.55
    moved = np.any(shifts != 0, axis=1)
    assert 0.25 < moved.mean() < 0.35 and np.all(np.abs(shifts) <= 0.16 * scale + 1e-9)


def test_other_input_size(shared_data):
    dataset = make_dataset(shared_data, "mmpose_crowdpose", image_size=(192, 144), heatmap_size=(48, 36))
    item = dataset[0]
    assert item["image"].shape == (3, 192, 144) and item["target"].shape == (14, 48, 36)
    keypoints = dataset.samples.keypoints[0]
    mu = affine_points(keypoints[:, :2], get_affine_matrix(item["meta"]["center"], item["meta"]["scale"], 0,
                                                            (192, 144))) / 4.0
    k = int(np.flatnonzero(keypoints[:, 2] > 0)[0])
    peak = np.unravel_index(item["target"][k].argmax(), (48, 36))
    assert (peak[1], peak[0]) == (round(mu[k, 0]), round(mu[k, 1]))


def test_collate(shared_data):
    dataset = make_dataset(shared_data, "mmpose_coco")
    batch = collate_topdown([dataset[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 256, 192) and batch["target"].shape == (4, 17, 64, 48)
    assert batch["target_weight"].shape == (4, 17, 1)
    assert batch["meta"]["center"].shape == (4, 2) and batch["meta"]["scale"].shape == (4, 2)
    assert batch["meta"]["image_id"] == [dataset[i]["meta"]["image_id"] for i in range(4)]
    assert len(batch["meta"]["image_file"]) == 4


def test_box_to_center_scale_fixes_aspect_and_pads():
    center, scale = box_to_center_scale(np.array([[10, 20, 30, 100], [0, 0, 300, 100]]), 0.75)
    np.testing.assert_allclose(center, [[25, 70], [150, 50]])
    np.testing.assert_allclose(scale, [[75 * 1.25, 100 * 1.25], [300 * 1.25, 400 * 1.25]])


def test_clip_box_follows_mmpose():
    # mmpose measures the right edge from the clipped left edge, so a box sticking out on the left keeps its width
    np.testing.assert_allclose(clip_box_xywh(np.array([-10.0, 5, 50, 20]), 100, 100), [0, 5, 50, 20])
    np.testing.assert_allclose(clip_box_xywh(np.array([80.0, 5, 50, 20]), 100, 100), [80, 5, 19, 20])
    assert clip_box_xywh(np.array([100.0, 5, 10, 10]), 100, 100) is None
    assert clip_box_xywh(np.array([10.0, 5, 0, 10]), 100, 100) is None
