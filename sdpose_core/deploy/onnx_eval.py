"""Keypoint AP of an exported ONNX graph (fp32 or int8) on a top-down dataset, the same way as torch.

    from sdpose_core.deploy.onnx_eval import evaluate_onnx
    metrics = evaluate_onnx(OnnxPoseModel("sdpose_t.int8.onnx"), dataset)   # {cycle: {"AP": ...}}

Forward passes go through onnxruntime; decoding, flip test, rescoring, OKS-NMS (for detected boxes) and
COCOeval are the torch path's own (`sdpose_core.evaluation.loop`), so fp32 / int8 / torch numbers
differ only by what the graphs compute.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from sdpose_core.deploy.onnx_runtime import OnnxPoseModel
from sdpose_core.errors import ConfigError
from sdpose_core.evaluation.loop import DatasetPredictions, predictions_to_results, uses_detected_boxes
from sdpose_core.keypoints import get_layout


def collect_onnx_predictions(
    model: OnnxPoseModel, dataset: Dataset, cycles: int | None = None, flip: bool = False, decode: str = "dark",
    batch_size: int = 16,
) -> DatasetPredictions:
    """Decoded keypoints of every exported cycle (1..cycles) for every sample, in dataset order."""
    from sdpose_core.data import collate_topdown
    from sdpose_core.heatmaps import decode_heatmaps, flip_heatmaps_back

    image_size = getattr(dataset, "image_size", None)
    if image_size is not None and tuple(image_size) != model.input_size:
        raise ConfigError(f"dataset crops are {tuple(image_size)} but {model.path.name} takes {model.input_size}; "
                          "build the dataset with image_size=model.input_size")
    cycles = model.cycles if cycles is None else int(cycles)
    flip_index = get_layout(model.num_keypoints).flip_index()
    per_cycle: dict[int, list[np.ndarray]] = {c: [] for c in range(1, cycles + 1)}
    image_ids, box_scores, centers, scales = [], [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_topdown)
    for batch in loader:
        images = batch["image"].numpy()
        outputs = model(images, cycles=cycles)
        if flip:
            flipped = model(np.ascontiguousarray(images[..., ::-1]), cycles=cycles)
            outputs = [(h + flip_heatmaps_back(f, flip_index)) * 0.5 for h, f in zip(outputs, flipped, strict=True)]
        meta = batch["meta"]
        batch_centers = np.asarray(meta["center"], dtype=np.float64).reshape(-1, 2)
        batch_scales = np.asarray(meta["scale"], dtype=np.float64).reshape(-1, 2)
        for c, heatmaps in enumerate(outputs, start=1):
            per_cycle[c].append(decode_heatmaps(heatmaps, batch_centers, batch_scales, method=decode))
        image_ids.append(np.asarray(meta["image_id"], dtype=np.int64).reshape(-1))
        box_scores.append(np.asarray(meta["box_score"], dtype=np.float64).reshape(-1))
        centers.append(batch_centers)
        scales.append(batch_scales)
    return DatasetPredictions(
        keypoints={c: np.concatenate(chunks) for c, chunks in per_cycle.items()},
        indices=np.arange(len(dataset)), image_ids=np.concatenate(image_ids), box_scores=np.concatenate(box_scores),
        centers=np.concatenate(centers), scales=np.concatenate(scales),
    )


def predict_dataset_onnx(model: OnnxPoseModel, dataset: Dataset, cycles: int | None = None, flip: bool = False,
                         decode: str = "dark", nms: bool | None = None) -> dict[int, list[dict[str, Any]]]:
    """COCO keypoint results per cycle (mmpose post-processing; OKS-NMS by default only for detections)."""
    predictions = collect_onnx_predictions(model, dataset, cycles, flip, decode)
    sigmas = get_layout(model.num_keypoints).sigmas_array()
    return predictions_to_results(predictions, sigmas, nms=uses_detected_boxes(dataset) if nms is None else nms)


def evaluate_onnx(model: OnnxPoseModel, dataset: Any, cycles: int | None = None, flip: bool = False,
                  decode: str = "dark") -> dict[int, dict[str, float]]:
    """COCO metrics per cycle against the dataset's own annotation file (a COCO-17 dataset)."""
    from sdpose_core.evaluation import evaluate_predictions

    results = predict_dataset_onnx(model, dataset, cycles, flip, decode)
    return {c: evaluate_predictions(str(dataset.ann_file), r, dataset=dataset.layout.name)
            for c, r in results.items()}
