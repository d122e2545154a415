"""The heatmap codec (mmpose 0.29 MSRA heatmaps, non-UDP): keypoints -> Gaussian targets and heatmaps
-> keypoints, side by side, vectorised over N and K.

Encode: `gaussian_targets`, an unnormalised Gaussian (sigma in heatmap pixels) at each joint's exact
sub-pixel location (mmpose TopDownGenerateTarget, MSRA type, `unbiased_encoding=True`).

Decode, two post-processes:
- "argmax": the maximum, moved a quarter pixel toward the higher neighbour on each axis (mmpose
  post_process='default');
- "dark": DARK / "unbiased" (Zhang et al. 2020): blur each map with an 11x11 Gaussian (zero padded,
  rescaled to the original maximum), take the log, and refine the maximum with one second-order
  Taylor (Newton) step. The official SDPose test config uses this.
The score of a keypoint is the unblurred heatmap's maximum. Coordinates are mapped to the image with
mmpose `transform_preds` (`heatmap_to_image_coords`, crop assumed unrotated).

Flip test: `flip_heatmaps_back` puts the maps of a mirrored crop back into the crop's frame and
`flip_average` averages them with the plain maps; every flip test in the project (dataset evaluation,
the Predictor, ONNX, PP-TinyPose) goes through `flip_average`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

DECODE_METHODS = ("dark", "argmax")


# ------------------------------------------------------------------------------------------------ encode
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


# ------------------------------------------------------------------------------------------------ decode
def heatmap_to_image_coords(
    coords: np.ndarray, centers: np.ndarray, scales: np.ndarray, heatmap_size: tuple[int, int]
) -> np.ndarray:
    """Heatmap-pixel coordinates (N, K, 2) back to image pixels (mmpose `transform_preds`, non-UDP).

    Assumes rotation 0 (test crops), as mmpose does: x = u * scale_w / heatmap_w + cx - scale_w / 2.
    """
    coords = np.asarray(coords, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 1, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(-1, 1, 2)
    heat_h, heat_w = heatmap_size
    per_pixel = scales / np.array([heat_w, heat_h], dtype=np.float64)
    return coords * per_pixel + centers - scales * 0.5


def _as_numpy(heatmaps: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(heatmaps, torch.Tensor):
        heatmaps = heatmaps.detach().float().cpu().numpy()
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, K, H, W), got shape {heatmaps.shape}")
    return heatmaps


def max_locations(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (x, y) of each map's maximum (float64, (N, K, 2)) and the maximum (N, K).

    Maps whose maximum is <= 0 get (-1, -1), as in mmpose `_get_max_preds`.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, index[..., None], axis=2)[..., 0]
    coords = np.stack([index % w, index // w], axis=-1).astype(np.float64)
    coords[maxvals <= 0] = -1.0
    return coords, maxvals


def _gather(maps: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """maps[n, k, ys[n, k], xs[n, k]] for every (n, k); indices must be in range."""
    n, k = xs.shape
    return maps[np.arange(n)[:, None], np.arange(k)[None, :], ys, xs]


def refine_quarter_offset(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """mmpose post_process='default': +-0.25 px toward the higher neighbour.

    Applied only where 1 < x < W - 1 and 1 < y < H - 1 (mmpose's bounds, which skip x == 1 too).
    """
    _, _, h, w = heatmaps.shape
    if w < 4 or h < 4:  # no pixel satisfies the bounds
        return coords.copy()
    px, py = coords[..., 0].astype(np.int64), coords[..., 1].astype(np.int64)
    ok = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    xs, ys = np.where(ok, px, 2), np.where(ok, py, 2)  # masked-out entries read a valid pixel
    dx = _gather(heatmaps, xs + 1, ys) - _gather(heatmaps, xs - 1, ys)
    dy = _gather(heatmaps, xs, ys + 1) - _gather(heatmaps, xs, ys - 1)
    offset = np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25
    return coords + offset * ok[..., None]


def gaussian_blur_heatmaps(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """mmpose `_gaussian_blur`: zero-padded Gaussian blur (cv2 sigma for `kernel`), each map rescaled
    so its maximum equals the original maximum. Separable, vectorised over all maps."""
    if kernel % 2 != 1 or kernel < 1:
        raise ValueError(f"blur kernel must be an odd positive size, got {kernel}")
    weights = cv2.getGaussianKernel(kernel, 0).ravel()
    border = (kernel - 1) // 2
    n, k, h, w = heatmaps.shape
    padded = np.zeros((n, k, h + 2 * border, w + 2 * border), dtype=np.float64)
    padded[:, :, border:border + h, border:border + w] = heatmaps
    rows = sum(weights[i] * padded[:, :, :, i:i + w] for i in range(kernel))  # (n, k, h + 2b, w)
    blurred = sum(weights[i] * rows[:, :, i:i + h, :] for i in range(kernel))  # (n, k, h, w)
    original_max = heatmaps.reshape(n, k, -1).max(axis=2)
    blurred_max = blurred.reshape(n, k, -1).max(axis=2)
    # an all-zero map stays zero instead of becoming 0/0 (mmpose would produce NaN there)
    ratio = np.divide(original_max, blurred_max, out=np.ones_like(original_max), where=blurred_max != 0)
    return blurred * ratio[..., None, None]


def refine_dark(heatmaps: np.ndarray, coords: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK: one Newton step on the log of the blurred map at the integer maximum.

    Applied where 1 < x < W - 2 and 1 < y < H - 2 (mmpose `_taylor`). Unlike mmpose, the step is taken
    only where the log-map is locally concave (Hessian negative definite: the integer maximum really is a
    peak) and it is clipped to one heatmap pixel, the most the integer maximum can be off by. On trained,
    peaked maps this changes nothing; on flat maps (untrained or occluded joints) mmpose's unguarded step
    can throw a keypoint hundreds of pixels away.
    """
    _, _, h, w = heatmaps.shape
    if w < 5 or h < 5:  # too small for the 5-point stencil: nothing can be refined
        return coords.copy()
    log_maps = np.log(np.maximum(gaussian_blur_heatmaps(heatmaps, kernel), 1e-10))
    px, py = coords[..., 0].astype(np.int64), coords[..., 1].astype(np.int64)
    ok = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    xs = np.where(ok, px, 2)  # masked-out entries read a valid pixel; their offset is discarded
    ys = np.where(ok, py, 2)

    def at(ox: int, oy: int) -> np.ndarray:
        return _gather(log_maps, xs + ox, ys + oy)

    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    ok &= (det > 0) & (dxx < 0)
    safe_det = np.where(ok, det, 1.0)
    # offset = -H^-1 g with H^-1 = [[dyy, -dxy], [-dxy, dxx]] / det
    offset_x = -(dyy * dx - dxy * dy) / safe_det
    offset_y = -(dxx * dy - dxy * dx) / safe_det
    offset = np.clip(np.stack([offset_x, offset_y], axis=-1), -1.0, 1.0)
    return coords + np.where(ok[..., None], offset, 0.0)


def heatmap_peaks(
    heatmaps: np.ndarray | torch.Tensor, method: str = "dark", blur_kernel: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak (x, y) of every map in heatmap pixels (N, K, 2) and its score (N, K)."""
    if method not in DECODE_METHODS:
        raise ValueError(f"unknown decode method {method!r}; choose one of {DECODE_METHODS}")
    maps = _as_numpy(heatmaps).astype(np.float64, copy=False)
    coords, scores = max_locations(maps)
    if method == "dark":
        coords = refine_dark(maps, coords, blur_kernel)
    else:
        coords = refine_quarter_offset(maps, coords)
    return coords, scores


def decode_heatmaps(
    heatmaps: np.ndarray | torch.Tensor,
    centers: np.ndarray,
    scales: np.ndarray,
    method: str = "dark",
    blur_kernel: int = 11,
) -> np.ndarray:
    """Keypoints (N, K, 3): x, y in image pixels and the heatmap maximum as score.

    `centers` and `scales` (N, 2) are the crops' center and scale in pixels (dataset meta).
    """
    maps = _as_numpy(heatmaps)
    coords, scores = heatmap_peaks(maps, method, blur_kernel)
    n = maps.shape[0]
    centers = np.asarray(centers, dtype=np.float64).reshape(n, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(n, 2)
    xy = heatmap_to_image_coords(coords, centers, scales, maps.shape[2:])
    return np.concatenate([xy, scores[..., None].astype(np.float64)], axis=-1)


# --------------------------------------------------------------------------------------------- flip test
def flip_heatmaps_back(
    flipped: np.ndarray | torch.Tensor,
    flip_index: Sequence[int] | np.ndarray | torch.Tensor,
    shift: bool = True,
) -> np.ndarray | torch.Tensor:
    """Heatmaps predicted on a horizontally flipped crop, put back into the unflipped frame.

    Mirrors the maps, swaps left/right channels (`flip_index`, e.g. `layout.flip_index()`), and with
    `shift` moves them one pixel right (mmpose `shift_heatmap`: an array flip of the input mirrors about
    (W - 1) / 2 while the crop geometry is symmetric about W / 2). Returns the input's type and device.
    """
    if isinstance(flipped, torch.Tensor):
        index = torch.as_tensor(flip_index, dtype=torch.long, device=flipped.device)
        back = torch.flip(flipped, dims=[3]).index_select(1, index)
        if shift:
            back = torch.cat([back[..., :1], back[..., :-1]], dim=3)
        return back
    array = np.asarray(flipped)
    back = array[:, np.asarray(flip_index, dtype=np.int64), :, ::-1]
    if shift:
        back = np.concatenate([back[..., :1], back[..., :-1]], axis=3)
    return np.ascontiguousarray(back)


def flip_average(
    heatmaps: np.ndarray | torch.Tensor,
    mirrored: np.ndarray | torch.Tensor,
    flip_index: Sequence[int] | np.ndarray | torch.Tensor,
) -> np.ndarray | torch.Tensor:
    """The flip test (mmpose `flip_test=True`, `shift_heatmap=True`): the mean of the crops' heatmaps and
    those of their mirror images put back with `flip_heatmaps_back`. numpy in, numpy out; torch in, torch
    out (on the input's device)."""
    return (heatmaps + flip_heatmaps_back(mirrored, flip_index)) * 0.5
