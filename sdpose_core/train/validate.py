"""Per-cycle validation AP, sharded over torchrun ranks.

Each rank runs the forward passes for its slice of the dataset (indices rank, rank + world, ...); the
decoded arrays are gathered on rank 0, which post-processes and scores them once. Other ranks get {}.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sdpose_core.evaluation.loop import DatasetPredictions, collect_predictions, predictions_to_results
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
    """{cycle: metrics (+ num_instances scored)} on rank 0 (GT boxes: no NMS); {} elsewhere."""
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
    for values in metrics.values():
        values["num_instances"] = float(len(joined.indices))  # all ranks' shards together
    return metrics
