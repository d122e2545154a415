"""OKS-NMS, soft OKS-NMS, rescoring and the top-down post-processing that writes COCO results."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from sdpose_core.evaluation import (
    evaluate_predictions,
    oks_iou,
    oks_nms,
    postprocess_topdown,
    rescore_instances,
    soft_oks_nms,
    to_coco_results,
)
from sdpose_core.keypoints import COCO17


def _pose(offset_x: float, rng: np.random.Generator, score: float = 0.9) -> np.ndarray:
    """A plausible 17-joint person about 60 x 160 px, shifted right by offset_x."""
    base = np.array([
        (30, 10), (27, 7), (33, 7), (24, 9), (36, 9), (18, 30), (42, 30), (12, 55), (48, 55),
        (10, 80), (50, 80), (22, 85), (38, 85), (22, 120), (38, 120), (22, 155), (38, 155),
    ], dtype=np.float64)
    pose = np.zeros((17, 3))
    pose[:, :2] = base + (offset_x, 0) + rng.normal(0, 0.5, base.shape)
    pose[:, 2] = score
    return pose


def _mmpose_style_oks(g: np.ndarray, d: np.ndarray, a_g: float, a_d: np.ndarray, sigmas: np.ndarray,
                      vis_thr: float | None) -> np.ndarray:
    """Joint-by-joint loop of the mmpose formula, to check the vectorised version against."""
    out = np.zeros(len(d))
    variances = (sigmas * 2) ** 2
    for n, cand in enumerate(d):
        terms = []
        for k in range(len(sigmas)):
            if vis_thr is not None and not cand[k, 2] > vis_thr:
                continue
            dist2 = (cand[k, 0] - g[k, 0]) ** 2 + (cand[k, 1] - g[k, 1]) ** 2
            terms.append(np.exp(-dist2 / variances[k] / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2))
        out[n] = np.mean(terms) if terms else 0.0
    return out


@pytest.mark.parametrize("vis_thr", [None, 0.2])
def test_oks_iou_matches_joint_loop(vis_thr: float | None) -> None:
    rng = np.random.default_rng(0)
    reference = _pose(0, rng)
    reference[:, 2] = rng.uniform(0, 1, 17)
    candidates = np.stack([_pose(rng.uniform(-20, 20), rng) for _ in range(6)])
    candidates[:, :, 2] = rng.uniform(0, 1, (6, 17))
    candidates[5, :, 2] = 0.1  # no joint above the threshold: OKS 0
    areas = rng.uniform(3000, 12000, 6)
    ours = oks_iou(reference, candidates, 9000.0, areas, vis_thr=vis_thr)
    expected = _mmpose_style_oks(reference, candidates, 9000.0, areas, COCO17.sigmas_array(), vis_thr)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
    if vis_thr is not None:
        assert ours[5] == 0.0


def test_vis_thr_counts_candidate_joints_only() -> None:
    rng = np.random.default_rng(1)
    reference = _pose(0, rng)
    candidate = reference.copy()
    candidate[:8, :2] += 40.0          # far off on the first 8 joints
    reference[8:, 2] = 0.05            # reference unsure about the joints that agree
    both = oks_iou(reference, candidate[None], 9600.0, [9600.0], vis_thr=0.2, require_both_visible=True)
    mmpose = oks_iou(reference, candidate[None], 9600.0, [9600.0], vis_thr=0.2)
    assert both[0] < 0.1               # only the 8 disagreeing joints count
    assert mmpose[0] > 0.5             # candidate scores select all 17 joints


def test_oks_nms_removes_duplicate_keeps_distinct() -> None:
    rng = np.random.default_rng(2)
    person_a = _pose(0, rng)
    duplicate = person_a.copy()
    duplicate[:, :2] += rng.normal(0, 0.7, (17, 2))
    person_b = _pose(70, rng)
    keypoints = np.stack([duplicate, person_b, person_a])
    scores = np.array([0.8, 0.7, 0.9])
    areas = np.full(3, 9600.0)
    assert oks_iou(person_a, duplicate[None], 9600.0, [9600.0])[0] > 0.9
    assert oks_iou(person_a, person_b[None], 9600.0, [9600.0])[0] < 0.1
    np.testing.assert_array_equal(oks_nms(keypoints, scores, areas, thr=0.9), [2, 1])
    # the better-scoring copy wins, whichever it is
    np.testing.assert_array_equal(oks_nms(keypoints, [0.95, 0.7, 0.9], areas, thr=0.9), [0, 1])
    # OKS <= thr survives: at thr=1.0 nothing is a duplicate
    np.testing.assert_array_equal(oks_nms(keypoints, scores, areas, thr=1.0), [2, 0, 1])
    assert oks_nms(np.zeros((0, 17, 3)), [], []).size == 0
    with pytest.raises(ValueError):
        oks_nms(keypoints, scores[:2], areas)


def test_soft_oks_nms_decays_duplicates() -> None:
    rng = np.random.default_rng(3)
    person_a = _pose(0, rng)
    duplicate = person_a + np.concatenate([rng.normal(0, 0.7, (17, 2)), np.zeros((17, 1))], axis=1)
    person_b = _pose(70, rng)
    keypoints = np.stack([person_a, duplicate, person_b])
    scores = np.array([0.9, 0.85, 0.5])
    areas = np.full(3, 9600.0)
    keep, decayed = soft_oks_nms(keypoints, scores, areas, thr=0.9, return_scores=True)
    np.testing.assert_array_equal(keep, [0, 2, 1])           # the duplicate falls behind person B
    overlap = oks_iou(person_a, duplicate[None], 9600.0, [9600.0])[0]
    assert decayed[2] == pytest.approx(0.85 * np.exp(-(overlap**2) / 0.9), rel=1e-6)
    assert decayed[1] == pytest.approx(0.5, rel=1e-3)         # B barely overlaps A
    np.testing.assert_array_equal(soft_oks_nms(keypoints, scores, areas, max_dets=2), [0, 2])
    linear_keep, linear_scores = soft_oks_nms(keypoints, scores, areas, thr=0.9, decay="linear", return_scores=True)
    np.testing.assert_array_equal(linear_keep, [0, 2, 1])
    assert linear_scores[2] == pytest.approx(0.85 * (1 - overlap), rel=1e-6)


def test_oks_nms_keeps_mmpose_output_on_real_predictions(shared_data: Path) -> None:
    """example_coco_preds.json is mmpose's output after OKS-NMS at 0.9 with box areas (scale x 200)^2:
    NMS at 0.9 must keep every pose, while a stricter threshold must find overlaps."""
    preds = json.loads((shared_data / "coco" / "eval_example" / "example_coco_preds.json").read_text())
    by_image: dict[int, list[dict]] = defaultdict(list)
    for entry in preds:
        by_image[entry["image_id"]].append(entry)
    removed_at_085 = 0
    for entries in by_image.values():
        keypoints = np.array([e["keypoints"] for e in entries]).reshape(len(entries), 17, 3)
        scores = np.array([e["score"] for e in entries])
        areas = np.prod(np.array([e["scale"] for e in entries]) * 200.0, axis=1)
        assert len(oks_nms(keypoints, scores, areas, thr=0.9)) == len(entries)
        removed_at_085 += len(entries) - len(oks_nms(keypoints, scores, areas, thr=0.85))
    assert removed_at_085 > 0


def test_rescore_instances() -> None:
    keypoints = np.zeros((3, 4, 3))
    keypoints[0, :, 2] = [0.9, 0.1, 0.5, 0.2]   # 0.2 is not above the threshold
    keypoints[1, :, 2] = [0.1, 0.15, 0.2, 0.0]  # nothing clears 0.2
    keypoints[2, :, 2] = [1.0, 1.0, 1.0, 1.0]
    scores = rescore_instances(keypoints, [0.5, 0.9, 0.3])
    np.testing.assert_allclose(scores, [0.35, 0.0, 0.3])
    np.testing.assert_allclose(rescore_instances(keypoints.reshape(3, -1), [1, 1, 1], vis_thr=0.0),
                               [0.425, 0.15, 1.0])


def test_to_coco_results_format() -> None:
    keypoints = np.arange(2 * 17 * 3, dtype=np.float64).reshape(2, 17, 3)
    results = to_coco_results(np.array([7, 9]), keypoints, np.array([0.5, 0.25]), centers=np.ones((2, 2)),
                              scales=np.full((2, 2), 2.0))
    assert results[0]["image_id"] == 7 and isinstance(results[0]["image_id"], int)
    assert results[1]["keypoints"] == keypoints[1].reshape(-1).tolist()
    assert results[1]["score"] == 0.25 and results[0]["category_id"] == 1
    assert results[0]["center"] == [1.0, 1.0] and results[0]["scale"] == [2.0, 2.0]
    json.dumps(results)  # plain Python types only


def test_postprocess_topdown_on_real_ground_truth(shared_data: Path) -> None:
    """Ground-truth people as perfect predictions, each also predicted from a second, weaker box and
    one box repeated (same bbox id): grouping, rescoring and NMS leave exactly one pose per person."""
    ann = json.loads((shared_data / "coco" / "eval_example" / "example_coco_val.json").read_text())
    rng = np.random.default_rng(4)
    image_ids, poses, box_scores, areas, bbox_ids = [], [], [], [], []
    people = [p for p in ann["annotations"] if p["num_keypoints"] > 0]
    for person in people:
        pose = np.asarray(person["keypoints"], dtype=np.float64).reshape(17, 3)
        pose[:, 2] = np.where(pose[:, 2] > 0, 0.9, 0.05)
        # a second box on the same person: pose off by ~1 px, joint scores a little lower
        jittered = pose + np.concatenate([rng.normal(0, 1.0, (17, 2)), np.full((17, 1), -0.02)], axis=1)
        box_area = person["bbox"][2] * person["bbox"][3] * 1.25**2
        for candidate, box_score in ((pose, 1.0), (jittered, 0.6)):
            image_ids.append(person["image_id"])
            poses.append(candidate)
            box_scores.append(box_score)
            areas.append(box_area)
            bbox_ids.append(len(bbox_ids))
    repeated = 3
    for values, extra in ((image_ids, image_ids[repeated]), (poses, poses[repeated]), (box_scores, 1.0),
                          (areas, areas[repeated]), (bbox_ids, bbox_ids[repeated])):
        values.append(extra)
    results = postprocess_topdown(image_ids, np.stack(poses), box_scores, areas, bbox_ids=bbox_ids)
    assert len(results) == len(people)
    assert all(r["score"] == pytest.approx(0.9) for r in results)  # the unjittered, box-score-1 pose won
    assert evaluate_predictions(ann, results, dataset="coco")["AP"] == pytest.approx(1.0)
    without_nms = postprocess_topdown(image_ids, np.stack(poses), box_scores, areas, bbox_ids=bbox_ids,
                                      use_nms=False)
    assert len(without_nms) == 2 * len(people)  # duplicates kept, the repeated bbox id still dropped
    soft = postprocess_topdown(image_ids, np.stack(poses), box_scores, areas, bbox_ids=bbox_ids, soft_nms=True)
    assert len(soft) == 2 * len(people)  # soft NMS re-ranks rather than drops


def test_postprocess_nms_is_per_image() -> None:
    rng = np.random.default_rng(5)
    pose = _pose(0, rng)
    results = postprocess_topdown([1, 2], np.stack([pose, pose]), [1.0, 1.0], [9600.0, 9600.0])
    assert [r["image_id"] for r in results] == [1, 2]
