"""Keypoint evaluation: COCO / CrowdPose AP (xtcocotools), OKS, OKS-NMS, rescoring, results files."""

from sdpose_core.evaluation.crowdpose_mapping import (
    HEAD_NECK_MODES,
    SHARED_CROWDPOSE_JOINTS,
    coco_keypoints_to_crowdpose,
    coco_results_to_crowdpose,
    evaluate_coco_on_crowdpose,
)
from sdpose_core.evaluation.metrics import (
    COCO_METRICS,
    CROWDPOSE_METRICS,
    eval_preds,
    evaluate_predictions,
    format_metrics,
    per_image_ap,
)
from sdpose_core.evaluation.nms import oks_iou, oks_nms, soft_oks_nms
from sdpose_core.evaluation.oks import (
    CROWD_THRESHOLDS,
    compute_crowd_index,
    compute_oks,
    crowd_bucket,
    crowd_index,
    oks_area,
)
from sdpose_core.evaluation.results import postprocess_topdown, rescore_instances, to_coco_results

__all__ = [
    "COCO_METRICS",
    "CROWDPOSE_METRICS",
    "CROWD_THRESHOLDS",
    "HEAD_NECK_MODES",
    "SHARED_CROWDPOSE_JOINTS",
    "coco_keypoints_to_crowdpose",
    "coco_results_to_crowdpose",
    "compute_crowd_index",
    "compute_oks",
    "crowd_bucket",
    "crowd_index",
    "eval_preds",
    "evaluate_coco_on_crowdpose",
    "evaluate_predictions",
    "format_metrics",
    "oks_area",
    "oks_iou",
    "oks_nms",
    "per_image_ap",
    "postprocess_topdown",
    "rescore_instances",
    "soft_oks_nms",
    "to_coco_results",
]
