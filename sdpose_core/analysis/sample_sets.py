"""Labelled sample sets for the studio: a COCO-17 or CrowdPose-14 annotation JSON and its images.

    entries = find_sample_sets("../shared/data")        # every labelled set under a folder (or one JSON)
    sample_set = load_sample_set(entries[0].ann_path)   # images, people, crowd index per image
    sample_set.read_image(image_id)                     # RGB; DataError naming the file if it is missing

A set is one ground-truth file. Its images are looked up by `file_name` in `images/` beside the
JSON, then beside the JSON itself, then in `../images`; images that cannot be found are listed in
`missing_images` (the rest of the set stays usable) and a set where none is found raises DataError.
A `*detections*.json` list beside the annotations (COCO results format) is the set's detector boxes.

A set can also come from a Hugging Face Hub dataset repo: `download_dataset("hf://datasets/org/name")`
fetches it once into the Hub cache (`HF_HUB_OFFLINE=1`: the cache only) and returns the local folder; any
failure (offline, unknown or private repo, a stalled connection) is one DataError saying what happened and
how to get the data some other way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.data.annotations import (
    check_keypoint_lengths,
    detect_layout,
    person_category,
    read_json,
    validate_coco,
)
from sdpose_core.errors import DataError
from sdpose_core.evaluation.oks import crowd_bucket, crowd_index, oks_area
from sdpose_core.hub import HubFetchError, fetch_snapshot, parse_hub_address
from sdpose_core.keypoints import KeypointLayout
from sdpose_core.media.images import load_image

MAX_SEARCH_DEPTH = 3  # folders below the given one searched for annotation files
MAX_JSON_BYTES = 512 * 1024 * 1024
_SKIP_DIRS = {"images", "imgs", ".git", "__pycache__", ".cache"}
HUB_DATASET_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class SampleSetEntry:
    """One labelled set found on disk (for a picker): `name` is its folder relative to the search root."""

    name: str
    ann_path: Path
    num_images: int
    num_found: int
    num_people: int
    layout: str

    @property
    def label(self) -> str:
        missing = self.num_images - self.num_found
        extra = f", {missing} images missing" if missing else ""
        return f"{self.name} ({self.layout}, {self.num_found} images, {self.num_people} people{extra})"


@dataclass
class SampleImage:
    """One image of a set: its file (None when missing), crowd index and labelled people."""

    id: int
    file_name: str
    width: int
    height: int
    path: Path | None
    crowd_index: float
    bucket: str
    people: list[dict]  # non-crowd person annotations with at least one labelled joint


@dataclass
class SampleSet:
    """A loaded labelled set (see the module docstring)."""

    name: str
    ann_path: Path
    image_dir: Path
    data: dict[str, Any]
    layout: KeypointLayout
    category_id: int
    images: list[SampleImage]
    detections_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id = {image.id: image for image in self.images}

    @property
    def missing_images(self) -> list[str]:
        return [image.file_name for image in self.images if image.path is None]

    @property
    def num_people(self) -> int:
        return sum(len(image.people) for image in self.images)

    def sample(self, max_images: int | None, seed: int = 0) -> SampleSet:
        """This set limited to a seeded random sample of `max_images` of its found images, in the set's
        order (all of them when `max_images` is None or the set is no larger): a bounded, repeatable
        analysis of a large set such as the 10,000 LSP people. The annotation data stays whole; AP and
        OKS are computed on the predicted images only."""
        found = [image for image in self.images if image.path is not None]
        if max_images is None or len(found) <= max_images:
            return self
        if max_images < 1:
            raise DataError(f"a sample needs at least one image, got max_images={max_images}")
        chosen = set(np.random.default_rng(seed).choice(len(found), size=max_images, replace=False).tolist())
        images = [image for position, image in enumerate(found) if position in chosen]
        note = (f"a seeded sample (seed {seed}) of {max_images} of the {len(found)} images is analysed; choose "
                "a larger sample for more")
        return replace(self, images=images, notes=[*self.notes, note])

    def image(self, image_id: int | str) -> SampleImage:
        """The image with this id (an int, or its file name)."""
        if image_id in self._by_id:
            return self._by_id[image_id]  # type: ignore[index]
        for image in self.images:
            if str(image.id) == str(image_id) or image.file_name == str(image_id):
                return image
        raise DataError(f"image {image_id!r} is not in {self.name} ({self.ann_path}); pick one of its images")

    def read_image(self, image_id: int | str) -> np.ndarray:
        image = self.image(image_id)
        if image.path is None:
            raise DataError(
                f"image file {image.file_name} of {self.name} is missing (looked in {self.image_dir}); "
                f"copy it there or remove its entry from {self.ann_path.name}"
            )
        return load_image(image.path)

    def people_arrays(self, image_id: int | str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """(keypoints (G, K, 3), OKS areas (G,), boxes xywh (G, 4), annotation ids) of an image's people.

        OKS areas follow the evaluation: COCO the segment `area`, CrowdPose box w x h x 0.53."""
        people = self.image(image_id).people
        num_joints = self.layout.num_keypoints
        if not people:
            return np.zeros((0, num_joints, 3)), np.zeros(0), np.zeros((0, 4)), []
        keypoints = np.stack([np.asarray(p["keypoints"], dtype=np.float64).reshape(num_joints, 3) for p in people])
        use_area = self.layout.name == "coco"
        areas = np.asarray([oks_area(p, use_area=use_area) for p in people], dtype=np.float64)
        boxes = np.asarray([p["bbox"] for p in people], dtype=np.float64).reshape(-1, 4)
        return keypoints, areas, boxes, [int(p["id"]) for p in people]


def _is_ground_truth(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("annotations"), list) and "images" in data


def _image_dir_candidates(ann_path: Path) -> list[Path]:
    folder = ann_path.parent
    return [folder / "images", folder, folder.parent / "images"]


def _present(folder: Path, file_names: list[str]) -> list[bool]:
    """Which of `file_names` are files in `folder`: one directory listing, not a stat per image, so that a
    10,000-image set opens in well under a second."""
    if not folder.is_dir():
        return [False] * len(file_names)
    with os.scandir(folder) as entries:
        listed = {entry.name for entry in entries if entry.is_file()}
    # names with a folder part (sub/x.jpg) are not in the listing: look them up one by one
    return [name in listed if "/" not in name and os.sep not in name else (folder / name).is_file()
            for name in file_names]


def _choose_image_dir(ann_path: Path, file_names: list[str], image_dir: Path | None) -> tuple[Path, list[bool]]:
    """The folder where most of the set's images are (ties: the first candidate) and which of them it has."""
    candidates = [image_dir] if image_dir is not None else _image_dir_candidates(ann_path)
    best, best_present, best_found = candidates[0], [False] * len(file_names), -1
    for candidate in candidates:
        present = _present(candidate, file_names)
        if sum(present) > best_found:
            best, best_present, best_found = candidate, present, sum(present)
    return best, best_present


def _detections_file(ann_path: Path) -> Path | None:
    for candidate in sorted(ann_path.parent.glob("*detection*.json")):
        if candidate != ann_path:
            return candidate
    return None


def _labelled(annotation: dict, category_id: int) -> bool:
    keypoints = annotation.get("keypoints") or []
    return (annotation.get("category_id") == category_id and not annotation.get("iscrowd", 0)
            and any(v > 0 for v in keypoints[2::3]) and isinstance(annotation.get("bbox"), list))


def load_sample_set(
    ann_path: str | os.PathLike, image_dir: str | os.PathLike | None = None, name: str | None = None
) -> SampleSet:
    """Load one ground-truth JSON and find its images (DataError with the fix when unusable)."""
    path = Path(ann_path).expanduser()
    if path.is_dir():
        entries = find_sample_sets(path, max_depth=0)
        if not entries:
            raise DataError(f"{path} holds no COCO keypoint annotation JSON; pass the JSON file or its folder")
        path = entries[0].ann_path
    data = read_json(path, "annotation file")
    validate_coco(data, path)
    category = person_category(data["categories"], path)
    layout = detect_layout(category, data["annotations"], path, None)
    check_keypoint_lengths(data["annotations"], category["id"], layout.num_keypoints, path)
    for ann in data["annotations"]:
        if _labelled(ann, category["id"]) and len(ann["bbox"]) != 4:
            raise DataError(f"{path}: annotation {ann['id']} has bbox {ann['bbox']}; expected [x, y, w, h]")
    file_names = [str(image["file_name"]) for image in data["images"]]
    folder, present = _choose_image_dir(path, file_names, Path(image_dir).expanduser() if image_dir else None)
    if data["images"] and not any(present):
        looked = [str(c) for c in ([Path(image_dir)] if image_dir else _image_dir_candidates(path))]
        raise DataError(
            f"none of the {len(file_names)} images listed in {path} was found (looked in {looked}, e.g. for "
            f"{file_names[0]!r}); put the images in {path.parent / 'images'} or pick the folder that has them"
        )
    by_image: dict[Any, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    images = []
    for entry, found in zip(data["images"], present, strict=True):
        all_people = by_image.get(entry["id"], [])
        labelled = [a for a in all_people if _labelled(a, category["id"])]
        index = crowd_index(entry, [a for a in all_people if not a.get("iscrowd", 0)])
        images.append(SampleImage(
            id=entry["id"], file_name=str(entry["file_name"]), width=int(entry["width"]),
            height=int(entry["height"]), path=folder / str(entry["file_name"]) if found else None,
            crowd_index=float(index),
            bucket=crowd_bucket(index), people=labelled,
        ))
    sample_set = SampleSet(
        name=name or path.parent.name, ann_path=path, image_dir=folder, data=data, layout=layout,
        category_id=int(category["id"]), images=images, detections_path=_detections_file(path),
    )
    missing = sample_set.missing_images
    if missing:
        sample_set.notes.append(
            f"{len(missing)} of {len(images)} images are missing from {folder} (e.g. {missing[:3]}); they are "
            "left out of predictions and scores"
        )
    return sample_set


def _summarise(path: Path, data: dict, name: str) -> SampleSetEntry:
    category = person_category(data["categories"], path)
    layout = detect_layout(category, data["annotations"], path, None)
    file_names = [str(image.get("file_name", "")) for image in data["images"] if isinstance(image, dict)]
    _, present = _choose_image_dir(path, file_names, None)
    people = sum(_labelled(a, category["id"]) for a in data["annotations"] if isinstance(a, dict))
    return SampleSetEntry(name, path, len(file_names), sum(present), people, layout.name)


def find_sample_sets(root: str | os.PathLike, max_depth: int = MAX_SEARCH_DEPTH) -> list[SampleSetEntry]:
    """Labelled sets with images under `root` (a JSON file or a folder), sorted by name.

    A folder is searched `max_depth` levels down; a ground-truth JSON whose images are nowhere to be
    found is skipped (e.g. an evaluation example without image files). Raises DataError for a path that
    does not exist, a JSON that is not a keypoint annotation file, or a folder without any usable set
    (naming the files that were rejected and why).
    """
    base = Path(root).expanduser()
    if not base.exists():
        raise DataError(f"{base} does not exist; pass a folder with COCO/CrowdPose annotation JSON or the file")
    if base.is_file():
        data = read_json(base, "annotation file")
        if not _is_ground_truth(data):
            raise DataError(f"{base} is not a COCO keypoint annotation file (it needs 'images', 'annotations' "
                            "and 'categories'); is it a predictions or detections file?")
        validate_coco(data, base)
        return [_summarise(base, data, base.parent.name)]
    entries: list[SampleSetEntry] = []
    rejected: list[str] = []
    for folder, subdirs, files in os.walk(base):
        depth = len(Path(folder).relative_to(base).parts)
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS and depth < max_depth)
        for file in sorted(f for f in files if f.lower().endswith(".json")):
            path = Path(folder) / file
            if path.stat().st_size > MAX_JSON_BYTES:
                continue
            try:
                data = read_json(path, "annotation file")
                if not _is_ground_truth(data):
                    continue
                validate_coco(data, path)
                entry = _summarise(path, data, str(Path(folder).relative_to(base)) if depth else base.name)
            except DataError as error:
                rejected.append(str(error))
                continue
            if entry.num_found == 0:
                rejected.append(f"{path}: none of its {entry.num_images} images is beside it (skipped)")
                continue
            entries.append(entry)
    if not entries:
        detail = "; ".join(rejected[:3]) if rejected else "no *.json file with 'images' and 'annotations'"
        raise DataError(f"no labelled set with images found under {base} ({detail}); pass a folder holding a "
                        "COCO-format keypoint JSON and its images/ folder, or the JSON itself")
    per_folder: dict[Path, int] = {}
    for entry in entries:
        per_folder[entry.ann_path.parent] = per_folder.get(entry.ann_path.parent, 0) + 1
    # two annotation files in one folder (e.g. a corrected export beside the original): name both files
    entries = [replace(e, name=f"{e.name}/{e.ann_path.name}") if per_folder[e.ann_path.parent] > 1 else e
               for e in entries]
    return sorted(entries, key=lambda e: e.name)


def describe_set(sample_set: SampleSet) -> str:
    """One Markdown paragraph about a set: size, layout, crowd buckets, notes."""
    buckets = {name: 0 for name in ("easy", "medium", "hard")}
    for image in sample_set.images:
        buckets[image.bucket] += 1
    layout = "COCO-17" if sample_set.layout.name == "coco" else "CrowdPose-14"
    text = (f"**{sample_set.name}** — {layout}, {len(sample_set.images)} images, {sample_set.num_people} "
            f"labelled people; crowd index buckets: {buckets['easy']} easy / {buckets['medium']} medium / "
            f"{buckets['hard']} hard. `{sample_set.ann_path}`")
    if sample_set.detections_path:
        text += f"; detector boxes: `{sample_set.detections_path.name}`"
    return "\n\n".join([text, *[f"Note: {note}" for note in sample_set.notes]])


def download_dataset(
    spec: str, cache_dir: str | os.PathLike | None = None, timeout_s: float = HUB_DATASET_TIMEOUT_S
) -> Path:
    """The local folder of a Hub dataset repo, `hf://datasets/org/name[@revision][/subfolder]` (`hf://org/name`
    means a dataset repo here too), downloaded or from the cache; DataError when it cannot be had."""
    repo_id, revision, subdir, repo_type = parse_hub_address(spec, default_repo_type="dataset")
    try:
        snapshot = fetch_snapshot(repo_id, timeout_s, revision=revision, repo_type=repo_type, cache_dir=cache_dir,
                                  allow_patterns=[f"{subdir}/*"] if subdir else None)
    except HubFetchError as exc:
        if exc.cause is None:
            raise DataError(f"Hub dataset {repo_id!r}: no answer within {exc.waited_s:.0f} s ({exc.mode}); check "
                            "the network, or download the dataset yourself and open its folder") from None
        raise DataError(
            f"cannot get Hub dataset {repo_id!r}{' @' + revision if revision else ''} ({exc.mode}): "
            f"{exc.reason()}. Check the name and the network (or log in for a private "
            "repo), or download it while online and open the local folder instead"
        ) from exc.cause
    folder = snapshot / subdir
    if not folder.is_dir():
        raise DataError(f"Hub dataset {repo_id!r} has no folder {subdir!r}")
    return folder
