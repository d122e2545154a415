"""OKS-based non-maximum suppression of top-down pose predictions (mmpose 0.x semantics).

Top-down estimators run once per detector box, so two boxes on one person give two near-identical
poses; COCO AP counts the second as a false positive. OKS-NMS keeps the best-scoring pose and drops
any other whose OKS to it exceeds a threshold (0.9 in mmpose's COCO/CrowdPose configs).

Differences from a textbook OKS, kept on purpose so that scores match mmpose:
- the OKS scale is the mean of the two people's areas (box areas in mmpose's pipeline);
- with `vis_thr`, mmpose's `list(vg > vis_thr) and list(vd > vis_thr)` evaluates to the second list
  (Python's `and` returns its second operand when the first is a non-empty list), so only the
  CANDIDATE's joint scores select the joints; `require_both_visible=True` gives the symmetric rule;
- OKS values are rounded to float32 before comparing with the threshold, as mmpose stores them.
mmpose's top-down `evaluate` calls NMS with `vis_thr=None` (all joints count): that is our default.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sdpose_core.evaluation.oks import _as_people
from sdpose_core.keypoints import get_layout


def _default_sigmas(num_joints: int, sigmas: np.ndarray | Sequence[float] | None) -> np.ndarray:
    if sigmas is not None:
        return np.asarray(sigmas, dtype=np.float64)
    return get_layout(num_joints).sigmas_array()


def oks_iou(
    reference: np.ndarray,
    candidates: np.ndarray,
    reference_area: float,
    candidate_areas: np.ndarray,
    sigmas: np.ndarray | Sequence[float] | None = None,
    vis_thr: float | None = None,
    require_both_visible: bool = False,
) -> np.ndarray:
    """OKS between one pose (K, 3) and each of N candidate poses (N, K, 3), as mmpose's `oks_iou`.

    Args:
        reference: (K, 3) or flat (3K,) keypoints (x, y, score).
        candidates: (N, K, 3) or flat (N, 3K).
        reference_area, candidate_areas: person areas; the scale is their mean.
        sigmas: (K,) joint falloffs; default: the layout with K joints (COCO-17 or CrowdPose-14).
        vis_thr: if set, only joints whose candidate score exceeds it count (mmpose's behaviour);
            with `require_both_visible`, the reference score must exceed it too.

    Returns:
        (N,) float32 OKS; 0 where no joint counts.
    """
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    candidates = _as_people(candidates, "candidates").reshape(-1, reference.shape[0], 3)
    sigmas = _default_sigmas(reference.shape[0], sigmas)
    areas = np.asarray(candidate_areas, dtype=np.float64).reshape(-1)
    variances = (2.0 * sigmas) ** 2
    scale = ((reference_area + areas) / 2.0 + np.spacing(1))[:, None]  # (N, 1)
    squared = (candidates[:, :, 0] - reference[None, :, 0]) ** 2 + (candidates[:, :, 1] - reference[None, :, 1]) ** 2
    similarity = np.exp(-squared / variances[None, :] / scale / 2.0)  # (N, K)
    if vis_thr is None:
        counted = np.ones_like(similarity, dtype=bool)
    else:
        counted = candidates[:, :, 2] > vis_thr
        if require_both_visible:
            counted &= reference[None, :, 2] > vis_thr
    num_counted = counted.sum(axis=1)
    total = (similarity * counted).sum(axis=1)
    oks = np.where(num_counted > 0, total / np.maximum(num_counted, 1), 0.0)
    return oks.astype(np.float32)


def _check_inputs(
    keypoints: np.ndarray | Sequence, scores: np.ndarray | Sequence[float], areas: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keypoints = _as_people(keypoints, "keypoints") if len(keypoints) else np.zeros((0, 0, 3))
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if not (len(keypoints) == len(scores) == len(areas)):
        raise ValueError(
            f"keypoints ({len(keypoints)}), scores ({len(scores)}) and areas ({len(areas)}) must have one entry per pose"
        )
    return keypoints, scores, areas


def oks_nms(
    keypoints: np.ndarray | Sequence,
    scores: np.ndarray | Sequence[float],
    areas: np.ndarray | Sequence[float],
    thr: float = 0.9,
    sigmas: np.ndarray | Sequence[float] | None = None,
    vis_thr: float | None = None,
    require_both_visible: bool = False,
) -> np.ndarray:
    """Greedy OKS-NMS over the poses of ONE image; indices to keep, best score first.

    A pose is dropped when its OKS with an already kept, higher-scoring pose is above `thr`
    (mmpose keeps OKS <= thr). Ties in score break as numpy's `argsort()[::-1]`, as in mmpose.
    See `oks_iou` for `sigmas`, `vis_thr` and `require_both_visible`.
    """
    keypoints, scores, areas = _check_inputs(keypoints, scores, areas)
    if len(scores) == 0:
        return np.zeros(0, dtype=np.intp)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        overlap = oks_iou(keypoints[best], keypoints[rest], areas[best], areas[rest], sigmas, vis_thr,
                          require_both_visible)
        order = rest[overlap <= thr]
    return np.asarray(keep, dtype=np.intp)


def soft_oks_nms(
    keypoints: np.ndarray | Sequence,
    scores: np.ndarray | Sequence[float],
    areas: np.ndarray | Sequence[float],
    thr: float = 0.9,
    max_dets: int = 20,
    sigmas: np.ndarray | Sequence[float] | None = None,
    vis_thr: float | None = None,
    decay: str = "gaussian",
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Soft OKS-NMS (mmpose `soft_oks_nms`): overlapping poses are down-weighted instead of dropped.

    After each pick, the remaining scores decay by exp(-oks**2 / thr) ('gaussian', mmpose's default)
    or, for 'linear', by (1 - oks) where oks >= thr; the next pick is the highest decayed score.
    At most `max_dets` poses are kept (COCOeval looks at 20 per image).

    Returns:
        kept indices in pick order; with `return_scores`, also their decayed scores (mmpose
        discards those and writes the original scores).
    """
    if decay not in ("gaussian", "linear"):
        raise ValueError(f"decay must be 'gaussian' or 'linear', got {decay!r}")
    keypoints, scores, areas = _check_inputs(keypoints, scores, areas)
    order = scores.argsort()[::-1]
    remaining = scores[order]
    keep: list[int] = []
    kept_scores: list[float] = []
    while order.size > 0 and len(keep) < max_dets:
        best = order[0]
        keep.append(int(best))
        kept_scores.append(float(remaining[0]))
        overlap = oks_iou(keypoints[best], keypoints[order[1:]], areas[best], areas[order[1:]], sigmas, vis_thr)
        order, remaining = order[1:], remaining[1:].copy()
        if decay == "gaussian":
            remaining = remaining * np.exp(-(overlap**2) / thr)  # float32 decay, as mmpose
        else:
            hit = overlap >= thr
            remaining[hit] = remaining[hit] * (1.0 - overlap[hit])
        resort = remaining.argsort()[::-1]
        order, remaining = order[resort], remaining[resort]
    keep_array = np.asarray(keep, dtype=np.intp)
    if return_scores:
        return keep_array, np.asarray(kept_scores, dtype=np.float64)
    return keep_array
