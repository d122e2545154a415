"""torchrun DDP on CPU (gloo): 2 ranks x batch B == 1 process x batch 2B, step for step.

The run is one full epoch (12 people: 3 steps of 4, or of 2 per rank), so validation runs too.
Equivalence needs the same samples and the same gradient: DistributedSampler gives rank r the
permutation entries r, r+2, ... of the SAME seeded permutation a single process walks in order, so the
2 ranks' first batches together are the single process's first batch; DDP averages the ranks' mean
losses' gradients, which equals the gradient of the mean over the global batch. BatchNorm would break
this (each rank normalises with its own batch statistics), so both runs use --freeze-bn (BN layers in
eval mode with their running statistics, which are not updated). Augmentation is off (--no-augment)
though it is seeded per sample anyway. Warm-up is off so lr is 1e-3 from step 1 and the weights move
by ~1e-3 per step: far above the 1e-5 tolerance, so a wrong sample split would show.
Tolerance: max abs weight difference 1e-5 (seen: ~1e-7, float32 reduction order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sdpose_core.paths import PROJECT_ROOT
from sdpose_core.train import TrainConfig, train
from sdpose_core.train.state import load_train_state

TINY_OVERRIDES = ["patch_size=2,2", "dim=24", "depth=2", "heads=4"]
TOLERANCE = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def common_args(data: Path) -> list[str]:
    coco = data / "coco" / "mmpose_coco"
    args = [
        "--train-ann", str(coco / "person_keypoints.json"), "--train-images", str(coco / "images"),
        "--val-ann", str(coco / "person_keypoints.json"), "--val-images", str(coco / "images"),
        "--epochs", "1", "--workers", "0", "--image-size", "64", "48",
        "--freeze-bn", "--no-augment", "--warmup-iters", "0", "--lr", "1e-3", "--seed", "5", "--no-progress",
        "--log-every", "1",
    ]
    for override in TINY_OVERRIDES:
        args += ["--override", override]
    return args


def single_process(data: Path, out: Path, batch_size: int) -> dict[str, torch.Tensor]:
    coco = data / "coco" / "mmpose_coco"
    train(TrainConfig(
        out=str(out), train_ann=str(coco / "person_keypoints.json"), train_images=str(coco / "images"), epochs=1,
        max_steps=3, workers=0, val_ann=str(coco / "person_keypoints.json"), val_images=str(coco / "images"),
        image_size=(64, 48), freeze_bn=True, augment=False, warmup_iters=0, lr=1e-3, seed=5,
        progress=False, batch_size=batch_size,
        model_overrides={"patch_size": (2, 2), "dim": 24, "depth": 2, "heads": 4},
    ))
    return load_file(str(out / "final" / "model.safetensors"))


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def test_torchrun_two_ranks_equal_one_process_with_double_batch(shared_data: Path, tmp_path: Path) -> None:
    per_rank_batch = 2
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
        "-m", "sdpose_core", "train", *common_args(shared_data),
        "--batch-size", str(per_rank_batch), "--out", str(tmp_path / "ddp"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    ddp = load_file(str(tmp_path / "ddp" / "final" / "model.safetensors"))

    single = single_process(shared_data, tmp_path / "single", batch_size=2 * per_rank_batch)
    difference = max_abs_difference(ddp, single)
    assert difference <= TOLERANCE, f"DDP and single-process weights differ by {difference:.3g}"

    # not vacuous: one process with the per-rank batch sees different samples and ends elsewhere
    small = single_process(shared_data, tmp_path / "small", batch_size=per_rank_batch)
    assert max_abs_difference(ddp, small) > 100 * TOLERANCE

    # rank 0 alone wrote the logs and the state; the state knows it came from 2 ranks
    state = load_train_state(tmp_path / "ddp" / "last.pt")
    assert state["world_size"] == 2 and state["global_step"] == 3
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "iter"] == [1, 2, 3]

    # validation was sharded over the ranks (6 people each) and gathered: rank 0 scored all 12,
    # with the same per-cycle AP as the single process
    val = [r for r in records if r["kind"] == "val"]
    single_val = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    single_val = [r for r in single_val if r["kind"] == "val"]
    assert [r["cycle"] for r in val] == [1, 2, 3] and all(r["num_instances"] == 12 for r in val)
    for ddp_record, single_record in zip(val, single_val, strict=True):
        assert ddp_record["AP"] == pytest.approx(single_record["AP"], abs=1e-6)
    assert not list((tmp_path / "ddp").glob("*.tmp"))
