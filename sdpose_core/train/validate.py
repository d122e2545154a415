"""Per-cycle validation AP and mean OKS, sharded over torchrun ranks.

Each rank runs the forward passes for its slice of the dataset (indices rank, rank + world, ...); the
decoded arrays are gathered on rank 0, which post-processes and scores them once. Other ranks get {}.

Mean OKS: the OKS of every ground-truth person with the prediction made on that person's own (GT) box,
averaged over the people. AP thresholds OKS at 0.5..0.95, so a model still near the average pose scores
AP ~0 while its mean OKS already shows it learning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sdpose_core.evaluation.loop import DatasetPredictions, collect_predictions, predictions_to_results
from sdpose_core.evaluation.oks import compute_oks, oks_area
from sdpose_core.train.distributed import DistContext, all_gather_objects


def dataset_kind(dataset: Dataset) -> str:
    """'coco' or 'crowdpose', from the dataset's keypoint layout."""
    return dataset.layout.name


def score_results(
    dataset: Dataset, results: dict[int, list[dict[str, Any]]], kind: str | None = None
) -> dict[int, dict[str, float]]:
    """Metrics of every cycle's results against the dataset's annotation file."""
    from sdpose_core.evaluation import evaluate_predictions

    kind = kind or dataset_kind(dataset)
    return {cycle: evaluate_predictions(str(dataset.ann_file), cycle_results, dataset=kind)
            for cycle, cycle_results in results.items()}


def mean_gt_oks(dataset: Dataset, predictions: DatasetPredictions) -> dict[int, float]:
    """{cycle: mean OKS over the GT people}, each person against the prediction on its own box.

    `dataset` is a GT-box `TopDownDataset` (one sample per person); the OKS scale is the one COCOeval uses
    for its layout: the segment area for COCO, box width x height x 0.53 for CrowdPose."""
    if getattr(dataset, "boxes", "gt") != "gt":
        raise ValueError("mean OKS pairs each GT person with the prediction on its box: use GT boxes")
    rows = np.asarray(predictions.indices, dtype=np.int64)
    use_area = dataset.layout.name != "crowdpose"
    people = [dataset.coco.anns[int(ann_id)] for ann_id in dataset.samples.ann_id[rows]]
    areas = [oks_area(person, use_area=use_area) for person in people]
    gt = dataset.samples.keypoints[rows]
    sigmas = dataset.layout.sigmas_array()
    return {
        cycle: float(np.mean([compute_oks(gt[i:i + 1], areas[i], keypoints[i:i + 1], sigmas)[0, 0]
                              for i in range(len(rows))]))
        for cycle, keypoints in predictions.keypoints.items()
    }


def validate(
    model: nn.Module,
    dataset: Dataset,
    ctx: DistContext,
    cycles: int,
    flip: bool = False,
    batch_size: int = 32,
    amp_dtype: torch.dtype | None = None,
    decode: str = "dark",
) -> dict[int, dict[str, float]]:
    """{cycle: metrics (+ OKS: mean OKS over the GT people, num_instances scored)} on rank 0 (GT boxes: no
    NMS); {} elsewhere."""
    shard = np.arange(ctx.rank, len(dataset), ctx.world_size)
    predictions = collect_predictions(
        model, dataset, cycles=cycles, flip=flip, decode=decode, batch_size=batch_size, device=ctx.device,
        indices=shard, amp_dtype=amp_dtype,
    )
    gathered = all_gather_objects(ctx, predictions)
    if not ctx.is_main:
        return {}
    joined = DatasetPredictions.concatenate(gathered)
    sigmas = dataset.layout.sigmas_array()
    results = predictions_to_results(joined, sigmas, nms=False)
    metrics = score_results(dataset, results)
    for cycle, oks in mean_gt_oks(dataset, joined).items():
        metrics[cycle]["OKS"] = oks
    for values in metrics.values():
        values["num_instances"] = float(len(joined.indices))  # all ranks' shards together
    return metrics
