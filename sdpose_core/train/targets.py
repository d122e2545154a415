"""Training targets built in the main process, per batch: a sigma that changes during training and teacher
soft targets mixed in.

Why here and not in the dataset: DataLoader workers hold copies of the dataset (made when the loader's
iterator starts, kept with persistent workers), so a sigma set on the main process's dataset would not reach
them reliably. Every sample carries its joints in crop pixels (`batch["joints"]`, (B, K, 3): x, y, visibility
after the flip), and the Gaussian targets are re-encoded from them at the current sigma with the same
`gaussian_targets` the dataset uses: at equal sigma the result equals the dataset's target exactly. This is
a few hundred microseconds per batch of 64 at 32x24 heatmaps.

Sigma schedule (`sigma_start` set): linear from `sigma_start` at step 0 to `sigma` at `sigma_anneal_fraction`
of the run's total steps, then `sigma`: wide Gaussians first (a rough location already earns loss), then
the official width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sdpose_core.errors import ConfigError
from sdpose_core.heatmaps import gaussian_targets


@dataclass(frozen=True)
class SigmaSchedule:
    """Sigma (heatmap pixels) as a function of the step: `start` -> `end` over the first `fraction` of steps."""

    start: float
    end: float
    fraction: float

    def __post_init__(self) -> None:
        if self.start <= 0 or self.end <= 0:
            raise ConfigError(f"sigma_start and sigma must be > 0, got {self.start} and {self.end}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"sigma_anneal_fraction must lie in (0, 1], got {self.fraction}")

    def at(self, step: int, total_steps: int) -> float:
        anneal_steps = max(1, round(self.fraction * max(int(total_steps), 1)))
        progress = min(max(int(step), 0) / anneal_steps, 1.0)
        return self.start + (self.end - self.start) * progress


class BatchTargets:
    """(target, target_weight, logged) of a training batch at a step; see the module docstring."""

    def __init__(self, image_size: Sequence[int], heatmap_size: Sequence[int], sigma: float,
                 schedule: SigmaSchedule | None = None, teacher_weight: float | None = None,
                 teacher_min_confidence: float = 0.5) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.schedule = schedule
        self.teacher_weight = teacher_weight
        self.teacher_min_confidence = float(teacher_min_confidence)

    @classmethod
    def from_config(cls, config: Any, image_size: Sequence[int], heatmap_size: Sequence[int]) -> BatchTargets | None:
        """None for the official targets (no sigma schedule, no teacher): the dataset's own are used."""
        schedule = (SigmaSchedule(config.sigma_start, config.sigma, config.sigma_anneal_fraction)
                    if config.sigma_start is not None else None)
        teacher_weight = config.teacher_target_weight if config.teacher_targets else None
        if schedule is None and teacher_weight is None:
            return None
        return cls(image_size, heatmap_size, config.sigma, schedule, teacher_weight, config.teacher_min_confidence)

    def sigma_at(self, step: int, total_steps: int) -> float:
        return self.schedule.at(step, total_steps) if self.schedule is not None else self.sigma

    def gaussian(self, joints: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian targets (B, K, H, W) and weights (B, K, 1) of joints (B, K, 3) in crop pixels."""
        batch, num_joints = joints.shape[:2]
        flat = joints.reshape(-1, 3).double().numpy()
        target, weight = gaussian_targets(flat[:, :2], flat[:, 2], self.image_size, self.heatmap_size, sigma)
        return (torch.from_numpy(target).reshape(batch, num_joints, *self.heatmap_size),
                torch.from_numpy(weight).reshape(batch, num_joints, 1))

    def __call__(self, batch: dict[str, Any], step: int, total_steps: int
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        logged: dict[str, float] = {}
        if "joints" not in batch:
            raise ConfigError("a sigma schedule or teacher targets need batch['joints'] (TopDownDataset samples)")
        sigma = self.sigma_at(step, total_steps)
        if self.schedule is not None:
            target, weight = self.gaussian(batch["joints"], sigma)
            if "label_confidence" in batch:  # the dataset's confidence weights (TopDownDataset confidence_weights)
                weight = weight * batch["label_confidence"].to(weight.dtype)[..., None]
            logged["target_sigma"] = sigma
        else:
            target, weight = batch["target"], batch["target_weight"]
        if self.teacher_weight is not None:
            from sdpose_core.train.teacher_targets import blend_teacher_targets

            if "teacher_heatmaps" not in batch:
                raise ConfigError("teacher targets are on but the batch has no teacher_heatmaps: build the dataset "
                                  "with extra_targets=TeacherTargets(...)")
            target, weight = blend_teacher_targets(target, weight, batch["teacher_heatmaps"],
                                                   batch["teacher_confidence"], self.teacher_weight,
                                                   self.teacher_min_confidence)
            logged["teacher_joint_fraction"] = float(
                (batch["teacher_confidence"] >= self.teacher_min_confidence).float().mean())
        return target, weight, logged
