"""What a run is built from before the loop starts: worker seeding, precision, the model's overrides and
sizes, frozen BatchNorm, initial weights."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from sdpose_core.errors import ConfigError
from sdpose_core.models import get_config
from sdpose_core.train.config import TrainConfig


def seed_worker(worker_id: int) -> None:
    """DataLoader worker seeding: numpy/random follow torch's per-worker seed (base seed + worker id),
    which comes from the loader's generator, so workers differ from each other and across epochs but are
    reproducible."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def resolve_amp(config: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype | None, str]:
    """(enabled, dtype, why): fp16 with GradScaler on CUDA; on CPU bf16 autocast only where the CPU has
    native bf16 (`--amp`, the recipes' `"amp": true` and the default alike), else fp32
    (`sdpose_core.precision.resolve_amp`; the reason is printed and kept in train_config.json)."""
    from sdpose_core.precision import resolve_amp as resolve_precision

    if config.amp and device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--amp is not supported on device {device}; use --no-amp")
    choice = resolve_precision(config.amp, device, "training")
    return choice.enabled, choice.dtype, choice.reason


def train_model_overrides(config: TrainConfig) -> dict[str, Any]:
    """ModelConfig overrides of a run (everything but num_keypoints, which the training data decides)."""
    overrides: dict[str, Any] = dict(config.model_overrides)
    if config.image_size is not None:
        overrides["image_size"] = tuple(config.image_size)
        overrides.setdefault("heatmap_size", (config.image_size[0] // 4, config.image_size[1] // 4))
    if config.cycles is not None:
        overrides["cycles"] = config.cycles
    overrides.pop("num_keypoints", None)
    return overrides


def dataset_sizes(model_name: str, overrides: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Crop and heatmap sizes of the model a run builds, for the datasets."""
    model_config = get_config(model_name, **overrides)
    return {"image_size": tuple(model_config.image_size), "heatmap_size": tuple(model_config.heatmap_size)}


def freeze_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def load_init_weights(model: nn.Module, spec: str) -> None:
    """Start from pretrained weights (strict): our folder, an official .pth, a run's last.pt or hf://org/repo."""
    from sdpose_core.weights.load import load_model

    load_model(spec, into=model)
    model.train()  # load_model hands models back in eval mode
