"""Named SDPose variants (the official COCO 256x192 configs) and `build_model`."""

from __future__ import annotations

import dataclasses
from typing import Any

from sdpose_core.errors import ConfigError
from sdpose_core.models.config import ModelConfig
from sdpose_core.models.sdpose import SDPose

# Shared by every variant: dim 192, 8 heads, MLP ratio 3, input 256x192, heatmaps 64x48, 17 keypoints.
_VARIANTS: dict[str, dict[str, Any]] = {
    "sdpose-t": dict(stem="stemnet", patch_size=(4, 3), depth=6, cycles=3),
    "sdpose-s-v1": dict(stem="stemnet", patch_size=(4, 3), depth=12, cycles=2),
    "sdpose-s-v2": dict(stem="stemnet", patch_size=(2, 2), depth=12, cycles=2),
    "sdpose-b": dict(stem="hrnet_w32", patch_size=(4, 3), depth=12, cycles=2),
}

# What the official code calls each variant (config files, checkpoint names, summary json keys).
OFFICIAL_NAMES: dict[str, str] = {
    "sdpose-t": "sdpose_t",
    "sdpose-s-v1": "sdpose_s_v1",
    "sdpose-s-v2": "sdpose_s_v2",
    "sdpose-b": "sdpose_b",
}

_SIZE_FIELDS = ("image_size", "heatmap_size", "patch_size")


def list_models() -> list[str]:
    """Names accepted by `build_model`."""
    return list(_VARIANTS)


def normalise_model_name(name: str) -> str:
    """The one spelling variant names are compared in: "SDPose_T" and the official "sdpose_t" -> "sdpose-t"."""
    return name.strip().lower().replace("_", "-")


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The config of a named variant with ModelConfig fields overridden (e.g. num_keypoints=14)."""
    key = normalise_model_name(name)
    if key not in _VARIANTS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    known_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known_fields)
    if unknown:
        raise ConfigError(f"unknown ModelConfig field(s) {unknown} for {name}; known: {sorted(known_fields)}")
    values: dict[str, Any] = {"name": key, **_VARIANTS[key], **overrides}
    for field_name in _SIZE_FIELDS:
        if field_name in values:
            size = tuple(int(v) for v in values[field_name])
            if len(size) != 2:
                raise ConfigError(f"{field_name} must be (height, width), got {values[field_name]!r}")
            values[field_name] = size
    return ModelConfig(**values)


def build_model(name: str, **overrides: Any) -> SDPose:
    """Build a named variant (official from-scratch init); `overrides` are ModelConfig fields."""
    return SDPose(get_config(name, **overrides))


def model_from_config(config: ModelConfig) -> SDPose:
    """Build from a full config (e.g. one read from a checkpoint's config.json)."""
    return SDPose(config)


def model_table(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Per variant: stem, input size, patch, width, depth, heads, training cycles and trainable parameters."""
    rows: list[dict[str, Any]] = []
    for name in names or list_models():
        model = build_model(name)
        c = model.config
        rows.append({
            "model": name, "stem": c.stem, "input": list(c.image_size), "patch": list(c.patch_size),
            "dim": c.dim, "depth": c.depth, "heads": c.heads, "cycles": c.cycles,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        })
    return rows
