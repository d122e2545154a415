"""Losses for SDPose training: per-cycle heatmap MSE plus cycle-to-cycle token self-distillation.

total = sum_c JointsMSE(heatmaps_c, target, target_weight)
      + a_kpt * sum_c MSE(keypoint_tokens_c, keypoint_tokens_{c+1})
      + a_vis * sum_c MSE(visual_tokens_c, visual_tokens_{c+1})
with a = 5e-6 (official). The chain is c+1 -> c (each later cycle teaches the one before it), and, as
in the official code, the teacher is NOT detached, so the distillation gradient reaches both cycles.

Options beyond the official recipe:
- `detach_teacher=True` stops the gradient through cycle c+1 in the token terms (classic
  teacher/student distillation).
- `heatmap_distill_weight > 0` adds w * MSE(heatmaps_c, heatmaps_{c+1}.detach()): each cycle's heatmap
  is also pulled towards the (frozen) next cycle's. Off by default; the official loss has no
  heatmap-to-heatmap term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdpose_core.models.config import CycleOutput


class JointsMSELoss(nn.Module):
    """mmpose JointsMSELoss: mean over (b, k, y, x) of w_bk * (pred - target)^2 (w multiplies the squared
    error once; with use_target_weight=False, w = 1)."""

    def __init__(self, use_target_weight: bool = True, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight
        self.loss_weight = loss_weight

    def forward(
        self, heatmaps: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None
    ) -> torch.Tensor:
        if heatmaps.shape != target.shape:
            raise ValueError(
                f"heatmaps {tuple(heatmaps.shape)} and target {tuple(target.shape)} differ in shape"
            )
        squared = (heatmaps - target).pow(2)
        if self.use_target_weight:
            if target_weight is None:
                raise ValueError("use_target_weight=True needs target_weight of shape (B, K, 1)")
            squared = squared * target_weight.reshape(*target_weight.shape[:2], 1, 1)
        return squared.mean() * self.loss_weight


class SDPoseLoss(nn.Module):
    """Self-distillation loss over a list of CycleOutput (cycle 1 first).

    Returns a dict: "loss" (total), "heatmap_loss", "keypoint_token_loss", "visual_token_loss",
    "heatmap_cycle{c}" (c from 1, like every cycle number in this project: cycle 1 is the deployed pass),
    "keypoint_token_pair{c}_{c+1}" / "visual_token_pair{c}_{c+1}" (cycle c+1 teaches cycle c)
    (weighted), and with heatmap distillation on also "heatmap_distill_loss" and
    "heatmap_distill_pair{c}_{c+1}". With a single cycle the token terms are 0.
    """

    def __init__(
        self,
        keypoint_token_weight: float = 5e-6,
        visual_token_weight: float = 5e-6,
        detach_teacher: bool = False,
        heatmap_distill_weight: float = 0.0,
        use_target_weight: bool = True,
    ) -> None:
        super().__init__()
        self.heatmap_mse = JointsMSELoss(use_target_weight=use_target_weight)
        self.keypoint_token_weight = keypoint_token_weight
        self.visual_token_weight = visual_token_weight
        self.detach_teacher = detach_teacher
        self.heatmap_distill_weight = heatmap_distill_weight

    def _teacher(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach() if self.detach_teacher else tensor

    def forward(
        self, outputs: list[CycleOutput], target: torch.Tensor, target_weight: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        if not outputs:
            raise ValueError("SDPoseLoss needs the output of at least one cycle")
        terms: dict[str, torch.Tensor] = {}
        zero = outputs[0].heatmaps.new_zeros(())
        heatmap_loss = keypoint_loss = visual_loss = distill_loss = zero
        for c, out in enumerate(outputs, start=1):
            terms[f"heatmap_cycle{c}"] = self.heatmap_mse(out.heatmaps, target, target_weight)
            heatmap_loss = heatmap_loss + terms[f"heatmap_cycle{c}"]
        for c, (student, teacher) in enumerate(zip(outputs[:-1], outputs[1:], strict=True), start=1):
            pair = f"pair{c}_{c + 1}"
            kpt = self.keypoint_token_weight * F.mse_loss(
                student.keypoint_tokens, self._teacher(teacher.keypoint_tokens)
            )
            vis = self.visual_token_weight * F.mse_loss(
                student.visual_tokens, self._teacher(teacher.visual_tokens)
            )
            terms[f"keypoint_token_{pair}"], terms[f"visual_token_{pair}"] = kpt, vis
            keypoint_loss, visual_loss = keypoint_loss + kpt, visual_loss + vis
            if self.heatmap_distill_weight > 0:
                hm = self.heatmap_distill_weight * F.mse_loss(student.heatmaps, teacher.heatmaps.detach())
                terms[f"heatmap_distill_{pair}"] = hm
                distill_loss = distill_loss + hm
        terms["heatmap_loss"] = heatmap_loss
        terms["keypoint_token_loss"] = keypoint_loss
        terms["visual_token_loss"] = visual_loss
        total = heatmap_loss + keypoint_loss + visual_loss
        if self.heatmap_distill_weight > 0:
            terms["heatmap_distill_loss"] = distill_loss
            total = total + distill_loss
        terms["loss"] = total
        return terms
