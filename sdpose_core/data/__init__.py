"""Top-down data pipeline: COCO / CrowdPose person crops and augmentation (the Gaussian targets are
`sdpose_core.heatmaps.gaussian_targets`, next to the decoding)."""

from sdpose_core.data.augment import AugmentConfig, CropParams, sample_augmentation, sample_rng
from sdpose_core.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TopDownDataset,
    collate_topdown,
    normalize_crop,
    read_image_bgr,
)
from sdpose_core.data.transforms import (
    affine_points,
    aspect_ratio_of,
    box_to_center_scale,
    center_scale_to_box,
    clip_box_xywh,
    get_affine_matrix,
    invert_affine,
    warp_crop,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "CropParams",
    "TopDownDataset",
    "affine_points",
    "aspect_ratio_of",
    "box_to_center_scale",
    "center_scale_to_box",
    "clip_box_xywh",
    "collate_topdown",
    "get_affine_matrix",
    "invert_affine",
    "normalize_crop",
    "read_image_bgr",
    "sample_augmentation",
    "sample_rng",
    "warp_crop",
]
