"""The dataset's target hooks: `joints` (crop pixels, after the flip) and the `extra_targets` hook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sdpose_core.data import TopDownDataset, collate_topdown
from sdpose_core.heatmaps import heatmap_peaks


def test_joints_are_the_targets_joints_and_the_hook_sees_the_crop(shared_data: Path) -> None:
    coco = shared_data / "coco" / "mmpose_coco"
    calls: list[tuple] = []

    def hook(image_bgr, center, scale, rotation, flip_width):
        calls.append((image_bgr.shape, center.copy(), scale.copy(), rotation, flip_width))
        return {"crop_mean": torch.tensor([float(image_bgr.mean())])}

    dataset = TopDownDataset(coco / "person_keypoints.json", coco / "images", train=True, image_size=(256, 192),
                             heatmap_size=(64, 48), seed=2, extra_targets=hook)
    samples = [dataset[i] for i in range(len(dataset))]
    batch = collate_topdown(samples)
    assert batch["joints"].shape == (12, 17, 3) and batch["joints"].dtype == torch.float64
    assert batch["crop_mean"].shape == (12, 1) and len(calls) == 12
    for sample, (shape, center, scale, rotation, flip_width) in zip(samples, calls, strict=True):
        meta = sample["meta"]
        np.testing.assert_array_equal(center, meta["center"])
        np.testing.assert_array_equal(scale, meta["scale"])
        assert rotation == meta["rotation"] and (flip_width == shape[1]) == meta["flipped"]
    # a labelled joint's Gaussian peaks at joints / stride (stride 4; away from the border; DARK is within a quarter pixel)
    weight = batch["target_weight"][..., 0] > 0
    on_grid = batch["joints"][..., :2] / 4
    inside = weight & (on_grid.amin(dim=-1) > 3) & (on_grid[..., 0] < 45) & (on_grid[..., 1] < 61)
    peaks, _ = heatmap_peaks(batch["target"].numpy())
    assert inside.sum() > 100
    np.testing.assert_allclose(peaks[inside.numpy()], on_grid[inside].numpy(), atol=0.25)
    assert bool((batch["joints"][..., 2][weight] > 0).all())  # weight 1 only for visible joints


def test_confidence_weights_scale_target_weights_and_follow_the_flip(shared_data: Path, tmp_path: Path) -> None:
    """keypoint_scores (teacher-filled joints: the teacher's score) become target weights with
    confidence_weights on; a flipped crop swaps them with the joints; without the option nothing changes."""
    import json

    from sdpose_core.keypoints import COCO17

    coco = shared_data / "coco" / "mmpose_coco"
    data = json.loads((coco / "person_keypoints.json").read_text())
    for ann in data["annotations"]:
        ann["keypoint_scores"] = [0.25 if j == COCO17.joints.index("left_wrist") else 1.0 for j in range(17)]
    ann_file = tmp_path / "scored.json"
    ann_file.write_text(json.dumps(data))
    left, right = COCO17.joints.index("left_wrist"), COCO17.joints.index("right_wrist")
    plain = TopDownDataset(ann_file, coco / "images", train=False, image_size=(128, 96), heatmap_size=(32, 24))
    weighted = TopDownDataset(ann_file, coco / "images", train=False, image_size=(128, 96), heatmap_size=(32, 24),
                              confidence_weights=True)
    for index in range(len(plain)):
        base, scored = plain[index]["target_weight"][:, 0], weighted[index]["target_weight"][:, 0]
        assert torch.equal(scored[left], 0.25 * base[left]) and torch.equal(scored[right], base[right])
        assert "label_confidence" not in plain[index]
    from sdpose_core.data import AugmentConfig

    flipping = TopDownDataset(ann_file, coco / "images", train=True, image_size=(128, 96), heatmap_size=(32, 24),
                              confidence_weights=True, augment=AugmentConfig(flip_prob=1.0, rotation_prob=0.0,
                                                                              scale_factor=0.0))
    sample = flipping[0]
    assert sample["meta"]["flipped"]
    assert sample["label_confidence"][right] == 0.25 and sample["label_confidence"][left] == 1.0
