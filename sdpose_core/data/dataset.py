"""Top-down person crops from COCO-17 / CrowdPose-14 keypoint files (mmpose 0.29 semantics, pixel scale).

One sample is one person box: a ground-truth box (non-crowd annotations with keypoints) or a detector
box from a COCO results file. `__getitem__` reads the image, warps the (possibly augmented) crop with
ONE `cv2.warpAffine`, normalises it and builds the Gaussian targets.

Images are read like mmpose's LoadImageFromFile (mmcv.imread, flag 'color' = cv2.IMREAD_COLOR):
grayscale is replicated to three channels, an alpha channel is dropped (not composited), 16-bit images
are scaled to 8 bits (value / 256) and EXIF orientation is applied. The decoded size must equal the
annotation file's width/height, otherwise the keypoints would not line up and a DataError is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from sdpose_core.data.annotations import (
    BoxSamples,
    check_keypoint_lengths,
    detect_layout,
    detection_box_samples,
    gt_box_samples,
    load_coco_object,
    person_category,
    read_json,
    validate_coco,
)
from sdpose_core.data.augment import AugmentConfig, CropParams, sample_augmentation, sample_rng
from sdpose_core.data.transforms import affine_points, aspect_ratio_of, get_affine_matrix, warp_crop
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.heatmaps import gaussian_targets

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# per-channel affine that turns BGR uint8 into RGB (x / 255 - mean) / std in one multiply-add
_RGB_MULTIPLIER = (1.0 / (255.0 * np.asarray(IMAGENET_STD, dtype=np.float32))).astype(np.float32)
_RGB_OFFSET = (-np.asarray(IMAGENET_MEAN, dtype=np.float32) / np.asarray(IMAGENET_STD, dtype=np.float32))


def read_image_bgr(path: str | Path) -> np.ndarray:
    """uint8 (H, W, 3) BGR, converted as described in the module docstring."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"cannot decode image {path}: the file is missing, empty or not an image cv2 can read")
    return image


def normalize_crop(crop_bgr: np.ndarray) -> torch.Tensor:
    """uint8 BGR (H, W, 3) -> float32 RGB (3, H, W) normalised with ImageNet mean/std."""
    height, width = crop_bgr.shape[:2]
    chw = np.empty((3, height, width), dtype=np.float32)
    # plane by plane: contiguous copies, far faster than a strided HWC -> CHW float conversion
    for channel, plane in enumerate(reversed(cv2.split(crop_bgr))):
        chw[channel] = plane
    chw *= _RGB_MULTIPLIER[:, None, None]
    chw += _RGB_OFFSET[:, None, None]
    return torch.from_numpy(chw)


def _check_size(name: str, size: Sequence[int]) -> tuple[int, int]:
    values = tuple(int(v) for v in size)
    if len(values) != 2 or min(values) <= 0:
        raise ConfigError(f"{name} must be (height, width) with positive entries, got {size}")
    return values  # type: ignore[return-value]


class TopDownDataset(Dataset):
    """Person crops with heatmap targets.

    Args:
        ann_file: COCO keypoint annotation JSON (COCO-17 or CrowdPose-14).
        image_dir: folder holding the images named by each image's `file_name`.
        train: apply augmentation (`augment`, default `AugmentConfig()`); validation crops are exact.
        image_size / heatmap_size: (height, width) of the network input and its heatmaps.
        sigma: Gaussian sigma of the targets, in heatmap pixels.
        boxes: "gt" for annotation boxes, or a path to COCO-results person detections.
        det_score_threshold: detections scoring below this are skipped (mmpose det_bbox_thr).
        layout: "coco" or "crowdpose"; None detects it from the file's keypoint names.
        seed: base seed of the augmentation; every sample uses (seed, epoch, index).
        extra_targets: a hook called as hook(image_bgr, center, scale, rotation, flip_width) for every
            sample, whose dict of tensors is added to the sample (e.g. `train.teacher_targets.TeacherTargets`:
            a teacher's heatmaps of the same augmented crop). It runs where the sample is built (a worker).

    `__getitem__` returns image (3, H, W) float32, target (K, Hh, Wh), target_weight (K, 1) and meta:
    image_id, ann_id (-1 for detections), center and scale (the crop actually used, pixels of the
    unflipped image), rotation (degrees), flipped, box_score (1 for GT boxes), area (scale_w * scale_h,
    mmpose's per-instance area for OKS-NMS), image_file, index. With detected boxes the target and its
    weights are zero: there is no ground truth to encode. `joints` (K, 3) float64 holds each joint's x, y in
    crop pixels and its visibility (after the flip), from which the targets can be re-encoded (another sigma,
    `train.targets`) without the image.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        train: bool,
        image_size: Sequence[int] = (256, 192),
        heatmap_size: Sequence[int] = (64, 48),
        sigma: float = 2.0,
        boxes: str | Path = "gt",
        det_score_threshold: float = 0.0,
        augment: AugmentConfig | None = None,
        layout: str | None = None,
        seed: int = 0,
        extra_targets: Callable[..., dict[str, torch.Tensor]] | None = None,
        confidence_weights: bool = False,
    ) -> None:
        self.ann_file = Path(ann_file)
        # target weight x the label's confidence (`keypoint_scores`: teacher-filled joints count by their score)
        self.confidence_weights = bool(confidence_weights)
        self.image_dir = Path(image_dir)
        self.train = bool(train)
        self.image_size = _check_size("image_size", image_size)
        self.heatmap_size = _check_size("heatmap_size", heatmap_size)
        if sigma <= 0:
            raise ConfigError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        if augment is not None and not self.train:
            raise ConfigError("augment is only used for training; pass train=True or leave augment=None")
        self.augment = (augment or AugmentConfig()) if self.train else None
        self.seed = int(seed)
        self.extra_targets = extra_targets
        self.epoch = 0
        self.boxes = str(boxes)
        self.det_score_threshold = float(det_score_threshold)
        if not self.image_dir.is_dir():
            raise DataError(f"image folder {self.image_dir} does not exist; pass the folder with the images")

        data = read_json(self.ann_file, "annotation file")
        validate_coco(data, self.ann_file)
        category = person_category(data["categories"], self.ann_file)
        self.category_id = int(category["id"])
        person_anns = [a for a in data["annotations"] if a.get("category_id") == self.category_id]
        self.layout = detect_layout(category, person_anns, self.ann_file, layout)
        num_joints = self.layout.num_keypoints
        check_keypoint_lengths(data["annotations"], self.category_id, num_joints, self.ann_file)
        self.coco = load_coco_object(data, self.layout)
        self.flip_index = self.layout.flip_index()

        image_ids = [image["id"] for image in data["images"]]
        aspect = aspect_ratio_of(self.image_size)
        if self.boxes == "gt":
            samples = gt_box_samples(self.coco, self.category_id, image_ids, num_joints, aspect, self.ann_file)
        else:
            samples = detection_box_samples(
                Path(self.boxes), image_ids, self.category_id, num_joints, aspect, self.det_score_threshold
            )
        if len(samples) == 0:
            source = "annotation" if self.boxes == "gt" else f"detection (threshold {self.det_score_threshold})"
            raise DataError(
                f"{self.ann_file}: no usable person boxes from the {source} boxes ({samples.stats}); "
                "the dataset would be empty"
            )
        self.samples: BoxSamples = samples
        self.image_ids = np.asarray(image_ids)
        self.image_files = [str(self.image_dir / image["file_name"]) for image in data["images"]]
        self.image_shapes = np.array([(image["height"], image["width"]) for image in data["images"]], dtype=np.int64)
        self._check_images_exist()
        logger.info("%s: %d samples (%s boxes) from %d images; %s", self.ann_file.name, len(samples), self.boxes,
                    len(np.unique(samples.image_index)), samples.stats)

    def _check_images_exist(self) -> None:
        used = np.unique(self.samples.image_index)
        missing = [self.image_files[i] for i in used if not Path(self.image_files[i]).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(used)} images with people are missing under {self.image_dir} "
                f"(first: {missing[:3]}); check image_dir or remove their annotations from {self.ann_file}"
            )

    @property
    def stats(self) -> dict[str, int]:
        """Counts of what loading skipped: crowd, no keypoints, zero-area boxes, low-score detections..."""
        return dict(self.samples.stats)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream; call once per epoch (in every DataLoader worker's copy, i.e.
        before iterating, or use persistent_workers=False) so resumed runs repeat exactly."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def crop_params(self, index: int) -> CropParams:
        """The crop of sample `index` for the current epoch (deterministic)."""
        center = self.samples.center[index]
        scale = self.samples.scale[index]
        if self.augment is None:
            return CropParams(center=center.copy(), scale=scale.copy())
        rng = sample_rng(self.seed, self.epoch, index)
        return sample_augmentation(rng, center, scale, self.samples.keypoints[index], self.layout.upper_body,
                                   aspect_ratio_of(self.image_size), self.augment)

    def load_image(self, image_index: int) -> np.ndarray:
        path = self.image_files[image_index]
        image = read_image_bgr(path)
        expected = tuple(int(v) for v in self.image_shapes[image_index])
        if image.shape[:2] != expected:
            raise DataError(
                f"{path} decodes to {image.shape[1]}x{image.shape[0]} (w x h) but {self.ann_file} says "
                f"{expected[1]}x{expected[0]}; the keypoints would not line up (EXIF rotation or a wrong "
                "file?) - fix the file or its width/height entry"
            )
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image_index = int(self.samples.image_index[index])
        image = self.load_image(image_index)
        params = self.crop_params(index)
        flip_width = image.shape[1] if params.flipped else None
        matrix = get_affine_matrix(params.center, params.scale, params.rotation, self.image_size, flip_width)
        crop = warp_crop(image, matrix, self.image_size)

        keypoints = self.samples.keypoints[index]
        joints_xy = affine_points(keypoints[:, :2], matrix)
        visible = keypoints[:, 2]
        if params.flipped:  # the mirrored left wrist is the new right wrist
            joints_xy = joints_xy[self.flip_index]
            visible = visible[self.flip_index]
        target, target_weight = gaussian_targets(joints_xy, visible, self.image_size, self.heatmap_size, self.sigma)
        confidence = None
        if self.confidence_weights and self.samples.keypoint_scores is not None:
            confidence = self.samples.keypoint_scores[index]
            confidence = (confidence[self.flip_index] if params.flipped else confidence).astype(np.float32)
            target_weight = target_weight * confidence[:, None]
        meta = {
            "image_id": int(self.image_ids[image_index]),
            "ann_id": int(self.samples.ann_id[index]),
            "center": params.center.astype(np.float64),
            "scale": params.scale.astype(np.float64),
            "rotation": float(params.rotation),
            "flipped": bool(params.flipped),
            "box_score": float(self.samples.box_score[index]),
            "area": float(params.scale[0] * params.scale[1]),
            "image_file": self.image_files[image_index],
            "index": int(index),
        }
        sample = {
            "image": normalize_crop(crop),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(target_weight),
            "joints": torch.from_numpy(np.concatenate([joints_xy, visible[:, None]], axis=1).astype(np.float64)),
            "meta": meta,
        }
        if confidence is not None:  # kept for targets re-encoded per batch (train.targets)
            sample["label_confidence"] = torch.from_numpy(confidence)
        if self.extra_targets is not None:
            sample.update(self.extra_targets(image, params.center, params.scale, params.rotation, flip_width))
        return sample

    def __repr__(self) -> str:
        return (f"TopDownDataset({self.ann_file.name}, {len(self)} samples, layout={self.layout.name}, "
                f"boxes={self.boxes!r}, train={self.train}, image_size={self.image_size})")


def collate_topdown(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors (image, target, target_weight, joints and any `extra_targets`); meta becomes a dict of
    stacked arrays (for array fields such as center and scale) or lists (everything else)."""
    if not batch:
        raise DataError("cannot collate an empty batch")
    collated: dict[str, Any] = {
        key: torch.stack([sample[key] for sample in batch]) for key in batch[0] if key != "meta"
    }
    meta: dict[str, Any] = {}
    for key, first in batch[0]["meta"].items():
        values = [sample["meta"][key] for sample in batch]
        meta[key] = np.stack(values) if isinstance(first, np.ndarray) else values
    collated["meta"] = meta
    return collated
