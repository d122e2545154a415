"""Attention hints: an opt-in training signal that points each keypoint token at the patch holding its joint.

Why (issue 16): trained from scratch, SDPose-T sits at the average pose for tens of thousands of samples. The
heatmap of a keypoint token is a linear map of that token, so it can only move with the image once the token's
attention picks the right visual tokens, and the attention only learns to pick them once the head decodes where
the picked tokens are: neither gets a useful gradient from the heatmap MSE while the other is still random.
The hint breaks that loop from the first step: in the first block of cycle 1 (where the keypoint tokens are
still the learned embeddings, so each one is a fixed "where is the left wrist?" query) a cross-entropy pulls
the head-averaged attention of keypoint token k towards the patches around joint k. The gradient reaches the
query, the keys and through them the stem and patch embedding: a dense, well-conditioned detection signal.

The hint is a training aid only: the model, its forward and its official loss are unchanged, the weight decays
linearly to 0 over the first `fraction` of the steps, and a joint without a label (or outside the crop) adds
nothing. Averaging over heads leaves every head free to look elsewhere as long as the mean finds the joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdpose_core.errors import ConfigError


@dataclass(frozen=True)
class AttentionHint:
    """Hint weight `weight` at step 0, linearly to 0 at `fraction` of the run's steps; soft patch targets are
    Gaussians of `sigma` patches around each joint."""

    weight: float
    fraction: float = 0.5
    sigma: float = 0.5

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ConfigError(f"attention_hint_weight must be >= 0, got {self.weight}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"attention_hint_fraction must lie in (0, 1], got {self.fraction}")
        if self.sigma <= 0:
            raise ConfigError(f"attention_hint_sigma must be > 0 (patches), got {self.sigma}")

    def weight_at(self, step: int, total_steps: int) -> float:
        end = max(1.0, self.fraction * max(int(total_steps), 1))
        return self.weight * max(0.0, 1.0 - max(int(step), 0) / end)


def patch_targets(joints: torch.Tensor, image_size: tuple[int, int], grid: tuple[int, int],
                  sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft targets over the patch grid (B, K, gh*gw), row-major like the visual tokens, and which joints count
    (B, K): labelled (visibility > 0) and inside the crop. `joints` is (B, K, 3) in crop pixels."""
    (height, width), (gh, gw) = image_size, grid
    x, y, visible = joints[..., 0].float(), joints[..., 1].float(), joints[..., 2].float()
    valid = (visible > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    # joint position in patch units; patch centres sit at i + 0.5
    px, py = x / (width / gw), y / (height / gh)
    cols = torch.arange(gw, dtype=torch.float32) + 0.5
    rows = torch.arange(gh, dtype=torch.float32) + 0.5
    dx2 = (cols[None, None, None, :] - px[..., None, None]) ** 2
    dy2 = (rows[None, None, :, None] - py[..., None, None]) ** 2
    logits = -(dx2 + dy2) / (2 * sigma**2)  # (B, K, gh, gw)
    targets = torch.softmax(logits.flatten(2), dim=-1)
    return targets, valid


def attention_hint_loss(attention: torch.Tensor, joints: torch.Tensor, image_size: tuple[int, int],
                        grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """Mean cross-entropy between the patch targets and the head-averaged attention of each labelled joint's
    keypoint token on the visual tokens. `attention` is (B, heads, K, K + patches), keypoint tokens first;
    mass a token puts on other keypoint tokens counts as missing the joint. 0 when no joint is labelled."""
    num_keypoints = attention.shape[2]
    on_patches = attention.float().mean(dim=1)[:, :, num_keypoints:]  # (B, K, patches)
    if on_patches.shape[-1] != grid[0] * grid[1]:
        raise ConfigError(f"attention covers {on_patches.shape[-1]} patches but the grid {grid} has "
                          f"{grid[0] * grid[1]}")
    targets, valid = patch_targets(joints.to(on_patches.device), image_size, grid, sigma)
    cross_entropy = -(targets.to(on_patches.device) * on_patches.clamp_min(1e-8).log()).sum(dim=-1)
    valid = valid.to(on_patches.device).float()
    return (cross_entropy * valid).sum() / valid.sum().clamp_min(1.0)
