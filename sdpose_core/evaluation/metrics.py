"""COCO and CrowdPose keypoint AP with xtcocotools' COCOeval, as mmpose 0.x scores them.

COCO: iouType 'keypoints', COCO's 17 sigmas, the ground truth's segment `area` as OKS scale.
CrowdPose: iouType 'keypoints_crowd' (people with `num_keypoints == 0` are ignored), CrowdPose's 14
sigmas, `use_area=False` (OKS scale = box width x height x 0.53), plus AP per crowd-index bucket.

Only the bucket split is done here rather than by xtcocotools: its built-in `summarize()` for
'keypoints_crowd' re-reads the ground truth from disk and splits at 0.2 / 0.8, while CrowdPose defines
easy < 0.1 <= medium <= 0.8 < hard. We re-run the library's evaluate/accumulate on each bucket's
images with CrowdPose's thresholds (`crowd_thresholds` to change them).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from sdpose_core.errors import DataError
from sdpose_core.evaluation.oks import CROWD_BUCKETS, CROWD_THRESHOLDS, crowd_bucket, crowd_index
from sdpose_core.evaluation.validation import (
    check_annotations,
    check_results,
    load_json,
    resolve_dataset,
    subset_keypoints,
)
from sdpose_core.keypoints import KeypointLayout

COCO_METRICS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
CROWDPOSE_METRICS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")

AnnotationsInput = str | Path | dict
ResultsInput = list[dict] | str | Path


def _load_annotations(ann_file_or_dict: AnnotationsInput) -> tuple[dict, str]:
    if isinstance(ann_file_or_dict, dict):
        return check_annotations(ann_file_or_dict, "annotations"), "annotations"
    source = str(ann_file_or_dict)
    return check_annotations(load_json(ann_file_or_dict, "annotation"), source), source


def _load_results(results: ResultsInput) -> tuple[object, str]:
    if isinstance(results, (str, Path)):
        return load_json(results, "predictions"), str(results)
    return results, "predictions"


def _prepare(
    ann_file_or_dict: AnnotationsInput,
    results: ResultsInput,
    dataset: str | None,
    keypoint_subset: Sequence[int] | None,
) -> tuple[dict, list[dict], KeypointLayout, np.ndarray]:
    """Checked copies of ground truth and predictions (restricted to `keypoint_subset`) and the sigmas."""
    ann, ann_source = _load_annotations(ann_file_or_dict)
    layout = resolve_dataset(dataset, ann, ann_source)
    raw_results, results_source = _load_results(results)
    checked = check_results(raw_results, ann, layout, results_source)
    if layout.name == "coco":
        no_area = [a["id"] for a in ann["annotations"] if "area" not in a]
        if no_area:
            raise DataError(
                f"{ann_source}: COCO scoring needs each person's 'area' (OKS scale); annotations {no_area[:5]} "
                "have none"
            )
    sigmas = layout.sigmas_array()
    # COCOeval writes fields into the annotation dicts: give it copies, never the caller's.
    people = [dict(a) for a in ann["annotations"]]
    for person in people:
        person.setdefault("iscrowd", 0)
        # 'keypoints_crowd' ignores people by this count; files without it get the labelled-joint count.
        person.setdefault("num_keypoints", int(sum(v > 0 for v in person["keypoints"][2::3])))
    if keypoint_subset is not None:
        joints = [int(j) for j in keypoint_subset]
        if not joints or min(joints) < 0 or max(joints) >= layout.num_keypoints:
            raise DataError(f"keypoint_subset {joints} must pick joints 0..{layout.num_keypoints - 1}")
        sigmas = sigmas[joints]
        for person in people:
            person["keypoints"] = subset_keypoints(person["keypoints"], joints)
            # CrowdPose's evaluation ignores people by num_keypoints: recount within the subset.
            person["num_keypoints"] = int(sum(v > 0 for v in person["keypoints"][2::3]))
        for result in checked:
            result["keypoints"] = subset_keypoints(result["keypoints"], joints)
    ground_truth = {**ann, "annotations": people}
    return ground_truth, checked, layout, sigmas


def _build_cocoeval(ground_truth: dict, results: list[dict], layout: KeypointLayout, sigmas: np.ndarray) -> COCOeval:
    """COCOeval over the checked inputs, with xtcocotools' progress printing swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        crowd = layout.name == "crowdpose"
        evaluator = COCOeval(
            coco_gt, coco_dt, "keypoints_crowd" if crowd else "keypoints", sigmas, use_area=not crowd
        )
    evaluator.params.useSegm = None
    return evaluator


def _summary_value(evaluator: COCOeval, precision: bool, iou: float | None = None, area: str = "all") -> float:
    """One summary number from accumulated results, as COCOeval.summarize computes it (-1 = undefined)."""
    params = evaluator.params
    area_index = params.areaRngLbl.index(area)
    values = evaluator.eval["precision" if precision else "recall"]
    values = values[..., area_index, :]  # area is the second-last axis in both arrays
    if iou is not None:
        values = values[np.isclose(params.iouThrs, iou)]
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def _run(evaluator: COCOeval, image_ids: Sequence[int] | None = None) -> None:
    if image_ids is not None:
        evaluator.params.imgIds = list(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()


def _crowd_buckets(ground_truth: dict, thresholds: tuple[float, float]) -> dict[str, list[int]]:
    """Image ids per crowd bucket; an image without `crowdIndex` gets one computed from its people."""
    people_by_image: dict[int, list[dict]] = {}
    for person in ground_truth["annotations"]:
        people_by_image.setdefault(person["image_id"], []).append(person)
    buckets: dict[str, list[int]] = {name: [] for name in CROWD_BUCKETS}
    for image in ground_truth["images"]:
        index = crowd_index(image, people_by_image.get(image["id"], []))
        buckets[crowd_bucket(index, thresholds)].append(image["id"])
    return buckets


def evaluate_predictions(
    ann_file_or_dict: AnnotationsInput,
    results: ResultsInput,
    dataset: str | None = "coco",
    *,
    keypoint_subset: Sequence[int] | None = None,
    crowd_thresholds: tuple[float, float] = CROWD_THRESHOLDS,
    verbose: bool = False,
) -> dict[str, float]:
    """Keypoint AP/AR of COCO-format predictions against COCO-format ground truth.

    Args:
        ann_file_or_dict: ground-truth JSON path or the loaded dict (not modified).
        results: COCO keypoint results, a list of {image_id, category_id, keypoints (flat x, y, score),
            score} or a path to such a JSON list. Extra fields (center, scale) are ignored.
        dataset: 'coco', 'crowdpose', or None/'auto' to take it from the annotation file.
        keypoint_subset: evaluate only these joints (ground truth, predictions and sigmas alike),
            e.g. the 12 limb joints when a COCO model is scored on CrowdPose.
        crowd_thresholds: CrowdPose bucket limits (easy < low <= medium <= high < hard).
        verbose: print the table (`format_metrics`).

    Returns:
        COCO: AP, AP50, AP75, APM, APL, AR, AR50, AR75, ARM, ARL (at most 20 people per image).
        CrowdPose: AP, AP50, AP75, AR, AR50, AR75, AP_easy, AP_medium, AP_hard. A value of -1.0
        means undefined (no ground truth in that slice, e.g. an empty bucket), as in COCOeval.

    Raises:
        DataError: unreadable or inconsistent inputs (see `validation.check_results`).
    """
    ground_truth, checked, layout, sigmas = _prepare(ann_file_or_dict, results, dataset, keypoint_subset)
    evaluator = _build_cocoeval(ground_truth, checked, layout, sigmas)
    _run(evaluator)
    if layout.name == "coco":
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.summarize()
        metrics = {name: float(value) for name, value in zip(COCO_METRICS, evaluator.stats, strict=True)}
    else:
        metrics = {
            "AP": _summary_value(evaluator, True),
            "AP50": _summary_value(evaluator, True, 0.5),
            "AP75": _summary_value(evaluator, True, 0.75),
            "AR": _summary_value(evaluator, False),
            "AR50": _summary_value(evaluator, False, 0.5),
            "AR75": _summary_value(evaluator, False, 0.75),
        }
        for name, image_ids in _crowd_buckets(ground_truth, crowd_thresholds).items():
            if image_ids:
                _run(evaluator, image_ids)
                metrics[f"AP_{name}"] = _summary_value(evaluator, True)
            else:
                metrics[f"AP_{name}"] = -1.0
    if verbose:
        print(format_metrics(metrics, title=f"{layout.name} keypoint evaluation"))
    return metrics


def per_image_ap(
    ann_file_or_dict: AnnotationsInput,
    results: ResultsInput,
    dataset: str | None = "coco",
    *,
    keypoint_subset: Sequence[int] | None = None,
) -> dict[int, float]:
    """AP (OKS .50:.95) of each ground-truth image on its own; -1.0 where the image has no scorable person.

    Same rules as `evaluate_predictions`; images without predictions score 0 when they have people.
    """
    ground_truth, checked, layout, sigmas = _prepare(ann_file_or_dict, results, dataset, keypoint_subset)
    evaluator = _build_cocoeval(ground_truth, checked, layout, sigmas)
    scores: dict[int, float] = {}
    for image in ground_truth["images"]:
        _run(evaluator, [image["id"]])
        scores[image["id"]] = _summary_value(evaluator, True)
    return scores


def format_metrics(metrics: dict[str, float], title: str | None = None) -> str:
    """A two-column text table; undefined values (-1) print as 'n/a'."""
    width = max([len("metric")] + [len(name) for name in metrics])
    lines = [title] if title else []
    lines.append(f"{'metric':<{width}}  value")
    lines.append(f"{'-' * width}  ------")
    for name, value in metrics.items():
        shown = "n/a" if value == -1.0 else f"{value:.4f}"
        lines.append(f"{name:<{width}}  {shown}")
    return "\n".join(lines)


def eval_preds(ann_path: str | Path, preds_path: str | Path, dataset: str | None = None) -> dict[str, float]:
    """`sdpose eval-preds`: score a predictions JSON file against an annotation JSON file.

    `dataset` None or 'auto' takes the dataset from the annotation file's keypoint count.
    Raises DataError (with the file and the fix in the message) for a missing file, a file that is
    not JSON, predictions that are not a list of {image_id, category_id, keypoints, score}, keypoint
    lists of the wrong length for the dataset, image ids absent from the annotations, or no predictions.
    """
    ann = check_annotations(load_json(ann_path, "annotation"), str(ann_path))
    predictions = load_json(preds_path, "predictions")
    layout = resolve_dataset(dataset, ann, str(ann_path))
    check_results(predictions, ann, layout, str(preds_path))
    return evaluate_predictions(ann, predictions, layout.name)
