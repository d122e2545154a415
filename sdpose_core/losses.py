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
- `heatmap_criterion` replaces the per-cycle JointsMSE (`make_heatmap_loss`: "kl" = `SoftmaxKLLoss`,
  "fg-mse" = `ForegroundMSELoss`); the token terms stay as they are. Both keep the output a heatmap of
  the official kind (peak ~1 at the joint, ~0 elsewhere), so decoding and scores are unchanged.
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


HEATMAP_LOSSES = ("mse", "kl", "fg-mse")


def _check_same_shape(heatmaps: torch.Tensor, target: torch.Tensor) -> None:
    if heatmaps.shape != target.shape:
        raise ValueError(f"heatmaps {tuple(heatmaps.shape)} and target {tuple(target.shape)} differ in shape")


def _per_joint_weight(target_weight: torch.Tensor | None, batch: int, joints: int) -> torch.Tensor:
    if target_weight is None:
        raise ValueError("this heatmap loss needs target_weight of shape (B, K, 1)")
    return target_weight.reshape(batch, joints, 1, 1)


class ForegroundMSELoss(nn.Module):
    """JointsMSE with the foreground weighted up: pixels where the target exceeds `threshold` x its map's
    peak count `foreground_weight` times. A 2-sigma Gaussian covers ~3 % of a 32x24 map, so plain MSE is
    dominated by the background and a flat "average pose" output is nearly optimal; here the peak region
    carries ~10x more of the loss. With foreground_weight=1 this is exactly JointsMSELoss."""

    def __init__(self, foreground_weight: float = 10.0, threshold: float = 0.1) -> None:
        super().__init__()
        if foreground_weight < 1 or not 0 < threshold < 1:
            raise ValueError(f"fg-mse needs foreground_weight >= 1 and 0 < threshold < 1, got "
                             f"{foreground_weight} and {threshold}")
        self.foreground_weight = float(foreground_weight)
        self.threshold = float(threshold)

    def forward(
        self, heatmaps: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None
    ) -> torch.Tensor:
        _check_same_shape(heatmaps, target)
        batch, joints = target.shape[:2]
        peak = target.amax(dim=(2, 3), keepdim=True)
        foreground = (target > self.threshold * peak) & (peak > 0)
        pixel_weight = 1.0 + (self.foreground_weight - 1.0) * foreground.to(heatmaps.dtype)
        weight = pixel_weight * _per_joint_weight(target_weight, batch, joints)
        return ((heatmaps - target).pow(2) * weight).mean()


class SoftmaxKLLoss(nn.Module):
    """KL(softmax(target / T) || softmax(heatmap / T)) over each map's pixels, weighted by the joint's
    target weight and averaged over (B, K), plus `mse_weight` x the official JointsMSE.

    Why softmax(target / T) and not target / sum(target): with the latter the optimum is
    heatmap = T log(target) + c, -inf off the peak, which is not a heatmap (DARK's log, the peak-value
    scores and the studio would all break). With the former the optimum is heatmap = target + c, a
    heatmap of the official kind; the MSE term pins c = 0 and shares that optimum, so the two never pull
    apart. T = 0.1 turns a peak-1, sigma-2 Gaussian into a distribution with ~99 % of its mass in the 7x7
    window around the joint. The gradient w.r.t. a pixel is (p - q) / T per map, not divided by the map's
    pixel count as in the MSE, so it does not vanish while the output is flat."""

    def __init__(self, temperature: float = 0.1, mse_weight: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0 or mse_weight < 0:
            raise ValueError(f"kl needs temperature > 0 and mse_weight >= 0, got {temperature} and {mse_weight}")
        self.temperature = float(temperature)
        self.mse_weight = float(mse_weight)
        self.mse = JointsMSELoss()

    def forward(
        self, heatmaps: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None
    ) -> torch.Tensor:
        _check_same_shape(heatmaps, target)
        batch, joints = target.shape[:2]
        weight = _per_joint_weight(target_weight, batch, joints).reshape(batch, joints)
        log_p = F.log_softmax(heatmaps.reshape(batch, joints, -1) / self.temperature, dim=-1)
        log_q = F.log_softmax(target.reshape(batch, joints, -1) / self.temperature, dim=-1)
        kl = (log_q.exp() * (log_q - log_p)).sum(dim=-1)
        loss = (kl * weight).mean()
        if self.mse_weight > 0:
            loss = loss + self.mse_weight * self.mse(heatmaps, target, target_weight)
        return loss


def make_heatmap_loss(
    name: str = "mse", kl_temperature: float = 0.1, fg_weight: float = 10.0, fg_threshold: float = 0.1
) -> nn.Module:
    """The per-cycle heatmap criterion by name: "mse" (official JointsMSELoss), "kl", "fg-mse"."""
    if name == "mse":
        return JointsMSELoss()
    if name == "kl":
        return SoftmaxKLLoss(kl_temperature)
    if name == "fg-mse":
        return ForegroundMSELoss(fg_weight, fg_threshold)
    raise ValueError(f"unknown heatmap loss {name!r}; choose one of {HEATMAP_LOSSES}")


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
        heatmap_criterion: nn.Module | None = None,
    ) -> None:
        super().__init__()
        # the per-cycle heatmap term: the official JointsMSE unless another criterion is given
        self.heatmap_mse = (heatmap_criterion if heatmap_criterion is not None
                            else JointsMSELoss(use_target_weight=use_target_weight))
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
