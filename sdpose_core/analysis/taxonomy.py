"""Keypoint error taxonomy of Ronchi & Perona, "Benchmarking and Error Diagnosis in Multi-Instance Pose
Estimation" (ICCV 2017), as their coco-analyze code computes it.

Every labelled joint of a ground-truth person that a prediction was matched to gets one class, from
the keypoint similarity ks = exp(-d^2 / (2 s^2 k^2)) (d: pixel distance, s^2: the person's OKS area,
k = 2 sigma of the joint; the per-joint term of OKS):

- the predicted joint is compared with every labelled joint it could be confused with: the same
  joint of its own person, the left/right-mirrored joint of its own person (left knee <-> right
  knee), and the same and the mirrored joint of every other person in the image (each scaled by that
  person's own area);
- it is attributed to the candidate with the highest ks (ties go to its own joint);
- good:      ks >= 0.85 to its own joint;
- jitter:    0.5 <= ks < 0.85 to its own joint;
- inversion: ks >= 0.5, attributed to the mirrored joint of its own person;
- swap:      ks >= 0.5, attributed to a joint (same or mirrored) of another person;
- miss:      ks < 0.5 to every candidate.

Two details of the reference code are kept: the attribution takes the BEST candidate, so a joint with
ks 0.6 to its own joint but 0.9 to the mirrored one is an inversion (not jitter); and a joint whose
ground truth is unlabelled (v = 0) gets no class. One is changed: coco-analyze tests good with ks >
0.85 but jitter with ks < 0.85, which leaves ks == 0.85 in no class; we follow the paper (good: ks >=
0.85). Centre joints (nose, head_top, neck) mirror onto themselves, so they cannot be inversions.

Which prediction belongs to which person comes from COCOeval's greedy matching at the analysis's
lowest OKS threshold 0.1 (coco-analyze `oksLocThrs`): predictions in descending score, each takes the
still-unmatched person it overlaps best (OKS >= 0.1). Predictions matched to nobody are background
false positives and people matched by nobody are misses of the whole person; neither is classified
joint by joint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdpose_core.evaluation.oks import compute_oks

ERROR_CLASSES: tuple[str, ...] = ("good", "jitter", "inversion", "swap", "miss")
UNSCORED = -1  # class index of a joint that is unlabelled in the ground truth or not scored
GOOD_KS = 0.85  # good: ks >= 0.85
NEAR_KS = 0.5  # jitter / inversion / swap: ks >= 0.5 to the attributed joint; miss below
MATCH_OKS = 0.1  # person matching threshold (coco-analyze oksLocThrs)
CLASS_INDEX = {name: index for index, name in enumerate(ERROR_CLASSES)}


@dataclass(frozen=True)
class KeypointErrors:
    """The taxonomy of one predicted person against its matched ground-truth person.

    classes: (K,) int, an index into ERROR_CLASSES, or UNSCORED (-1).
    ks_own: (K,) ks to the same joint of the matched person (NaN where unlabelled / unscored).
    ks_best: (K,) ks to the attributed joint (NaN where unlabelled / unscored).
    attributed_person: (K,) index (into the image's people) of the person whose joint was attributed,
        -1 where unscored; attributed_joint: (K,) that joint's index (mirrored for inversions).
    """

    classes: np.ndarray
    ks_own: np.ndarray
    ks_best: np.ndarray
    attributed_person: np.ndarray
    attributed_joint: np.ndarray

    def names(self) -> list[str]:
        return [ERROR_CLASSES[c] if c >= 0 else "unscored" for c in self.classes.tolist()]

    def counts(self) -> dict[str, int]:
        return {name: int((self.classes == index).sum()) for index, name in enumerate(ERROR_CLASSES)}


def keypoint_similarity(
    pred_xy: np.ndarray, gt_keypoints: np.ndarray, area: float, sigmas: np.ndarray | Sequence[float]
) -> np.ndarray:
    """(K,) ks of predicted joints (K, >=2) against one person's ground truth (K, 3); NaN where v == 0."""
    pred = np.asarray(pred_xy, dtype=np.float64)
    gt = np.asarray(gt_keypoints, dtype=np.float64)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    squared = ((pred[:, :2] - gt[:, :2]) ** 2).sum(axis=1)
    ks = np.exp(-squared / (2.0 * (float(area) + np.spacing(1)) * (2.0 * sigmas) ** 2))
    return np.where(gt[:, 2] > 0, ks, np.nan)


def classify_keypoints(
    pred_keypoints: np.ndarray,
    people: np.ndarray,
    areas: np.ndarray | Sequence[float],
    matched: int,
    sigmas: np.ndarray | Sequence[float],
    flip_index: np.ndarray | Sequence[int],
    scored: np.ndarray | Sequence[bool] | None = None,
) -> KeypointErrors:
    """Ronchi & Perona class of every joint of one prediction (see the module docstring).

    Args:
        pred_keypoints: (K, 2|3) the prediction (x, y[, score]) in image pixels.
        people: (G, K, 3) every ground-truth person of the image (v == 0: unlabelled).
        areas: (G,) their OKS areas (`sdpose_core.evaluation.oks_area`).
        matched: index into `people` of the person the prediction is matched to.
        sigmas: (K,) OKS sigmas; flip_index: (K,) the layout's left/right permutation.
        scored: (K,) joints to classify (False: UNSCORED whatever the labels, e.g. CrowdPose's head_top
            and neck for a COCO-17 model); other joints stay candidates for nothing either.
    """
    people = np.asarray(people, dtype=np.float64)
    num_people, num_joints = people.shape[:2]
    if not 0 <= matched < num_people:
        raise IndexError(f"matched person {matched} is not one of the {num_people} people")
    flip_index = np.asarray(flip_index, dtype=np.intp)
    scored_mask = np.ones(num_joints, bool) if scored is None else np.asarray(scored, dtype=bool)
    areas = np.asarray(areas, dtype=np.float64).reshape(num_people)
    # candidate rows: own, others..., own mirrored, others mirrored (coco-analyze's order; argmax ties
    # go to the first row, the person's own joint)
    order = [matched] + [g for g in range(num_people) if g != matched]
    rows, row_person, row_mirrored = [], [], []
    for mirrored in (False, True):
        for person in order:
            target = people[person][flip_index] if mirrored else people[person]
            target = target.copy()
            target[~scored_mask[flip_index if mirrored else np.arange(num_joints)], 2] = 0
            rows.append(keypoint_similarity(pred_keypoints, target, areas[person], sigmas))
            row_person.append(person)
            row_mirrored.append(mirrored)
    ks = np.stack(rows)  # (2G, K), NaN where the candidate joint is unlabelled
    filled = np.nan_to_num(ks, nan=-1.0)
    best_row = filled.argmax(axis=0)
    best = filled.max(axis=0)
    joints = np.arange(num_joints)
    own_labelled = (people[matched, :, 2] > 0) & scored_mask

    classes = np.full(num_joints, UNSCORED, dtype=np.int64)
    own_row = best_row == 0
    mirrored_own = best_row == num_people
    classes[own_labelled & (best < NEAR_KS)] = CLASS_INDEX["miss"]
    near = own_labelled & (best >= NEAR_KS)
    classes[near & own_row & (best >= GOOD_KS)] = CLASS_INDEX["good"]
    classes[near & own_row & (best < GOOD_KS)] = CLASS_INDEX["jitter"]
    classes[near & mirrored_own] = CLASS_INDEX["inversion"]
    classes[near & ~own_row & ~mirrored_own] = CLASS_INDEX["swap"]

    person_of_row = np.asarray(row_person)[best_row]
    joint_of_row = np.where(np.asarray(row_mirrored)[best_row], flip_index, joints)
    return KeypointErrors(
        classes=classes,
        ks_own=np.where(own_labelled, ks[0], np.nan),
        ks_best=np.where(own_labelled, np.maximum(best, 0.0), np.nan),
        attributed_person=np.where(own_labelled, person_of_row, -1),
        attributed_joint=np.where(own_labelled, joint_of_row, -1),
    )


def match_people(
    people: np.ndarray,
    areas: np.ndarray | Sequence[float],
    predictions: np.ndarray,
    scores: np.ndarray | Sequence[float],
    sigmas: np.ndarray | Sequence[float],
    threshold: float = MATCH_OKS,
) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy matching of predictions to people at one OKS threshold.

    Returns (person_of_prediction (D,), prediction_of_person (G,)), -1 where unmatched. Predictions go
    in descending score (stable order for ties), each to the unmatched person with the highest OKS
    >= threshold. People without labelled joints are never matched.
    """
    people = np.asarray(people, dtype=np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    num_people, num_preds = len(people), len(predictions)
    person_of_prediction = np.full(num_preds, -1, dtype=np.int64)
    prediction_of_person = np.full(num_people, -1, dtype=np.int64)
    if num_people == 0 or num_preds == 0:
        return person_of_prediction, prediction_of_person
    oks = compute_oks(people, areas, predictions, sigmas)  # (G, D); 0 for people without labels
    labelled = (people[:, :, 2] > 0).any(axis=1)
    for prediction in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        best, chosen = min(threshold, 1 - 1e-10), -1
        for person in range(num_people):
            if prediction_of_person[person] >= 0 or not labelled[person]:
                continue
            if oks[person, prediction] >= best:
                best, chosen = oks[person, prediction], person
        if chosen >= 0:
            person_of_prediction[prediction] = chosen
            prediction_of_person[chosen] = prediction
    return person_of_prediction, prediction_of_person
