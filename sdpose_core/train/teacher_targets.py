"""Dense soft targets from a pretrained teacher (PP-TinyPose on ncnn) for every augmented training crop.

`TeacherTargets` is the dataset's `extra_targets` hook: in the DataLoader worker that builds a sample it warps
the same crop (centre, scale, rotation and flip of the sample's augmentation) at the teacher's input size,
runs the teacher, maps its heatmaps onto the student's heatmap grid and normalises each to peak 1. A flipped
crop needs no channel swap: the teacher sees the mirrored image and names its joints as seen, which is what
the dataset's flipped ground truth does too. CrowdPose-14 students get the 12 limb joints (head_top and neck
have no COCO joint: those keep their Gaussian target only).

`blend_teacher_targets` then mixes them with the Gaussian targets in the main process (`train.targets`): where
the teacher is confident (peak >= `min_confidence`) a labelled joint's target becomes
(1 - w) x Gaussian + w x teacher, and an unlabelled joint gets the teacher's map with target weight 1.

The teacher runs one ncnn thread per process (its README: one thread is as fast as two on this machine and
steadier); the network is created lazily in each worker process, never pickled or shared across a fork.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from sdpose_core.data.dataset import normalize_crop
from sdpose_core.data.transforms import get_affine_matrix, invert_affine, warp_crop
from sdpose_core.errors import ConfigError
from sdpose_core.inference.tinypose import OUTPUT_BLOB
from sdpose_core.keypoints import CROWDPOSE_FROM_COCO, KeypointLayout
from sdpose_core.train.feature_hint import FEATURE_BLOB

TEACHER_TARGETS: dict[str, tuple[int, int]] = {"pp-tinypose-128x96": (128, 96), "pp-tinypose-256x192": (256, 192)}


def check_teacher_name(name: str) -> tuple[int, int]:
    """The teacher's input size (H, W); ConfigError naming the option for an unknown name."""
    if name not in TEACHER_TARGETS:
        raise ConfigError(f"unknown teacher_targets {name!r} (--teacher-targets); choose one of {sorted(TEACHER_TARGETS)}")
    return TEACHER_TARGETS[name]


def teacher_joint_index(layout: KeypointLayout) -> np.ndarray:
    """For each joint of `layout`, the COCO-17 channel of the teacher that holds it, or -1."""
    if layout.name == "coco":
        return np.arange(17)
    if layout.name == "crowdpose":
        index = np.full(layout.num_keypoints, -1)
        for ours, coco in CROWDPOSE_FROM_COCO.items():
            index[ours] = coco
        return index
    raise ConfigError(f"teacher targets support the coco and crowdpose layouts, not {layout.name!r}")


def heatmap_grid_affine(
    from_image_size: Sequence[int], from_heatmap_size: Sequence[int], from_matrix: np.ndarray,
    to_image_size: Sequence[int], to_heatmap_size: Sequence[int], to_matrix: np.ndarray,
) -> np.ndarray:
    """2x3 affine from one crop's heatmap pixels to another's (both crops of the same image, non-UDP: heatmap
    u = crop x / stride). Identity when the crops and grids are equal."""

    def to_crop(image_size: Sequence[int], heatmap_size: Sequence[int]) -> np.ndarray:
        return np.diag([image_size[1] / heatmap_size[1], image_size[0] / heatmap_size[0], 1.0])

    def full(matrix: np.ndarray) -> np.ndarray:
        return np.vstack([matrix, [0.0, 0.0, 1.0]])

    chain = (np.linalg.inv(to_crop(to_image_size, to_heatmap_size)) @ full(to_matrix)
             @ full(invert_affine(from_matrix)) @ to_crop(from_image_size, from_heatmap_size))
    return chain[:2]


def _warp_maps(maps: np.ndarray, grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) maps warped by the 2x3 `grid` onto (C, *size), bilinear, 0 outside (cv2 takes C <= 512)."""
    height, width = size
    moved = cv2.warpAffine(np.ascontiguousarray(maps.transpose(1, 2, 0)), grid, (width, height),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return moved.reshape(height, width, -1).transpose(2, 0, 1).astype(np.float32, copy=False)


class TeacherTargets:
    """The `extra_targets` hook of `TopDownDataset` (see the module docstring).

    Called with the decoded BGR image and the sample's crop; returns "teacher_heatmaps" (K, Hh, Wh) float32,
    each map clipped at 0 and divided by its maximum, and "teacher_confidence" (K,), the teacher's raw peak
    (0 for joints the teacher does not have).
    """

    def __init__(self, name: str, layout: KeypointLayout, image_size: Sequence[int], heatmap_size: Sequence[int],
                 folder: str | None = None, features: bool = False) -> None:
        from sdpose_core.inference import tinypose

        self.name = name
        self.teacher_size = check_teacher_name(name)
        try:
            import ncnn  # noqa: F401
        except ImportError:
            raise ConfigError(f"teacher_targets={name!r} (--teacher-targets) runs PP-TinyPose on the optional ncnn "
                              "package, which is not installed: pip install ncnn") from None
        tinypose.model_files(self.teacher_size, folder)  # DataError naming the missing files
        self.folder = folder
        self.features = bool(features)  # also "teacher_features": the last feature map (train.feature_hint)
        self.joint_index = teacher_joint_index(layout)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self._model: Any = None
        self._model_pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"], state["_model_pid"] = None, None  # an ncnn Net does not travel to a worker
        return state

    def model(self) -> Any:
        if self._model is None or self._model_pid != os.getpid():
            from sdpose_core.inference.tinypose import TinyPose

            self._model, self._model_pid = TinyPose(self.teacher_size, self.folder, threads=1), os.getpid()
        return self._model

    def __call__(self, image_bgr: np.ndarray, center: np.ndarray, scale: np.ndarray, rotation: float,
                 flip_width: int | None) -> dict[str, torch.Tensor]:
        teacher = self.model()
        teacher_matrix = get_affine_matrix(center, scale, rotation, self.teacher_size, flip_width)
        crop = normalize_crop(warp_crop(image_bgr, teacher_matrix, self.teacher_size)).numpy()
        blobs = [OUTPUT_BLOB, FEATURE_BLOB] if self.features else [OUTPUT_BLOB]
        extracted = [b[0] for b in teacher.extract(crop[None], blobs)]
        raw = extracted[0]  # (17, h, w)
        student_matrix = get_affine_matrix(center, scale, rotation, self.image_size, flip_width)
        grid = heatmap_grid_affine(self.teacher_size, teacher.heatmap_size, teacher_matrix,
                                   self.image_size, self.heatmap_size, student_matrix)
        heat_h, heat_w = self.heatmap_size
        moved = np.maximum(_warp_maps(raw, grid, (heat_h, heat_w)), 0.0)
        peak_here = moved.reshape(len(moved), -1).max(axis=1)
        normalised = moved / np.where(peak_here > 0, peak_here, 1.0)[:, None, None]
        confidence = raw.reshape(len(raw), -1).max(axis=1)
        maps = np.zeros((len(self.joint_index), heat_h, heat_w), dtype=np.float32)
        scores = np.zeros(len(self.joint_index), dtype=np.float32)
        has = self.joint_index >= 0
        maps[has] = normalised[self.joint_index[has]]
        # a joint whose peak lies outside the student's crop (other aspect) is not a target here
        scores[has] = np.where(peak_here[self.joint_index[has]] > 0, confidence[self.joint_index[has]], 0.0)
        out = {"teacher_heatmaps": torch.from_numpy(maps), "teacher_confidence": torch.from_numpy(scores)}
        if self.features:  # the teacher's features on the student's stride-4 grid (heatmap grid = stem grid)
            out["teacher_features"] = torch.from_numpy(_warp_maps(extracted[1], grid, (heat_h, heat_w)))
        return out

    def __repr__(self) -> str:
        return f"TeacherTargets({self.name}, student heatmaps {self.heatmap_size[0]}x{self.heatmap_size[1]})"


def blend_teacher_targets(
    target: torch.Tensor, target_weight: torch.Tensor, teacher_heatmaps: torch.Tensor,
    teacher_confidence: torch.Tensor, teacher_weight: float, min_confidence: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian targets (B, K, H, W) / weights (B, K, 1) mixed with the teacher's (see the module docstring)."""
    if not 0 <= teacher_weight <= 1:
        raise ConfigError(f"teacher_target_weight must lie in [0, 1], got {teacher_weight}")
    confident = (teacher_confidence >= min_confidence) & (teacher_confidence > 0)  # (B, K)
    labelled = target_weight[..., 0] > 0
    mix = torch.where(labelled, torch.full_like(teacher_confidence, float(teacher_weight)),
                      torch.ones_like(teacher_confidence)) * confident
    mix = mix.to(target.dtype)[..., None, None]
    blended = (1 - mix) * target + mix * teacher_heatmaps.to(target.dtype)
    weight = torch.where((~labelled & confident)[..., None], torch.ones_like(target_weight), target_weight)
    return blended, weight


def attach_teacher_targets(train_set: Any, name: str, image_size: Sequence[int], heatmap_size: Sequence[int],
                           features: bool = False) -> None:
    """Give a TopDownDataset (or every part of a MixedDataset) the teacher hook for its layout."""
    for part in getattr(train_set, "parts", [train_set]):
        part.extra_targets = TeacherTargets(name, part.layout, image_size, heatmap_size, features=features)
