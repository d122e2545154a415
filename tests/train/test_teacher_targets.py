"""Teacher soft targets (PP-TinyPose on ncnn) on real augmented crops, the blend rule, and the errors.

Tests that run the teacher skip when ncnn or the model files under ../shared/teachers are absent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdpose_core.data import TopDownDataset, collate_topdown
from sdpose_core.data.transforms import get_affine_matrix
from sdpose_core.errors import ConfigError
from sdpose_core.heatmaps import heatmap_peaks
from sdpose_core.keypoints import COCO17, CROWDPOSE14
from sdpose_core.train.teacher_targets import (
    TeacherTargets,
    attach_teacher_targets,
    blend_teacher_targets,
    heatmap_grid_affine,
    teacher_joint_index,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher_ready() -> None:
    from sdpose_core.inference.tinypose import available

    for size in ((128, 96), (256, 192)):
        if (reason := available(size)) is not None:
            pytest.skip(f"PP-TinyPose {size[0]}x{size[1]} cannot run here: {reason}")


def test_blend_rule() -> None:
    gauss = torch.zeros(1, 3, 2, 2)
    gauss[0, :, 0, 0] = 1.0
    teacher = torch.zeros(1, 3, 2, 2)
    teacher[0, :, 1, 1] = 1.0
    weight = torch.tensor([[[1.0], [0.0], [1.0]]])
    confidence = torch.tensor([[0.9, 0.8, 0.1]])  # joint 3's teacher is not confident
    target, new_weight = blend_teacher_targets(gauss, weight, teacher, confidence, 0.25, 0.5)
    torch.testing.assert_close(target[0, 0], 0.75 * gauss[0, 0] + 0.25 * teacher[0, 0])  # labelled: mixed
    torch.testing.assert_close(target[0, 1], teacher[0, 1])  # unlabelled, teacher confident: teacher alone
    torch.testing.assert_close(target[0, 2], gauss[0, 2])  # teacher unsure: the Gaussian stays
    assert new_weight[0, :, 0].tolist() == [1.0, 1.0, 1.0]
    _, kept = blend_teacher_targets(gauss, weight, teacher, torch.tensor([[0.9, 0.2, 0.1]]), 1.0, 0.5)
    assert kept[0, :, 0].tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ConfigError, match="teacher_target_weight"):
        blend_teacher_targets(gauss, weight, teacher, confidence, 1.5, 0.5)


def test_heatmap_grid_affine_maps_the_same_crop_region() -> None:
    center, scale = np.array([100.0, 80.0]), np.array([60.0, 80.0])
    small = get_affine_matrix(center, scale, 10.0, (128, 96), flip_image_width=300)
    large = get_affine_matrix(center, scale, 10.0, (256, 192), flip_image_width=300)
    grid = heatmap_grid_affine((256, 192), (64, 48), large, (128, 96), (32, 24), small)
    np.testing.assert_allclose(grid, [[0.5, 0, 0], [0, 0.5, 0]], atol=1e-12)  # u_small = u_large / 2
    same = heatmap_grid_affine((128, 96), (32, 24), small, (128, 96), (32, 24), small)
    np.testing.assert_allclose(same, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_layouts_map_onto_the_teacher_joints() -> None:
    assert teacher_joint_index(COCO17).tolist() == list(range(17))
    crowd = teacher_joint_index(CROWDPOSE14)
    assert [COCO17.joints[i] for i in crowd[:12]] == list(CROWDPOSE14.joints[:12])
    assert crowd[12:].tolist() == [-1, -1]  # head_top, neck: no COCO joint


def test_missing_ncnn_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ncnn", None)  # import ncnn now raises ImportError
    with pytest.raises(ConfigError, match=r"--teacher-targets.*pip install ncnn"):
        TeacherTargets("pp-tinypose-128x96", COCO17, (128, 96), (32, 24))


@pytest.mark.parametrize("teacher", ["pp-tinypose-128x96", "pp-tinypose-256x192"])
def test_teacher_peaks_sit_on_the_ground_truth(shared_data: Path, teacher_ready: None, teacher: str) -> None:
    """Augmented crops (flips, rotations, scales) of the real coco_mini_train people: where the teacher is
    confident, its normalised map peaks within about a heatmap pixel of the labelled joint, flipped crops too
    (no channel swap needed: the mirrored crop is what the teacher sees)."""
    coco = shared_data / "coco" / "coco_mini_train"
    dataset = TopDownDataset(coco / "person_keypoints.json", coco / "images", train=True, image_size=(128, 96),
                             heatmap_size=(32, 24), seed=11)
    attach_teacher_targets(dataset, teacher, (128, 96), (32, 24))
    batch = collate_topdown([dataset[i] for i in range(len(dataset))])
    maps, confidence = batch["teacher_heatmaps"], batch["teacher_confidence"]
    assert maps.shape == (len(dataset), 17, 32, 24) and confidence.shape == (len(dataset), 17)
    peaks = maps.amax(dim=(2, 3))
    assert torch.allclose(peaks[confidence > 0], torch.ones(()))  # normalised to peak 1
    teacher_xy, _ = heatmap_peaks(maps.numpy())
    gt_xy, _ = heatmap_peaks(batch["target"].numpy())
    distance = np.linalg.norm(teacher_xy - gt_xy, axis=-1)
    use = (batch["target_weight"][..., 0] > 0).numpy() & (confidence >= 0.5).numpy()
    flipped = np.asarray(batch["meta"]["flipped"])[:, None] & use
    assert use.sum() > 300 and flipped.sum() > 100
    assert np.median(distance[use]) < 1.0 and np.median(distance[flipped]) < 1.0
    assert np.mean(distance[use] < 3.0) > 0.85


def test_training_with_teacher_targets_in_workers(shared_data: Path, tmp_path: Path, teacher_ready: None) -> None:
    """A real run: the teacher runs in two DataLoader workers; unlabelled joints the teacher is sure of join."""
    from sdpose_core.train import TrainConfig, train

    coco = shared_data / "coco" / "mmpose_coco"
    config = TrainConfig(
        out=str(tmp_path / "run"), train_ann=str(coco / "person_keypoints.json"), train_images=str(coco / "images"),
        epochs=1, batch_size=4, workers=2, image_size=(128, 96), progress=False, log_every=1, warmup_iters=2,
        model_overrides={"patch_size": (4, 3), "dim": 24, "depth": 2, "heads": 4},
        teacher_targets="pp-tinypose-128x96", heatmap_loss="kl",
    )
    result = train(config)
    assert result.global_step == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fractions = [r["teacher_joint_fraction"] for r in records if r["kind"] == "iter"]
    assert len(fractions) == 3 and all(0.2 < f <= 1.0 for f in fractions)


# ------------------------------------------------------------------------------------------- feature hints
def test_teacher_features_are_the_blob_on_the_students_grid(shared_data: Path, teacher_ready: None) -> None:
    """At the teacher's own input size the features are its last feature map unchanged (an identity warp); at a
    smaller student they cover the same crop on the student's stride-4 grid."""
    from sdpose_core.inference.tinypose import OUTPUT_BLOB
    from sdpose_core.train.feature_hint import FEATURE_BLOB, FEATURE_CHANNELS

    coco = shared_data / "coco" / "mmpose_coco"
    same = TopDownDataset(str(coco / "person_keypoints.json"), str(coco / "images"), train=False, image_size=(128, 96),
                          heatmap_size=(32, 24))
    same.extra_targets = TeacherTargets("pp-tinypose-128x96", same.layout, (128, 96), (32, 24), features=True)
    sample = same[0]
    assert sample["teacher_features"].shape == (FEATURE_CHANNELS, 32, 24)
    heat, features = same.extra_targets.model().extract(sample["image"].numpy()[None], [OUTPUT_BLOB, FEATURE_BLOB])
    np.testing.assert_allclose(sample["teacher_features"].numpy(), features[0], atol=1e-4)
    small = TopDownDataset(str(coco / "person_keypoints.json"), str(coco / "images"), train=False, image_size=(64, 48),
                           heatmap_size=(16, 12))
    small.extra_targets = TeacherTargets("pp-tinypose-128x96", small.layout, (64, 48), (16, 12), features=True)
    assert small[0]["teacher_features"].shape == (FEATURE_CHANNELS, 16, 12)


def test_training_with_feature_hints_learns_them_and_resumes(shared_data: Path, tmp_path: Path,
                                                            teacher_ready: None) -> None:
    from sdpose_core.train import TrainConfig, train

    coco = shared_data / "coco" / "mmpose_coco"
    common = dict(
        train_ann=str(coco / "person_keypoints.json"), train_images=str(coco / "images"),
        batch_size=4, workers=0, image_size=(64, 48), progress=False, log_every=1, warmup_iters=2, lr=3e-3,
        augment=False, model_overrides={"patch_size": (2, 2), "dim": 24, "depth": 2, "heads": 4},
        teacher_targets="pp-tinypose-128x96", teacher_target_weight=0.0, teacher_feature_weight=1.0,
    )
    result = train(TrainConfig(out=str(tmp_path / "run"), epochs=8, **common))
    assert result.global_step == 24
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    hint = [r["feature_hint_loss"] for r in records if r["kind"] == "iter"]
    assert np.mean(hint[-3:]) < 0.95 * np.mean(hint[:3]), hint  # standardised targets: ~1 at the start
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert set(state["feature_hint"]) == {"proj.weight", "proj.bias"}
    assert not any(k.startswith("proj") for k in state["model"])  # the projection is not part of the model
    resumed = train(TrainConfig(out=str(tmp_path / "run"), epochs=9, resume=str(tmp_path / "run"), **common))
    assert resumed.global_step == 27
    with pytest.raises(ConfigError, match="--teacher-features needs --teacher-targets"):
        TrainConfig(out="x", train_ann="a", train_images="i", teacher_feature_weight=1.0)
