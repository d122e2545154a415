"""Training aids: the opt-in signals and phases beside the official loss, in one object the trainer asks (issue 16):

- attention hint (`attention_hint.py`): keypoint-token attention in cycle 1's first block pulled to its joint;
- feature hint (`feature_hint.py`): visual tokens regress the teacher's last feature map through a projection;
- single-cycle phase: the first `single_cycle_fraction` of the steps train cycle 1 alone (cheaper: cycle 1 costs
  about half of three on a 2-core CPU, `scripts/measure_train_speed.py`), then every training cycle with the
  self-distillation terms.

With every option at its default this object adds nothing: the official SDPose loss and forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sdpose_core.errors import ConfigError
from sdpose_core.models.config import CycleOutput
from sdpose_core.models.sdpose import SDPose
from sdpose_core.train.attention_hint import AttentionHint, attention_hint_loss
from sdpose_core.train.feature_hint import FeatureHint


class TrainingAids:
    """Built from the TrainConfig and the (unwrapped) model; see the module docstring."""

    def __init__(self, config: Any, model: SDPose, device: torch.device) -> None:
        self.config = config
        self.model = model
        self.attention_hint = (AttentionHint(config.attention_hint_weight, config.attention_hint_fraction,
                                             config.attention_hint_sigma) if config.attention_hint_weight > 0 else None)
        model.capture_entry_attention = self.attention_hint is not None
        self.feature_hint = (FeatureHint(model.config.dim, model.config.patch_size).to(device)
                             if config.teacher_feature_weight > 0 else None)

    def parameters(self) -> list[nn.Parameter]:
        """Trained beside the model (the feature hint's projection); never part of the exported weights."""
        return list(self.feature_hint.parameters()) if self.feature_hint is not None else []

    def cycles_at(self, step: int, total_steps: int) -> int | None:
        """1 during the single-cycle phase, else None (every training cycle)."""
        fraction = self.config.single_cycle_fraction
        return 1 if fraction > 0 and step < fraction * total_steps else None

    def add(self, losses: dict[str, torch.Tensor], outputs: list[CycleOutput], batch: dict[str, Any], step: int,
            total_steps: int) -> dict[str, torch.Tensor]:
        """`losses` with each active hint added to "loss" and logged under its own name."""
        if self.attention_hint is not None:
            attention, self.model.entry_attention = self.model.entry_attention, None
            weight = self.attention_hint.weight_at(step, total_steps)
            hint = weight * attention_hint_loss(attention, batch["joints"], self.model.config.image_size,
                                                self.model.patch_grid, self.attention_hint.sigma)
            losses = {**losses, "loss": losses["loss"] + hint, "attention_hint_loss": hint}
        if self.feature_hint is not None:
            features = batch["teacher_features"].to(outputs[0].visual_tokens.device, non_blocking=True)
            hint = self.config.teacher_feature_weight * self.feature_hint(outputs[0].visual_tokens, features)
            losses = {**losses, "loss": losses["loss"] + hint, "feature_hint_loss": hint}
        return losses

    def state_dict(self) -> dict[str, Any]:
        return {"feature_hint": self.feature_hint.state_dict()} if self.feature_hint is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.feature_hint is not None:
            if "feature_hint" not in state:
                raise ConfigError("this last.pt was trained without --teacher-features: resume without it")
            self.feature_hint.load_state_dict(state["feature_hint"])
