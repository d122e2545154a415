"""Training engine: LR schedule, bit-for-bit resume, run outputs, AMP, and inference over a dataset.

Runs use a tiny SDPose-T (64x48 input, 2x2 patches, dim 24, depth 2, 4 heads: the golden-tiny shape)
on the 4 real images / 12 people of coco/mmpose_coco, so a training run takes a second or two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_run import TINY, tiny_config

from sdpose_core.errors import CheckpointError, ConfigError
from sdpose_core.train import TrainConfig, WarmupStepSchedule, predict_dataset, train
from sdpose_core.train.state import load_train_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")




def training_state(run_dir: Path) -> dict:
    return load_train_state(run_dir / "last.pt")


def assert_same_state(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), f"weights differ at {key}"
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(pa[name], pb[name]), f"Adam {name} differs"
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


# ----------------------------------------------------------------------------- schedule
def test_schedule_reproduces_mmcv_step_with_linear_warmup() -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = TrainConfig(out="x", train_ann="a", train_images="i", epochs=300)
    assert config.lr_step_epochs() == [200, 260]  # the official milestones at full length
    schedule = WarmupStepSchedule(optimizer, config.lr_step_epochs(), 0.1, 500, 0.001)
    # mmcv: lr = regular * (1 - (1 - i / 500) * (1 - 0.001)) during warm-up
    assert schedule.apply(0, 0)[0] == pytest.approx(1e-6)
    assert schedule.apply(0, 250)[0] == pytest.approx(1e-3 * (1 - 0.5 * 0.999))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5005)
    assert schedule.apply(1, 500)[0] == pytest.approx(1e-3)
    assert schedule.apply(199, 10**6)[0] == pytest.approx(1e-3)
    assert schedule.apply(200, 10**6)[0] == pytest.approx(1e-4)
    assert schedule.apply(259, 10**6)[0] == pytest.approx(1e-4)
    assert schedule.apply(260, 10**6)[0] == pytest.approx(1e-5)
    # warm-up multiplies the decayed lr, as mmcv's get_warmup_lr does
    assert schedule.apply(200, 0)[0] == pytest.approx(1e-7)
    # scaled to a 30-epoch run: decays at 2/3 and 13/15 of it
    assert TrainConfig(out="x", train_ann="a", train_images="i", epochs=30).lr_step_epochs() == [20, 26]


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(out="x", train_ann="a", train_images="i", epochs=0)
    with pytest.raises(ConfigError, match="image_size"):
        TrainConfig(out="x", train_ann="a", train_images="i", image_size=(250, 190))
    with pytest.raises(ConfigError, match="val-ann"):
        TrainConfig(out="x", train_ann="a", train_images="i", val_ann="v")
    with pytest.raises(ConfigError, match="unknown training config fields"):
        TrainConfig.from_dict({"out": "x", "train_ann": "a", "train_images": "i", "learning_rate": 1})


# ------------------------------------------------------------------------------ resume
def test_resume_continues_bit_for_bit(shared_data: Path, tmp_path: Path) -> None:
    """2 epochs straight == 1 epoch, stop, resume 1 epoch (augmentation on: it is seeded per sample)."""
    straight = train(tiny_config(shared_data, tmp_path / "straight"))
    assert straight.global_step == 6 and straight.epochs_completed == 2  # 12 people / batch 4 = 3 steps

    first = train(tiny_config(shared_data, tmp_path / "resumed", max_steps=3))
    assert first.epochs_completed == 1
    stopped = training_state(tmp_path / "resumed")
    assert not torch.equal(stopped["model"]["keypoint_token"], training_state(tmp_path / "straight")["model"]["keypoint_token"])
    resumed = train(tiny_config(shared_data, tmp_path / "resumed", resume=str(tmp_path / "resumed")))
    assert resumed.global_step == 6 and resumed.epochs_completed == 2
    assert_same_state(training_state(tmp_path / "straight"), training_state(tmp_path / "resumed"))


def test_resume_mid_epoch_with_workers(shared_data: Path, tmp_path: Path) -> None:
    """Stopping inside an epoch and resuming skips exactly the batches already seen; worker processes
    do not change the result."""
    train(tiny_config(shared_data, tmp_path / "straight", epochs=1))
    train(tiny_config(shared_data, tmp_path / "resumed", epochs=1, max_steps=2, workers=2))
    state = training_state(tmp_path / "resumed")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 2, 2)
    train(tiny_config(shared_data, tmp_path / "resumed", epochs=1, resume=str(tmp_path / "resumed" / "last.pt")))
    assert_same_state(training_state(tmp_path / "straight"), training_state(tmp_path / "resumed"))


def test_different_seed_gives_different_weights(shared_data: Path, tmp_path: Path) -> None:
    """The resume comparison above is not vacuous: the seed (init and augmentation) matters."""
    train(tiny_config(shared_data, tmp_path / "a", epochs=1))
    train(tiny_config(shared_data, tmp_path / "b", epochs=1, seed=4))
    a, b = training_state(tmp_path / "a"), training_state(tmp_path / "b")
    assert not torch.equal(a["model"]["keypoint_token"], b["model"]["keypoint_token"])


def test_resume_errors_are_clear(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        train(tiny_config(shared_data, tmp_path / "r", resume=str(tmp_path / "nowhere")))
    train(tiny_config(shared_data, tmp_path / "r", epochs=1, max_steps=1))
    with pytest.raises(ConfigError, match="cannot resume"):
        train(tiny_config(shared_data, tmp_path / "r", resume=str(tmp_path / "r"), model_overrides={**TINY, "dim": 32}))


# ------------------------------------------------------------------------ run outputs
def test_run_writes_checkpoints_logs_and_validation(shared_data: Path, tmp_path: Path) -> None:
    from sdpose_core.weights import load_pretrained

    coco = shared_data / "coco" / "mmpose_coco"
    config = tiny_config(shared_data, tmp_path / "run", val_ann=str(coco / "person_keypoints.json"),
                         val_images=str(coco / "images"), cycles=2)
    result = train(config)
    run = tmp_path / "run"
    state = training_state(run)
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "global_step", "rng", "config"):
        assert key in state
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["config"]["epochs"] == 2 and state["model_config"]["cycles"] == 2

    # best/ and final/ are our safetensors format and load into a working model
    final = load_pretrained(str(run / "final"))
    assert final.config.cycles == 2 and final.config.dim == 24
    for key, value in final.state_dict().items():
        assert torch.equal(value, state["model"][key])
    assert (run / "best" / "model.safetensors").is_file()
    assert result.best_ap is not None and result.best_epoch in (1, 2)

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    iters = [r for r in records if r["kind"] == "iter"]
    assert [r["step"] for r in iters] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) and r["lr"] > 0 for r in iters)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for record in epochs:  # per-cycle AP with GT boxes from the real evaluation path
        assert 0.0 <= record["val_AP_cycle1"] <= 1.0 and 0.0 <= record["val_AP_cycle2"] <= 1.0
    header = (run / "train_epochs.csv").read_text().splitlines()[0].split(",")
    assert "val_AP_cycle1" in header and "train_loss" in header
    assert len((run / "train_iters.csv").read_text().splitlines()) == 7
    assert json.loads((run / "train_config.json").read_text())["model"]["dim"] == 24


def test_init_weights_start_from_a_saved_model(shared_data: Path, tmp_path: Path) -> None:
    from sdpose_core.models import build_model
    from sdpose_core.train import DistContext, Trainer
    from sdpose_core.weights.checkpoint import save_pretrained

    torch.manual_seed(11)
    source = build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), **TINY)
    save_pretrained(source, tmp_path / "pretrained")
    trainer = Trainer(tiny_config(shared_data, tmp_path / "run", init_weights=str(tmp_path / "pretrained")),
                      DistContext())
    for key, value in source.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value)
    wrong = tiny_config(shared_data, tmp_path / "run2", init_weights=str(tmp_path / "pretrained"),
                        model_overrides={**TINY, "depth": 3})
    with pytest.raises(CheckpointError):
        Trainer(wrong, DistContext())


def test_stem_init_kaiming_starts_the_stem_convs_at_he_scale(shared_data: Path, tmp_path: Path) -> None:
    """--stem-init kaiming: each stem conv's std is sqrt(2 / fan_out) (official: 0.001); the rest is untouched."""
    from sdpose_core.train import DistContext, Trainer

    runs = {}
    for init in ("official", "kaiming"):
        torch.manual_seed(5)
        runs[init] = Trainer(tiny_config(shared_data, tmp_path / init, stem_init=init), DistContext()).model
    convs = [m for m in runs["kaiming"].stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) >= 10
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)
    for conv in (m for m in runs["official"].stem.modules() if isinstance(m, torch.nn.Conv2d)):
        assert conv.weight.std().item() == pytest.approx(0.001, rel=0.15)
    official, kaiming = runs["official"].state_dict(), runs["kaiming"].state_dict()
    for key in official:
        if not key.startswith("stem."):
            assert torch.equal(official[key], kaiming[key]), key
    with pytest.raises(ConfigError, match="stem_init"):
        tiny_config(shared_data, tmp_path / "bad", stem_init="xavier")


def test_amp_on_cpu_trains(shared_data: Path, tmp_path: Path) -> None:
    # bf16 autocast where the CPU has native bf16, fp32 elsewhere (both ways: tests/test_precision.py)
    result = train(tiny_config(shared_data, tmp_path / "amp", epochs=1, max_steps=2, amp=True))
    state = training_state(tmp_path / "amp")
    assert result.global_step == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # weights stay float32 under autocast
    assert state["model"]["keypoint_token"].dtype == torch.float32


# ------------------------------------------------------------------------- inference
@pytest.fixture(scope="module")
def tiny_model_and_data(shared_data: Path):
    from sdpose_core.data import TopDownDataset
    from sdpose_core.models import build_model

    torch.manual_seed(0)
    model = build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), **TINY).eval()
    coco = shared_data / "coco" / "mmpose_coco"
    gt = TopDownDataset(coco / "person_keypoints.json", coco / "images", train=False, image_size=(64, 48),
                        heatmap_size=(16, 12))
    det = TopDownDataset(coco / "person_keypoints.json", coco / "images", train=False, image_size=(64, 48),
                         heatmap_size=(16, 12), boxes=str(coco / "person_detections.json"))
    return model, gt, det


def test_predict_dataset_gives_every_cycle_from_one_pass(tiny_model_and_data) -> None:
    model, gt, _ = tiny_model_and_data
    results = predict_dataset(model, gt, cycles=3, batch_size=5)
    assert sorted(results) == [1, 2, 3]
    assert all(len(r) == len(gt) for r in results.values())  # GT boxes: no NMS, one result per person
    single = predict_dataset(model, gt, cycles=1, batch_size=5)
    assert list(single) == [1]
    for a, b in zip(results[1], single[1], strict=True):
        assert a["image_id"] == b["image_id"]
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-3)
    first = np.array([r["keypoints"] for r in results[1]])
    third = np.array([r["keypoints"] for r in results[3]])
    assert not np.allclose(first, third)  # later cycles are different passes
    image_ids = {int(i) for i in gt.coco.getImgIds()}
    assert {r["image_id"] for r in results[1]} <= image_ids
    assert all(len(r["keypoints"]) == 51 for r in results[1])


def test_flip_test_averages_with_the_mirrored_pass(tiny_model_and_data) -> None:
    from sdpose_core.data import collate_topdown
    from sdpose_core.heatmaps import decode_heatmaps, flip_heatmaps_back
    from sdpose_core.train import collect_predictions

    model, gt, _ = tiny_model_and_data
    predicted = collect_predictions(model, gt, cycles=2, flip=True, batch_size=5)
    plain = collect_predictions(model, gt, cycles=2, flip=False, batch_size=5)
    assert not np.allclose(predicted.keypoints[2], plain.keypoints[2])
    # the same thing by hand: average each cycle's heatmaps with the mirrored crop's, put back
    batch = collate_topdown([gt[i] for i in range(len(gt))])
    with torch.inference_mode():
        outputs = model(batch["image"], cycles=2)
        mirrored = model(torch.flip(batch["image"], dims=[3]), cycles=2)
    for cycle in (1, 2):
        back = flip_heatmaps_back(mirrored[cycle - 1].heatmaps, gt.layout.flip_index())
        averaged = (outputs[cycle - 1].heatmaps + back) * 0.5
        expected = decode_heatmaps(averaged.numpy(), batch["meta"]["center"], batch["meta"]["scale"])
        np.testing.assert_allclose(predicted.keypoints[cycle], expected, atol=1e-3)


def test_detected_boxes_are_rescored_and_nms_filtered(tiny_model_and_data) -> None:
    model, _, det = tiny_model_and_data
    results = predict_dataset(model, det, cycles=2)
    assert len(results[1]) <= len(det)
    # rescoring: box score x mean keypoint score above 0.2, so never above the box score
    assert all(0.0 <= r["score"] <= 1.0 for r in results[1])
    no_nms = predict_dataset(model, det, cycles=1, nms=False)[1]
    assert len(no_nms) == len(det)


def test_predict_rejects_a_dataset_of_another_size(tiny_model_and_data, shared_data: Path) -> None:
    from sdpose_core.data import TopDownDataset

    model, _, _ = tiny_model_and_data
    coco = shared_data / "coco" / "mmpose_coco"
    wrong = TopDownDataset(coco / "person_keypoints.json", coco / "images", train=False)
    with pytest.raises(ConfigError, match="model expects"):
        predict_dataset(model, wrong, cycles=1)
