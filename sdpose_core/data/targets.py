"""Gaussian heatmap targets (mmpose TopDownGenerateTarget, MSRA type, `unbiased_encoding=True`)."""

from __future__ import annotations

import numpy as np


def gaussian_targets(
    joints_xy: np.ndarray,
    visible: np.ndarray,
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (K, Hh, Wh) and weights (K, 1), float32, for joints given in crop pixels.

    The Gaussian is centred at the exact sub-pixel location joint / stride (stride = input size /
    heatmap size per axis) and is not truncated (unbiased encoding). A joint's weight is 1 when it
    is visible (v > 0) and some of its 3-sigma window overlaps the heatmap, else 0 and its map stays
    empty; this is mmpose's "outside the heatmap" test, so a joint just past the border still gets a
    partial Gaussian.
    """
    joints_xy = np.asarray(joints_xy, dtype=np.float64).reshape(-1, 2)
    num_joints = joints_xy.shape[0]
    heat_h, heat_w = heatmap_size
    stride = np.array([image_size[1] / heat_w, image_size[0] / heat_h], dtype=np.float64)
    mu = joints_xy / stride
    radius = sigma * 3
    inside = (
        (mu[:, 0] - radius < heat_w) & (mu[:, 1] - radius < heat_h)
        & (mu[:, 0] + radius + 1 >= 0) & (mu[:, 1] + radius + 1 >= 0)
    )
    weight = (np.asarray(visible).reshape(-1) > 0) & inside
    # exp(-(dx^2 + dy^2) / 2s^2) factorises: one row profile and one column profile per joint
    xs = np.arange(heat_w, dtype=np.float64)
    ys = np.arange(heat_h, dtype=np.float64)
    gx = np.exp(-((xs[None, :] - mu[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((ys[None, :] - mu[:, 1:]) ** 2) / (2 * sigma**2))
    gx *= weight[:, None]
    target = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)
    return target, weight.astype(np.float32).reshape(num_joints, 1)
