"""CPU inference speed-ups for a trained SDPose model (torch eager, ONNX), measured by `sdpose_core.benchmark.speed`.

    from sdpose_core.deploy.cpu_speedups import prepare_for_cpu, prepare_for_onnx
    fast = prepare_for_cpu(model)          # a copy: BN folded into the convs, stem in channels_last
    export_onnx(prepare_for_onnx(model), "t.onnx")   # a copy whose patch embedding is one strided Conv

What each does (`sdpose benchmark` times them against the plain model in its "torch single pass speed-ups"
section, with their heatmap change; README, "Speed on a 2-core CPU"):
- `channels_last`: NHWC memory format for the stem's convolutions (oneDNN's preferred layout); the
  input is converted by the first convolution.
- `fold_bn`: eval-mode BatchNorm is a per-channel affine map, merged into the preceding convolution's
  weight and bias. With channels_last it removes passes over NHWC maps; `prepare_for_cpu` does both.
- bf16 autocast (`torch.autocast("cpu", dtype=torch.bfloat16)`) is the largest gain on CPUs with
  AVX512-BF16/AMX but changes the heatmaps (bf16 keeps 8 significant bits), so it is a caller's choice (e.g. the
  evaluation's `amp_dtype=torch.bfloat16`), not done here. On CPUs without native bf16 it is emulated and
  several times SLOWER than fp32: callers use it only where `sdpose_core.precision.cpu_has_native_bf16()`.

For ONNX, `prepare_for_onnx(model)` turns the patch embedding (patchify reshape/transpose + Linear) into
the equivalent strided Conv (`ConvPatchEmbed`, heatmaps within 1e-6), which onnxruntime runs faster and
hybrid int8 quantizes statically with the stem. `sdpose benchmark` times both graphs in one run (its int8
section, rows "hybrid" and "hybrid, Linear patch embedding").
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sdpose_core.errors import ConfigError


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d computing bn(conv(x)) with eval-mode BN statistics."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused = fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into it, in place; returns how many.

    Recognised patterns (all the SDPose stems use them): attribute pairs `convN` / `bnN`, the pair
    `downsample[0]` / `downsample[1]`, and a Conv2d immediately followed by a BatchNorm2d inside an
    nn.Sequential. The BN is replaced by nn.Identity. Only valid in eval mode.
    """
    if model.training:
        raise ConfigError("fold_batchnorm needs a model in eval mode (BN must use its running statistics)")
    folded = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not (isinstance(child, nn.Conv2d) and name.startswith("conv")):
                continue
            bn = getattr(module, "bn" + name[len("conv"):], None)
            if isinstance(bn, nn.BatchNorm2d) and bn.num_features == child.out_channels:
                setattr(module, name, _fold_pair(child, bn))
                setattr(module, "bn" + name[len("conv"):], nn.Identity())
                folded += 1
        if isinstance(module, nn.Sequential):
            for index in range(len(module) - 1):
                conv, bn = module[index], module[index + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[index], module[index + 1] = _fold_pair(conv, bn), nn.Identity()
                    folded += 1
    return folded


class ConvPatchEmbed(nn.Module):
    """`PatchEmbed` as one strided convolution (kernel = stride = patch): the same tokens, computed without
    the patchify reshape/transpose. In ONNX it becomes a Conv node, which onnxruntime runs faster than
    Transpose + MatMul and the hybrid int8 scheme quantizes statically like the stem's convolutions."""

    def __init__(self, patch_embed: nn.Module) -> None:
        super().__init__()
        ph, pw = patch_embed.patch_size
        dim, inputs = patch_embed.proj.weight.shape
        channels = inputs // (ph * pw)
        self.patch_size = (ph, pw)
        self.conv = nn.Conv2d(channels, dim, (ph, pw), stride=(ph, pw))
        self.conv.to(device=patch_embed.proj.weight.device, dtype=patch_embed.proj.weight.dtype)
        with torch.no_grad():
            # patchify orders a patch's values row offset, column offset, channel: (p1 p2 c)
            self.conv.weight.copy_(patch_embed.proj.weight.reshape(dim, ph, pw, channels).permute(0, 3, 1, 2))
            self.conv.bias.copy_(patch_embed.proj.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features).flatten(2).transpose(1, 2)


def prepare_for_onnx(model: nn.Module, copy_model: bool = True) -> nn.Module:
    """An eval-mode model (a copy unless `copy_model=False`) to export: the patch embedding as a strided
    convolution (`ConvPatchEmbed`; heatmaps within ~1e-6). BN folding and channels_last are left to
    onnxruntime, which fuses Conv + BN itself."""
    prepared = copy.deepcopy(model) if copy_model else model
    prepared.eval()
    patch_embed = getattr(prepared, "patch_embed", None)
    if patch_embed is not None and hasattr(patch_embed, "proj") and not isinstance(patch_embed, ConvPatchEmbed):
        prepared.patch_embed = ConvPatchEmbed(patch_embed)
    return prepared


def prepare_for_cpu(model: nn.Module, fold_bn: bool = True, channels_last: bool = True,
                    copy_model: bool = True) -> nn.Module:
    """An eval-mode model (a copy unless `copy_model=False`) with the chosen speed-ups applied."""
    prepared = copy.deepcopy(model) if copy_model else model
    prepared.eval()
    if fold_bn:
        fold_batchnorm(prepared)
    if channels_last:
        stem = getattr(prepared, "stem", prepared)
        stem.to(memory_format=torch.channels_last)
    return prepared
