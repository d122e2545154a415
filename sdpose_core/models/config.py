"""Model configuration and the per-cycle output type."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from sdpose_core.errors import ConfigError


def reject_unknown_fields(cls: type, d: dict[str, Any], what: str) -> None:
    """ConfigError naming the fields of `d` that the dataclass `cls` does not have (a typo in a config file)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {what} fields {unknown}; known: {sorted(known)}")


def check_cycles(
    cycles: int | None,
    default: int | None = None,
    *,
    available: int | None = None,
    available_from: str = "only",
    fix: str = "",
    where: str = "cycles",
) -> int:
    """The number of cycles to run: `default` when `cycles` is None, else `cycles`; the one range rule.

    It must be >= 1 and, where only `available` cycles exist (an exported graph, predictions already
    made), at most that. Messages name the argument (`where`: "cycles", "--cycles"), what holds the
    available cycles (`available_from`, e.g. "t.onnx was exported with") and what to do (`fix`).
    """
    if cycles is None:
        if default is None:
            raise ConfigError(f"{where} is needed: pass a number of cycles >= 1")
        cycles = default
    value = int(cycles)
    if value < 1:
        raise ConfigError(f"{where} must be >= 1, got {value}")
    if available is not None and value > available:
        message = f"{available_from} {available} cycle(s), {value} asked for"
        raise ConfigError(f"{message}; {fix}" if fix else message)
    return value


@dataclass
class ModelConfig:
    """One SDPose variant. Sizes are (height, width); the official configs use the same order
    for `patch_size` and `heatmap_size` in `tokenpose_cfg`."""

    name: str = "sdpose-t"
    stem: str = "stemnet"  # "stemnet" (SDPose-T/S) or "hrnet_w32" (SDPose-B)
    image_size: tuple[int, int] = (256, 192)
    heatmap_size: tuple[int, int] = (64, 48)
    patch_size: tuple[int, int] = (4, 3)
    dim: int = 192
    depth: int = 6
    heads: int = 8
    mlp_ratio: int = 3
    cycles: int = 3  # cycles used in training (the Multi-Cycled Transformer)
    num_keypoints: int = 17
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("image_size", "heatmap_size", "patch_size"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        reject_unknown_fields(cls, d, "model config")
        d = dict(d)
        for key in ("image_size", "heatmap_size", "patch_size"):
            if key in d:
                d[key] = tuple(int(v) for v in d[key])
        return cls(**d)


@dataclass
class CycleOutput:
    """What one pass through the shared transformer layers yields."""

    heatmaps: torch.Tensor  # (B, K, Hh, Wh)
    keypoint_tokens: torch.Tensor  # (B, K, dim)
    visual_tokens: torch.Tensor  # (B, num_patches, dim)
