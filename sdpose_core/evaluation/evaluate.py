"""`sdpose evaluate`: load weights, predict every person box, score every cycle (COCO or CrowdPose)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdpose_core.errors import ConfigError
from sdpose_core.evaluation.loop import (
    OKS_NMS_THRESHOLD,
    collect_predictions,
    predictions_to_results,
    uses_detected_boxes,
)
from sdpose_core.keypoints import get_layout
from sdpose_core.train.distributed import resolve_device
from sdpose_core.train.state import STATE_FORMAT


def _training_state(path: Path) -> dict[str, Any] | None:
    """The contents of a run's last.pt, or None when `path` is something else."""
    if not (path.is_file() and path.suffix == ".pt"):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not ours: let load_checkpoint report on it
        return None
    return state if isinstance(state, dict) and state.get("format") == STATE_FORMAT else None


def load_model_for_eval(
    weights: str, model_name: str | None = None, model_overrides: dict[str, Any] | None = None,
    default_num_keypoints: int | None = None,
) -> nn.Module:
    """A model with `weights` loaded (strictly).

    weights: our folder (config.json + model.safetensors) or hf://org/repo[/subdir] -> built from its
    config; a training run's last.pt -> built from the config stored in it; an official .pth (or any
    state dict) -> built as `model_name` (+ overrides; the keypoint count defaults to the dataset's), or,
    without `model_name`, as the variant inferred from the weights.
    """
    from sdpose_core.models import build_model
    from sdpose_core.models.config import ModelConfig
    from sdpose_core.models.registry import model_from_config
    from sdpose_core.weights.checkpoint import load_checkpoint, load_pretrained

    overrides = dict(model_overrides or {})
    path = Path(weights)
    state = _training_state(path)
    if state is not None:
        model = model_from_config(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"], strict=True)
        return model
    if weights.startswith("hf://") or (path.is_dir() and (path / "config.json").is_file()):
        model = load_pretrained(weights)
        if model_name and model_name.lower().replace("_", "-") != model.config.name:
            raise ConfigError(
                f"--model {model_name} does not match the weights in {weights}, which are {model.config.name}; "
                "drop --model (the folder's config.json says what to build)"
            )
        return model
    if path.is_dir() and (path / "last.pt").is_file():
        raise ConfigError(
            f"{weights} is a training run directory; pass {path / 'final'} or {path / 'best'} (weights) "
            f"or {path / 'last.pt'} (training state)"
        )
    if not path.exists():
        raise ConfigError(f"weights not found: {weights} (a weights folder, a .pth/.pt file or hf://org/repo)")
    if not model_name:
        # an official checkpoint: the variant and keypoint count are inferred from its weights
        return load_pretrained(weights)
    if default_num_keypoints is not None:
        overrides.setdefault("num_keypoints", default_num_keypoints)
    model = build_model(model_name, **overrides)
    return load_checkpoint(model, weights)


def _annotation_layout(ann: str, dataset: str | None) -> int | None:
    """Keypoint count of the annotation file (for building an official model); None if unreadable."""
    if dataset:
        return get_layout(dataset).num_keypoints
    try:
        data = json.loads(Path(ann).read_text())
        names = next((c.get("keypoints") for c in data.get("categories", []) if c.get("keypoints")), None)
        return len(names) if names else None
    except (OSError, ValueError, AttributeError):
        return None  # the dataset constructor reports on the file properly


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
    model = load_model_for_eval(weights, model_name, model_overrides, _annotation_layout(ann, dataset))
    model.to(torch_device).eval()
    config = model.config
    cycles = int(cycles or config.cycles)
    if cycles < 1:
        raise ConfigError(f"--cycles must be >= 1, got {cycles}")
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


BASELINES = ("mediapipe",)
# The crop our models see is the aspect-fixed box x 1.25 (mmpose padding); MediaPipePose adds `padding`
# of the box on EACH side, so 0.125 hands BlazePose exactly that crop.
MODEL_CROP_PADDING = 0.125


def run_baseline_evaluation(
    baseline: str,
    ann: str,
    images: str,
    boxes: str = "gt",
    det_score_threshold: float = 0.0,
    dataset: str | None = None,
    padding: float = MODEL_CROP_PADDING,
    save_preds: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a baseline pose model (MediaPipe BlazePose) like `run_evaluation` scores ours.

    The people are the same samples our models get (GT boxes or detections, same filtering); BlazePose
    runs on each person's crop, and the keypoints go through the same mmpose post-processing (rescoring,
    OKS-NMS for detections) and xtcocotools scoring. The metrics dict has one entry, keyed by the
    baseline's name.
    """
    from sdpose_core.data import TopDownDataset
    from sdpose_core.data.transforms import center_scale_to_box
    from sdpose_core.evaluation import evaluate_coco_on_crowdpose, evaluate_predictions, postprocess_topdown
    from sdpose_core.inference.baselines import MediaPipePose
    from sdpose_core.media.images import load_image

    if baseline not in BASELINES:
        raise ConfigError(f"unknown baseline {baseline!r}; available: {', '.join(BASELINES)}")
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
    with MediaPipePose(padding=padding) as pose:
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
        "model": {"name": baseline, "detail": "MediaPipe BlazePose full (model_complexity=1), 33 -> COCO-17",
                  "crop_padding_each_side": padding},
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
