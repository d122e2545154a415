"""COCO / CrowdPose keypoint evaluation on the real example files, OKS, crowd index, mapping, bad inputs."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from xtcocotools.coco import COCO
from xtcocotools.cocoeval import COCOeval

from sdpose_core.errors import DataError
from sdpose_core.evaluation import (
    SHARED_CROWDPOSE_JOINTS,
    coco_keypoints_to_crowdpose,
    coco_results_to_crowdpose,
    compute_crowd_index,
    compute_oks,
    crowd_bucket,
    crowd_index,
    eval_preds,
    evaluate_coco_on_crowdpose,
    evaluate_predictions,
    format_metrics,
    oks_area,
    per_image_ap,
    to_coco_results,
)
from sdpose_core.keypoints import COCO17, CROWDPOSE14

COCO_REFERENCE = {"AP": 0.86089, "AP50": 0.99315, "AP75": 0.91089, "APM": 0.77558, "APL": 0.93725, "AR": 0.87500}
CROWDPOSE_REFERENCE = {
    "AP": 0.78772, "AP50": 0.98812, "AP75": 0.73144, "AR": 0.82222,
    "AP_easy": 1.0000, "AP_medium": 0.9802, "AP_hard": 0.4116,
}


@pytest.fixture(scope="module")
def coco_example(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "coco" / "eval_example"
    return folder / "example_coco_val.json", folder / "example_coco_preds.json"


@pytest.fixture(scope="module")
def crowdpose_example(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "crowdpose" / "eval_example"
    return folder / "example_crowdpose_val.json", folder / "example_crowdpose_preds.json"


def _load(path: Path) -> object:
    return json.loads(path.read_text())


def _gt_as_predictions(ann: dict) -> list[dict]:
    """Every labelled person as a perfect prediction (joint score 1 where labelled)."""
    results = []
    for person in ann["annotations"]:
        keypoints = np.asarray(person["keypoints"], dtype=np.float64).reshape(-1, 3)
        keypoints[:, 2] = (keypoints[:, 2] > 0).astype(np.float64)
        if keypoints[:, 2].any():
            results += to_coco_results([person["image_id"]], keypoints[None], [1.0])
    return results


# --- reference numbers -------------------------------------------------------------------------------

def test_coco_example_matches_reference(coco_example: tuple[Path, Path]) -> None:
    metrics = evaluate_predictions(*coco_example, dataset="coco")
    for name, expected in COCO_REFERENCE.items():
        assert metrics[name] == pytest.approx(expected, abs=1e-4), name
    assert set(metrics) == {"AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"}


def test_crowdpose_example_matches_reference(crowdpose_example: tuple[Path, Path]) -> None:
    metrics = evaluate_predictions(*crowdpose_example, dataset="crowdpose")
    for name, expected in CROWDPOSE_REFERENCE.items():
        assert metrics[name] == pytest.approx(expected, abs=1e-4), name
    assert set(metrics) == {"AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard"}


def test_crowdpose_summary_agrees_with_xtcocotools_summarize(crowdpose_example: tuple[Path, Path]) -> None:
    # The library's own summary (file-based, buckets split at 0.2/0.8) sees the same partition here.
    ann_path, preds_path = crowdpose_example
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ann_path))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(preds_path)), "keypoints_crowd",
                             CROWDPOSE14.sigmas_array(), use_area=False)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = evaluate_predictions(ann_path, preds_path, dataset="crowdpose")
    assert list(ours.values()) == pytest.approx(list(evaluator.stats), abs=1e-4)


def test_dict_and_list_inputs_are_not_modified(coco_example: tuple[Path, Path]) -> None:
    ann, preds = _load(coco_example[0]), _load(coco_example[1])
    ann_before, preds_before = copy.deepcopy(ann), copy.deepcopy(preds)
    metrics = evaluate_predictions(ann, preds, dataset="auto")
    assert metrics["AP"] == pytest.approx(COCO_REFERENCE["AP"], abs=1e-4)
    assert ann == ann_before and preds == preds_before
    # a second run on the same objects gives the same numbers (nothing leaked between runs)
    assert evaluate_predictions(ann, preds) == metrics
    # results built in code may carry numpy arrays and scalars
    typed = [{**p, "keypoints": np.asarray(p["keypoints"], dtype=np.float32), "score": np.float32(p["score"]),
              "image_id": np.int64(p["image_id"])} for p in preds]
    assert evaluate_predictions(ann, typed)["AP"] == pytest.approx(metrics["AP"], abs=1e-4)


def test_ground_truth_as_predictions_scores_one(coco_example: tuple[Path, Path]) -> None:
    ann = _load(coco_example[0])
    metrics = evaluate_predictions(ann, _gt_as_predictions(ann), dataset="coco")
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)


# --- OKS, per-image AP, crowd index --------------------------------------------------------------------

@pytest.mark.parametrize("which", ["coco", "crowdpose"])
def test_compute_oks_matches_cocoeval(which: str, coco_example, crowdpose_example) -> None:
    ann_path, preds_path = coco_example if which == "coco" else crowdpose_example
    layout, use_area = (COCO17, True) if which == "coco" else (CROWDPOSE14, False)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ann_path))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(preds_path)),
                             "keypoints" if use_area else "keypoints_crowd", layout.sigmas_array(), use_area=use_area)
        evaluator.evaluate()
    preds = _load(preds_path)
    for image_id in coco_gt.getImgIds():
        people = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id]))
        dets = [p for p in preds if p["image_id"] == image_id]
        dets = [dets[i] for i in np.argsort([-d["score"] for d in dets], kind="mergesort")][:20]
        library = evaluator.ious[(image_id, 1)]
        if len(dets) == 0:
            continue
        ours = compute_oks(
            np.array([p["keypoints"] for p in people]),
            np.array([oks_area(p, use_area) for p in people]),
            np.array([d["keypoints"] for d in dets]),
            layout.sigmas,
            gt_boxes=np.array([p["bbox"] for p in people]),
        )
        np.testing.assert_allclose(ours.T, library, rtol=1e-10, atol=1e-12)


def test_per_image_ap(crowdpose_example: tuple[Path, Path], coco_example: tuple[Path, Path]) -> None:
    scores = per_image_ap(*crowdpose_example, dataset="crowdpose")
    assert set(scores) == {114203, 104173, 107292, 115625}
    # 107292 is the only hard image and 115625 the only easy one: their AP is the bucket's AP.
    assert scores[107292] == pytest.approx(CROWDPOSE_REFERENCE["AP_hard"], abs=1e-4)
    assert scores[115625] == pytest.approx(1.0)
    ann = _load(coco_example[0])
    perfect = per_image_ap(ann, _gt_as_predictions(ann))
    assert all(value == pytest.approx(1.0) for value in perfect.values())
    real = per_image_ap(ann, _load(coco_example[1]))
    assert min(real.values()) < 0.95


def test_crowd_index_recomputed_from_annotations(shared_data: Path) -> None:
    files = [shared_data / "crowdpose" / "eval_example" / "example_crowdpose_val.json",
             shared_data / "crowdpose" / "mmpose_crowdpose" / "crowdpose.json"]
    checked = 0
    for path in files:
        ann = _load(path)
        for image in ann["images"]:
            people = [a for a in ann["annotations"] if a["image_id"] == image["id"]]
            assert compute_crowd_index(people) == pytest.approx(image["crowdIndex"], abs=0.005 + 1e-9)
            stripped = {k: v for k, v in image.items() if k != "crowdIndex"}
            assert crowd_index(stripped, people) == pytest.approx(image["crowdIndex"], abs=1e-9)
            assert crowd_index(image) == image["crowdIndex"]
            checked += 1
    assert checked == 6
    with pytest.raises(KeyError):
        crowd_index({"id": 1})


def test_crowd_buckets() -> None:
    assert [crowd_bucket(v) for v in (0.0, 0.099, 0.1, 0.5, 0.8, 0.81, 1.5)] == [
        "easy", "easy", "medium", "medium", "medium", "hard", "hard"]
    assert crowd_bucket(0.15, thresholds=(0.2, 0.8)) == "easy"


def test_buckets_without_crowd_index_are_computed(crowdpose_example: tuple[Path, Path]) -> None:
    ann = _load(crowdpose_example[0])
    for image in ann["images"]:
        del image["crowdIndex"]
    metrics = evaluate_predictions(ann, _load(crowdpose_example[1]), dataset="crowdpose")
    for name in ("AP_easy", "AP_medium", "AP_hard"):
        assert metrics[name] == pytest.approx(CROWDPOSE_REFERENCE[name], abs=1e-4)


# --- COCO-17 model on CrowdPose-14 ground truth --------------------------------------------------------

def _crowdpose_gt_as_coco_predictions(ann: dict) -> list[dict]:
    results = []
    for person in ann["annotations"]:
        crowd = np.asarray(person["keypoints"], dtype=np.float64).reshape(14, 3)
        coco = np.zeros((17, 3))
        for crowd_joint in SHARED_CROWDPOSE_JOINTS:
            coco[crowd_joint + 5, :2] = crowd[crowd_joint, :2]
            coco[crowd_joint + 5, 2] = float(crowd[crowd_joint, 2] > 0)
        if coco[:, 2].any():
            results += to_coco_results([person["image_id"]], coco[None], [1.0])
    return results


@pytest.mark.parametrize("name", ["eval_example/example_crowdpose_val.json", "mmpose_crowdpose/crowdpose.json"])
def test_coco_predictions_on_crowdpose_shared_joints(shared_data: Path, name: str) -> None:
    ann = _load(shared_data / "crowdpose" / name)
    predictions = _crowdpose_gt_as_coco_predictions(ann)
    metrics = evaluate_coco_on_crowdpose(ann, predictions, head_neck="drop")
    for key in ("AP", "AP50", "AP75", "AR"):
        assert metrics[key] == pytest.approx(1.0, abs=1e-6), key
    # Scoring the zero-filled head_top/neck as if they were predictions must cost AP: that is
    # why "drop" leaves them out.
    naive = evaluate_predictions(ann, coco_results_to_crowdpose(predictions), dataset="crowdpose")
    assert naive["AP"] < 0.9


def test_person_labelled_only_at_head_and_neck_is_ignored_on_shared_joints(crowdpose_example) -> None:
    ann = _load(crowdpose_example[0])
    predictions = _crowdpose_gt_as_coco_predictions(ann)
    head_and_neck_only = np.zeros((14, 3))
    head_and_neck_only[12:] = [(300.0, 150.0, 1.0), (300.0, 190.0, 1.0)]
    ann["annotations"].append({
        "id": 999001, "image_id": 115625, "category_id": 1, "iscrowd": 0, "num_keypoints": 2,
        "keypoints": head_and_neck_only.reshape(-1).tolist(), "bbox": [270.0, 140.0, 60.0, 60.0],
    })
    # Nothing of that person is scored on the 12 shared joints, so nobody is missed.
    assert evaluate_coco_on_crowdpose(ann, predictions)["AR"] == pytest.approx(1.0)


def test_coco_to_crowdpose_joint_mapping_and_synthesis() -> None:
    coco = np.zeros((17, 3))
    coco[:, 2] = 0.5
    coco[5] = (0.0, 10.0, 0.8)   # left_shoulder
    coco[6] = (4.0, 10.0, 0.6)   # right_shoulder
    coco[16] = (7.0, 30.0, 0.9)  # right_ankle
    coco[0:5, :2] = [(2.0, 5.0), (1.0, 4.0), (3.0, 4.0), (0.0, 6.0), (4.0, 6.0)]  # face, centre (2, 5)
    dropped = coco_keypoints_to_crowdpose(coco, "drop")
    np.testing.assert_array_equal(dropped[0], coco[5])
    np.testing.assert_array_equal(dropped[11], coco[16])
    np.testing.assert_array_equal(dropped[12:], 0.0)
    built = coco_keypoints_to_crowdpose(coco[None, None], "synthesize")[0, 0]
    np.testing.assert_allclose(built[13], (2.0, 10.0, 0.6))  # neck: shoulder midpoint, lower score
    np.testing.assert_allclose(built[12], (2.0, 2.5, 0.5))   # head_top: centre + 0.5 (centre - neck)
    with pytest.raises(ValueError):
        coco_keypoints_to_crowdpose(coco, "guess")


# --- bad inputs -----------------------------------------------------------------------------------------

def _write(tmp_path: Path, name: str, content: object | str) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_eval_preds_on_files(coco_example: tuple[Path, Path]) -> None:
    metrics = eval_preds(*coco_example, "coco")
    assert metrics["AP"] == pytest.approx(COCO_REFERENCE["AP"], abs=1e-4)
    assert eval_preds(*coco_example, None) == metrics


def _bad_cases(tmp_path: Path, ann_path: Path, preds: list[dict], crowd_preds_path: Path):
    good = preds[0]
    yield "not found", tmp_path / "missing.json", ann_path
    yield "not valid JSON", _write(tmp_path, "broken.json", '[{"image_id": 785,'), ann_path
    yield "must be a JSON list", _write(tmp_path, "dict.json", {"results": preds}), ann_path
    yield "lacks ['score']", _write(tmp_path, "noscore.json", [{k: v for k, v in good.items() if k != "score"}]), ann_path
    yield "is a str", _write(tmp_path, "strings.json", ["785"]), ann_path
    yield "needs 51", crowd_preds_path, ann_path
    yield "not in the annotations", _write(tmp_path, "ids.json", [{**good, "image_id": 123456789}]), ann_path
    yield "is empty", _write(tmp_path, "empty.json", []), ann_path
    yield "category_id", _write(tmp_path, "cat.json", [{**good, "category_id": 2}]), ann_path
    yield "finite number", _write(tmp_path, "nan.json", json.dumps([{**good, "score": math.nan}])), ann_path
    yield "finite numbers", _write(tmp_path, "kpstr.json", [{**good, "keypoints": ["1"] * 51}]), ann_path
    yield "annotation file not found", _write(tmp_path, "ok.json", preds), tmp_path / "no_ann.json"
    yield "no 'images' list", _write(tmp_path, "ok2.json", preds), _write(tmp_path, "ann_bad.json", {"x": 1})


def test_eval_preds_rejects_bad_inputs(tmp_path: Path, coco_example, crowdpose_example) -> None:
    ann_path = coco_example[0]
    preds = _load(coco_example[1])
    cases = list(_bad_cases(tmp_path, ann_path, preds, crowdpose_example[1]))
    assert len(cases) == 13
    for expected, preds_path, case_ann in cases:
        with pytest.raises(DataError, match=re.escape(expected)):
            eval_preds(case_ann, preds_path, "coco")


def test_dataset_mismatch_and_unknown(coco_example: tuple[Path, Path]) -> None:
    with pytest.raises(DataError, match="pass dataset='coco'"):
        eval_preds(*coco_example, "crowdpose")
    with pytest.raises(DataError, match="unknown dataset"):
        eval_preds(*coco_example, "mpii")


def test_coco_ground_truth_needs_area(coco_example: tuple[Path, Path]) -> None:
    ann = _load(coco_example[0])
    del ann["annotations"][0]["area"]
    with pytest.raises(DataError, match="area"):
        evaluate_predictions(ann, _load(coco_example[1]), dataset="coco")
    with pytest.raises(DataError, match="keypoint_subset"):
        evaluate_predictions(_load(coco_example[0]), _load(coco_example[1]), keypoint_subset=[0, 17])


def test_format_metrics() -> None:
    table = format_metrics({"AP": 0.86089, "AP_easy": -1.0}, title="coco")
    lines = table.splitlines()
    assert lines[0] == "coco"
    assert lines[3].split() == ["AP", "0.8609"]
    assert lines[4].split() == ["AP_easy", "n/a"]
