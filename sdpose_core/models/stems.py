"""Convolutional stems that turn an image into a 1/4-resolution feature map.

`StemNet` is the SDPose-T/S backbone: two stride-2 3x3 convs and four ResNet bottlenecks (256 channels
out). The residual blocks use the mmpose/torchvision attribute names (conv1, bn1, ..., downsample.0/1)
so that official checkpoints map one to one. ReLU is an `nn.ReLU` module called after every conv+BN
and after every residual add, which is also what the mmcv-style FLOPs counter expects to see.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def projection_shortcut(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential | None:
    """1x1 conv + BN on the shortcut when the residual changes shape; None when it does not."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with a residual (expansion 1)."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 conv+BN with a residual; `out_channels` = 4 x the inner width (mmpose
    convention: the block is given its output width)."""

    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        inner = out_channels // self.expansion
        self.conv1 = conv1x1(in_channels, inner)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, inner, stride)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def make_residual_layer(
    block: type[BasicBlock] | type[Bottleneck], in_channels: int, out_channels: int, num_blocks: int
) -> nn.Sequential:
    """`num_blocks` blocks; only the first one may change the channel count."""
    blocks = [block(in_channels, out_channels)]
    blocks += [block(out_channels, out_channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class ConvStem(nn.Module):
    """conv3x3(s2)+BN+ReLU twice: image -> 64 channels at 1/4 resolution (shared by StemNet and HRNet)."""

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride=2)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride=2)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class StemNet(ConvStem):
    """SDPose-T/S backbone: conv stem + 4 bottlenecks (64 -> 256 channels), output stride 4."""

    out_channels = 256

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__(in_channels, 64)
        self.layer1 = make_residual_layer(Bottleneck, 64, self.out_channels, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.forward_stem(images))


def init_conv_bn(module: nn.Module, conv_std: float | None = 0.001) -> None:
    """Every conv N(0, conv_std) (bias 0), every BN weight 1 and bias 0: the official backbone init.

    conv_std=None: He init (normal, fan_out, ReLU gain), the torchvision ResNet init, an opt-in for short runs
    (`--stem-init kaiming`). Why: every stem conv is followed by BatchNorm, so its output ignores the weights'
    scale, and Adam moves each weight by about lr per step whatever its size. From the official N(0, 0.001) a 1e-3
    step is as large as the weight itself; He init starts the weights ~50x larger (3x3, 64 channels: std 0.059).
    Measured (README, 'Training on a CPU', session 7's probe): no gain in 10 minutes; kept as an option.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if conv_std is None:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, std=conv_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


STEM_INITS = {"official": init_conv_bn, "kaiming": lambda module: init_conv_bn(module, conv_std=None)}
