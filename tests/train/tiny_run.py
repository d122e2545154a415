"""The tiny SDPose-T and training config the trainer tests share (real shared COCO people, 64x48 crops)."""

from __future__ import annotations

from pathlib import Path

from sdpose_core.train.config import TrainConfig

TINY = {"patch_size": (2, 2), "dim": 24, "depth": 2, "heads": 4}


def tiny_config(data: Path, out: Path, **changes) -> TrainConfig:
    coco = data / "coco" / "mmpose_coco"
    values = dict(
        out=str(out), train_ann=str(coco / "person_keypoints.json"), train_images=str(coco / "images"),
        epochs=2, batch_size=4, workers=0, image_size=(64, 48), model_overrides=dict(TINY), progress=False,
        log_every=1, warmup_iters=4, seed=3,
    )
    values.update(changes)
    return TrainConfig(**values)
