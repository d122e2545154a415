"""From per-box pose predictions to the COCO results list, as mmpose's TopDownCocoDataset.evaluate.

Pipeline (`postprocess_topdown`), per image:
1. drop repeated boxes (same `bbox_id`), ordering each image's poses by bbox id;
2. rescore: instance score = box score x mean of the joint scores above `vis_thr` (0.2), or 0 when
   no joint clears it (`rescore_instances`);
3. OKS-NMS at `oks_thr` (0.9) with the box areas as OKS scale (`soft_nms` for the soft variant);
4. write {image_id, category_id, keypoints, score[, center, scale]} (`to_coco_results`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sdpose_core.evaluation.nms import oks_nms, soft_oks_nms


def rescore_instances(
    keypoints: np.ndarray | Sequence, box_scores: np.ndarray | Sequence[float], vis_thr: float = 0.2
) -> np.ndarray:
    """mmpose top-down instance score: box score x mean of the joint scores above `vis_thr`.

    Args:
        keypoints: (N, K, 3) predictions (x, y, score).
        box_scores: (N,) detector scores (1.0 for ground-truth boxes).

    Returns:
        (N,) float64; 0 for a pose with no joint score above `vis_thr`.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim == 2:
        keypoints = keypoints.reshape(keypoints.shape[0], -1, 3)
    joint_scores = keypoints[:, :, 2]
    confident = joint_scores > vis_thr
    count = confident.sum(axis=1)
    mean_confident = np.where(count > 0, (joint_scores * confident).sum(axis=1) / np.maximum(count, 1), 0.0)
    return mean_confident * np.asarray(box_scores, dtype=np.float64).reshape(-1)


def to_coco_results(
    image_ids: Sequence[int] | np.ndarray,
    keypoints: np.ndarray,
    scores: Sequence[float] | np.ndarray,
    category_id: int = 1,
    centers: np.ndarray | None = None,
    scales: np.ndarray | None = None,
) -> list[dict]:
    """COCO keypoint results: one {image_id, category_id, keypoints (flat x, y, score), score} per pose.

    `centers`/`scales` (N, 2), when given, are written too (mmpose does; COCOeval ignores them).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    flat = keypoints.reshape(keypoints.shape[0], -1)
    ids = [int(i) for i in np.asarray(image_ids).reshape(-1)]
    score_list = [float(s) for s in np.asarray(scores, dtype=np.float64).reshape(-1)]
    if not (len(ids) == len(flat) == len(score_list)):
        raise ValueError(f"image_ids ({len(ids)}), keypoints ({len(flat)}) and scores ({len(score_list)}) differ")
    results = []
    for index, (image_id, pose, score) in enumerate(zip(ids, flat, score_list, strict=True)):
        entry = {"image_id": image_id, "category_id": int(category_id), "keypoints": pose.tolist(), "score": score}
        if centers is not None:
            entry["center"] = np.asarray(centers[index], dtype=np.float64).tolist()
        if scales is not None:
            entry["scale"] = np.asarray(scales[index], dtype=np.float64).tolist()
        results.append(entry)
    return results


def postprocess_topdown(
    image_ids: Sequence[int] | np.ndarray,
    keypoints: np.ndarray,
    box_scores: Sequence[float] | np.ndarray,
    areas: Sequence[float] | np.ndarray,
    *,
    bbox_ids: Sequence[int] | np.ndarray | None = None,
    centers: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    category_id: int = 1,
    vis_thr: float = 0.2,
    oks_thr: float = 0.9,
    use_nms: bool = True,
    soft_nms: bool = False,
    nms_vis_thr: float | None = None,
    sigmas: np.ndarray | Sequence[float] | None = None,
) -> list[dict]:
    """Group per-box predictions by image, rescore, OKS-NMS and write COCO results (mmpose evaluate).

    Args:
        image_ids: (N,) image of each box.
        keypoints: (N, K, 3) decoded predictions in image pixels (x, y, score).
        box_scores: (N,) detector score of each box (1.0 for ground-truth boxes).
        areas: (N,) box area used as OKS scale in NMS (mmpose: the padded box, scale_w x scale_h
            in pixels).
        bbox_ids: (N,) unique id per box (e.g. the dataset index); a box seen twice (a padded last
            batch under DDP) is kept once. Default: the position in the input.
        centers, scales: (N, 2) box center / size, copied into the results.
        vis_thr: joint-score threshold of the rescoring (mmpose `vis_thr`, 0.2).
        oks_thr: NMS threshold (mmpose `oks_thr`, 0.9); a pose with OKS > oks_thr to a better one goes.
        use_nms / soft_nms: mmpose `use_nms` (True) / `soft_nms` (False).
        nms_vis_thr: joint-score threshold inside the NMS OKS; mmpose's evaluate passes none (None).
        sigmas: OKS sigmas; default from the joint count (COCO-17 or CrowdPose-14).

    Returns:
        COCO results, images in order of first appearance, each image's poses best first
        (input order when `use_nms` is False).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    num = keypoints.shape[0]
    image_ids = np.asarray(image_ids).reshape(-1)
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    bbox_ids = np.arange(num) if bbox_ids is None else np.asarray(bbox_ids).reshape(-1)
    for name, values in (("image_ids", image_ids), ("box_scores", box_scores), ("areas", areas),
                         ("bbox_ids", bbox_ids)):
        if len(values) != num:
            raise ValueError(f"{name} has {len(values)} entries for {num} poses")

    instance_scores = rescore_instances(keypoints, box_scores, vis_thr)
    first_seen: dict[int, list[int]] = {}
    for index, image_id in enumerate(image_ids.tolist()):
        first_seen.setdefault(int(image_id), []).append(index)

    selected: list[int] = []
    for members in first_seen.values():
        # mmpose sorts each image's poses by bbox id and drops adjacent repeats.
        members = sorted(members, key=lambda i: bbox_ids[i])
        unique = [i for n, i in enumerate(members) if n == 0 or bbox_ids[i] != bbox_ids[members[n - 1]]]
        idx = np.asarray(unique, dtype=np.intp)
        if use_nms:
            nms = soft_oks_nms if soft_nms else oks_nms
            keep = nms(keypoints[idx], instance_scores[idx], areas[idx], oks_thr, sigmas=sigmas, vis_thr=nms_vis_thr)
            selected.extend(idx[np.asarray(keep, dtype=np.intp)].tolist())
        else:
            selected.extend(idx.tolist())

    chosen = np.asarray(selected, dtype=np.intp)
    return to_coco_results(
        image_ids[chosen],
        keypoints[chosen],
        instance_scores[chosen],
        category_id=category_id,
        centers=None if centers is None else np.asarray(centers)[chosen],
        scales=None if scales is None else np.asarray(scales)[chosen],
    )
