"""Training augmentation of a top-down crop (mmpose 0.29 pipeline of the official SDPose configs).

The official train pipeline is: TopDownRandomShiftBboxCenter(shift_factor=0.16, prob=0.3),
TopDownRandomFlip(0.5), TopDownHalfBodyTransform(num_joints_half_body=8, prob_half_body=0.3),
TopDownGetRandomScaleRotation(rot_factor=45, scale_factor=0.35, rot_prob=0.6). `AugmentConfig`
defaults to exactly those numbers. Augmentation only decides the crop (center, scale, rotation, flip);
the image is warped once afterwards.

Randomness never comes from global state: every sample draws from its own generator seeded by
(seed, epoch, index), so a resumed run sees bit-for-bit the same crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from sdpose_core.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the training augmentation (defaults: the official configs)."""

    flip_prob: float = 0.5
    # centre shift: with probability shift_prob, center += U(-1, 1)^2 * shift_factor * scale (both
    # axes independently, so up to +-16% of the padded box), before any other augmentation
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8  # half-body needs MORE than this many visible joints
    half_body_padding: float = 1.5
    scale_factor: float = 0.35  # scale *= clip(randn * sf + 1, 1 - sf, 1 + sf)
    rotation_factor: float = 45.0  # degrees; clip(randn * rf, -2 rf, 2 rf), applied with rotation_prob
    rotation_prob: float = 0.6

    def __post_init__(self) -> None:
        for name in ("flip_prob", "shift_prob", "half_body_prob", "rotation_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"AugmentConfig.{name} must be a probability in [0, 1], got {value}")
        for name in ("shift_factor", "scale_factor", "rotation_factor", "half_body_padding"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.scale_factor >= 1.0:
            raise ConfigError(f"AugmentConfig.scale_factor must be < 1 (crops would vanish), got {self.scale_factor}")

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """No randomness at all: train-mode samples equal validation crops."""
        return cls(flip_prob=0.0, shift_prob=0.0, half_body_prob=0.0, scale_factor=0.0, rotation_factor=0.0,
                   rotation_prob=0.0)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown augmentation settings {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class CropParams:
    """Where to crop: center and scale in pixels of the unflipped image, rotation in degrees."""

    center: np.ndarray
    scale: np.ndarray
    rotation: float = 0.0
    flipped: bool = False


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one sample: independent streams for every (seed, epoch, index)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def half_body_center_scale(
    joints_xy: np.ndarray,
    visible: np.ndarray,
    upper_body: Sequence[int],
    aspect_ratio: float,
    padding: float,
    prefer_upper: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """mmpose `half_body_transform`: a crop around the visible upper or lower body joints.

    Upper body is used when `prefer_upper` and it has more than 2 visible joints, else the lower
    body if it has more than 2, else the upper body; None when fewer than 2 joints are selected.
    """
    is_upper = np.zeros(len(visible), dtype=bool)
    is_upper[list(upper_body)] = True
    seen = np.asarray(visible) > 0
    upper = joints_xy[seen & is_upper]
    lower = joints_xy[seen & ~is_upper]
    if prefer_upper and len(upper) > 2:
        selected = upper
    elif len(lower) > 2:
        selected = lower
    else:
        selected = upper
    if len(selected) < 2:
        return None
    center = selected.mean(axis=0)
    w, h = selected.max(axis=0) - selected.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return center, np.array([w, h], dtype=np.float64) * padding


def sample_augmentation(
    rng: np.random.Generator,
    center: np.ndarray,
    scale: np.ndarray,
    joints: np.ndarray,
    upper_body: Sequence[int],
    aspect_ratio: float,
    config: AugmentConfig,
) -> CropParams:
    """Draw one training crop (mmpose order: shift, flip, half-body, scale, rotation).

    `joints` is (K, 3) x, y, visibility in image pixels (zeros when there is no ground truth). The
    flip is decided here but applied by the caller (mirror image and joints, swap left/right); since
    the upper/lower joint sets are left/right symmetric, the half-body crop computed on unflipped
    joints is exactly the mirror of mmpose's, computed after the flip.
    """
    center = np.array(center, dtype=np.float64)
    scale = np.array(scale, dtype=np.float64)
    if rng.random() < config.shift_prob:
        center += rng.uniform(-1.0, 1.0, 2) * config.shift_factor * scale
    flipped = bool(rng.random() < config.flip_prob)
    visible = joints[:, 2] > 0
    if visible.sum() > config.half_body_min_joints and rng.random() < config.half_body_prob:
        # mmpose compares a normal draw with 0.5 here (so the upper body wins ~69% of the time)
        half = half_body_center_scale(
            joints[:, :2], visible, upper_body, aspect_ratio, config.half_body_padding,
            prefer_upper=bool(rng.standard_normal() < 0.5),
        )
        if half is not None:
            center, scale = half
    sf, rf = config.scale_factor, config.rotation_factor
    scale = scale * float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
    rotation = float(np.clip(rng.standard_normal() * rf, -2.0 * rf, 2.0 * rf))
    if rng.random() > config.rotation_prob:
        rotation = 0.0
    return CropParams(center=center, scale=scale, rotation=rotation, flipped=flipped)
