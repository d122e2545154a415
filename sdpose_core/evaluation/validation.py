"""Load and check ground-truth and prediction files before COCOeval sees them.

COCOeval fails on bad input with bare asserts or, worse, silently scores a wrong file as 0 AP
(predictions for the wrong category or an image id typo are just ignored). Every check here raises
`DataError` saying which file, which entry and what to do instead.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdpose_core.errors import DataError
from sdpose_core.keypoints import LAYOUTS, KeypointLayout, get_layout

RESULT_KEYS = ("image_id", "category_id", "keypoints", "score")


def load_json(path: str | Path, what: str) -> object:
    """Read a JSON file, turning a missing or malformed file into a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path} (check the path)")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{what} file {path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from error
    except UnicodeDecodeError as error:
        raise DataError(f"{what} file {path} is not a UTF-8 text JSON file") from error


def layout_of_annotations(ann: dict, source: str = "annotations") -> KeypointLayout:
    """The keypoint layout a COCO-format annotation dict uses (from its category, else its people)."""
    for category in ann.get("categories", []):
        names = category.get("keypoints")
        if names:
            try:
                return get_layout(len(names))
            except ValueError as error:
                raise DataError(f"{source}: category {category.get('id')}: {error}") from error
    for annotation in ann.get("annotations", []):
        if "keypoints" in annotation:
            try:
                return get_layout(len(annotation["keypoints"]) // 3)
            except ValueError as error:
                raise DataError(f"{source}: annotation {annotation.get('id')}: {error}") from error
    raise DataError(f"{source} has no keypoint category and no keypoint annotations; cannot tell the dataset")


def resolve_dataset(dataset: str | None, ann: dict, source: str = "annotations") -> KeypointLayout:
    """Check `dataset` against the annotation file; None or 'auto' means: use what the file holds."""
    found = layout_of_annotations(ann, source)
    if dataset is None or dataset == "auto":
        return found
    if dataset.lower() not in LAYOUTS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(LAYOUTS)} (or 'auto')")
    wanted = get_layout(dataset)
    if wanted.num_keypoints != found.num_keypoints:
        raise DataError(
            f"{source} has {found.num_keypoints} keypoints per person ({found.name}) but dataset={dataset!r} "
            f"expects {wanted.num_keypoints}; pass dataset={found.name!r}"
        )
    return wanted


def check_annotations(ann: object, source: str = "annotations") -> dict:
    """A COCO-format ground-truth dict with images, keypoint annotations and categories."""
    if not isinstance(ann, dict):
        raise DataError(f"{source} must be a COCO-format JSON object, got a {type(ann).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(ann.get(key), list):
            raise DataError(f"{source} has no '{key}' list; is this a COCO-format keypoint annotation file?")
    for index, image in enumerate(ann["images"]):
        if not isinstance(image, dict) or "id" not in image:
            raise DataError(f"{source}: image entry #{index} has no 'id'")
    for index, annotation in enumerate(ann["annotations"]):
        missing = [k for k in ("id", "image_id", "category_id", "keypoints", "bbox") if k not in annotation]
        if missing:
            raise DataError(f"{source}: annotation #{index} lacks {missing}")
    return ann


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_results(
    results: object,
    ann: dict,
    layout: KeypointLayout,
    source: str = "predictions",
) -> list[dict]:
    """A non-empty list of COCO keypoint results that fit `ann` and `layout`.

    Returns shallow copies with plain Python numbers (COCOeval adds fields to the dicts it gets).
    """
    if not isinstance(results, list):
        raise DataError(
            f"{source} must be a JSON list of {{image_id, category_id, keypoints, score}} objects, "
            f"got a {type(results).__name__}"
        )
    if not results:
        raise DataError(f"{source} is empty: there is nothing to evaluate")
    expected_length = 3 * layout.num_keypoints
    image_ids = {image["id"] for image in ann["images"]}
    category_ids = {category["id"] for category in ann["categories"]}
    checked: list[dict] = []
    unknown_images: list[object] = []
    for index, entry in enumerate(results):
        if not isinstance(entry, dict):
            raise DataError(f"{source}: entry #{index} is a {type(entry).__name__}, not an object")
        missing = [key for key in RESULT_KEYS if key not in entry]
        if missing:
            raise DataError(
                f"{source}: entry #{index} lacks {missing}; each prediction needs {list(RESULT_KEYS)}"
            )
        keypoints = entry["keypoints"]
        if isinstance(keypoints, np.ndarray):  # results built in code rather than read from JSON
            keypoints = keypoints.reshape(-1).tolist()
        if not isinstance(keypoints, (list, tuple)) or not all(_is_number(v) for v in keypoints):
            raise DataError(f"{source}: entry #{index} 'keypoints' must be a flat list of finite numbers")
        if len(keypoints) != expected_length:
            raise DataError(
                f"{source}: entry #{index} has {len(keypoints)} keypoint values; {layout.name} needs "
                f"{expected_length} ({layout.num_keypoints} joints x (x, y, score))"
            )
        if not _is_number(entry["score"]):
            raise DataError(f"{source}: entry #{index} 'score' must be a finite number, got {entry['score']!r}")
        if entry["category_id"] not in category_ids:
            raise DataError(
                f"{source}: entry #{index} has category_id {entry['category_id']!r}; the annotations only "
                f"have {sorted(category_ids)}"
            )
        if entry["image_id"] not in image_ids:
            unknown_images.append(entry["image_id"])
        copy = dict(entry)
        copy["keypoints"] = [float(v) for v in keypoints]
        copy["score"] = float(entry["score"])
        if isinstance(entry["image_id"], numbers.Integral):
            copy["image_id"] = int(entry["image_id"])
        checked.append(copy)
    if unknown_images:
        shown = sorted(set(map(str, unknown_images)))
        raise DataError(
            f"{source}: {len(unknown_images)} predictions name image ids that are not in the annotations "
            f"(e.g. {shown[:5]}); were they made on another split?"
        )
    return checked


def subset_keypoints(flat: Sequence[float], joints: Sequence[int]) -> list[float]:
    """Keep the (x, y, v) triplets of `joints` from a flat COCO keypoint list."""
    return [float(flat[3 * j + c]) for j in joints for c in range(3)]
