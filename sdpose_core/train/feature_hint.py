"""Feature hints: an opt-in training signal that teaches the visual tokens what the teacher's last feature map says.

Why (issue 16): the heatmap MSE gives a from-scratch SDPose-T a weak, sparse signal; a pretrained teacher's
features give a dense one at every position from the first step (FitNets-style hints). PP-TinyPose's last
feature map before its 1x1 heatmap convolution (`FEATURE_BLOB`: 40 channels at stride 4, the grid of our stem) is
warped onto the student's crop like its heatmaps (train.teacher_targets), standardised per channel over the
batch, cut into the student's patches (each patch: patch_h x patch_w positions x 40 channels), and each visual
token leaving cycle 1 regresses its patch through one learned linear projection (`FeatureHint.proj`, trained
with the model, saved in last.pt, never part of the exported model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdpose_core.models.layers import patchify

FEATURE_BLOB = "relu_143.tmp_0"  # PP-TinyPose: the input of Conv_268, its 17-channel heatmap convolution
FEATURE_CHANNELS = 40


class FeatureHint(nn.Module):
    """MSE between a projection of the visual tokens and the teacher's standardised patch features."""

    def __init__(self, dim: int, patch_size: tuple[int, int], channels: int = FEATURE_CHANNELS) -> None:
        super().__init__()
        self.patch_size = (int(patch_size[0]), int(patch_size[1]))
        self.proj = nn.Linear(dim, channels * self.patch_size[0] * self.patch_size[1])
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    @staticmethod
    def standardise(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Per channel over the batch and positions: zero mean, unit variance (ReLU maps differ in scale a lot)."""
        mean = features.mean(dim=(0, 2, 3), keepdim=True)
        std = features.std(dim=(0, 2, 3), keepdim=True)
        return (features - mean) / (std + eps)

    def forward(self, visual_tokens: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        target = patchify(self.standardise(teacher_features.float()), self.patch_size)  # (B, patches, ph*pw*C)
        if target.shape[1] != visual_tokens.shape[1]:
            raise ValueError(f"teacher features give {target.shape[1]} patches, the model has "
                             f"{visual_tokens.shape[1]} visual tokens")
        return F.mse_loss(self.proj(visual_tokens.float()), target)
