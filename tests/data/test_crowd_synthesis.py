"""Crowd synthesis on the real coco_mini_train people: format, geometry, visibility, determinism, errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sdpose_core.data import crowd_paste as paste
from sdpose_core.data.crowd_sources import load_donors, polygon_mask
from sdpose_core.data.crowd_synthesis import synthesize_crowds
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import COCO17

MINI = Path("coco") / "coco_mini_train"
COUNT = 12


def _mini(shared_data: Path) -> tuple[Path, Path]:
    return shared_data / MINI / "person_keypoints.json", shared_data / MINI / "images"


def _donor_image_ids(ann: Path) -> list[int]:
    return sorted({d.image_id for d in load_donors(ann, ann.parent / "images")})


@pytest.fixture(scope="module")
def synthesized(shared_data, tmp_path_factory) -> tuple[Path, list[int]]:
    ann, images = _mini(shared_data)
    excluded = _donor_image_ids(ann)[::4]
    out = tmp_path_factory.mktemp("crowd")
    path = synthesize_crowds(ann, images, ann, images, out, count=COUNT, seed=7, max_pasted=3,
                             exclude_donor_image_ids=excluded)
    return path, excluded


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _rle_mask(ann: dict) -> np.ndarray:
    return mask_utils.decode(ann["segmentation"]).astype(bool)


def _on(mask: np.ndarray, x: float, y: float) -> bool:
    return bool(mask[int(round(y)), int(round(x))])


def test_output_is_a_coco_keypoint_file(synthesized, shared_data):
    path, _ = synthesized
    assert path.name == "person_keypoints.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    data = _load(path)
    assert len(coco.getImgIds()) == COUNT and data["info"]["count"] == COUNT and data["info"]["seed"] == 7
    assert data["categories"][0]["keypoints"] == list(COCO17.joints)
    assert data["info"]["sources"]["donors"]["annotations"].endswith("person_keypoints.json")
    assert {"donors", "scale", "placement", "depth", "visibility"} <= set(data["info"]["rules"])
    for entry in data["images"]:
        image = cv2.imread(str(path.parent / "images" / entry["file_name"]))
        assert image.shape[:2] == (entry["height"], entry["width"])
    pasted = [a for a in data["annotations"] if a["synthesis"]["source"] == "donor"]
    assert len(pasted) >= COUNT  # at least one donor per picture, nearly always
    assert data["info"]["counts"]["pasted_front"] + data["info"]["counts"]["pasted_behind"] == len(pasted)
    for ann in data["annotations"]:
        keypoints = np.asarray(ann["keypoints"]).reshape(17, 3)
        assert set(np.unique(keypoints[:, 2])) <= {0, 1, 2}
        assert ann["iscrowd"] == 0 and ann["num_keypoints"] == int((keypoints[:, 2] > 0).sum()) > 0
        assert ann["area"] > 0 and len(ann["bbox"]) == 4 and min(ann["bbox"][2:]) > 0
        assert (keypoints[keypoints[:, 2] == 0, :2] == 0).all()
    for ann in pasted:  # the box is the pasted mask's extent, the area its visible pixel count
        visible = _rle_mask(ann)
        assert ann["area"] == visible.sum()
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(visible)
        assert x <= xs.min() and xs.max() < x + w and y <= ys.min() and ys.max() < y + h


def test_every_base_person_with_keypoints_is_kept(synthesized, shared_data):
    path, _ = synthesized
    ann, _ = _mini(shared_data)
    source = _load(ann)
    expected: dict[int, set[int]] = {}
    for a in source["annotations"]:
        if not a["iscrowd"] and any(v > 0 for v in a["keypoints"][2::3]):
            expected.setdefault(a["image_id"], set()).add(a["id"])
    originals = {a["id"]: np.asarray(a["keypoints"]).reshape(17, 3) for a in source["annotations"]}
    data = _load(path)
    for entry in data["images"]:
        base = [a for a in data["annotations"] if a["image_id"] == entry["id"] and a["synthesis"]["source"] == "base"]
        assert {a["synthesis"]["base_ann_id"] for a in base} == expected[entry["synthesis"]["base_image_id"]]
        assert sum(a["synthesis"]["anchor"] for a in base) == 1
        for a in base:
            before = originals[a["synthesis"]["base_ann_id"]]
            after = np.asarray(a["keypoints"]).reshape(17, 3)
            assert np.allclose(after[:, :2], before[:, :2], atol=0.01)
            changed = after[:, 2] != before[:, 2]
            assert (before[changed, 2] == 2).all() and (after[changed, 2] == 1).all()  # only 2 -> 1


def test_visibility_follows_the_paste_order(synthesized):
    """Joints flip to v=1 exactly where a nearer person's pixels are (the union of the visible masks of
    the front donors is the union of their full masks: the nearest of them is always visible)."""
    path, _ = synthesized
    data = _load(path)
    checked_base = flipped_base = checked_behind = 0
    for entry in data["images"]:
        people = [a for a in data["annotations"] if a["image_id"] == entry["id"]]
        front = [a for a in people if a["synthesis"]["source"] == "donor" and a["synthesis"]["depth"] == "front"]
        front_union = np.zeros((entry["height"], entry["width"]), dtype=bool)
        for a in front:
            front_union |= _rle_mask(a)
        base_regions = [_rle_mask(a) for a in people if a["synthesis"]["source"] == "base"]
        for a in people:
            keypoints = np.asarray(a["keypoints"]).reshape(17, 3)
            if a["synthesis"]["source"] == "base":
                for x, y, _v in keypoints[keypoints[:, 2] == 2]:
                    assert not _on(front_union, x, y), "a visible base joint lies under a front donor"
                    checked_base += 1
                flipped_base += int((keypoints[:, 2] == 1).sum())
            elif a["synthesis"]["depth"] == "behind":
                for x, y, _v in keypoints[keypoints[:, 2] == 2]:
                    assert not _on(front_union, x, y)
                    assert not any(_on(region, x, y) for region in base_regions)
                    checked_behind += 1
    assert checked_base > 50 and checked_behind > 5 and flipped_base > 0


def test_pasted_keypoints_land_on_the_pasted_pixels(synthesized, shared_data):
    """A donor joint that lies well inside its own polygon lands inside the pasted mask, mirrored or not."""
    path, _ = synthesized
    ann, images = _mini(shared_data)
    source = {a["id"]: a for a in _load(ann)["annotations"]}
    sizes = {e["id"]: (e["height"], e["width"]) for e in _load(ann)["images"]}
    checked = 0
    for a in _load(path)["annotations"]:
        if a["synthesis"]["source"] != "donor":
            continue
        donor = source[a["synthesis"]["donor_ann_id"]]
        scale = a["synthesis"]["scale"]
        radius = max(2, int(np.ceil(2.5 / scale)))
        inside = cv2.erode(polygon_mask(donor["segmentation"], sizes[donor["image_id"]]).astype(np.uint8),
                           np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)).astype(bool)
        original = np.asarray(donor["keypoints"], dtype=np.float64).reshape(17, 3)
        if a["synthesis"]["mirrored"]:
            original = original[COCO17.flip_index()]
        pasted = np.asarray(a["keypoints"]).reshape(17, 3)
        visible = _rle_mask(a)
        for joint in np.flatnonzero(pasted[:, 2] == 2):
            if original[joint, 2] == 2 and _on(inside, *original[joint, :2]):
                assert _on(visible, *pasted[joint, :2]), (a["id"], joint)
                checked += 1
    assert checked > 30


def test_warp_moves_keypoints_with_the_pixels():
    """A constructed cut-out: a bright square with joints on its corners, pasted mirrored at 1.5x."""
    rgb = np.zeros((40, 30, 3), dtype=np.uint8)
    mask = np.zeros((40, 30), dtype=np.float32)
    mask[10:30, 5:25] = 1.0
    rgb[mask > 0] = 255
    keypoints = np.zeros((17, 3))
    keypoints[5] = (6, 11, 2)  # left shoulder near the top-left corner
    keypoints[6] = (23, 11, 2)  # right shoulder near the top-right corner
    keypoints[15] = (6, 28, 1)
    cutout = paste.Cutout(rgb=rgb, mask=mask, keypoints=keypoints, mask_box=np.array([5, 10, 24, 29.0]))
    matrix = np.array([[-1.5, 0, 100], [0, 1.5, 20]])
    placement = paste.Placement(matrix=matrix, flipped=True, front=True, scale=1.5)
    layer = paste.warp_layer(cutout, placement, (120, 120))
    full = paste.layer_mask(layer, (120, 120))
    moved = layer.keypoints
    # mirrored: the left shoulder (index 5) now holds what was the right shoulder, and lies left of 6
    assert np.allclose(moved[5, :2], (100 - 1.5 * 23, 20 + 1.5 * 11)) and moved[5, 0] < moved[6, 0]
    assert moved[16, 2] == 1 and moved[15, 2] == 0
    for joint in (5, 6, 16):
        assert _on(full, *moved[joint, :2])
    assert full.sum() == pytest.approx(30 * 30, rel=0.1)
    outside = paste.Placement(matrix=np.array([[1.0, 0, 110], [0, 1.0, 0]]), flipped=False, front=True, scale=1.0)
    assert paste.warp_layer(cutout, outside, (120, 120)).keypoints[6, 2] == 0  # x = 133 > 119: dropped


def test_occlusion_rule_on_a_constructed_case():
    occluder = np.zeros((50, 50), dtype=bool)
    occluder[10:30, 10:30] = True
    keypoints = np.array([[15, 15, 2], [15, 20, 1], [40, 40, 2], [20, 12, 0]] + [[0, 0, 0]] * 13, dtype=float)
    updated, flipped = paste.occlude_keypoints(keypoints, occluder)
    assert flipped == 1 and list(updated[:4, 2]) == [1, 1, 2, 0]
    assert np.array_equal(updated[:, :2], keypoints[:, :2])
    standing = np.zeros((17, 3))
    standing[[5, 6, 11, 12, 13, 14, 15, 16, 0]] = [[40, 40, 2], [60, 40, 2], [42, 80, 2], [58, 80, 2],
                                                   [42, 110, 2], [58, 110, 2], [42, 140, 2], [58, 140, 2],
                                                   [50, 25, 2]]
    region = paste.body_region_mask(standing, np.array([30, 15, 40, 135.0]), (160, 100))
    assert region[60, 50] and region[125, 42] and region[25, 50]  # torso, shin, head
    assert not region[60, 5] and not region[150, 90]
    assert not paste.body_region_mask(np.zeros((17, 3)), np.array([0, 0, 10, 10.0]), (20, 20)).any()


def test_deterministic_for_a_seed(shared_data, tmp_path):
    ann, images = _mini(shared_data)
    paths = [synthesize_crowds(ann, images, ann, images, tmp_path / name, count=3, seed=seed)
             for name, seed in (("a", 11), ("b", 11), ("c", 12))]
    first, second, other = (_load(p) for p in paths)
    assert first == second
    for entry in first["images"]:
        files = [(p.parent / "images" / entry["file_name"]).read_bytes() for p in paths]
        assert files[0] == files[1]
    assert first["annotations"] != other["annotations"]


def test_excluded_donor_images_never_appear(synthesized, shared_data, tmp_path):
    path, excluded = synthesized
    data = _load(path)
    used = {a["synthesis"]["donor_image_id"] for a in data["annotations"] if a["synthesis"]["source"] == "donor"}
    assert excluded and used and not used & set(excluded)
    for entry in data["images"]:  # base and donors are the same file here: never paste a person into its own picture
        donors = [a for a in data["annotations"] if a["image_id"] == entry["id"] and a["synthesis"]["source"] == "donor"]
        assert all(a["synthesis"]["donor_image_id"] != entry["synthesis"]["base_image_id"] for a in donors)
        assert len({a["synthesis"]["donor_ann_id"] for a in donors}) == len(donors)  # no donor twice
    assert data["info"]["sources"]["donors"]["excluded_image_ids"] == excluded
    ann, images = _mini(shared_data)
    with pytest.raises(DataError, match="no non-crowd person .* is left"):
        synthesize_crowds(ann, images, ann, images, tmp_path, count=1, exclude_donor_image_ids=_donor_image_ids(ann))


def test_bad_inputs_name_the_file(shared_data, tmp_path):
    ann, images = _mini(shared_data)
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="nope.json does not exist"):
        synthesize_crowds(missing, images, ann, images, tmp_path / "out", count=1)
    with pytest.raises(DataError, match=r"image file\(s\) it names are missing"):
        synthesize_crowds(ann, images, ann, tmp_path, tmp_path / "out", count=1)
    data = _load(ann)
    for person in data["annotations"]:
        person.pop("segmentation", None)
    no_masks = tmp_path / "no_segmentation.json"
    no_masks.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no_segmentation.json.*lack a polygon 'segmentation'"):
        synthesize_crowds(ann, images, no_masks, images, tmp_path / "out", count=1)
    crowdpose = shared_data / "crowdpose" / "mmpose_crowdpose"
    with pytest.raises(DataError, match="crowdpose.json.*needs COCO-17"):
        synthesize_crowds(crowdpose / "crowdpose.json", crowdpose / "images", ann, images, tmp_path / "out", count=1)
    for bad in ({"count": 0}, {"count": 2, "max_pasted": 0}):
        with pytest.raises(ConfigError):
            synthesize_crowds(ann, images, ann, images, tmp_path / "out", **{"count": 1, **bad})
