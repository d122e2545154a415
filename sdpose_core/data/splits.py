"""The real-GT split of the demo recipe: what trains, what is held out to score the ablation.

Validation (never trained on, never used as a crowd-synthesis donor): all of `coco/mmpose_coco` (COCO
val2017 images) plus every `val_every`-th image of `coco/coco_mini_train` in image-id order. Training:
the rest of `coco_mini_train`. The validation JSON's file_names are relative to the `coco/` folder
(`mmpose_coco/images/...`, `coco_mini_train/images/...`) so one image root serves both sources.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sdpose_core.errors import DataError
from sdpose_core.paths import data_root


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path} is missing: the demo split needs the shared COCO sets (see ../shared/data/README.md)")
    return json.loads(path.read_text())


def write_demo_splits(out_dir: str | Path, data: str | Path | None = None, val_every: int = 6) -> dict[str, Any]:
    """Write `real_train.json` (images under coco/coco_mini_train/images) and `real_val.json` (images under
    coco/); return counts."""
    coco_root = Path(data or data_root()) / "coco"
    mini = _read(coco_root / "coco_mini_train" / "person_keypoints.json")
    val_src = _read(coco_root / "mmpose_coco" / "person_keypoints.json")
    image_ids = sorted(im["id"] for im in mini["images"])
    held = set(image_ids[val_every - 1::val_every])
    clash = held & {im["id"] for im in val_src["images"]} or (
        {im["id"] for im in mini["images"]} & {im["id"] for im in val_src["images"]})
    if clash:
        raise DataError(f"image ids {sorted(clash)} occur in both coco_mini_train and mmpose_coco")

    train = copy.deepcopy(mini)
    train["images"] = [im for im in mini["images"] if im["id"] not in held]
    train["annotations"] = [a for a in mini["annotations"] if a["image_id"] not in held]
    rule = (f"validation = coco/mmpose_coco + every {val_every}th coco_mini_train image by id "
            f"({sorted(held)}); training = the other coco_mini_train images")
    train["info"] = {**mini.get("info", {}), "split": "real_train", "rule": rule}

    val = copy.deepcopy(val_src)
    val["images"] = [{**im, "file_name": f"mmpose_coco/images/{im['file_name']}"} for im in val_src["images"]]
    val["images"] += [{**im, "file_name": f"coco_mini_train/images/{im['file_name']}"}
                      for im in mini["images"] if im["id"] in held]
    val["annotations"] = list(val_src["annotations"]) + [a for a in mini["annotations"] if a["image_id"] in held]
    val["info"] = {**val_src.get("info", {}), "split": "real_val", "rule": rule}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "real_train.json").write_text(json.dumps(train))
    (out / "real_val.json").write_text(json.dumps(val))

    def people(d: dict[str, Any]) -> int:
        return sum(1 for a in d["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0)

    return {"train_images": len(train["images"]), "train_people": people(train), "val_images": len(val["images"]),
            "val_people": people(val), "held_out_coco_mini_train_ids": sorted(held)}
