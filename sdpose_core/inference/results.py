"""What the Predictor returns: per person, every cycle's keypoints and heatmaps, plus the crop geometry.

Cycle numbers are 1-based: cycle 1 is the single pass the official SDPose test path decodes, cycle c
the c-th pass through the shared transformer layers. Lists indexed by cycle hold cycle c at [c - 1].
Coordinates are image pixels of the full-resolution input (pixel centres at integers); heatmap
coordinates are heatmap pixels (stride = input size / heatmap size, 4 for every SDPose variant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sdpose_core.keypoints import KeypointLayout
from sdpose_core.weights.load import WeightsInfo

VIS_THRESHOLD = 0.2  # mmpose rescoring: joints scoring above this count towards the person score


@dataclass(eq=False)
class CropBatch:
    """All people of one image cropped for ONE batched forward pass.

    `images` (N, 3, H, W) float32 RGB normalised with ImageNet mean/std; `crops_rgb` (N, H, W, 3) uint8
    the same crops before normalisation; `matrices` (N, 2, 3) map image pixels to crop pixels;
    `source_index` is each person's position in the boxes given (or detected) before any were dropped.
    """

    images: torch.Tensor
    crops_rgb: np.ndarray
    boxes_xywh: np.ndarray
    box_scores: np.ndarray
    centers: np.ndarray
    scales: np.ndarray
    matrices: np.ndarray
    source_index: np.ndarray
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.boxes_xywh.shape[0])


@dataclass
class Timings:
    """Milliseconds. `cycle_ms[c - 1]` is the batched compute of cycle c (cycle 1 includes the conv stem
    and patch embedding; empty when the backend runs all cycles in one call, e.g. ONNX), with
    `cycle_batch_sizes[c - 1]` people in the batch (fewer in later cycles when dynamic people drop out).
    `pose_ms` covers all cycles (forward passes, flip included); `decode_ms` the heatmap decoding."""

    detector_ms: float | None = None
    preprocess_ms: float = 0.0
    pose_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0
    cycle_ms: list[float] = field(default_factory=list)
    cycle_batch_sizes: list[int] = field(default_factory=list)

    def pose_ms_per_person(self, people: int) -> float:
        return self.pose_ms / people if people else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector_ms": self.detector_ms, "preprocess_ms": self.preprocess_ms, "pose_ms": self.pose_ms,
            "decode_ms": self.decode_ms, "total_ms": self.total_ms, "cycle_ms": list(self.cycle_ms),
            "cycle_batch_sizes": list(self.cycle_batch_sizes),
        }


@dataclass(eq=False)
class PersonPrediction:
    """One person box and what every cycle run for it predicted.

    cycle_keypoints[c - 1]: (K, 3) x, y (image pixels), score (heatmap maximum) of cycle c.
    cycle_heatmaps[c - 1]: (K, Hh, Wh) float32 heatmaps of cycle c (flip-averaged with flip test).
    cycle_shifts[c - 2]: largest keypoint move between cycles c - 1 and c, in heatmap pixels (decoded),
        for c = 2..cycles_used; dynamic cycles stop once it falls below the tolerance.
    crop_matrix: 2x3 affine image pixels -> crop pixels (the network input); heatmap pixel (u, v) sits
        at crop pixel (u * stride_x, v * stride_y), see `heatmap_matrix`.
    converged: dynamic mode: True when the person stopped because two cycles agreed, False when it
        reached the cycle limit first; None in fixed-cycle mode.
    """

    box_xywh: np.ndarray
    box_score: float
    center: np.ndarray
    scale: np.ndarray
    crop_matrix: np.ndarray
    heatmap_stride: tuple[float, float]
    cycle_keypoints: list[np.ndarray]
    cycle_heatmaps: list[np.ndarray]
    cycle_shifts: list[float]
    converged: bool | None
    crop_rgb: np.ndarray
    source_index: int

    @property
    def cycles_used(self) -> int:
        return len(self.cycle_keypoints)

    @property
    def final_cycle(self) -> int:
        """The cycle whose output `keypoints` / `heatmaps` report: the last one computed for this person."""
        return self.cycles_used

    @property
    def keypoints(self) -> np.ndarray:
        return self.cycle_keypoints[-1]

    @property
    def heatmaps(self) -> np.ndarray:
        return self.cycle_heatmaps[-1]

    def keypoints_at(self, cycle: int) -> np.ndarray:
        if not 1 <= cycle <= self.cycles_used:
            raise IndexError(f"cycle {cycle} was not run for this person (cycles 1..{self.cycles_used})")
        return self.cycle_keypoints[cycle - 1]

    def score(self, cycle: int | None = None) -> float:
        """mmpose instance score: box score x mean of the joint scores above 0.2 (0 when none is)."""
        joint_scores = self.keypoints_at(cycle or self.final_cycle)[:, 2]
        confident = joint_scores > VIS_THRESHOLD
        return float(joint_scores[confident].mean() * self.box_score) if confident.any() else 0.0

    @property
    def heatmap_matrix(self) -> np.ndarray:
        """2x3 affine image pixels -> heatmap pixels (for drawing a heatmap over the image)."""
        sx, sy = self.heatmap_stride
        return self.crop_matrix / np.array([[sx], [sy]], dtype=np.float64)


@dataclass(eq=False)
class PredictionResult:
    """Everything one `Predictor.predict` call found in one image."""

    people: list[PersonPrediction]
    image_size: tuple[int, int]  # (height, width) of the input image
    model_name: str
    layout: KeypointLayout
    backend: str
    cycles: int  # the cycle limit of this call
    dynamic: bool
    dynamic_tolerance: float | None  # heatmap pixels; None in fixed-cycle mode
    flip: bool
    decode: str
    weights_info: WeightsInfo
    timings: Timings
    notes: list[str] = field(default_factory=list)
    # what ran this call, for people: e.g. "onnxruntime int8 (auto: fastest matching fp32 on this machine ...)"
    backend_detail: str = ""

    def __len__(self) -> int:
        return len(self.people)

    @property
    def backend_line(self) -> str:
        """'backend: <what ran>' for timing displays (`backend_detail`, else the backend's name)."""
        return f"backend: {self.backend_detail or self.backend}"

    @property
    def cycles_used(self) -> list[int]:
        return [p.cycles_used for p in self.people]

    @property
    def mean_cycles(self) -> float:
        return float(np.mean(self.cycles_used)) if self.people else 0.0

    def keypoints(self, cycle: int | None = None) -> np.ndarray:
        """(N, K, 3) of every person at `cycle` (None: each person's final cycle)."""
        if not self.people:
            return np.zeros((0, self.layout.num_keypoints, 3))
        return np.stack([p.keypoints if cycle is None else p.keypoints_at(cycle) for p in self.people])

    def to_coco_results(self, image_id: int, category_id: int = 1, cycle: int | None = None) -> list[dict]:
        """COCO keypoint results (mmpose rescoring) for `cycle` (None: each person's final cycle)."""
        return [
            {"image_id": int(image_id), "category_id": int(category_id),
             "keypoints": (p.keypoints if cycle is None else p.keypoints_at(cycle)).reshape(-1).tolist(),
             "score": p.score(cycle)}
            for p in self.people
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no heatmaps or crops)."""
        return {
            "image_size": list(self.image_size), "model": self.model_name, "backend": self.backend,
            "backend_detail": self.backend_detail,
            "layout": self.layout.name, "joints": list(self.layout.joints), "cycles": self.cycles,
            "dynamic": self.dynamic, "dynamic_tolerance": self.dynamic_tolerance, "flip": self.flip,
            "decode": self.decode, "weights": self.weights_info.to_dict(), "timings": self.timings.to_dict(),
            "notes": list(self.notes),
            "people": [
                {"box_xywh": p.box_xywh.tolist(), "box_score": p.box_score, "score": p.score(),
                 "final_cycle": p.final_cycle, "converged": p.converged, "cycle_shifts": list(p.cycle_shifts),
                 "keypoints": {str(c): p.keypoints_at(c).tolist() for c in range(1, p.cycles_used + 1)}}
                for p in self.people
            ],
        }
