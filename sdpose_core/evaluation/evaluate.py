"""`sdpose evaluate`: load weights, predict every person box, score every cycle (COCO or CrowdPose)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from sdpose_core.errors import ConfigError
from sdpose_core.evaluation.loop import (
    OKS_NMS_THRESHOLD,
    collect_predictions,
    predictions_to_results,
    uses_detected_boxes,
)
from sdpose_core.keypoints import get_layout
from sdpose_core.models.config import check_cycles
from sdpose_core.precision import resolve_device
from sdpose_core.weights.load import load_model


def _what_was_scored(ann: str, images: str, kind: str, scoring: str, boxes: str, detected: bool,
                     det_score_threshold: float, num_instances: int) -> dict[str, Any]:
    """The report fields shared by model and baseline evaluations: which set, boxes and joints were scored."""
    return {
        "ann": ann, "images": images, "dataset": kind, "scoring": scoring, "boxes": boxes,
        "boxes_kind": "detected" if detected else "GT",
        "det_score_threshold": det_score_threshold if detected else None,
        "num_instances": num_instances,
    }


def run_evaluation(
    weights: str,
    ann: str,
    images: str,
    model_name: str | None = None,
    boxes: str = "gt",
    det_score_threshold: float = 0.0,
    cycles: int | None = None,
    flip: bool = False,
    decode: str = "dark",
    dataset: str | None = None,
    batch_size: int = 32,
    workers: int = 0,
    device: str = "auto",
    model_overrides: dict[str, Any] | None = None,
    save_preds: str | None = None,
    amp: bool | None = None,
) -> dict[str, Any]:
    """Metrics of every cycle 1..cycles plus what was run and how long it took (a JSON-able dict).

    `amp`: None (default) / True run bf16 autocast on CPUs with native bf16 only, fp32 elsewhere; False
    always fp32 (`sdpose_core.precision.resolve_amp`); the report's "precision" says which and why."""
    from sdpose_core.data import TopDownDataset
    from sdpose_core.evaluation import evaluate_coco_on_crowdpose, evaluate_predictions
    from sdpose_core.precision import resolve_amp

    start = time.perf_counter()
    torch_device = resolve_device(device)
    precision = resolve_amp(amp, torch_device, "evaluation")
    # our folder / hf:// / a run's last.pt build from their own config; an official .pth or state dict is
    # built as --model (+ --override fields), else as the variant its weights fit
    model, _ = load_model(weights, model_name, torch_device, model_overrides=model_overrides)
    config = model.config
    cycles = check_cycles(cycles, config.cycles, where="--cycles")
    data = TopDownDataset(
        ann, images, train=False, image_size=tuple(config.image_size), heatmap_size=tuple(config.heatmap_size),
        boxes=boxes, det_score_threshold=det_score_threshold, layout=dataset,
    )
    kind = data.layout.name
    scoring = "all joints"
    if int(config.num_keypoints) != data.layout.num_keypoints:
        if not (int(config.num_keypoints) == 17 and kind == "crowdpose"):
            raise ConfigError(
                f"the model predicts {config.num_keypoints} keypoints but {ann} is a {kind} file with "
                f"{data.layout.num_keypoints}; only COCO-17 models can be scored on CrowdPose-14 data"
            )
        scoring = "COCO-17 model on CrowdPose: the 12 shared limb joints (head_top and neck left out)"
    load_s = time.perf_counter() - start

    t0 = time.perf_counter()
    predictions = collect_predictions(
        model, data, cycles=cycles, flip=flip, decode=decode, batch_size=batch_size, device=torch_device,
        num_workers=workers, amp_dtype=precision.dtype,
    )
    inference_s = time.perf_counter() - t0
    detected = uses_detected_boxes(data)
    results = predictions_to_results(predictions, get_layout(int(config.num_keypoints)).sigmas_array(), nms=detected)

    t1 = time.perf_counter()
    metrics: dict[str, dict[str, float]] = {}
    for cycle, cycle_results in results.items():
        if scoring == "all joints":
            metrics[f"cycle{cycle}"] = evaluate_predictions(ann, cycle_results, dataset=kind)
        else:
            metrics[f"cycle{cycle}"] = evaluate_coco_on_crowdpose(ann, cycle_results, head_neck="drop")
        if save_preds:
            out = Path(f"{save_preds}_cycle{cycle}.json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(cycle_results))
    eval_s = time.perf_counter() - t1
    total_s = time.perf_counter() - start
    return {
        "model": config.to_dict(),
        "weights": weights,
        **_what_was_scored(ann, images, kind, scoring, boxes, detected, det_score_threshold, len(data)),
        "flip": flip,
        "decode": decode,
        "cycles": cycles,
        "device": str(torch_device),
        "precision": precision.reason,
        "metrics": metrics,
        "timings": {
            "load_s": load_s,
            "inference_s": inference_s,
            "forward_s": predictions.timings.get("forward_s", 0.0),
            "decode_s": predictions.timings.get("decode_s", 0.0),
            "eval_s": eval_s,
            "total_s": total_s,
            "instances_per_s": len(data) / max(inference_s, 1e-9),
            "torch_threads": torch.get_num_threads(),
        },
    }


class BaselinePose(Protocol):
    """A baseline pose model that `run_baseline_evaluation` scores (e.g. `inference.baselines.MediaPipePose`).

    `name` keys its metrics; `describe()` is the report's "model" entry; `predict(image_rgb, boxes)` gives,
    for each [x, y, w, h] box (the aspect-fixed box before the 1.25 padding), an object with `keypoints`
    (17, 3: image x, y, score) and `found`.
    """

    name: str

    def describe(self) -> dict[str, Any]: ...

    def predict(self, image_rgb: np.ndarray, boxes: np.ndarray) -> Sequence[Any]: ...


def run_baseline_evaluation(
    pose: BaselinePose,
    ann: str,
    images: str,
    boxes: str = "gt",
    det_score_threshold: float = 0.0,
    dataset: str | None = None,
    save_preds: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a baseline pose model (built by the caller, e.g. `inference.baseline_factory.build_baseline`) like
    `run_evaluation` scores ours.

    The people are the same samples our models get (GT boxes or detections, same filtering); the baseline
    runs on each person's box, and the keypoints go through the same mmpose post-processing (rescoring,
    OKS-NMS for detections) and xtcocotools scoring. The metrics dict has one entry, keyed by the
    baseline's name.
    """
    from sdpose_core.data import TopDownDataset
    from sdpose_core.data.transforms import center_scale_to_box
    from sdpose_core.evaluation import evaluate_coco_on_crowdpose, evaluate_predictions, postprocess_topdown
    from sdpose_core.media.images import load_image

    baseline = pose.name
    start = time.perf_counter()
    # image_size only sets the 3:4 aspect ratio of the boxes, as for SDPose at 256x192 or 128x96
    data = TopDownDataset(ann, images, train=False, boxes=boxes, det_score_threshold=det_score_threshold,
                          layout=dataset)
    kind = data.layout.name
    samples = data.samples
    crops = center_scale_to_box(samples.center, samples.scale / 1.25)  # the aspect-fixed, unpadded boxes
    keypoints = np.zeros((len(samples), 17, 3), dtype=np.float64)
    found = 0
    order = np.argsort(samples.image_index, kind="stable")
    image_indices = np.unique(samples.image_index)
    if progress:
        from tqdm import tqdm

        image_indices = tqdm(image_indices, desc=baseline, unit="image", leave=False)
    t0 = time.perf_counter()
    for image_index in image_indices:
        rows = order[samples.image_index[order] == image_index]
        image = load_image(data.image_files[image_index])
        for row, person in zip(rows, pose.predict(image, crops[rows]), strict=True):
            keypoints[row] = person.keypoints
            found += person.found
    inference_s = time.perf_counter() - t0

    detected = uses_detected_boxes(data)
    results = postprocess_topdown(
        data.image_ids[samples.image_index], keypoints, samples.box_score,
        samples.scale.prod(axis=1), centers=samples.center, scales=samples.scale, oks_thr=OKS_NMS_THRESHOLD,
        use_nms=detected, sigmas=get_layout("coco").sigmas_array(),
    )
    t1 = time.perf_counter()
    if kind == "coco":
        scoring = "all joints"
        metrics = evaluate_predictions(ann, results, dataset=kind)
    else:
        scoring = "COCO-17 model on CrowdPose: the 12 shared limb joints (head_top and neck left out)"
        metrics = evaluate_coco_on_crowdpose(ann, results, head_neck="drop")
    eval_s = time.perf_counter() - t1
    if save_preds:
        out = Path(f"{save_preds}_{baseline}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results))
    return {
        "model": pose.describe(),
        "baseline": baseline,
        **_what_was_scored(ann, images, kind, scoring, boxes, detected, det_score_threshold, len(samples)),
        "poses_found": int(found),
        "metrics": {baseline: metrics},
        "timings": {
            "inference_s": inference_s,
            "eval_s": eval_s,
            "total_s": time.perf_counter() - start,
            "instances_per_s": len(samples) / max(inference_s, 1e-9),
        },
    }
