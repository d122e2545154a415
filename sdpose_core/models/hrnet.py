"""Three-stage HRNet-W32 stem of SDPose-B / TokenPose-B.

Follows the official `HRNet_3stage` config (`sdpose_b_hr32_coco_256x192.py`): conv stem (64 ch, 1/4
resolution); stage 1 = 4 bottlenecks with inner width 32 (128 channels out); stage 2 = one
high-resolution module with branches (32, 64); stage 3 = four modules with branches (32, 64, 128),
4 basic blocks per branch. The last module of stage 3 fuses only into the highest-resolution branch,
whose 32-channel map at 1/4 resolution is the stem output. Attribute names follow mmpose
(conv1/bn1/conv2/bn2, layer1, transition1, stage2, transition2, stage3, branches, fuse_layers), so
official SDPose-B checkpoints map by prefix only.
"""

from __future__ import annotations

import torch
from torch import nn

from sdpose_core.models.stems import BasicBlock, Bottleneck, ConvStem, conv1x1, conv3x3, make_residual_layer


def _conv_bn(in_channels: int, out_channels: int, stride: int, kernel: int, relu: bool) -> nn.Sequential:
    conv = conv3x3(in_channels, out_channels, stride) if kernel == 3 else conv1x1(in_channels, out_channels)
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every output branch sums all inputs resampled to it."""

    def __init__(self, channels: tuple[int, ...], blocks_per_branch: int, multiscale_output: bool) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.branches = nn.ModuleList(
            make_residual_layer(BasicBlock, c, c, blocks_per_branch) for c in self.channels
        )
        num_outputs = len(self.channels) if multiscale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._resampler(src, dst) for src in range(len(self.channels)))
            for dst in range(num_outputs)
        )
        self.relu = nn.ReLU(inplace=True)

    def _resampler(self, src: int, dst: int) -> nn.Module | None:
        """Branch `src` -> resolution and width of branch `dst` (None for itself)."""
        c = self.channels
        if src == dst:
            return None
        if src > dst:  # lower resolution: 1x1 conv + BN, then nearest upsampling
            return nn.Sequential(
                conv1x1(c[src], c[dst]), nn.BatchNorm2d(c[dst]), nn.Upsample(scale_factor=2 ** (src - dst))
            )
        steps = dst - src  # higher resolution: stride-2 3x3 convs, only the last changes width (no ReLU)
        return nn.Sequential(
            *(
                _conv_bn(c[src], c[dst] if k == steps - 1 else c[src], 2, 3, relu=k < steps - 1)
                for k in range(steps)
            )
        )

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(t) for branch, t in zip(self.branches, inputs, strict=True)]
        outputs = []
        for resamplers in self.fuse_layers:
            fused: torch.Tensor | int = 0
            for src, resample in enumerate(resamplers):
                fused = fused + (x[src] if resample is None else resample(x[src]))
            outputs.append(self.relu(fused))
        return outputs


class HRNetStem(ConvStem):
    """HRNet stages 1-3 (W32); returns the 32-channel highest-resolution map (stride 4)."""

    out_channels = 32

    def __init__(
        self,
        in_channels: int = 3,
        stage1_width: int = 32,
        stage2_channels: tuple[int, ...] = (32, 64),
        stage3_channels: tuple[int, ...] = (32, 64, 128),
        stage3_modules: int = 4,
        blocks_per_branch: int = 4,
    ) -> None:
        super().__init__(in_channels, 64)
        stage1_out = stage1_width * Bottleneck.expansion
        self.layer1 = make_residual_layer(Bottleneck, 64, stage1_out, 4)
        self.transition1 = self._transition((stage1_out,), stage2_channels)
        self.stage2 = nn.Sequential(HighResolutionModule(stage2_channels, blocks_per_branch, True))
        self.transition2 = self._transition(stage2_channels, stage3_channels)
        self.stage3 = nn.Sequential(
            *(
                HighResolutionModule(stage3_channels, blocks_per_branch, i < stage3_modules - 1)
                for i in range(stage3_modules)
            )
        )
        self.out_channels = stage3_channels[0]

    @staticmethod
    def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
        """Adapt the existing branches' widths (3x3 conv) and open new lower-resolution branches from the
        last existing one (stride-2 3x3 convs)."""
        layers: list[nn.Module | None] = []
        for i, width in enumerate(current):
            if i < len(previous):
                layers.append(None if previous[i] == width else _conv_bn(previous[i], width, 1, 3, relu=True))
            else:
                steps = i + 1 - len(previous)
                layers.append(
                    nn.Sequential(
                        *(
                            _conv_bn(previous[-1], width if k == steps - 1 else previous[-1], 2, 3, relu=True)
                            for k in range(steps)
                        )
                    )
                )
        return nn.ModuleList(layers)

    @staticmethod
    def _run_transition(transition: nn.ModuleList, branches: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(transition):
            if i < len(branches):
                out.append(branches[i] if layer is None else layer(branches[i]))
            else:
                out.append(layer(branches[-1]))
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.layer1(self.forward_stem(images))
        branches = self.stage2(self._run_transition(self.transition1, [x]))
        branches = self.stage3(self._run_transition(self.transition2, branches))
        return branches[0]
