"""Real person crops for checking exported graphs and calibrating int8 ones: shared COCO GT boxes,
preprocessed exactly as the model expects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdpose_core.paths import data_root

CHECK_SPLIT = "coco/mmpose_coco"
CALIBRATION_SPLIT = "coco/coco_mini_train"


def load_real_crops(
    image_size: Sequence[int], limit: int | None = 8, split: str = CHECK_SPLIT, root: Path | None = None
) -> tuple[np.ndarray, str | None]:
    """Ground-truth person crops of a shared COCO split, preprocessed exactly as the model expects:
    float32 (N, 3, H, W). Returns (crops, description) or an empty array and None when the shared data
    is absent. People are taken evenly spread over the split when `limit` is smaller than it."""
    from sdpose_core.data import TopDownDataset

    folder = (root or data_root()) / split
    ann_file = folder / "person_keypoints.json"
    height, width = (int(v) for v in image_size)
    if not ann_file.is_file():
        return np.zeros((0, 3, height, width), np.float32), None
    dataset = TopDownDataset(ann_file, folder / "images", train=False, image_size=(height, width),
                             heatmap_size=(max(1, height // 4), max(1, width // 4)))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    indices = np.linspace(0, len(dataset) - 1, num=count).round().astype(int) if count else []
    crops = [dataset[int(i)]["image"].numpy() for i in indices]
    if not crops:
        return np.zeros((0, 3, height, width), np.float32), None
    return np.stack(crops).astype(np.float32), f"{len(crops)} GT person crops of {split}"
