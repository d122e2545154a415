"""Teacher pseudo-labels: the confidence rules, duplicate removal, boxes, and a real run on shared photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sdpose_core.errors import DataError
from sdpose_core.inference.media import collect_media
from sdpose_core.inference.pseudo_label import (
    BoxMargins,
    PseudoLabelConfig,
    box_from_keypoints,
    holdout_path,
    iter_sources,
    keypoint_box_margins,
    pseudo_label,
    select_person,
)
from sdpose_core.media.images import IMAGE_SUFFIXES
from sdpose_core.media.video import VIDEO_SUFFIXES


def upright_person(height: float = 200.0, score: float = 0.9) -> np.ndarray:
    """17 COCO joints of a standing person centred at x=100, head at y=20."""
    ys = np.array([20, 15, 15, 18, 18, 50, 50, 90, 90, 125, 125, 130, 130, 175, 175, 215, 215], float)
    ys = 20 + (ys - 15) * height / 200.0
    xs = np.array([100, 95, 105, 90, 110, 80, 120, 75, 125, 72, 128, 88, 112, 88, 112, 88, 112], float)
    return np.stack([xs, ys, np.full(17, score)], axis=1)


def test_confident_person_is_kept_with_v2_and_low_joints_unlabelled() -> None:
    kps = upright_person()
    kps[9, 2] = 0.2  # left wrist unsure
    out = select_person(kps, (300, 200), PseudoLabelConfig())
    assert out is not None
    assert out[9].tolist() == [0, 0, 0] and set(out[:, 2]) == {0, 2}
    assert np.allclose(out[out[:, 2] > 0, :2], kps[out[:, 2] > 0, :2])


@pytest.mark.parametrize("change", ["few_joints", "no_hips", "outside", "tiny"])
def test_unconfident_people_are_dropped(change: str) -> None:
    kps = upright_person()
    shape = (300, 200)
    if change == "few_joints":
        kps[:10, 2] = 0.1
    elif change == "no_hips":
        kps[[11, 12], 2] = 0.3
    elif change == "outside":
        kps[:, 0] += 500  # joints beyond the image are never labelled
    else:
        kps = upright_person(height=30)
    assert select_person(kps, shape, PseudoLabelConfig()) is None


def test_box_grows_by_margins_and_stays_in_image() -> None:
    kps = upright_person()
    kps[:, 2] = 2
    margins = BoxMargins(left=0.1, right=0.1, top=0.2, bottom=0.0)
    x, y, w, h = box_from_keypoints(kps, (300, 200), margins)
    span = kps[:, 1].max() - kps[:, 1].min()
    assert y == pytest.approx(max(0.0, kps[:, 1].min() - 0.2 * span), abs=0.01)
    assert x == pytest.approx(kps[:, 0].min() - 0.1 * span, abs=0.01)
    assert y + h == pytest.approx(kps[:, 1].max(), abs=0.01)
    assert x >= 0 and y >= 0 and x + w <= 199 and y + h <= 299


def test_margins_are_measured_on_real_coco_boxes(shared_data: Path) -> None:
    m = keypoint_box_margins(shared_data / "coco" / "coco_mini_train" / "person_keypoints.json")
    assert m.people >= 10
    # a COCO box is tight around the person: head and feet stick out of the joint extent, a little
    assert 0.02 < m.top < 0.3 and 0.02 < m.bottom < 0.3 and 0.0 < m.left < 0.2
    assert 0.3 < m.area_ratio < 0.8


class FakeTeacherTwice:
    """Returns the same person for two overlapping boxes: what a doubled detection gives."""

    def predict(self, image, boxes):
        from sdpose_core.inference.baselines import PosePrediction

        kps = upright_person().astype(np.float32)
        return [PosePrediction(kps + i * 0.5, np.asarray(b, np.float32), True) for i, b in enumerate(boxes)]


class TwoBoxes:
    def detect(self, image):
        from sdpose_core.detection.ssdlite import Detection

        return [Detection(np.array([60, 0, 80, 240.0]), 0.9), Detection(np.array([62, 2, 80, 238.0]), 0.8)]


def test_duplicate_people_are_removed_and_counted(tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((300, 200, 3), 128, np.uint8))
    counts = pseudo_label(folder, tmp_path / "out.json", teacher=FakeTeacherTwice(), detector=TwoBoxes(),
                          progress=False)
    data = json.loads((tmp_path / "out.json").read_text())
    assert counts["people_kept"] == 1 and counts["dropped_duplicate"] == 1
    assert len(data["annotations"]) == 1 and data["images"][0]["file_name"] == "a.jpg"


def test_bad_sources_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        pseudo_label(tmp_path / "nope", tmp_path / "o.json", teacher=object(), detector=object())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        pseudo_label(tmp_path / "empty", tmp_path / "o.json", teacher=object(), detector=object())
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "clip.mp4").write_bytes(b"")
    with pytest.raises(DataError, match="--frames-dir"):
        pseudo_label(tmp_path / "v", tmp_path / "o.json", teacher=object(), detector=object())


def test_pseudo_label_takes_the_same_media_files_as_predict(tmp_path: Path) -> None:
    """One suffix rule (media.images.IMAGE_SUFFIXES, media.video.VIDEO_SUFFIXES) for `sdpose predict` and
    `sdpose pseudo-label`: every image type cv2 writes is listed by both (upper-case suffixes too), other files
    are skipped, and a .m4v is a video for both."""
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    picture = np.full((40, 30, 3), 90, np.uint8)
    for index, suffix in enumerate(IMAGE_SUFFIXES):
        name = f"p{index}{suffix.upper() if index % 2 else suffix}"
        assert cv2.imwrite(str(folder / name), picture), name
    (folder / "notes.txt").write_text("not media")
    listed = [item.file_name for item in iter_sources(folder, PseudoLabelConfig(), None)]
    assert listed == sorted(p.name for p in folder.iterdir() if p.suffix != ".txt")
    assert [p.name for p, kind in collect_media(folder) if kind == "image"] == listed
    assert ".m4v" in VIDEO_SUFFIXES
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.M4V").write_bytes(b"")
    assert collect_media(videos) == [(videos / "clip.M4V", "video")]
    with pytest.raises(DataError, match="--frames-dir"):  # a video: its frames need somewhere to go
        list(iter_sources(videos, PseudoLabelConfig(), None))


def test_real_teacher_labels_shared_photos(shared_data: Path, tmp_path: Path) -> None:
    """MediaPipe + SSDLite on real street photos: loadable COCO, joints inside boxes, provenance recorded."""
    from pycocotools.coco import COCO

    out = tmp_path / "ccp.json"
    cfg = PseudoLabelConfig(holdout_every=2)
    counts = pseudo_label(shared_data / "unlabeled" / "ccp_fullbody", out, cfg, limit=4, progress=False)
    assert counts["images_seen"] == 4 and counts["people_kept"] >= 3
    coco = COCO(str(out))
    held = json.loads(holdout_path(out).read_text())
    assert len(coco.getImgIds()) + len(held["images"]) == counts["images_kept"]
    assert held["images"], "every 2nd image is held out"
    for ann in coco.dataset["annotations"] + held["annotations"]:
        kps = np.asarray(ann["keypoints"]).reshape(17, 3)
        labelled = kps[:, 2] > 0
        assert set(kps[:, 2]) <= {0, 2} and labelled.sum() == ann["num_keypoints"] >= 8
        x, y, w, h = ann["bbox"]
        assert (kps[labelled, 0] >= x - 0.01).all() and (kps[labelled, 0] <= x + w + 0.01).all()
        assert (kps[labelled, 1] >= y - 0.01).all() and (kps[labelled, 1] <= y + h + 0.01).all()
    info = coco.dataset["info"]
    assert "mediapipe" in info["teacher"] and info["config"]["joint_threshold"] == 0.5
    assert info["counts"]["images_seen"] == 4


def test_unknown_teacher_is_named() -> None:
    from sdpose_core.errors import ConfigError
    from sdpose_core.inference.pseudo_label import TEACHERS, build_teacher

    assert TEACHERS == ("mediapipe", "pp-tinypose")
    with pytest.raises(ConfigError, match="unknown teacher 'blazepose'.*pp-tinypose"):
        build_teacher("blazepose")


def test_pp_tinypose_labels_real_multi_person_photos(shared_data: Path, tmp_path: Path) -> None:
    """PP-TinyPose (256x192, flip) on RTMDet-nano boxes over six real HAR photos (four of two or more people
    fighting): people are found, every kept one has a torso and >= 8 confident joints, and each annotation
    records the teacher's score per labelled joint."""
    import shutil

    from sdpose_core.detection import build_detector
    from sdpose_core.detection.factory import find_detector_file
    from sdpose_core.inference import tinypose

    if tinypose.available() is not None:
        pytest.skip(tinypose.available())
    if find_detector_file("rtmdet-nano") is None:
        pytest.skip("rtmdet_nano_person.onnx not found (../shared/detectors or SDPOSE_DETECTORS)")
    har = shared_data / "unlabeled" / "har_actions"
    folder = tmp_path / "har"
    folder.mkdir()
    names = [f"fighting_Image_{n}.jpg" for n in (100, 1006, 1060, 1068)] + ["sitting_Image_1.jpg",
                                                                             "cycling_Image_1.jpg"]
    names = [n for n in names if (har / n).is_file()]
    assert len(names) >= 5, f"expected HAR photos missing from {har}"
    for name in names:
        shutil.copy(har / name, folder / name)
    out = tmp_path / "har.json"
    counts = pseudo_label(folder, out, teacher="pp-tinypose", detector=build_detector("rtmdet-nano"), progress=False)
    data = json.loads(out.read_text())
    assert counts["images_seen"] == len(names) and counts["people_kept"] >= len(names)
    fighting_ids = {im["id"] for im in data["images"] if im["file_name"].startswith("fighting")}
    per_image = [sum(a["image_id"] == i for a in data["annotations"]) for i in fighting_ids]
    assert max(per_image) >= 2, "two fighters found in at least one photo"
    for ann in data["annotations"]:
        kps = np.asarray(ann["keypoints"]).reshape(17, 3)
        labelled = kps[:, 2] > 0
        assert labelled.sum() == ann["num_keypoints"] >= 8
        assert labelled[[5, 6]].any() and labelled[[11, 12]].any(), "a shoulder and a hip: the torso rule"
        scores = np.asarray(ann["keypoint_scores"])
        assert (scores[labelled] >= 0.5).all() and (scores[~labelled] == 0).all()
    assert data["info"]["teacher"].startswith("pp-tinypose: PP-TinyPose 256x192")
    assert data["info"]["detector"].startswith("RTMDet-nano")
    assert "keypoint_scores" in data["info"]["rules"]
