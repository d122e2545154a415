"""PP-TinyPose (ncnn) as a baseline: clear errors without its files or the optional ncnn package, the scores
its README measured reproduced through our crops / decoding / COCO evaluation, and `sdpose benchmark`
comparing SDPose's single pass with it at the same input size."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sdpose_core.errors import ConfigError, DataError
from sdpose_core.inference import tinypose


@pytest.fixture(scope="module")
def tinypose_folder() -> Path:
    pytest.importorskip("ncnn", reason="the optional ncnn package is not installed (pip install ncnn)")
    folder = tinypose.default_folder()
    if tinypose.available((128, 96)) is not None:
        pytest.skip(f"PP-TinyPose files not found in {folder} (set SDPOSE_TEACHERS)")
    return folder


def test_missing_model_files_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=f"{tmp_path}/tinypose_128x96.param.*SDPOSE_TEACHERS"):
        tinypose.model_files((128, 96), tmp_path)
    monkeypatch.setenv("SDPOSE_TEACHERS", str(tmp_path / "teachers"))
    assert tinypose.default_folder() == (tmp_path / "teachers" / "pp_tinypose").resolve()
    assert "not found" in tinypose.available((256, 192)) or "ncnn" in tinypose.available((256, 192))
    with pytest.raises(ConfigError, match="not 100x100"):
        tinypose.model_files((100, 100))


def test_reproduces_the_ap_its_readme_measured(tinypose_folder: Path, shared_data: Path) -> None:
    """README (DARK, no flip, GT boxes, mmpose_coco): AP 0.840 at 256x192 and 0.643 at 128x96."""
    from sdpose_core.evaluation import evaluate_predictions

    folder = shared_data / "coco" / "mmpose_coco"
    ann = json.loads((folder / "person_keypoints.json").read_text())
    for size, readme_ap in (((256, 192), 0.840), ((128, 96), 0.643)):
        pose = tinypose.TinyPose(size, tinypose_folder)
        results = []
        for image in ann["images"]:
            people = [a for a in ann["annotations"]
                      if a["image_id"] == image["id"] and not a.get("iscrowd") and a["num_keypoints"] > 0]
            rgb = cv2.imread(str(folder / "images" / image["file_name"]))[:, :, ::-1]
            for keypoints in pose.predict(rgb, np.array([a["bbox"] for a in people]).reshape(-1, 4)):
                results.append({"image_id": image["id"], "category_id": 1, "keypoints": keypoints.reshape(-1).tolist(),
                                "score": float(keypoints[:, 2].mean())})
        assert len(results) == 12
        assert evaluate_predictions(ann, results)["AP"] == pytest.approx(readme_ap, abs=0.006), size
    with pytest.raises(DataError, match=r"\(N, 3, 128, 96\)"):
        pose.heatmaps(np.zeros((1, 3, 256, 192), np.float32))


@pytest.mark.slow
@pytest.mark.xdist_group("quick_benchmark")  # one worker runs the shared benchmark once
def test_benchmark_compares_the_single_pass_with_tinypose(tinypose_folder: Path, quick_benchmark) -> None:
    from sdpose_core.benchmark.report import format_report

    result, _ = quick_benchmark
    timed = result["tinypose"]["ms_per_person"]
    assert set(timed) == {"128x96", "256x192"} and min(timed.values()) > 0
    ratios = result["ratios"]
    tinypose_keys = [key for key in ratios if "tinypose" in key]
    assert set(tinypose_keys) == {"single_vs_tinypose", "best_single_vs_tinypose"}
    best = ratios["best_single_vs_tinypose"]
    assert best["input"] == "128x96" and best["best"] == pytest.approx(
        ratios["goals"]["single_pass_ms_per_person"]["best"] / timed["128x96"], rel=0.01)
    report = format_report(result)
    assert "PP-TinyPose (ncnn, 1 thread) ms/person: 256x192" in report and "single_pass_vs_tinypose" in report
    assert "single_pass_vs_mediapipe" in report or "MediaPipe:" in report
    assert result["auto_backend"]["chosen"]["cycles1"] in ("torch", "onnx-fp32", "onnx-int8", "torch-bf16")


def test_predict_answers_every_box_in_order(tinypose_folder: Path, shared_data: Path) -> None:
    """A box outside the image gets zeros in its place; the others keep their rows (teacher code zips by box)."""
    folder = shared_data / "coco" / "mmpose_coco"
    ann = json.loads((folder / "person_keypoints.json").read_text())
    image = ann["images"][0]
    boxes = [a["bbox"] for a in ann["annotations"] if a["image_id"] == image["id"] and a["num_keypoints"] > 0][:2]
    rgb = cv2.imread(str(folder / "images" / image["file_name"]))[:, :, ::-1]
    pose = tinypose.TinyPose((128, 96), tinypose_folder)
    alone = pose.predict(rgb, np.array(boxes))
    mixed = pose.predict(rgb, np.array([boxes[0], [-500.0, -500.0, 50.0, 50.0], *boxes[1:]]))
    assert mixed.shape == (len(boxes) + 1, 17, 3)
    assert (mixed[1] == 0).all() and np.allclose(mixed[[0, *range(2, len(boxes) + 1)]], alone)
    people = tinypose.TinyPoseTeacher((128, 96), folder=tinypose_folder).predict(rgb, [[-500, -500, 50, 50]])
    assert len(people) == 1 and not people[0].found


@pytest.mark.slow
def test_teacher_scores_0_511_on_lsp_extended_val(tinypose_folder: Path, shared_data: Path, tmp_path: Path) -> None:
    """The issue's figure: PP-TinyPose 256x192 with flip on LSP-extended val (ids 9001-10000 as COCO-17: the 12
    limb joints, face unlabelled, COCO sigmas, area 0.53 x box w x h) scores AP 0.511, here through the path
    `sdpose evaluate --baseline` takes (GT boxes, mmpose rescoring, xtcocotools)."""
    from sdpose_core.data.lsp import load_lsp, lsp_coco17
    from sdpose_core.evaluation.evaluate import run_baseline_evaluation

    lsp_dir = shared_data / "lsp_extended"
    if not (lsp_dir / "crowdpose.json").is_file():
        pytest.skip(f"LSP-extended not found at {lsp_dir}")
    if tinypose.available((256, 192), tinypose_folder) is not None:
        pytest.skip(tinypose.available((256, 192), tinypose_folder))
    val = tmp_path / "lsp_val_coco17.json"
    val.write_text(json.dumps(lsp_coco17(load_lsp(lsp_dir / "crowdpose.json"), "val")))
    # as many ncnn threads as torch has (tests/conftest.py: all cores, or a worker's share under pytest -n)
    teacher = tinypose.TinyPoseTeacher((256, 192), flip=True, folder=tinypose_folder, threads=torch.get_num_threads())
    report = run_baseline_evaluation(teacher, str(val), str(lsp_dir / "images"), dataset="coco")
    assert report["num_instances"] == 1000 and report["poses_found"] == 1000
    assert report["metrics"]["pp-tinypose"]["AP"] == pytest.approx(0.511, abs=0.02)


@pytest.mark.parametrize(("baseline", "split", "flip", "readme_ap"), [
    ("pp-tinypose", "coco_mini_train", True, 0.582),
    ("pp-tinypose", "coco_mini_train", False, 0.551),
    ("pp-tinypose-128x96", "coco_mini_train", True, 0.442),
])
def test_evaluate_baseline_reproduces_the_readme(tinypose_folder: Path, shared_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture, baseline: str, split: str,
                                                 flip: bool, readme_ap: float) -> None:
    """`sdpose evaluate --baseline pp-tinypose [--flip]` scores the teacher like our models (GT boxes, mmpose
    rescoring) and lands on its README's DARK figures for coco_mini_train (86 people; within 0.02). On the 12
    people of mmpose_coco mmpose's rescoring reorders a few of them against the README's mean-peak score, which
    moves AP by more than that; test_reproduces_the_ap_its_readme_measured checks that set with its scoring."""
    from sdpose_core.cli.main import main

    folder = shared_data / "coco" / split
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--baseline", baseline, *(["--flip"] if flip else []), "--ann",
                 str(folder / "person_keypoints.json"), "--images", str(folder / "images"), "--out", str(out)])
    assert code == 0
    assert ("flip test" if flip else "no flip") in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["metrics"]["pp-tinypose"]["AP"] == pytest.approx(readme_ap, abs=0.02)


def test_baseline_factory_names_what_it_cannot_do() -> None:
    from sdpose_core.inference.baseline_factory import build_baseline

    with pytest.raises(ConfigError, match="has no flip test"):
        build_baseline("mediapipe", flip=True)
    with pytest.raises(ConfigError, match="available: mediapipe, pp-tinypose"):
        build_baseline("hrnet")
