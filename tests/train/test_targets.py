"""Opt-in training signals (issue 16): kl / fg-mse heatmap losses in real runs, the sigma schedule (re-encoded in
the main process, so it holds with DataLoader workers), and their options on the command line.

Runs use the tiny SDPose-T of test_train.py on the 12 real people of coco/mmpose_coco.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_run import tiny_config

from sdpose_core.cli.main import build_parser
from sdpose_core.data import TopDownDataset, collate_topdown
from sdpose_core.errors import ConfigError
from sdpose_core.train import TrainConfig, train
from sdpose_core.train.distributed import setup_distributed
from sdpose_core.train.recipes import config_from_options
from sdpose_core.train.targets import BatchTargets, SigmaSchedule
from sdpose_core.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")




def iter_records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "iter"]


# ------------------------------------------------------------------------------- losses in real runs
@pytest.mark.parametrize("loss", ["kl", "fg-mse"])
def test_tiny_run_with_new_loss_goes_down(shared_data: Path, tmp_path: Path, loss: str) -> None:
    result = train(tiny_config(shared_data, tmp_path / loss, heatmap_loss=loss, epochs=10, augment=False,
                               lr=3e-3))
    assert result.global_step == 30
    losses = [r["loss"] for r in iter_records(tmp_path / loss)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    # the model still outputs heatmaps that decode: the final weights evaluate like any others
    from sdpose_core.evaluation.evaluate import run_evaluation

    coco = shared_data / "coco" / "mmpose_coco"
    report = run_evaluation(str(tmp_path / loss / "final"), str(coco / "person_keypoints.json"), str(coco / "images"))
    assert report["num_instances"] == 12 and np.isfinite(report["metrics"]["cycle1"]["AP"])


# ------------------------------------------------------------------------------------- sigma schedule
def test_sigma_schedule_values() -> None:
    schedule = SigmaSchedule(start=6.0, end=2.0, fraction=0.5)
    assert schedule.at(0, 100) == 6.0
    assert schedule.at(25, 100) == pytest.approx(4.0)
    assert schedule.at(50, 100) == 2.0 and schedule.at(99, 100) == 2.0
    with pytest.raises(ConfigError, match="sigma_anneal_fraction"):
        SigmaSchedule(6.0, 2.0, 0.0)


def test_batch_targets_reencode_the_dataset_targets_exactly(shared_data: Path) -> None:
    """At the dataset's sigma, the main-process re-encoding from batch["joints"] is the dataset's target
    (augmented crops with flips and rotations), so the schedule changes nothing but the width."""
    coco = shared_data / "coco" / "coco_mini_train"
    dataset = TopDownDataset(coco / "person_keypoints.json", coco / "images", train=True, image_size=(128, 96),
                             heatmap_size=(32, 24), seed=5)
    batch = collate_topdown([dataset[i] for i in range(24)])
    assert any(batch["meta"]["flipped"]) and not all(batch["meta"]["flipped"])
    builder = BatchTargets((128, 96), (32, 24), sigma=2.0)
    target, weight = builder.gaussian(batch["joints"], 2.0)
    assert torch.equal(target, batch["target"]) and torch.equal(weight, batch["target_weight"])
    wide, wide_weight = builder.gaussian(batch["joints"], 4.0)
    assert bool((wide_weight >= weight).all())  # mmpose's 3-sigma window test: a wider one keeps more joints
    labelled = weight[..., 0] > 0
    assert (wide.sum(dim=(2, 3))[labelled] > 2.5 * target.sum(dim=(2, 3))[labelled]).float().mean() > 0.9


def target_width(target: torch.Tensor, weight: torch.Tensor) -> float:
    """Median Gaussian sigma of the labelled maps from their area at half maximum (2 pi s^2 ln 2 pixels)."""
    maps = target[weight[..., 0] > 0]
    half = (maps > 0.5 * maps.amax(dim=(1, 2), keepdim=True)).sum(dim=(1, 2)).float()
    return float(torch.sqrt(half / (2 * np.pi * np.log(2))).median())


def test_sigma_schedule_reaches_the_targets_with_workers(shared_data: Path, tmp_path: Path) -> None:
    """Two DataLoader worker processes build the samples; the targets the loss sees narrow from sigma 6 to 2."""
    config = tiny_config(shared_data, tmp_path / "run", image_size=(128, 96), workers=2, epochs=4,
                         sigma_start=6.0, sigma=2.0, sigma_anneal_fraction=0.5)
    trainer = Trainer(config, setup_distributed("cpu"))
    seen: list[tuple[float, torch.Tensor]] = []
    official_loss = trainer.loss_fn

    def recording_loss(outputs, target, target_weight):
        seen.append((target_width(target, target_weight), target_weight.clone()))
        return official_loss(outputs, target, target_weight)

    trainer.loss_fn = recording_loss
    result = trainer.run()
    assert result.global_step == 12 and len(seen) == 12  # 12 people, batch 4, 4 epochs
    widths = [w for w, _ in seen]
    logged = [r["target_sigma"] for r in iter_records(tmp_path / "run")]
    assert logged[0] == 6.0 and logged[3] == pytest.approx(4.0) and logged[6:] == [2.0] * 6
    assert widths[0] == pytest.approx(6.0, abs=0.6) and all(w == pytest.approx(2.0, abs=0.3) for w in widths[6:])
    assert all(a >= b - 0.05 for a, b in zip(widths, widths[1:], strict=False)), widths


# ------------------------------------------------------------------------------ options and errors
def test_command_line_options_reach_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "train", "--train-ann", "a.json", "--train-images", "img", "--out", str(tmp_path / "r"),
        "--heatmap-loss", "kl", "--kl-temperature", "0.2", "--fg-weight", "5", "--fg-threshold", "0.2",
        "--sigma", "2.5", "--sigma-start", "5", "--sigma-anneal-fraction", "0.4",
        "--teacher-targets", "pp-tinypose-128x96", "--teacher-target-weight", "0.7",
        "--teacher-min-confidence", "0.6",
    ])
    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    config = config_from_options(given)
    assert (config.heatmap_loss, config.kl_temperature, config.fg_weight, config.fg_threshold) == ("kl", 0.2, 5, 0.2)
    assert (config.sigma, config.sigma_start, config.sigma_anneal_fraction) == (2.5, 5, 0.4)
    assert (config.teacher_targets, config.teacher_target_weight, config.teacher_min_confidence) == (
        "pp-tinypose-128x96", 0.7, 0.6)
    default = TrainConfig(out="x", train_ann="a", train_images="i")
    assert (default.heatmap_loss, default.sigma_start, default.teacher_targets) == ("mse", None, None)
    assert BatchTargets.from_config(default, (128, 96), (32, 24)) is None  # official targets untouched


@pytest.mark.parametrize(("changes", "match"), [
    ({"heatmap_loss": "l1"}, "unknown heatmap loss"),
    ({"heatmap_loss": "kl", "kl_temperature": 0.0}, "temperature"),
    ({"heatmap_loss": "fg-mse", "fg_threshold": 1.5}, "threshold"),
    ({"sigma_start": -1.0}, "sigma_start"),
    ({"sigma_start": 4.0, "sigma_anneal_fraction": 2.0}, "sigma_anneal_fraction"),
    ({"teacher_targets": "hrnet"}, "teacher-targets"),
    ({"teacher_target_weight": 1.5}, "teacher_target_weight"),
])
def test_bad_target_options_are_named(changes: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(out="x", train_ann="a", train_images="i", **changes)


def test_confidence_weights_survive_targets_reencoded_per_batch(shared_data: Path, tmp_path: Path) -> None:
    """With a sigma schedule the targets are rebuilt from the joints each batch: the label confidence must still
    scale their weights (a joint with keypoint_scores 0 trains with weight 0)."""
    coco = shared_data / "coco" / "mmpose_coco"
    data = json.loads((coco / "person_keypoints.json").read_text())
    for ann in data["annotations"]:
        ann["keypoint_scores"] = [0.0] * 5 + [1.0] * 12  # the face joints: an untrusted teacher
    ann_file = tmp_path / "scored.json"
    ann_file.write_text(json.dumps(data))
    config = tiny_config(shared_data, tmp_path / "run", train_ann=str(ann_file), sigma_start=4.0,
                         confidence_weights=True)
    trainer = Trainer(config, setup_distributed("cpu"))
    batch = collate_topdown([trainer.train_set[i] for i in range(4)])
    _, weight, _ = trainer.batch_targets(batch, 0, 10)
    assert float(weight[:, :5].abs().sum()) == 0.0 and float(weight[:, 5:].sum()) > 0
