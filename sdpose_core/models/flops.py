"""Multiply-accumulate counter with the mmcv 1.x `get_model_complexity_info` rules.

Per module call (forward hooks, so the shared transformer layers count once per cycle):
- Conv2d: k_h*k_w*C_in/groups*C_out per output pixel (+ C_out per pixel with bias)
- BatchNorm / LayerNorm: input elements (x2 when affine)
- ReLU: output elements; Upsample: output elements
- Linear: input elements * out_features (bias not counted)
Attention matrix products (q.k^T and attn.v) are not counted by mmcv; `include_attention=True` adds
2*N*N*dim per transformer block per pass. GELU, softmax and residual adds are not counted.
The hooks run on a weightless `meta`-device twin of the model, so counting is instant. Counting
official SDPose this way reproduces the README/paper GFLOPs (T 1.8, S-V1 2.4, S-V2 4.7).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from sdpose_core.models.config import ModelConfig
from sdpose_core.models.layers import Attention
from sdpose_core.models.registry import get_config, list_models
from sdpose_core.models.sdpose import SDPose

PAPER_GFLOPS = {"sdpose-t": 1.8, "sdpose-s-v1": 2.4, "sdpose-s-v2": 4.7, "sdpose-b": 5.2}
PAPER_PARAMS_M = {"sdpose-t": 4.4, "sdpose-s-v1": 6.6, "sdpose-s-v2": 6.2, "sdpose-b": 13.2}


def _conv(m: nn.Conv2d, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    per_position = math.prod(m.kernel_size) * (m.in_channels // m.groups) * m.out_channels
    positions = out.shape[0] * math.prod(out.shape[2:])
    return per_position * positions + (m.out_channels * positions if m.bias is not None else 0)


def _norm(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    affine = getattr(m, "affine", False) or getattr(m, "elementwise_affine", False)
    return inputs[0].numel() * (2 if affine else 1)


def _elementwise(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    return out.numel()


def _linear(m: nn.Linear, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    return inputs[0].numel() * out.shape[-1]


def _attention_matmuls(m: Attention, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> int:
    batch, tokens, dim = inputs[0].shape
    return 2 * batch * tokens * tokens * dim


_RULES: list[tuple[type[nn.Module] | tuple[type[nn.Module], ...], Callable[..., int]]] = [
    (nn.Conv2d, _conv),
    ((nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm), _norm),
    ((nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Upsample), _elementwise),
    (nn.Linear, _linear),
]


def _count_on_meta_twin(config: ModelConfig, cycles: int) -> tuple[int, int]:
    """(mmcv MACs, attention-matmul MACs) for one image. Hooks need only shapes, so the forward runs on a
    structural copy on the `meta` device: no weights are read and no arithmetic is done."""
    with torch.device("meta"):
        twin = SDPose(config)
    counts = {"mmcv": 0, "attention": 0}

    def make_hook(rule: Callable[..., int], bucket: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            counts[bucket] += int(rule(module, inputs, out))

        return hook

    for module in twin.modules():
        for kinds, rule in _RULES:
            if isinstance(module, kinds):
                module.register_forward_hook(make_hook(rule, "mmcv"))
                break
        if isinstance(module, Attention):
            module.register_forward_hook(make_hook(_attention_matmuls, "attention"))
    twin.eval()
    with torch.no_grad():
        twin(torch.zeros(1, 3, *config.image_size, device="meta"), cycles=cycles)
    return counts["mmcv"], counts["attention"]


def count_flops(model: SDPose, cycles: int = 1, include_attention: bool = False) -> int:
    """Multiply-accumulates for ONE image through `cycles` passes of the MCT (mmcv 1.x rules)."""
    config = getattr(model, "module", model).config  # accepts a DDP-wrapped model too
    mmcv_macs, attention_macs = _count_on_meta_twin(config, cycles)
    return mmcv_macs + attention_macs if include_attention else mmcv_macs


def flops_table(names: list[str] | None = None) -> list[dict[str, float | int | str]]:
    """Per variant: trainable params, GFLOPs for one pass (our count vs paper), all cycles, with attention."""
    rows: list[dict[str, float | int | str]] = []
    for name in names or list_models():
        config = get_config(name)
        with torch.device("meta"):
            params = SDPose(config).num_trainable_parameters()
        single, single_attention = _count_on_meta_twin(config, 1)
        every, every_attention = _count_on_meta_twin(config, config.cycles)
        rows.append(
            {
                "model": name,
                "params": params,
                "paper_params_m": PAPER_PARAMS_M.get(name, float("nan")),
                "cycles": config.cycles,
                "gflops_single_pass": single / 1e9,
                "paper_gflops": PAPER_GFLOPS.get(name, float("nan")),
                "gflops_all_cycles": every / 1e9,
                "gflops_single_pass_with_attention": (single + single_attention) / 1e9,
                "gflops_all_cycles_with_attention": (every + every_attention) / 1e9,
            }
        )
    return rows
