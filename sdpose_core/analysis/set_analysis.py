"""Failure analysis of a set's predictions: OKS per person, AP per image, the error taxonomy per joint,
for every cycle; plus the sorting, filtering and ranking the studio's Samples and Review tabs use.

    analysis = analyse_set(sample_set, predictions, head_neck="drop")
    analysis.people[cycle]          # PersonRecord per labelled person: matched prediction, OKS, classes
    analysis.images[cycle]          # ImageRecord per predicted image: AP, min / mean OKS, class counts
    analysis.counts                 # (cycles, joints, 5) class counts; analysis.set_ap[cycle]

COCO-17 predictions on CrowdPose-14 ground truth are mapped with `sdpose_core.evaluation`'s
`coco_keypoints_to_crowdpose`: "drop" scores the 12 shared limb joints only (head_top and neck are
neither matched, scored nor classified), "synthesize" builds neck and head_top from COCO joints and
scores all 14. A CrowdPose-14 model cannot be scored on COCO-17 ground truth (ConfigError).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdpose_core.analysis.sample_sets import SampleSet
from sdpose_core.analysis.set_predictions import SetPredictions
from sdpose_core.analysis.taxonomy import ERROR_CLASSES, classify_keypoints, match_people
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.evaluation import (
    HEAD_NECK_MODES,
    SHARED_CROWDPOSE_JOINTS,
    coco_keypoints_to_crowdpose,
    compute_oks,
    evaluate_predictions,
    per_image_ap,
)

SORT_KEYS = ("worst OKS", "lowest AP", "most errors", "crowd index", "file name")
BUCKET_FILTERS = ("all", "easy", "medium", "hard")
CLASS_FILTERS = ("any", *ERROR_CLASSES[1:], "unmatched person")


@dataclass
class PersonRecord:
    """One labelled person at one cycle. `prediction` indexes the image's poses after NMS (-1: no pose
    matched, OKS 0, no classes); `pred_keypoints` is that pose in the set's layout (NaN where unscored)."""

    image_id: Any
    ann_id: int
    person_index: int
    cycle: int
    prediction: int
    oks: float
    classes: np.ndarray
    ks: np.ndarray
    pred_keypoints: np.ndarray | None

    def counts(self) -> dict[str, int]:
        return {name: int((self.classes == i).sum()) for i, name in enumerate(ERROR_CLASSES)}

    @property
    def errors(self) -> int:
        return int((self.classes > 0).sum())


@dataclass
class ImageRecord:
    """One predicted image at one cycle (AP -1: no scorable person, NaN: AP could not be computed)."""

    image_id: Any
    file_name: str
    crowd_index: float
    bucket: str
    num_people: int
    num_poses: int
    unmatched_people: int
    ap: float
    min_oks: float
    mean_oks: float
    counts: dict[str, int]


@dataclass
class SetAnalysis:
    predictions: SetPredictions
    head_neck: str
    scored: np.ndarray  # (K,) joints of the set's layout that are scored
    scoring_note: str
    people: dict[int, list[PersonRecord]]
    images: dict[int, list[ImageRecord]]
    set_ap: dict[int, float]
    counts: np.ndarray  # (C, K, len(ERROR_CLASSES))
    notes: list[str] = field(default_factory=list)

    def poses(self, image_id: Any, cycle: int) -> np.ndarray:
        """(D, K, 3) the image's poses of `cycle` (after NMS) in the set's layout, NaN where unscored."""
        found = self.predictions.images.get(image_id)
        if found is None:
            return np.zeros((0, len(self.scored), 3))
        return self._to_set_layout(found.poses(cycle)[0])

    def _to_set_layout(self, keypoints: np.ndarray) -> np.ndarray:
        converted = to_set_layout(keypoints, self.predictions.model_layout.num_keypoints, len(self.scored),
                                  self.head_neck)
        converted[..., ~self.scored, :] = np.nan
        return converted

    def person(self, ann_id: int, cycle: int) -> PersonRecord:
        for record in self.people[cycle]:
            if record.ann_id == ann_id:
                return record
        raise DataError(f"person (annotation id {ann_id}) has no prediction in this analysis; pick another")


def to_set_layout(keypoints: np.ndarray, model_joints: int, set_joints: int, head_neck: str) -> np.ndarray:
    """Model-layout keypoints (..., K_model, 3) in the set's layout (copy)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if model_joints == set_joints:
        return keypoints.copy()
    if model_joints == 17 and set_joints == 14:
        return coco_keypoints_to_crowdpose(keypoints, head_neck)
    raise ConfigError(f"the model predicts {model_joints} joints but the set is labelled with {set_joints}; "
                      "only a COCO-17 model can be scored on CrowdPose-14 ground truth, pick a matching set")


def scoring_of(sample_set: SampleSet, predictions: SetPredictions, head_neck: str) -> tuple[np.ndarray, str]:
    """(scored joint mask, a sentence saying how joints are scored)."""
    if head_neck not in HEAD_NECK_MODES:
        raise ConfigError(f"head_neck must be one of {HEAD_NECK_MODES}, got {head_neck!r}")
    set_joints = sample_set.layout.num_keypoints
    model_joints = predictions.model_layout.num_keypoints
    to_set_layout(np.zeros((model_joints, 3)), model_joints, set_joints, head_neck)  # raises on a mismatch
    scored = np.ones(set_joints, dtype=bool)
    if model_joints == set_joints:
        return scored, f"all {set_joints} joints scored"
    if head_neck == "drop":
        scored[:] = False
        scored[list(SHARED_CROWDPOSE_JOINTS)] = True
        return scored, ("COCO-17 model on CrowdPose-14 ground truth: the 12 shared limb joints are scored; "
                        "head_top and neck have no COCO joint and are left out (mode 'drop')")
    return scored, ("COCO-17 model on CrowdPose-14 ground truth, all 14 joints scored: neck = midpoint of the "
                    "shoulders, head_top = face centre + 0.5 x (face centre - neck), a rule of thumb that adds "
                    "error of its own (mode 'synthesize')")


def analyse_set(sample_set: SampleSet, predictions: SetPredictions, head_neck: str = "drop") -> SetAnalysis:
    """Match, score and classify every cycle's predictions against the set's ground truth."""
    scored, note = scoring_of(sample_set, predictions, head_neck)
    layout = sample_set.layout
    sigmas = layout.sigmas_array()
    flip_index = layout.flip_index()
    joints = np.flatnonzero(scored)
    analysis = SetAnalysis(predictions, head_neck, scored, note, {}, {}, {},
                           np.zeros((predictions.cycles, layout.num_keypoints, len(ERROR_CLASSES)), dtype=np.int64))
    for cycle in range(1, predictions.cycles + 1):
        people_records: list[PersonRecord] = []
        results: list[dict] = []
        for image_id, image_predictions in predictions.images.items():
            poses = analysis.poses(image_id, cycle)
            scores = image_predictions.poses(cycle)[1]
            gt, areas, _, ann_ids = sample_set.people_arrays(image_id)
            gt_scored = gt[:, joints]
            poses_scored = poses[:, joints]
            _, prediction_of_person = match_people(gt_scored, areas, poses_scored, scores, sigmas[joints])
            oks = compute_oks(gt_scored, areas, poses_scored, sigmas[joints]) if len(poses) else None
            for person, ann_id in enumerate(ann_ids):
                if not (gt_scored[person, :, 2] > 0).any():
                    continue  # labelled only at joints that are not scored: nothing to compare
                match = int(prediction_of_person[person])
                if match < 0:
                    classes = np.full(layout.num_keypoints, -1)
                    record = PersonRecord(image_id, ann_id, person, cycle, -1, 0.0, classes,
                                          np.full(layout.num_keypoints, np.nan), None)
                else:
                    errors = classify_keypoints(np.nan_to_num(poses[match]), gt, areas, person, sigmas, flip_index,
                                                scored)
                    record = PersonRecord(image_id, ann_id, person, cycle, match, float(oks[person, match]),
                                          errors.classes, errors.ks_own, poses[match])
                    for class_index in range(len(ERROR_CLASSES)):
                        analysis.counts[cycle - 1, :, class_index] += errors.classes == class_index
                people_records.append(record)
            for pose, score in zip(np.nan_to_num(poses), scores, strict=True):
                results.append({"image_id": image_id, "category_id": sample_set.category_id,
                                "keypoints": pose.reshape(-1).tolist(), "score": float(score)})
        analysis.people[cycle] = people_records
        image_ap, set_ap = _average_precision(sample_set, predictions, results, joints, analysis.notes)
        analysis.set_ap[cycle] = set_ap
        analysis.images[cycle] = _image_records(sample_set, predictions, people_records, image_ap, cycle)
    return analysis


def _average_precision(sample_set: SampleSet, predictions: SetPredictions, results: list[dict],
                       joints: np.ndarray, notes: list[str]) -> tuple[dict[Any, float], float]:
    """Per-image AP and the AP of the predicted images (xtcocotools, the evaluation's rules)."""
    predicted = set(predictions.images)
    data = sample_set.data
    ground_truth = {**data, "images": [i for i in data["images"] if i["id"] in predicted],
                    "annotations": [a for a in data["annotations"] if a["image_id"] in predicted]}
    subset = None if len(joints) == sample_set.layout.num_keypoints else joints.tolist()
    with_people = {i.id for i in sample_set.images if i.id in predicted and i.people}
    if not results:
        return {image_id: 0.0 if image_id in with_people else -1.0 for image_id in predicted}, 0.0
    try:
        image_ap = per_image_ap(ground_truth, results, sample_set.layout.name, keypoint_subset=subset)
        set_ap = evaluate_predictions(ground_truth, results, sample_set.layout.name, keypoint_subset=subset)["AP"]
    except DataError as error:
        if str(error) not in notes:
            notes.append(f"AP not computed: {error}")
        return {image_id: float("nan") for image_id in predicted}, float("nan")
    return image_ap, float(set_ap)


def _image_records(sample_set: SampleSet, predictions: SetPredictions, people: list[PersonRecord],
                   image_ap: dict[Any, float], cycle: int) -> list[ImageRecord]:
    by_image: dict[Any, list[PersonRecord]] = {}
    for record in people:
        by_image.setdefault(record.image_id, []).append(record)
    records = []
    for image_id, image_predictions in predictions.images.items():
        image = sample_set.image(image_id)
        mine = by_image.get(image_id, [])
        oks = [r.oks for r in mine]
        counts = {name: sum(r.counts()[name] for r in mine) for name in ERROR_CLASSES}
        records.append(ImageRecord(
            image_id=image_id, file_name=image.file_name, crowd_index=image.crowd_index, bucket=image.bucket,
            num_people=len(mine), num_poses=len(image_predictions.kept[cycle - 1]),
            unmatched_people=sum(r.prediction < 0 for r in mine), ap=float(image_ap.get(image_id, -1.0)),
            min_oks=min(oks) if oks else float("nan"), mean_oks=float(np.mean(oks)) if oks else float("nan"),
            counts=counts,
        ))
    return records


def select_images(analysis: SetAnalysis, cycle: int, sort: str = "worst OKS", bucket: str = "all",
                  error_class: str = "any") -> list[ImageRecord]:
    """The cycle's image records filtered by crowd bucket and error class, in the requested order.

    sort: "worst OKS" (lowest person OKS first; images without people last), "lowest AP", "most errors"
    (of `error_class`, or of all non-good classes), "crowd index" (most crowded first), "file name".
    error_class: "any", a class name (images with at least one such joint) or "unmatched person".
    """
    if sort not in SORT_KEYS or bucket not in BUCKET_FILTERS or error_class not in CLASS_FILTERS:
        raise ConfigError(f"sort must be one of {SORT_KEYS}, bucket one of {BUCKET_FILTERS}, error class one "
                          f"of {CLASS_FILTERS}; got {sort!r}, {bucket!r}, {error_class!r}")
    if cycle not in analysis.images:
        raise ConfigError(f"cycle {cycle} was not run (cycles 1..{analysis.predictions.cycles})")
    records = [r for r in analysis.images[cycle] if bucket == "all" or r.bucket == bucket]
    if error_class == "unmatched person":
        records = [r for r in records if r.unmatched_people]
    elif error_class != "any":
        records = [r for r in records if r.counts[error_class]]

    def errors(record: ImageRecord) -> int:
        if error_class in ERROR_CLASSES:
            return record.counts[error_class]
        return sum(record.counts[name] for name in ERROR_CLASSES[1:]) + record.unmatched_people

    def undefined_last(value: float) -> float:
        return float("inf") if not np.isfinite(value) or value < 0 else value

    keys = {
        "worst OKS": lambda r: (undefined_last(r.min_oks), r.file_name),
        "lowest AP": lambda r: (undefined_last(r.ap), r.file_name),
        "most errors": lambda r: (-errors(r), r.file_name),
        "crowd index": lambda r: (-r.crowd_index, r.file_name),
        "file name": lambda r: (r.file_name,),
    }
    return sorted(records, key=keys[sort])


def rank_disagreement(analysis: SetAnalysis, cycle: int) -> list[PersonRecord]:
    """People ordered by how much ground truth and prediction disagree: unmatched first, then lowest
    OKS, then most non-good joints."""
    return sorted(analysis.people[cycle], key=lambda r: (r.prediction >= 0, r.oks, -r.errors, str(r.image_id)))
