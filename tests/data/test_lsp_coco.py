"""LSP-extended as COCO-17: the joint mapping on real LSP people, the split, the unlabelled face and area rule of
the validation file, the head check on the teacher's face joints, and `sdpose lsp-coco`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sdpose_core.data.lsp import (
    AREA_FACTOR,
    SPLITS,
    head_check,
    load_lsp,
    lsp_coco17,
    lsp_coco17_with_teacher,
    lsp_to_coco17,
)
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.keypoints import COCO17, TORSO_ORIENTATIONS, get_layout, torso_orientation


@pytest.fixture(scope="module")
def lsp(shared_data: Path) -> dict:
    path = shared_data / "lsp_extended" / "crowdpose.json"
    if not path.is_file():
        pytest.skip(f"LSP-extended not found at {path}")
    return load_lsp(path)


def test_limb_joints_land_on_the_coco_joints_of_the_same_name(lsp: dict) -> None:
    """A real LSP person (image 1, 13 labelled joints, right ankle unlabelled): each of the 12 limb joints lands on
    the COCO-17 joint with the same name; head top and neck are dropped; the face stays unlabelled."""
    names = lsp["categories"][0]["keypoints"]
    person = next(a for a in lsp["annotations"] if a["image_id"] == 1)
    src = np.asarray(person["keypoints"], dtype=float).reshape(14, 3)
    out = lsp_to_coco17(person["keypoints"])
    for index, name in enumerate(names[:12]):
        assert out[COCO17.joints.index(name)].tolist() == src[index].tolist(), name
    assert (out[:5] == 0).all()  # nose, eyes, ears
    assert names[11] == "right_ankle" and src[11, 2] == 0 and out[COCO17.joints.index("right_ankle")].tolist() == [0, 0, 0]
    head_top = src[names.index("head")]
    assert head_top[2] > 0 and not any(np.allclose(row[:2], head_top[:2]) for row in out)
    with pytest.raises(DataError, match="14 joints"):
        lsp_to_coco17(np.zeros(51))


def test_validation_split_is_ids_9001_to_10000_limbs_only_with_the_area_rule(lsp: dict) -> None:
    val = lsp_coco17(lsp, "val")
    assert [im["id"] for im in val["images"]] == list(range(9001, 10001))
    assert len(val["annotations"]) == 1000
    assert [j for j in val["categories"][0]["keypoints"]] == list(COCO17.joints)
    source = {a["id"]: a for a in lsp["annotations"]}
    for ann in val["annotations"]:
        kps = np.asarray(ann["keypoints"], dtype=float).reshape(17, 3)
        assert (kps[:5] == 0).all(), "the face is unlabelled on validation"
        src = np.asarray(source[ann["id"]]["keypoints"], dtype=float).reshape(14, 3)
        assert ann["num_keypoints"] == int((src[:12, 2] > 0).sum()) == int((kps[:, 2] > 0).sum())
        x, y, w, h = ann["bbox"]
        assert ann["bbox"] == source[ann["id"]]["bbox"]
        assert ann["area"] == pytest.approx(AREA_FACTOR * w * h, abs=0.01)
        assert set(kps[:, 2]) <= {0, 2}
    train = lsp_coco17(lsp, "train")
    ids = [im["id"] for im in train["images"]]
    assert ids == list(range(1, 9001)) and not set(ids) & {im["id"] for im in val["images"]}
    assert SPLITS == {"train": (1, 9000), "val": (9001, 10000)}
    with pytest.raises(ConfigError, match="unknown LSP split"):
        lsp_coco17(lsp, "test")
    with pytest.raises(ConfigError, match="face unlabelled"):
        lsp_coco17_with_teacher(lsp, "val", "/nowhere", teacher=object())


def test_the_validation_file_scores_with_coco_sigmas(lsp: dict) -> None:
    """COCO evaluation of the val file: the ground truth itself scores AP 1, and a prediction whose face is
    anywhere scores the same (the face is unlabelled, so it is not scored)."""
    from sdpose_core.evaluation import evaluate_predictions

    val = lsp_coco17(lsp, "val")
    val = {**val, "images": val["images"][:50], "annotations": val["annotations"][:50]}
    results = []
    for ann in val["annotations"]:
        kps = np.asarray(ann["keypoints"], dtype=float).reshape(17, 3)
        kps[:, 2] = 1.0
        kps[:5, :2] = 5.0  # a face far from any head
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kps.ravel().tolist(),
                        "score": 1.0})
    assert evaluate_predictions(val, results)["AP"] == pytest.approx(1.0)


def test_head_check_refuses_a_face_away_from_lsp_s_head(lsp: dict) -> None:
    person = next(a for a in lsp["annotations"] if a["image_id"] == 1)
    src = np.asarray(person["keypoints"], dtype=float).reshape(14, 3)
    top, neck = src[12, :2], src[13, :2]
    length = np.linalg.norm(top - neck)
    teacher = np.zeros((17, 3))
    teacher[:, :2] = (top + neck) / 2
    teacher[0, :2] += [0.5 * length, 0]  # nose half a head length away: accepted
    teacher[1, :2] += [0, 1.5 * length]  # an eye 1.5 head lengths away: refused
    check = head_check({person["id"]: person}, 1.0)
    accepted = check({"id": person["id"]}, teacher)
    assert accepted[0] and not accepted[1] and accepted[2:].all()
    headless = {**person, "keypoints": [0.0 if i >= 36 else v for i, v in enumerate(person["keypoints"])]}
    assert head_check({person["id"]: headless})({"id": person["id"]}, teacher).all()


def test_lsp_coco_command_writes_the_validation_file(lsp: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from sdpose_core.cli.main import main

    out = tmp_path / "val.json"
    assert main(["lsp-coco", "--split", "val", "--out", str(out)]) == 0
    assert "people 1000" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["annotations"] == lsp_coco17(lsp, "val")["annotations"]
    assert main(["lsp-coco", "--split", "val", "--out", str(out), "--lsp", str(tmp_path / "no")]) == 2
    assert "not found" in capsys.readouterr().err


def test_train_split_takes_confident_face_joints_from_pp_tinypose(lsp: dict, shared_data: Path) -> None:
    """The real teacher on the first 12 training people: LSP's limbs untouched, face joints only where the
    teacher scores >= 0.5, inside the image and near LSP's head."""
    from sdpose_core.inference import tinypose

    if tinypose.available() is not None:
        pytest.skip(tinypose.available())
    subset = {**lsp, "images": lsp["images"][:12], "annotations": lsp["annotations"][:12]}
    coco, counts = lsp_coco17_with_teacher(subset, "train", shared_data / "lsp_extended" / "images",
                                           tinypose.TinyPoseTeacher(), progress=False)
    plain = {a["id"]: a for a in lsp_coco17(subset, "train")["annotations"]}
    assert counts["people_considered"] == 12 and counts["joints_filled"] >= 12  # about 3 of 5 face joints each
    for ann in coco["annotations"]:
        kps = np.asarray(ann["keypoints"], dtype=float).reshape(17, 3)
        assert ann["keypoints"][15:] == plain[ann["id"]]["keypoints"][15:], "LSP's limb joints are kept exactly"
        assert set(ann["teacher_joints"]) <= set(range(5))
        scores = np.asarray(ann["keypoint_scores"])
        assert (scores[ann["teacher_joints"]] >= 0.5).all() and (kps[ann["teacher_joints"], 2] == 2).all()
        assert ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
    assert coco["info"]["teacher_fill"]["teacher"]["name"] == "pp-tinypose"


def test_torso_orientation_finds_the_inverted_athletes(lsp: dict) -> None:
    """On the 10,000 real LSP people the GT torso is upright for under half, upside down for about a fifth (the
    data README: 'a quarter of its people upside down'); turning a person by 180 degrees inverts the class, by 90
    makes it sideways, and a person without a labelled hip has no orientation."""
    layout = get_layout(14)
    people = [np.asarray(a["keypoints"], dtype=float).reshape(14, 3) for a in lsp["annotations"]]
    counts = Counter(torso_orientation(p, layout) for p in people)
    assert sum(counts.values()) == 10_000 and set(counts) <= set(TORSO_ORIENTATIONS)
    assert 0.35 < counts["upright"] / 10_000 < 0.6
    assert 0.15 < counts["upside down"] / 10_000 < 0.3
    assert counts["unknown"] / 10_000 < 0.1
    turned = {"upright": "upside down", "upside down": "upright", "sideways": "sideways"}
    checked = 0
    for person in people[:300]:
        before = torso_orientation(person, layout)
        if before == "unknown":
            continue
        labelled = person[:, 2] > 0
        half_turn = person.copy()
        half_turn[labelled, :2] = -person[labelled, :2]
        quarter_turn = person.copy()
        quarter_turn[labelled, 0], quarter_turn[labelled, 1] = -person[labelled, 1], person[labelled, 0]
        assert torso_orientation(half_turn, layout) == turned[before]
        if before != "sideways":
            assert torso_orientation(quarter_turn, layout) == "sideways"
        checked += 1
    assert checked > 250
    no_hips = people[0].copy()
    no_hips[[layout.joints.index("left_hip"), layout.joints.index("right_hip")]] = 0
    assert torso_orientation(no_hips, layout) == "unknown"
