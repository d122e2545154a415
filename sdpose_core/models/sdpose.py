"""The SDPose model: a conv stem, patch tokens, and a Multi-Cycled Transformer (MCT).

One forward pass:
  features = stem(image)                                  (B, C, H/4, W/4)
  visual_tokens = patch_embed(features) + pos             (B, Np, dim)
  tokens = [keypoint_tokens ; visual_tokens]              keypoint tokens FIRST
  for cycle in 1..cycles:                                  the SAME blocks every cycle
      for each block l: (l > 0: visual tokens += pos) ; tokens = block(tokens)
      heatmaps_cycle = heatmap_head(tokens[:, :K])        one shared head
The tokens leaving cycle c are the input of cycle c+1 unchanged. Outputs of cycle c do not depend on
how many cycles follow, so `cycles=1` computes one pass only and is exactly the first entry of a longer
run. The official test path decodes the first cycle's heatmaps.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from sdpose_core.errors import ConfigError
from sdpose_core.models.config import CycleOutput, ModelConfig, check_cycles
from sdpose_core.models.hrnet import HRNetStem
from sdpose_core.models.layers import HeatmapHead, PatchEmbed, TransformerBlock, sine_position_embedding
from sdpose_core.models.stems import StemNet, init_conv_bn

STEMS: dict[str, type[nn.Module]] = {"stemnet": StemNet, "hrnet_w32": HRNetStem}
STEM_STRIDE = 4


def validate_config(config: ModelConfig) -> None:
    """Raise ConfigError naming the field when sizes do not fit together."""
    if config.stem not in STEMS:
        raise ConfigError(f"unknown stem {config.stem!r} in model config; known stems: {sorted(STEMS)}")
    ih, iw = config.image_size
    if ih % STEM_STRIDE or iw % STEM_STRIDE:
        raise ConfigError(
            f"image_size {config.image_size} must be divisible by the stem stride {STEM_STRIDE}"
        )
    fh, fw = ih // STEM_STRIDE, iw // STEM_STRIDE
    ph, pw = config.patch_size
    if fh % ph or fw % pw:
        raise ConfigError(
            f"feature map {fh}x{fw} (image_size {config.image_size} / {STEM_STRIDE}) is not divisible by "
            f"patch_size {config.patch_size}"
        )
    if config.dim % config.heads or config.dim % 2:
        raise ConfigError(f"dim {config.dim} must be even and divisible by heads {config.heads}")
    for name in ("depth", "heads", "cycles", "num_keypoints", "mlp_ratio"):
        if getattr(config, name) < 1:
            raise ConfigError(f"model config field {name} must be >= 1, got {getattr(config, name)}")


class SDPose(nn.Module):
    """Tokenized pose estimator with a Multi-Cycled Transformer (SDPose, CVPR 2024).

    Trainable parameters (17 keypoints, 256x192): sdpose-t 4,398,528; sdpose-s-v1 6,620,736;
    sdpose-s-v2 6,227,520; sdpose-b 13,145,984 (HRNet-W32 stages 1-3 exactly as the official
    config, stage-1 width 32; paper "13.2M").
    The fixed sine positional embedding is a persistent buffer (`pos_embedding`), saved but not trained.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        validate_config(config)
        self.config = config
        self.stem = STEMS[config.stem]()
        grid = (
            config.image_size[0] // STEM_STRIDE // config.patch_size[0],
            config.image_size[1] // STEM_STRIDE // config.patch_size[1],
        )
        self.patch_grid = grid  # (rows, cols) of visual tokens, row-major
        self.num_patches = grid[0] * grid[1]
        self.patch_embed = PatchEmbed(self.stem.out_channels, config.patch_size, config.dim)
        self.register_buffer("pos_embedding", sine_position_embedding(grid, config.dim), persistent=True)
        self.keypoint_token = nn.Parameter(torch.zeros(1, config.num_keypoints, config.dim))
        self.blocks = nn.ModuleList(
            TransformerBlock(config.dim, config.heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.heatmap_head = HeatmapHead(config.dim, config.heatmap_size)
        # training signal only (sdpose_core.train.attention_hint): with capture on, a training forward keeps the
        # keypoint tokens' attention in the first block of cycle 1 here, inside forward so DDP sees it
        self.capture_entry_attention = False
        self.entry_attention: torch.Tensor | None = None
        self.init_weights()

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """Official from-scratch init: stem convs N(0, 0.001), BN 1/0; keypoint token and every Linear
        trunc_normal(std .02, cut at +-2 absolute) with zero bias; LayerNorm 1/0."""
        init_conv_bn(self.stem)
        nn.init.trunc_normal_(self.keypoint_token, std=0.02)
        for name, m in self.named_modules():
            if name.startswith("stem"):
                continue
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ----------------------------------------------------------- attention
    def keypoint_attention(self, tokens: torch.Tensor, block_index: int = 0) -> torch.Tensor:
        """Softmax attention rows of the keypoint tokens (B, heads, K, N) in block `block_index`, given the
        tokens entering that block: the same weights the block's fused attention uses."""
        block = self.blocks[block_index]
        q, k, _ = block.attn._split_heads(block.norm1(tokens))
        return block.attn.attention_weights_from(q[:, :, : self.config.num_keypoints], k)

    @property
    def fused_attention(self) -> bool:
        return all(block.attn.fused for block in self.blocks)

    @fused_attention.setter
    def fused_attention(self, enabled: bool) -> None:
        """Switch between torch's scaled_dot_product_attention and the explicit softmax(QK^T)V."""
        for block in self.blocks:
            block.attn.fused = enabled

    # --------------------------------------------------------------- forward
    def check_input(self, images: torch.Tensor) -> None:
        expected = tuple(self.config.image_size)
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != expected:
            raise ConfigError(
                f"{self.config.name}: expected images of shape (B, 3, {expected[0]}, {expected[1]}) "
                f"(RGB, ImageNet-normalised), got {tuple(images.shape)}; resize/crop to image_size {expected}"
            )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Image -> token sequence entering cycle 1: [keypoint tokens ; patch tokens + pos]."""
        self.check_input(images)
        visual_tokens = self.patch_embed(self.stem(images)) + self.pos_embedding
        keypoint_tokens = self.keypoint_token.expand(images.shape[0], -1, -1)
        return torch.cat((keypoint_tokens, visual_tokens), dim=1)

    def _keypoint_padded_pos(self) -> torch.Tensor:
        # zeros for the keypoint tokens, so one add re-injects pos into the visual tokens only
        k = self.config.num_keypoints
        return nn.functional.pad(self.pos_embedding, (0, 0, k, 0))

    def _pass_blocks(
        self, tokens: torch.Tensor, padded_pos: torch.Tensor | None, last_attention: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The one block loop of a cycle; with `last_attention` the last block also returns its softmax
        attention (the explicit softmax(QK^T)V path, for `attention_maps`)."""
        if padded_pos is None:
            padded_pos = self._keypoint_padded_pos()
        weights = None
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            if index > 0:
                tokens = tokens + padded_pos
            if last_attention and index == last:
                tokens, weights = block.forward_with_attention(tokens)
            else:
                tokens = block(tokens)
        return tokens, weights

    def run_cycle(self, tokens: torch.Tensor, padded_pos: torch.Tensor | None = None) -> torch.Tensor:
        """One pass through the shared blocks (pos re-added to visual tokens before blocks 1..depth-1)."""
        return self._pass_blocks(tokens, padded_pos, last_attention=False)[0]

    def cycle_output(self, tokens: torch.Tensor) -> CycleOutput:
        """What a cycle yields from the tokens leaving it: the shared head's heatmaps of the keypoint
        tokens, and both token groups."""
        k = self.config.num_keypoints
        keypoint_tokens, visual_tokens = tokens[:, :k], tokens[:, k:]
        return CycleOutput(self.heatmap_head(keypoint_tokens), keypoint_tokens, visual_tokens)

    def iter_cycles(self, images: torch.Tensor, cycles: int | None = None) -> Iterator[CycleOutput]:
        """Yield each cycle's output lazily; stopping early skips the remaining cycles' compute."""
        cycles = check_cycles(cycles, self.config.cycles)
        tokens = self.embed(images)
        if self.capture_entry_attention and self.training:
            self.entry_attention = self.keypoint_attention(tokens)
        padded_pos = self._keypoint_padded_pos()
        for _ in range(cycles):
            tokens = self.run_cycle(tokens, padded_pos)
            yield self.cycle_output(tokens)

    def forward(self, images: torch.Tensor, cycles: int | None = None) -> list[CycleOutput]:
        """Outputs of cycles 1..cycles (None = config.cycles); entry 0 is what the official test decodes."""
        return list(self.iter_cycles(images, cycles))

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor, cycles: int | None = None) -> list[torch.Tensor]:
        """Softmax attention (B, heads, N, N) of the LAST block in every cycle (token order: keypoints
        first). For visualisation and for checking against the official attention."""
        cycles = check_cycles(cycles, self.config.cycles)
        tokens = self.embed(images)
        padded_pos = self._keypoint_padded_pos()
        maps = []
        for _ in range(cycles):
            tokens, weights = self._pass_blocks(tokens, padded_pos, last_attention=True)
            maps.append(weights)
        return maps

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
