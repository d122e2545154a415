"""TopDownDataset input handling: grayscale / RGBA / 16-bit images and every kind of bad input
(malformed JSON, wrong keypoint length, missing images, empty datasets, zero-area boxes, bad detections)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sdpose_core.data import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, TopDownDataset
from sdpose_core.errors import ConfigError, DataError

MMPOSE_COCO = ("coco/mmpose_coco/person_keypoints.json", "coco/mmpose_coco/images")
MMPOSE_COCO_SAMPLES = 12


def denormalise(image) -> np.ndarray:
    """(3, H, W) normalised RGB -> (H, W, 3) RGB in 0..255."""
    mean = np.asarray(IMAGENET_MEAN)[:, None, None]
    std = np.asarray(IMAGENET_STD)[:, None, None]
    return ((image.numpy() * std + mean) * 255.0).transpose(1, 2, 0)


def _subset_json(shared_data: Path, tmp_path: Path, edit=None, name: str = "ann.json") -> Path:
    data = json.loads((shared_data / MMPOSE_COCO[0]).read_text())
    if edit is not None:
        edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_grayscale_rgba_and_16bit_images(shared_data, tmp_path):
    source = shared_data / MMPOSE_COCO[1] / "000000000785.jpg"
    bgr = cv2.imread(str(source))
    cv2.imwrite(str(tmp_path / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 60
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "plain.png"), bgr)

    def edit(data):
        image = next(i for i in data["images"] if i["file_name"] == source.name)
        anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        data["images"], data["annotations"] = [], []
        for offset, name in enumerate(("plain.png", "gray.png", "rgba.png", "deep.png")):
            data["images"].append({**image, "id": offset + 1, "file_name": name})
            data["annotations"] += [{**a, "id": 100 * (offset + 1) + j, "image_id": offset + 1}
                                    for j, a in enumerate(anns)]

    dataset = TopDownDataset(_subset_json(shared_data, tmp_path, edit), tmp_path, train=False)
    assert len(dataset) == 4
    plain, gray, rgba_crop, deep = (denormalise(dataset[i]["image"]) for i in range(4))
    np.testing.assert_allclose(rgba_crop, plain, atol=1e-3)  # alpha dropped
    np.testing.assert_allclose(deep, plain, atol=1e-3)  # 16 bit -> 8 bit exactly
    assert np.allclose(gray[..., 0], gray[..., 1], atol=1e-3) and np.allclose(gray[..., 1], gray[..., 2], atol=1e-3)
    luma = plain @ np.array([0.299, 0.587, 0.114])
    assert np.mean(np.abs(gray[..., 0] - luma)) < 1.0


def test_bad_annotation_files(shared_data, tmp_path):
    images = shared_data / MMPOSE_COCO[1]
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ this is not json")
    with pytest.raises(DataError, match="not valid JSON"):
        TopDownDataset(not_json, images, train=False)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]))
    with pytest.raises(DataError, match="'images', 'annotations' and 'categories'"):
        TopDownDataset(results, images, train=False)
    for field in ("images", "annotations", "categories"):
        path = _subset_json(shared_data, tmp_path, lambda d, f=field: d.pop(f), name=f"no_{field}.json")
        with pytest.raises(DataError, match=f"'{field}'"):
            TopDownDataset(path, images, train=False)

    def short_keypoints(data):
        data["annotations"][2]["keypoints"] = data["annotations"][2]["keypoints"][:48]

    path = _subset_json(shared_data, tmp_path, short_keypoints, name="short.json")
    bad_id = json.loads(path.read_text())["annotations"][2]["id"]
    with pytest.raises(DataError, match=rf"annotation {bad_id} has 'keypoints' of length 48, expected a list of 51"):
        TopDownDataset(path, images, train=False)

    def orphan(data):
        data["annotations"][0]["image_id"] = 999999

    with pytest.raises(DataError, match="image_id 999999"):
        TopDownDataset(_subset_json(shared_data, tmp_path, orphan, name="orphan.json"), images, train=False)
    with pytest.raises(DataError, match="layout 'crowdpose' has 14 joints but the file has 17"):
        TopDownDataset(_subset_json(shared_data, tmp_path), images, train=False, layout="crowdpose")
    with pytest.raises(ConfigError, match="unknown dataset 'mpii'"):
        TopDownDataset(_subset_json(shared_data, tmp_path), images, train=False, layout="mpii")
    with pytest.raises(ConfigError, match="augment is only used for training"):
        TopDownDataset(_subset_json(shared_data, tmp_path), images, train=False, augment=AugmentConfig())


def test_missing_images_are_reported_up_front(shared_data, tmp_path):
    images = shared_data / MMPOSE_COCO[1]

    def rename_two(data):
        data["images"][0]["file_name"] = "gone_1.jpg"
        data["images"][2]["file_name"] = "gone_2.jpg"

    with pytest.raises(DataError, match=r"2 of 4 images with people are missing.*gone_1\.jpg"):
        TopDownDataset(_subset_json(shared_data, tmp_path, rename_two), images, train=False)


def test_images_without_people_and_zero_area_boxes(shared_data, tmp_path):
    images = shared_data / MMPOSE_COCO[1]

    def edit(data):
        first = data["images"][0]["id"]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] != first]
        people = [a for a in data["annotations"] if a["num_keypoints"] > 0]
        # three of the five people in the last image (the other two keep it populated)
        assert len({a["image_id"] for a in people[-3:]}) == 1
        people[-1]["bbox"][2] = 0.0  # zero width
        people[-2]["area"] = 0  # zero area
        people[-3]["bbox"] = [1000.0, 10.0, 50.0, 50.0]  # entirely right of the image

    dataset = TopDownDataset(_subset_json(shared_data, tmp_path, edit), images, train=False)
    full = TopDownDataset(shared_data / MMPOSE_COCO[0], shared_data / MMPOSE_COCO[1], train=False)
    removed = int(np.sum(full.samples.image_index == 0))
    assert removed == 1
    assert dataset.stats["zero_area_boxes"] == 3
    assert dataset.stats["images_without_people"] == 1
    assert len(dataset) == MMPOSE_COCO_SAMPLES - removed - 3

    def nobody(data):
        data["annotations"] = []

    with pytest.raises(DataError, match="no usable person boxes"):
        TopDownDataset(_subset_json(shared_data, tmp_path, nobody, name="empty.json"), images, train=False)


def test_bad_detection_files(shared_data, tmp_path):
    ann, images = (shared_data / p for p in MMPOSE_COCO)
    with pytest.raises(DataError, match="ground-truth file"):
        TopDownDataset(ann, images, train=False, boxes=str(ann))
    cases = {
        "no_score.json": ([{"image_id": 785, "bbox": [1, 2, 3, 4], "category_id": 1}], "numeric 'score'"),
        "short_box.json": ([{"image_id": 785, "bbox": [1, 2, 3], "score": 0.9}], "not a COCO detection"),
        "unknown.json": ([{"image_id": 42, "bbox": [1, 2, 3, 4], "score": 0.9}], "not in the annotation file"),
        "empty.json": ([], "no usable person boxes"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(DataError, match=message):
            TopDownDataset(ann, images, train=False, boxes=str(tmp_path / name))
    (tmp_path / "zero.json").write_text(json.dumps([
        {"image_id": 785, "bbox": [10, 20, 0, 40], "score": 0.9, "category_id": 1},
        {"image_id": 785, "bbox": [10, 20, 30, 40], "score": 0.9, "category_id": 1},
    ]))
    dataset = TopDownDataset(ann, images, train=False, boxes=str(tmp_path / "zero.json"))
    assert len(dataset) == 1 and dataset.stats["zero_area_boxes"] == 1
    with pytest.raises(DataError, match="does not exist"):
        TopDownDataset(ann, images, train=False, boxes=str(tmp_path / "nowhere.json"))


def test_image_that_disagrees_with_its_annotation_size(shared_data, tmp_path):
    cv2.imwrite(str(tmp_path / "000000000785.jpg"), np.zeros((100, 80, 3), np.uint8))

    def only_785(data):
        data["images"] = [i for i in data["images"] if i["id"] == 785]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] == 785]

    dataset = TopDownDataset(_subset_json(shared_data, tmp_path, only_785), tmp_path, train=False)
    with pytest.raises(DataError, match="decodes to 80x100"):
        dataset[0]


def test_augment_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="flip_prob must be a probability"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ConfigError, match="scale_factor must be < 1"):
        AugmentConfig(scale_factor=1.0)
    with pytest.raises(ConfigError, match="unknown augmentation settings"):
        AugmentConfig.from_dict({"flip": 0.5})
    assert AugmentConfig.from_dict({"rotation_factor": 30.0}).rotation_factor == 30.0
