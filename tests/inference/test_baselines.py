"""MediaPipe BlazePose baseline: landmark mapping to COCO-17 checked against real annotations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sdpose_core.detection import Detection
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.inference.baselines import BLAZEPOSE_TO_COCO17, MediaPipePose
from sdpose_core.keypoints import COCO17
from sdpose_core.media.images import load_image

SPLIT = "coco/mmpose_coco"


@pytest.fixture(scope="module")
def pose() -> Iterator[MediaPipePose]:
    pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install mediapipe==0.10.21)")
    with MediaPipePose() as model:
        yield model


def _people(shared_data: Path, min_visible: int) -> list[tuple[Path, dict]]:
    data = json.loads((shared_data / SPLIT / "person_keypoints.json").read_text())
    files = {image["id"]: shared_data / SPLIT / "images" / image["file_name"] for image in data["images"]}
    return [(files[ann["image_id"]], ann) for ann in data["annotations"]
            if not ann["iscrowd"] and sum(v == 2 for v in ann["keypoints"][2::3]) >= min_visible]


def _mean_error(predicted: np.ndarray, ann: dict) -> float:
    """Mean distance over the annotated joints, in units of sqrt(box area)."""
    truth = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    labelled = truth[:, 2] > 0
    scale = np.sqrt(ann["bbox"][2] * ann["bbox"][3])
    return float(np.linalg.norm(predicted[labelled, :2] - truth[labelled, :2], axis=1).mean() / scale)


def test_mapping_follows_mediapipe_landmark_names() -> None:
    mp_pose = pytest.importorskip("mediapipe.python.solutions.pose", reason="mediapipe not installed")
    for joint, landmark in zip(COCO17.joints, BLAZEPOSE_TO_COCO17, strict=True):
        assert mp_pose.PoseLandmark[joint.upper()].value == landmark, joint


def test_only_the_offline_model_complexity_is_accepted() -> None:
    for complexity in (0, 2):
        with pytest.raises(ConfigError, match="model_complexity=1"):
            MediaPipePose(model_complexity=complexity)


def test_crop_region_pads_the_box_and_clips_to_the_image() -> None:
    model = MediaPipePose(padding=0.25)
    assert model.crop_region(np.array([40, 20, 40, 80]), (200, 300)) == (30, 0, 90, 120)
    assert model.crop_region(np.array([250, 150, 100, 100]), (200, 300)) == (225, 125, 300, 200)


def test_keypoints_land_on_the_annotated_joints_not_their_mirror(pose: MediaPipePose, shared_data: Path) -> None:
    errors, swapped_errors = [], []
    flip = COCO17.flip_index()
    for image_path, ann in _people(shared_data, min_visible=11):
        [person] = pose.predict(load_image(image_path), [ann["bbox"]])
        assert person.found, f"no pose for annotation {ann['id']}"
        assert person.keypoints.shape == (17, 3)
        errors.append(_mean_error(person.keypoints, ann))
        swapped_errors.append(_mean_error(person.keypoints[flip], ann))
    assert len(errors) == 11
    # Measured: median 0.048 (worst 0.089) of sqrt(box area); with left/right swapped at least 0.106.
    assert np.median(errors) < 0.07 and max(errors) < 0.15, errors
    pairs = list(zip(errors, swapped_errors, strict=True))
    assert all(e < s for e, s in pairs), pairs


def test_frontal_person_left_shoulder_is_predicted_on_the_left_shoulder(pose: MediaPipePose,
                                                                         shared_data: Path) -> None:
    [(image_path, ann)] = [p for p in _people(shared_data, 17) if p[1]["id"] == 442619]
    truth = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
    assert truth[5, 0] > truth[6, 0]  # facing the camera: the person's left is on the image's right
    [person] = pose.predict(load_image(image_path), np.array([ann["bbox"]]))
    for left in (5, 11):  # shoulder, hip
        right = left + 1
        to_left = np.linalg.norm(person.keypoints[left, :2] - truth[left, :2])
        to_right = np.linalg.norm(person.keypoints[left, :2] - truth[right, :2])
        assert to_left < to_right / 2, COCO17.joints[left]
    assert person.keypoints[:, 2].min() >= 0 and person.keypoints[:, 2].max() <= 1


def test_box_inputs_and_empty_results(pose: MediaPipePose, shared_data: Path) -> None:
    image = load_image(shared_data / SPLIT / "images" / "000000000785.jpg")
    box = np.array([281.0, 45.0, 219.0, 347.0], dtype=np.float32)
    from_detection = pose.predict(image, [Detection(box_xywh=box, score=0.9)])
    from_array = pose(image, box)
    np.testing.assert_allclose(from_detection[0].keypoints, from_array[0].keypoints)
    np.testing.assert_array_equal(from_array[0].box_xywh, box)
    assert pose.predict(image, []) == []
    whole = pose.predict(image)  # no boxes: the whole image is the person's box
    np.testing.assert_array_equal(whole[0].box_xywh, [0, 0, image.shape[1], image.shape[0]])
    with pytest.raises(DataError, match="boxes"):
        pose.predict(image, np.zeros((2, 3)))

    [nobody] = pose.predict(np.full((240, 200, 3), 127, np.uint8))
    assert not nobody.found
    assert not nobody.keypoints.any() and nobody.score == 0.0


def test_evaluate_baseline_scores_mediapipe_like_our_models(pose: MediaPipePose, shared_data: Path,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sdpose_core.cli.main import main
    from sdpose_core.evaluation import eval_preds

    ann = shared_data / SPLIT / "person_keypoints.json"
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--baseline", "mediapipe", "--ann", str(ann), "--images",
                 str(shared_data / SPLIT / "images"), "--out", str(out), "--save-preds", str(tmp_path / "p")])
    assert code == 0
    assert "mediapipe" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["num_instances"] == 12 and report["boxes_kind"] == "GT"  # the samples `sdpose evaluate` uses
    metrics = report["metrics"]["mediapipe"]
    # Measured: AP 0.497 (pose found for 10 of 12); BlazePose on these crops is a weak but real baseline.
    assert 0.35 < metrics["AP"] < 0.65 and report["poses_found"] >= 9, metrics
    results = json.loads((tmp_path / "p_mediapipe.json").read_text())
    assert len(results) == 12 and {len(r["keypoints"]) for r in results} == {51}
    assert eval_preds(str(ann), str(tmp_path / "p_mediapipe.json"))["AP"] == pytest.approx(metrics["AP"])


def test_evaluate_needs_weights_or_a_baseline_and_not_both(shared_data: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from sdpose_core.cli.main import main

    common = ["--ann", str(shared_data / SPLIT / "person_keypoints.json"), "--images", str(shared_data / SPLIT)]
    assert main(["evaluate", *common]) == 2
    assert "--weights" in capsys.readouterr().err
    assert main(["evaluate", "--baseline", "mediapipe", "--cycles", "2", *common]) == 2
    assert "takes no --cycles" in capsys.readouterr().err
