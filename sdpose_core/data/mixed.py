"""Several top-down training sets as one, each repeated a whole number of times (real GT weighted up).

A repeated set is built as `repeat` separate datasets with different augmentation seeds, so the copies
of one person in an epoch are differently augmented crops, not the same crop twice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import ConcatDataset

from sdpose_core.errors import ConfigError


@dataclass(frozen=True)
class TrainSet:
    """One source of training people: a COCO-format keypoint JSON, its image folder and a repeat count."""

    ann: str
    images: str
    repeat: int = 1

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainSet:
        unknown = set(d) - {"ann", "images", "repeat"}
        if unknown or not {"ann", "images"} <= set(d):
            raise ConfigError(f"a train set needs 'ann' and 'images' (optional 'repeat'); got keys {sorted(d)}")
        repeat = int(d.get("repeat", 1))
        if repeat < 1:
            raise ConfigError(f"train set {d['ann']}: repeat must be >= 1, got {repeat}")
        return cls(os.path.expandvars(str(d["ann"])), os.path.expandvars(str(d["images"])), repeat)


class MixedDataset(ConcatDataset):
    """ConcatDataset that forwards `set_epoch` and checks all parts share one keypoint layout."""

    def __init__(self, parts: Sequence[Any]) -> None:
        super().__init__(parts)
        names = {part.layout.name for part in parts}
        if len(names) != 1:
            raise ConfigError(f"training sets mix keypoint layouts {sorted(names)}: use one layout per run")
        self.layout = parts[0].layout
        self.parts = list(parts)

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)


def build_mixed_dataset(sets: Sequence[TrainSet], seed: int, **dataset_kwargs: Any) -> MixedDataset:
    from sdpose_core.data.dataset import TopDownDataset

    parts = []
    for set_index, spec in enumerate(sets):
        for copy in range(spec.repeat):
            parts.append(TopDownDataset(spec.ann, spec.images, train=True, seed=seed + 7919 * set_index + 104_729 * copy,
                                        **dataset_kwargs))
    return MixedDataset(parts)
