"""Predictions of a Predictor for every image of a sample set, all cycles from one run, cached in memory.

    predictions = predict_set(sample_set, predictor, cycles=3, box_source="gt")
    predictions.images[image_id].keypoints[c - 1]     # (N, K_model, 3) cycle c, image pixels

Boxes follow the evaluation conventions: "gt" takes every labelled, non-crowd person's box (clipped as
mmpose does; one prediction per person, no NMS); "detected" takes the set's detections file when it
has one (`*detections*.json` beside the annotations), else the Predictor's own person detector, and
then each cycle's poses go through mmpose's rescoring and OKS-NMS at 0.9, as `sdpose evaluate` does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sdpose_core.analysis.sample_sets import SampleSet
from sdpose_core.data.annotations import read_json
from sdpose_core.data.transforms import clip_box_xywh
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.evaluation.nms import oks_nms
from sdpose_core.keypoints import KeypointLayout
from sdpose_core.models.config import check_cycles

BOX_SOURCES = ("gt", "detected")
NMS_OKS_THRESHOLD = 0.9  # mmpose's oks_thr
Progress = Callable[[float, str], None]


@dataclass
class ImagePredictions:
    """One image's poses. keypoints (C, N, K, 3) and scores (C, N) hold every box; `kept[c - 1]` are the
    indices that survive cycle c's OKS-NMS (all of them for GT boxes)."""

    keypoints: np.ndarray
    scores: np.ndarray
    boxes_xywh: np.ndarray
    box_scores: np.ndarray
    kept: list[np.ndarray]

    def poses(self, cycle: int) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (D, K, 3), scores (D,)) of cycle c after NMS."""
        index = self.kept[cycle - 1]
        return self.keypoints[cycle - 1][index], self.scores[cycle - 1][index]


@dataclass
class SetPredictions:
    """Everything a Predictor said about a set, with what produced it."""

    set_name: str
    cycles: int
    box_source: str
    boxes_note: str
    flip: bool
    weights_description: str
    trained: bool
    model_name: str
    model_layout: KeypointLayout
    images: dict[Any, ImagePredictions]
    skipped: dict[Any, str] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _detections_by_image(sample_set: SampleSet) -> dict[Any, np.ndarray]:
    """(N, 5) x, y, w, h, score per image from the set's COCO-results detections file."""
    path = sample_set.detections_path
    assert path is not None
    data = read_json(path, "detections file")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of {{image_id, bbox, score}} detections, got "
                        f"{type(data).__name__}; remove or fix the file to use the person detector instead")
    boxes: dict[Any, list[list[float]]] = {}
    for index, entry in enumerate(data):
        bbox = entry.get("bbox") if isinstance(entry, dict) else None
        score = entry.get("score") if isinstance(entry, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4 and isinstance(score, (int, float)) and "image_id" in entry):
            raise DataError(f"{path}: entry {index} ({str(entry)[:100]}) is not a COCO detection; each needs "
                            "'image_id', 'bbox' [x, y, w, h] and a numeric 'score'")
        if entry.get("category_id", sample_set.category_id) != sample_set.category_id:
            continue
        boxes.setdefault(entry["image_id"], []).append([*map(float, bbox), float(score)])
    return {key: np.asarray(value, dtype=np.float64) for key, value in boxes.items()}


def _gt_boxes(sample_set: SampleSet, image_id: Any) -> np.ndarray:
    image = sample_set.image(image_id)
    rows = []
    for person in image.people:
        clipped = clip_box_xywh(np.asarray(person["bbox"], dtype=np.float64), image.width, image.height)
        if clipped is not None and person.get("area", 1) > 0:
            rows.append([*clipped, 1.0])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def predict_set(
    sample_set: SampleSet,
    predictor: Any,
    cycles: int | None = None,
    box_source: str = "gt",
    flip: bool = False,
    progress: Progress | None = None,
) -> SetPredictions:
    """Run `predictor` (a `sdpose_core.inference.predictor.Predictor`) over every image found of the set."""
    if box_source not in BOX_SOURCES:
        raise ConfigError(f"box_source must be one of {BOX_SOURCES}, got {box_source!r}")
    cycles = check_cycles(cycles, predictor.config.cycles)
    detections = None
    if box_source == "gt":
        boxes_note = "ground-truth boxes (top-down evaluation convention), one pose per labelled person"
    elif sample_set.detections_path is not None:
        detections = _detections_by_image(sample_set)
        boxes_note = f"detected boxes from {sample_set.detections_path.name}, rescored + OKS-NMS at 0.9"
    else:
        boxes_note = "boxes from the person detector, rescored + OKS-NMS at 0.9"
    start = time.perf_counter()
    sigmas = predictor.layout.sigmas_array()
    images: dict[Any, ImagePredictions] = {}
    skipped: dict[Any, str] = {}
    for position, image in enumerate(sample_set.images):
        if progress is not None:
            progress(position / max(1, len(sample_set.images)), f"image {position + 1}/{len(sample_set.images)}")
        if image.path is None:
            skipped[image.id] = f"image file {image.file_name} is missing"
            continue
        if box_source == "gt":
            boxes: np.ndarray | None = _gt_boxes(sample_set, image.id)
        else:
            boxes = detections.get(image.id, np.zeros((0, 5))) if detections is not None else None
        try:
            rgb = sample_set.read_image(image.id)
        except DataError as error:
            skipped[image.id] = str(error)
            continue
        if boxes is not None and len(boxes) == 0:
            result_people: list = []
        else:
            result_people = predictor.predict(rgb, boxes=boxes, cycles=cycles, flip=flip).people
        images[image.id] = _collect(result_people, cycles, predictor.layout.num_keypoints,
                                    nms=box_source == "detected", sigmas=sigmas)
    notes = []
    if cycles > int(predictor.config.cycles):
        notes.append(f"{cycles} cycles run but {predictor.config.name} is trained with {predictor.config.cycles}: "
                     "the extra cycles' outputs were never trained")
    return SetPredictions(
        set_name=sample_set.name, cycles=cycles, box_source=box_source, boxes_note=boxes_note, flip=bool(flip),
        weights_description=str(predictor.weights_info.description), trained=bool(predictor.weights_info.trained),
        model_name=str(predictor.config.name), model_layout=predictor.layout, images=images, skipped=skipped,
        seconds=time.perf_counter() - start, notes=notes,
    )


def first_cycles(predictions: SetPredictions, cycles: int) -> SetPredictions:
    """The same predictions cut to cycles 1..`cycles`: in fixed-cycle mode cycle c's output does not depend
    on how many cycles follow it, so a 3-cycle run also answers for 1 and 2 cycles."""
    cycles = check_cycles(cycles, available=predictions.cycles, available_from="these predictions hold",
                          fix=f"cut them to 1..{predictions.cycles} cycles, or predict the set with {cycles}")
    images = {key: ImagePredictions(p.keypoints[:cycles], p.scores[:cycles], p.boxes_xywh, p.box_scores,
                                    p.kept[:cycles]) for key, p in predictions.images.items()}
    return replace(predictions, cycles=cycles, images=images)


def _collect(people: list, cycles: int, num_joints: int, nms: bool, sigmas: np.ndarray) -> ImagePredictions:
    count = len(people)
    keypoints = np.zeros((cycles, count, num_joints, 3))
    scores = np.zeros((cycles, count))
    for index, person in enumerate(people):
        for cycle in range(1, cycles + 1):
            keypoints[cycle - 1, index] = person.keypoints_at(cycle)
            scores[cycle - 1, index] = person.score(cycle)
    boxes = np.asarray([p.box_xywh for p in people], dtype=np.float64).reshape(-1, 4)
    box_scores = np.asarray([p.box_score for p in people], dtype=np.float64)
    areas = np.asarray([float(np.prod(p.scale)) for p in people], dtype=np.float64)  # mmpose: padded box
    kept = []
    for cycle in range(cycles):
        if nms and count:
            kept.append(np.sort(oks_nms(keypoints[cycle], scores[cycle], areas, NMS_OKS_THRESHOLD, sigmas=sigmas)))
        else:
            kept.append(np.arange(count))
    return ImagePredictions(keypoints, scores, boxes, box_scores, kept)


class ResultCache:
    """A small thread-safe LRU of computed results: one computation per key, even with concurrent callers."""

    def __init__(self, size: int = 6) -> None:
        self.size = int(size)
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        found = self.get(key)
        if found is not None:
            return found
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            found = self.get(key)
            if found is not None:
                return found
            value = compute()
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._key_locks.pop(key, None)
            return value

    def items(self) -> list[tuple[Hashable, Any]]:
        """A snapshot of the cached (key, value) pairs, oldest first."""
        with self._lock:
            return list(self._items.items())

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
