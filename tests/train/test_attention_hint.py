"""The attention hint (issue 16): soft patch targets, the loss, the captured attention of the model, and real runs.

Runs use the tiny SDPose-T of tiny_run.py on the 12 real people of coco/mmpose_coco.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_run import TINY, tiny_config

from sdpose_core.cli.main import build_parser
from sdpose_core.errors import ConfigError
from sdpose_core.models import build_model
from sdpose_core.train import TrainConfig, train
from sdpose_core.train.attention_hint import AttentionHint, attention_hint_loss, patch_targets
from sdpose_core.train.recipes import config_from_options

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_patch_targets_peak_on_the_joints_patch_and_skip_unlabelled_joints() -> None:
    # 128x96 crop, 8x8 grid: patches are 16 px high and 12 px wide
    joints = torch.tensor([[[6.0, 8.0, 2.0], [95.0, 127.0, 1.0], [50.0, 70.0, 0.0], [-3.0, 10.0, 2.0]]])
    targets, valid = patch_targets(joints, (128, 96), (8, 8), sigma=0.5)
    assert targets.shape == (1, 4, 64)
    assert torch.allclose(targets.sum(-1), torch.ones(1, 4))
    assert int(targets[0, 0].argmax()) == 0  # top-left patch
    assert int(targets[0, 1].argmax()) == 63  # bottom-right patch
    assert valid.tolist() == [[True, True, False, False]]  # v=0 and outside the crop count for nothing


def test_loss_is_lower_when_attention_finds_the_joint_and_zero_weight_when_unlabelled() -> None:
    joints = torch.tensor([[[30.0, 40.0, 2.0], [70.0, 100.0, 2.0]]])  # patches (2, 2) and (6, 5)
    heads, keypoints, patches = 4, 2, 64
    uniform = torch.full((1, heads, keypoints, keypoints + patches), 1.0 / (keypoints + patches))
    targets, _ = patch_targets(joints, (128, 96), (8, 8), 0.5)
    found = torch.cat((torch.zeros(1, keypoints, keypoints), targets), dim=-1)[:, None].expand(1, heads, -1, -1)
    loss_uniform = attention_hint_loss(uniform, joints, (128, 96), (8, 8), 0.5)
    loss_found = attention_hint_loss(found, joints, (128, 96), (8, 8), 0.5)
    assert loss_found < 0.5 * loss_uniform
    unlabelled = joints.clone()
    unlabelled[..., 2] = 0
    assert float(attention_hint_loss(uniform, unlabelled, (128, 96), (8, 8), 0.5)) == 0.0


def test_weight_fades_linearly_and_bad_settings_are_named() -> None:
    hint = AttentionHint(weight=0.1, fraction=0.5)
    assert hint.weight_at(0, 100) == pytest.approx(0.1)
    assert hint.weight_at(25, 100) == pytest.approx(0.05)
    assert hint.weight_at(50, 100) == 0.0 and hint.weight_at(99, 100) == 0.0
    for changes, match in (({"attention_hint_weight": -1.0}, "attention_hint_weight"),
                           ({"attention_hint_fraction": 0.0}, "attention_hint_fraction"),
                           ({"attention_hint_sigma": 0.0}, "attention_hint_sigma")):
        with pytest.raises(ConfigError, match=match):
            TrainConfig(out="x", train_ann="a", train_images="i", **changes)


def test_captured_attention_is_the_first_blocks_attention() -> None:
    # with one block, the first block is also the last: attention_maps (the explicit softmax path) must agree
    model = build_model("sdpose-t", image_size=(64, 48), **{**TINY, "depth": 1})
    images = torch.randn(2, 3, 64, 48)
    model.capture_entry_attention = True
    model.train()  # captured in training forwards only; BN uses the batch statistics on both sides below
    model(images)
    captured = model.entry_attention
    reference = model.attention_maps(images, cycles=1)[0][:, :, : model.config.num_keypoints]
    assert captured.shape == reference.shape == (2, TINY["heads"], 17, 17 + model.num_patches)
    assert captured.requires_grad  # the hint's gradient reaches the queries, keys and the stem
    assert torch.allclose(captured.detach(), reference, atol=1e-6)
    assert model.patch_grid == (8, 6)
    model.entry_attention = None
    model.eval()
    model(images)  # eval forward: nothing captured, nothing held
    assert model.entry_attention is None


def test_tiny_run_with_the_hint_learns_the_hint(shared_data: Path, tmp_path: Path) -> None:
    """On real people the hint's cross-entropy falls (the signal is learnable), it is logged and added to the
    loss, and it fades to 0 by its fraction of the steps."""
    result = train(tiny_config(shared_data, tmp_path / "hint", epochs=10, augment=False, lr=3e-3,
                               attention_hint_weight=1.0, attention_hint_fraction=0.9))
    assert result.global_step == 30
    records = [r for r in map(json.loads, (tmp_path / "hint" / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "iter"]
    hint = [r["attention_hint_loss"] for r in records]
    weights = [1.0 * max(0.0, 1 - step / (0.9 * 30)) for step in range(30)]
    cross_entropy = [h / w for h, w in zip(hint, weights, strict=True) if w > 0.2]
    assert np.mean(cross_entropy[-3:]) < 0.9 * np.mean(cross_entropy[:3]), cross_entropy  # from ~log(81)
    assert hint[-1] == 0.0
    assert all(r["loss"] >= r["attention_hint_loss"] for r in records)


def test_training_aid_options_reach_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "train", "--train-ann", "a.json", "--train-images", "img", "--out", str(tmp_path / "r"),
        "--attention-hint", "0.05", "--attention-hint-fraction", "0.3", "--single-cycle-fraction", "0.4",
        "--confidence-weights", "--teacher-targets", "pp-tinypose-128x96", "--teacher-features", "0.2",
        "--stem-init", "kaiming",
    ])
    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    config = config_from_options(given)
    assert (config.attention_hint_weight, config.attention_hint_fraction) == (0.05, 0.3)
    assert (config.single_cycle_fraction, config.confidence_weights, config.teacher_feature_weight) == (0.4, True, 0.2)
    assert config.stem_init == "kaiming"
    default = TrainConfig(out="x", train_ann="a", train_images="i")
    assert (default.attention_hint_weight, default.stem_init) == (0.0, "official")  # off by default


def test_single_cycle_phase_then_every_cycle(shared_data: Path, tmp_path: Path) -> None:
    """--single-cycle-fraction: the first steps train cycle 1 alone (no second cycle, no distillation terms),
    the rest every training cycle with the official terms."""
    result = train(tiny_config(shared_data, tmp_path / "single", epochs=4, augment=False, single_cycle_fraction=0.5))
    assert result.global_step == 12
    records = [r for r in map(json.loads, (tmp_path / "single" / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "iter"]
    early, late = [r for r in records if r["step"] <= 6], [r for r in records if r["step"] > 6]
    assert early and late
    assert all("heatmap_cycle2" not in r and r["keypoint_token_loss"] == 0.0 for r in early)
    assert all("heatmap_cycle3" in r and r["keypoint_token_loss"] > 0.0 for r in late)
    with pytest.raises(ConfigError, match="single_cycle_fraction"):
        TrainConfig(out="x", train_ann="a", train_images="i", single_cycle_fraction=1.0)
