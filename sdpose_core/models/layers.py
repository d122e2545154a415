"""Small reusable transformer layers (timm style) for the SDPose token head.

Numerics follow the official TokenPose/SDPose code exactly (see `golden_tiny.json`, "architecture"):
pre-norm blocks, qkv without bias, attention scale (dim // heads) ** -0.5, LayerNorm eps 1e-5,
exact (erf) GELU, no final norm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_position_embedding(grid_hw: tuple[int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine embedding (DETR style, normalised to 2*pi), shape (1, h*w, dim).

    Rows are enumerated first (row-major patch grid). Channels [0, dim/2) encode the row (y),
    [dim/2, dim) the column (x); inside each half even channels are sin, odd are cos.
    """
    h, w = grid_hw
    half = dim // 2
    eps = 1e-6
    # same float32 op order as the official code so the values match bit for bit
    rows = torch.arange(1, h + 1, dtype=torch.float32)
    cols = torch.arange(1, w + 1, dtype=torch.float32)
    rows = rows / (rows[-1:] + eps) * (2 * math.pi)
    cols = cols / (cols[-1:] + eps) * (2 * math.pi)
    channel = torch.arange(half, dtype=torch.float32)
    inv_freq = temperature ** (2 * torch.div(channel, 2, rounding_mode="floor") / half)

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions[:, None] / inv_freq  # (n, half)
        # interleave sin (even channels) and cos (odd channels), as the official stack/flatten does
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    y_enc = encode(rows)[:, None, :].expand(h, w, half)
    x_enc = encode(cols)[None, :, :].expand(h, w, half)
    return torch.cat((y_enc, x_enc), dim=2).reshape(1, h * w, dim)


def patchify(features: torch.Tensor, patch_size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, num_patches, ph*pw*C): patch grid row-major; inside a patch the channel
    index varies fastest, then the column offset, then the row offset ('b c (h p1) (w p2) -> b (h w) (p1 p2 c)')."""
    b, c, height, width = features.shape
    ph, pw = patch_size
    gh, gw = height // ph, width // pw
    x = features.reshape(b, c, gh, ph, gw, pw)
    x = x.permute(0, 2, 4, 3, 5, 1)  # b, gh, gw, ph, pw, c
    return x.reshape(b, gh * gw, ph * pw * c)


class PatchEmbed(nn.Module):
    """Cut a feature map into patches and project each one to a token (Linear with bias; no norm)."""

    def __init__(self, in_channels: int, patch_size: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Linear(in_channels * patch_size[0] * patch_size[1], dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(patchify(features, self.patch_size))


class Attention(nn.Module):
    """Multi-head self-attention. `fused=True` uses torch's scaled_dot_product_attention (same math,
    faster on CPU); the explicit path is kept to return attention maps."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.fused = True

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        # (B, N, 3*dim) -> 3 x (B, heads, N, head_dim); q takes the first dim columns
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split_heads(x)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = self.attention_weights_from(q, k) @ v
        return self.proj(out.transpose(1, 2).flatten(2))

    def attention_weights_from(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)

    def forward_with_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Like forward, but also returns the softmax attention (B, heads, N, N)."""
        q, k, v = self._split_heads(x)
        weights = self.attention_weights_from(q, k)
        out = self.proj((weights @ v).transpose(1, 2).flatten(2))
        return out, weights


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attn.forward_with_weights(self.norm1(x))
        x = x + attended
        return x + self.mlp(self.norm2(x)), weights


class HeatmapHead(nn.Module):
    """Keypoint token -> heatmap, shared by all cycles.

    The official rule: hidden = Hh*Wh // 8; if dim <= hidden / 2 the head is
    LN -> Linear(dim, hidden) -> LN -> Linear(hidden, Hh*Wh) (no activation), else LN -> Linear(dim, Hh*Wh).
    """

    def __init__(self, dim: int, heatmap_size: tuple[int, int]) -> None:
        super().__init__()
        self.heatmap_size = tuple(heatmap_size)
        pixels = heatmap_size[0] * heatmap_size[1]
        hidden = pixels // 8
        self.norm_in = nn.LayerNorm(dim, eps=1e-5)
        self.two_stage = dim <= 0.5 * hidden
        if self.two_stage:
            self.fc_hidden = nn.Linear(dim, hidden)
            self.norm_hidden = nn.LayerNorm(hidden, eps=1e-5)
            self.fc_out = nn.Linear(hidden, pixels)
        else:
            self.fc_out = nn.Linear(dim, pixels)

    def forward(self, keypoint_tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(keypoint_tokens)
        if self.two_stage:
            x = self.norm_hidden(self.fc_hidden(x))
        x = self.fc_out(x)
        return x.reshape(*x.shape[:-1], *self.heatmap_size)
