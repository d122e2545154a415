"""Inference over a top-down dataset: every cycle's keypoints from ONE multi-cycle forward pass.

The one dataset loop of the project: the forward is any `PoseForward` (a torch model through
`TorchPoseForward`, an ONNX graph through `OnnxPoseModel`), the rest is shared.
`predict_dataset` = `collect_predictions` (forward + optional flip test + decoding, per cycle) followed
by `predictions_to_results` (mmpose TopDown evaluate post-processing: rescoring, OKS-NMS per image for
detected boxes, COCO keypoint results). The two halves are separate so that validation under torchrun
can shard the forward passes over ranks and post-process the gathered arrays once on rank 0.

Cycle numbers are 1-based: cycle 1 is the single deployed pass, cycle `c` the c-th pass through the
shared layers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import get_layout
from sdpose_core.models.config import check_cycles

# mmpose TopDownCocoDataset / TopDownCrowdPoseDataset evaluation defaults (the official configs).
VIS_THRESHOLD = 0.2  # keypoints scoring above this count towards the instance's rescored score
OKS_NMS_THRESHOLD = 0.9


@dataclass
class DatasetPredictions:
    """Per-sample arrays in dataset order; `keypoints[c]` is cycle c's (N, K, 3) x, y, score."""

    keypoints: dict[int, np.ndarray]
    indices: np.ndarray  # dataset index of each row
    image_ids: np.ndarray
    box_scores: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def concatenate(cls, parts: Sequence[DatasetPredictions]) -> DatasetPredictions:
        """Join shards (e.g. one per rank) and restore dataset order."""
        parts = [p for p in parts if len(p.indices)]
        if not parts:
            raise DataError("no predictions to join: every shard was empty")
        indices = np.concatenate([p.indices for p in parts])
        order = np.argsort(indices, kind="stable")
        cycles = sorted(parts[0].keypoints)
        return cls(
            keypoints={c: np.concatenate([p.keypoints[c] for p in parts])[order] for c in cycles},
            indices=indices[order],
            image_ids=np.concatenate([p.image_ids for p in parts])[order],
            box_scores=np.concatenate([p.box_scores for p in parts])[order],
            centers=np.concatenate([p.centers for p in parts])[order],
            scales=np.concatenate([p.scales for p in parts])[order],
            timings={k: max(p.timings.get(k, 0.0) for p in parts) for k in parts[0].timings},
        )


class PoseForward(Protocol):
    """What the dataset loop runs: crops (B, 3, H, W) -> heatmaps of cycles 1..cycles, each (B, K, Hh, Wh).

    `TorchPoseForward` (a torch model) and `sdpose_core.deploy.onnx_runtime.OnnxPoseModel` are two. An
    optional `device` attribute says where the crops go before the call (default: they stay on the CPU).
    """

    @property
    def input_size(self) -> tuple[int, int]: ...  # (height, width) of the crops

    @property
    def num_keypoints(self) -> int: ...

    @property
    def cycles(self) -> int: ...  # what `cycles=None` runs

    def __call__(self, images: torch.Tensor, cycles: int) -> Sequence[np.ndarray | torch.Tensor]: ...


def _model_config(model: nn.Module) -> Any:
    inner = model.module if hasattr(model, "module") else model
    return inner.config


class TorchPoseForward:
    """A torch pose model (also DDP-wrapped) as a `PoseForward`: run on `device` (default: where its weights
    are) in eval mode (its training flag is restored after each call), under `amp_dtype` autocast when
    given; heatmaps come back float32 on that device."""

    def __init__(self, model: nn.Module, device: torch.device | str | None = None,
                 amp_dtype: torch.dtype | None = None) -> None:
        self.model = model
        self.config = _model_config(model)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.amp_dtype = amp_dtype

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config.image_size)  # type: ignore[return-value]

    @property
    def num_keypoints(self) -> int:
        return int(self.config.num_keypoints)

    @property
    def cycles(self) -> int:
        return int(self.config.cycles)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, cycles: int | None = None) -> list[torch.Tensor]:
        images = torch.as_tensor(images).to(self.device, non_blocking=True)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                outputs = self.model(images, cycles=cycles)
        finally:
            self.model.train(was_training)
        return [output.heatmaps.float() for output in outputs]

    def __repr__(self) -> str:
        return f"TorchPoseForward({self.config.name} on {self.device})"


def as_pose_forward(model: PoseForward | nn.Module, device: torch.device | str | None = None,
                    amp_dtype: torch.dtype | None = None) -> PoseForward:
    """`model` as the loop runs it: a torch module wrapped in `TorchPoseForward`, anything else as it is."""
    if isinstance(model, nn.Module):
        return TorchPoseForward(model, device, amp_dtype)
    if device is not None or amp_dtype is not None:
        raise ConfigError(f"device and amp_dtype are for torch models; {model!r} runs where it was built")
    return model


def _check_compatible(forward: PoseForward, dataset: Dataset) -> None:
    image_size = getattr(dataset, "image_size", None)
    expected = tuple(forward.input_size)
    if image_size is not None and tuple(image_size) != expected:
        raise ConfigError(
            f"dataset crops are {tuple(image_size)} (H, W) but the model expects {expected}; "
            f"build the dataset with image_size={expected} (the model's input size)"
        )


def _as_numpy(heatmaps: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(heatmaps, torch.Tensor):
        return heatmaps.float().cpu().numpy()
    return np.asarray(heatmaps, dtype=np.float32)


@torch.inference_mode()
def collect_predictions(
    forward: PoseForward | nn.Module,
    dataset: Dataset,
    cycles: int | None = None,
    flip: bool = False,
    decode: str = "dark",
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    indices: Sequence[int] | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> DatasetPredictions:
    """Run `forward` over `dataset` (or the `indices` subset) and decode every cycle's heatmaps.

    `forward`: a torch pose model (`device` / `amp_dtype` as in `TorchPoseForward`) or any `PoseForward`,
    e.g. an `OnnxPoseModel`; everything but the forward call (flip test in the same batch, decoding,
    the arrays) is this one loop, so torch and ONNX numbers differ only by what their graphs compute.
    """
    from sdpose_core.data import collate_topdown
    from sdpose_core.heatmaps import decode_heatmaps, flip_average

    forward = as_pose_forward(forward, device, amp_dtype)
    _check_compatible(forward, dataset)
    cycles = check_cycles(cycles, forward.cycles)
    target = getattr(forward, "device", None)
    name = repr(forward)
    flip_index = get_layout(int(forward.num_keypoints)).flip_index()

    subset_indices = np.arange(len(dataset)) if indices is None else np.asarray(list(indices), dtype=np.int64)
    source = dataset if indices is None else Subset(dataset, subset_indices.tolist())
    loader = DataLoader(
        source, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_topdown,
        pin_memory=target is not None and torch.device(target).type == "cuda",
    )
    per_cycle: dict[int, list[np.ndarray]] = {c: [] for c in range(1, cycles + 1)}
    image_ids, box_scores, centers, scales = [], [], [], []
    forward_s = decode_s = 0.0
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="inference", unit="batch", leave=False)
    for batch in batches:
        images = batch["image"] if target is None else batch["image"].to(target, non_blocking=True)
        meta = batch["meta"]
        people = int(images.shape[0])
        t0 = time.perf_counter()
        if flip:  # one forward over the crops and their mirror images (BN is in eval mode)
            images = torch.cat([images, torch.flip(images, dims=[3])])
        outputs = list(forward(images, cycles=cycles))
        check_cycles(cycles, available=len(outputs), available_from=f"{name} returned")
        if flip:
            outputs = [flip_average(heatmaps[:people], heatmaps[people:], flip_index) for heatmaps in outputs]
        heatmaps_np = np.stack([_as_numpy(heatmaps) for heatmaps in outputs[:cycles]])  # (C, B, K, H, W)
        t1 = time.perf_counter()
        batch_centers = np.asarray(meta["center"], dtype=np.float64).reshape(-1, 2)
        batch_scales = np.asarray(meta["scale"], dtype=np.float64).reshape(-1, 2)
        # all cycles decoded in one vectorised call
        decoded = decode_heatmaps(
            heatmaps_np.reshape(-1, *heatmaps_np.shape[2:]), np.tile(batch_centers, (cycles, 1)),
            np.tile(batch_scales, (cycles, 1)), method=decode,
        ).reshape(cycles, len(batch_centers), -1, 3)
        for c in range(1, cycles + 1):
            per_cycle[c].append(decoded[c - 1])
        decode_s += time.perf_counter() - t1
        forward_s += t1 - t0
        image_ids.append(np.asarray(meta["image_id"], dtype=np.int64).reshape(-1))
        box_scores.append(np.asarray(meta["box_score"], dtype=np.float64).reshape(-1))
        centers.append(batch_centers)
        scales.append(batch_scales)

    num_keypoints = int(forward.num_keypoints)
    if not image_ids:  # an empty shard (more ranks than samples)
        empty = np.zeros((0,), dtype=np.float64)
        return DatasetPredictions(
            keypoints={c: np.zeros((0, num_keypoints, 3)) for c in per_cycle},
            indices=subset_indices, image_ids=empty.astype(np.int64), box_scores=empty,
            centers=np.zeros((0, 2)), scales=np.zeros((0, 2)),
        )
    return DatasetPredictions(
        keypoints={c: np.concatenate(chunks) for c, chunks in per_cycle.items()},
        indices=subset_indices,
        image_ids=np.concatenate(image_ids),
        box_scores=np.concatenate(box_scores),
        centers=np.concatenate(centers),
        scales=np.concatenate(scales),
        timings={"forward_s": forward_s, "decode_s": decode_s},
    )


def predictions_to_results(
    predictions: DatasetPredictions,
    sigmas: np.ndarray,
    nms: bool,
    oks_threshold: float = OKS_NMS_THRESHOLD,
    vis_threshold: float = VIS_THRESHOLD,
) -> dict[int, list[dict[str, Any]]]:
    """mmpose TopDown evaluate post-processing for each cycle: rescoring (box score x mean joint score
    above 0.2), per-image OKS-NMS at 0.9 when `nms`, COCO results. The OKS scale in NMS is the padded
    box area (scale_w x scale_h in pixels), as mmpose uses."""
    from sdpose_core.evaluation import postprocess_topdown

    areas = predictions.scales.prod(axis=1)
    return {
        cycle: postprocess_topdown(
            predictions.image_ids, keypoints, predictions.box_scores, areas, bbox_ids=predictions.indices,
            centers=predictions.centers, scales=predictions.scales, vis_thr=vis_threshold,
            oks_thr=oks_threshold, use_nms=nms, sigmas=sigmas,
        )
        for cycle, keypoints in predictions.keypoints.items()
    }


def predict_dataset(
    forward: PoseForward | nn.Module,
    dataset: Dataset,
    cycles: int | None = None,
    flip: bool = False,
    decode: str = "dark",
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    nms: bool | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
) -> dict[int, list[dict[str, Any]]]:
    """COCO keypoint results for every cycle 1..cycles from one forward pass per batch (`forward` as in
    `collect_predictions`: a torch model or an `OnnxPoseModel`).

    `nms=None` applies OKS-NMS only when the dataset's boxes are detections (`dataset.boxes` is a file),
    as mmpose does for detector boxes; GT boxes are one per person and are kept as they are. Results carry the
    model's keypoint layout (17 joints for a COCO model even on CrowdPose images).
    """
    forward = as_pose_forward(forward, device, amp_dtype)
    predictions = collect_predictions(
        forward, dataset, cycles=cycles, flip=flip, decode=decode, batch_size=batch_size,
        num_workers=num_workers, progress=progress,
    )
    if nms is None:
        nms = uses_detected_boxes(dataset)
    sigmas = get_layout(int(forward.num_keypoints)).sigmas_array()
    return predictions_to_results(predictions, sigmas, nms=nms)


def uses_detected_boxes(dataset: Dataset) -> bool:
    """True when the dataset's boxes come from a detections file rather than the annotations."""
    boxes = getattr(dataset, "boxes", "gt")
    return isinstance(boxes, str) and boxes != "gt"
