"""Filling a labelled COCO file's unlabelled joints with a teacher: ground-truth joints never change, only v=0
joints the teacher is confident about (inside the image) are filled, on real coco_mini_train people."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sdpose_core.data.teacher_sets import fill_unlabelled
from sdpose_core.errors import DataError
from sdpose_core.inference.baselines import PosePrediction


@pytest.fixture(scope="module")
def coco_mini(shared_data: Path) -> tuple[dict, Path]:
    folder = shared_data / "coco" / "coco_mini_train"
    return json.loads((folder / "person_keypoints.json").read_text()), folder / "images"


class ShiftedTeacher:
    """Predicts every joint (labelled or not) 3 px right of the box centre or of the GT joint, with a score that
    alternates 0.9 / 0.3 by joint: a teacher that would overwrite ground truth if the rule let it."""

    name = "shifted"

    def __init__(self, coco: dict) -> None:
        self.by_box = {tuple(a["bbox"]): a for a in coco["annotations"]}

    def predict(self, image, boxes):
        people = []
        for box in boxes:
            ann = self.by_box[tuple(box.tolist())]
            kps = np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3).copy()
            x, y, w, h = box
            kps[kps[:, 2] == 0, :2] = [x + w / 2, y + h / 2]
            kps[:, 0] += 3
            kps[:, 2] = np.where(np.arange(17) % 2 == 0, 0.9, 0.3)
            people.append(PosePrediction(kps.astype(np.float32), np.asarray(box, np.float32), True))
        return people


def test_ground_truth_joints_never_change_and_only_confident_v0_joints_are_filled(coco_mini: tuple[dict, Path]) -> None:
    coco, images = coco_mini
    filled, counts = fill_unlabelled(coco, images, ShiftedTeacher(coco), threshold=0.5, progress=False)
    assert json.loads(json.dumps(coco)) == coco, "the input is not modified"
    considered = [a for a in coco["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    assert counts["people_considered"] == len(considered) == 86
    widths = {im["id"]: im["width"] for im in coco["images"]}
    gained = 0
    for before, after in zip(coco["annotations"], filled["annotations"], strict=True):
        gt = np.asarray(before["keypoints"], dtype=float).reshape(17, 3)
        new = np.asarray(after["keypoints"], dtype=float).reshape(17, 3)
        labelled = gt[:, 2] > 0
        assert (new[labelled] == gt[labelled]).all(), f"annotation {before['id']}: a GT joint changed"
        if before["iscrowd"] or before["num_keypoints"] == 0:
            assert after == before, "crowd regions and people without keypoints are left alone"
            continue
        x, y, w, h = before["bbox"]
        inside = x + w / 2 + 3 <= widths[before["image_id"]] - 1
        want = ~labelled & (np.arange(17) % 2 == 0) & inside  # unlabelled, scored 0.9, inside the image
        assert sorted(after["teacher_joints"]) == np.flatnonzero(want).tolist()
        assert (new[want, 2] == 2).all() and (new[~labelled & ~want] == 0).all()
        assert np.allclose(new[want, :2], [x + w / 2 + 3, y + h / 2], atol=0.01)
        scores = np.asarray(after["keypoint_scores"])
        assert (scores[labelled] == 1.0).all() and np.allclose(scores[want], 0.9) and (scores[~labelled & ~want] == 0).all()
        assert after["num_keypoints"] == before["num_keypoints"] + int(want.sum())
        assert after["bbox"] == before["bbox"] and after["area"] == before["area"]
        gained += int(want.sum())
    assert counts["joints_filled"] == gained > 0
    assert filled["info"]["teacher_fill"]["threshold"] == 0.5


def test_joints_outside_the_image_are_not_filled(coco_mini: tuple[dict, Path]) -> None:
    coco, images = coco_mini

    class Outside(ShiftedTeacher):
        def predict(self, image, boxes):
            people = super().predict(image, boxes)
            for person in people:
                person.keypoints[:, 0] = image.shape[1] + 10
            return people

    filled, counts = fill_unlabelled(coco, images, Outside(coco), progress=False)
    assert counts["joints_filled"] == 0
    assert [a["keypoints"] for a in filled["annotations"]] == [a["keypoints"] for a in coco["annotations"]]


def test_a_wrong_images_folder_is_named(coco_mini: tuple[dict, Path], tmp_path: Path) -> None:
    coco, _ = coco_mini
    with pytest.raises(DataError, match="does not exist"):
        fill_unlabelled(coco, tmp_path / "nope", ShiftedTeacher(coco), progress=False)
    with pytest.raises(DataError, match="is missing"):
        fill_unlabelled(coco, tmp_path, ShiftedTeacher(coco), progress=False)


def test_pp_tinypose_fills_coco_mini_train_from_the_command_line(coco_mini: tuple[dict, Path], shared_data: Path,
                                                                tmp_path: Path) -> None:
    """`sdpose pseudo-label IMAGES --fill-ann GT.json --teacher pp-tinypose` on four real images."""
    from sdpose_core.cli.main import main
    from sdpose_core.inference import tinypose

    if tinypose.available() is not None:
        pytest.skip(tinypose.available())
    coco, images = coco_mini
    keep = {im["id"] for im in coco["images"][:4]}
    small = {**coco, "images": coco["images"][:4], "annotations": [a for a in coco["annotations"]
                                                                   if a["image_id"] in keep]}
    gt_path, out = tmp_path / "gt.json", tmp_path / "filled.json"
    gt_path.write_text(json.dumps(small))
    assert main(["pseudo-label", str(images), "--fill-ann", str(gt_path), "--teacher", "pp-tinypose",
                 "--out", str(out)]) == 0
    filled = json.loads(out.read_text())
    assert filled["info"]["teacher_fill"]["counts"]["joints_filled"] > 0
    for before, after in zip(small["annotations"], filled["annotations"], strict=True):
        gt = np.asarray(before["keypoints"]).reshape(17, 3)
        new = np.asarray(after["keypoints"]).reshape(17, 3)
        assert (new[gt[:, 2] > 0] == gt[gt[:, 2] > 0]).all()
        for joint in after.get("teacher_joints", []):
            assert gt[joint, 2] == 0 and new[joint, 2] == 2 and after["keypoint_scores"][joint] >= 0.5


def test_fill_ann_refuses_options_that_do_not_apply(coco_mini: tuple[dict, Path], shared_data: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from sdpose_core.cli.main import main

    gt = shared_data / "coco" / "coco_mini_train" / "person_keypoints.json"
    assert main(["pseudo-label", str(coco_mini[1]), "--fill-ann", str(gt), "--detector", "yolox-nano",
                 "--out", str(tmp_path / "o.json")]) == 2
    assert "--detector do not apply" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
