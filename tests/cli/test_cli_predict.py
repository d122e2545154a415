"""`sdpose predict` end to end from the command line: a shared video becomes a browser-playable H.264 mp4
with per-frame JSON and a progress bar; bad input files give one clear error line (exit 2), odd image
formats are converted."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sdpose_core.cli.main import main
from sdpose_core.media.images import load_image
from sdpose_core.media.video import iter_video_frames, video_info

CLIP = "unlabeled/videos/sports2d_demo.mp4"  # 230 frames, 1768x994, 2 people
IMAGE = "coco/mmpose_coco/images/000000000785.jpg"


@pytest.fixture
def untrained_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever SDPOSE_WEIGHTS says outside, these tests use the repository's own default."""
    monkeypatch.delenv("SDPOSE_WEIGHTS", raising=False)


def test_predict_on_a_shared_video_writes_a_playable_h264_mp4(shared_data: Path, tmp_path: Path,
                                                               untrained_default, capsys) -> None:
    av = pytest.importorskip("av", reason="PyAV not installed: mp4 output would be mp4v (pip install av)")
    out = tmp_path / "out"
    code = main(["predict", str(shared_data / CLIP), "--out", str(out), "--stride", "20", "--max-frames", "4",
                 "--json", "--smooth"])
    assert code == 0
    printed = capsys.readouterr()
    assert "4/4" in printed.err and "sports2d_demo.mp4" in printed.err  # the tqdm progress bar, finished
    target = out / "sports2d_demo_pose.mp4"
    assert printed.out.split() == [str(target)]
    with av.open(str(target)) as container:  # FFmpeg's own view of the file
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert container.format.name.startswith("mov,mp4")
        assert sum(1 for _ in container.decode(stream)) == 4
    source = video_info(shared_data / CLIP)
    written = video_info(target)
    assert (written.width, written.height) == (1768, 994)
    assert written.fps == pytest.approx(source.fps / 20, rel=1e-3)  # one written frame per 20 source frames
    frames = json.loads((out / "sports2d_demo_frames.json").read_text())
    decoded = [f.image for f in iter_video_frames(target)]
    original = [f.image for f in iter_video_frames(shared_data / CLIP, stride=20, max_frames=4)]
    assert len(decoded) == 4
    for drawn, plain, frame in zip(decoded, original, frames["frames"], strict=True):
        difference = np.abs(drawn.astype(int) - plain.astype(int)).max(axis=2)
        assert np.median(difference) < 12  # the source picture, through the codec ...
        if frame["people"]:  # ... with boxes and skeletons drawn where people were found
            assert (difference > 100).mean() > 1e-4
    assert frames["codec"] == "h264" and frames["browser_playable"] is True
    assert [f["frame"] for f in frames["frames"]] == [0, 20, 40, 60]
    people = [p for f in frames["frames"] for p in f["people"]]
    assert people and all(np.array(p["keypoints"]).shape == (17, 3) and "raw_keypoints" in p for p in people)
    assert all(0 <= p["box_xywh"][0] < 1768 and 0 <= p["box_xywh"][1] < 994 for p in people)
    results = json.loads((out / "sports2d_demo_coco_results.json").read_text())
    assert {r["image_id"] for r in results} <= {0, 20, 40, 60} and len(results) == sum(
        len(f["people"]) for f in frames["frames"])
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["videos"][0]["frames"] == 4 and summary["smooth"] is not None


@pytest.mark.parametrize("name, content, message", [
    ("notes.mp4", b"this is not a video\n" * 40, "cannot open"),
    ("empty.jpg", b"", "empty (0 bytes)"),
    ("notes.jpg", b"this is not a picture", "cannot decode"),
    ("notes.txt", b"hello", "unknown media type"),
])
def test_bad_input_files_are_one_error_line(name: str, content: bytes, message: str, tmp_path: Path,
                                            untrained_default, capsys) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    assert main(["predict", str(bad), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1] and name in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_truncated_image_and_empty_folder(shared_data: Path, tmp_path: Path, untrained_default, capsys) -> None:
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((shared_data / IMAGE).read_bytes()[:300])
    assert main(["predict", str(truncated), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "cut.jpg" in capsys.readouterr().err
    (tmp_path / "nothing").mkdir()
    assert main(["predict", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "holds no images" in capsys.readouterr().err


def test_gray_rgba_and_16_bit_files_are_read_as_rgb(shared_data: Path, tmp_path: Path, untrained_default,
                                                    capsys) -> None:
    rgb = load_image(shared_data / IMAGE)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    variants = {
        "gray.png": gray,
        "rgba.png": np.concatenate([bgr, np.full(bgr.shape[:2] + (1,), 60, np.uint8)], axis=2),
        "sixteen.png": bgr.astype(np.uint16) * 257,
        "gray16.tif": gray.astype(np.uint16) * 257,
    }
    for name, pixels in variants.items():
        assert cv2.imwrite(str(tmp_path / name), pixels)
    assert (load_image(tmp_path / "rgba.png") == rgb).all()  # alpha dropped, colours untouched
    assert (load_image(tmp_path / "sixteen.png") == rgb).all()  # 16 bit -> top 8 bits
    for name in ("gray.png", "gray16.tif"):
        loaded = load_image(tmp_path / name)
        assert loaded.shape == rgb.shape and (loaded == gray[..., None]).all()
    code = main(["predict", str(tmp_path), "--out", str(tmp_path / "out"), "--detector", "whole-image",
                 "--cycles", "1", "--json", "--no-progress"])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sorted(Path(i["file"]).name for i in summary["images"]) == sorted(variants)
    assert all(len(i["people"]) == 1 and (i["width"], i["height"]) == (rgb.shape[1], rgb.shape[0])
               for i in summary["images"])


def test_truncated_and_headless_videos(shared_data: Path, tmp_path: Path, untrained_default, capsys) -> None:
    from sdpose_core.media.video import VideoWriter

    with VideoWriter(tmp_path / "whole.mp4", fps=10) as writer:  # H.264 with its index first
        for frame in iter_video_frames(shared_data / CLIP, stride=10, max_frames=12):
            writer.write(cv2.resize(frame.image, (192, 108), interpolation=cv2.INTER_AREA))
    data = writer.path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 4 // 5])
    (tmp_path / "header_only.mp4").write_bytes(data[:1500])
    common = ["--out", str(tmp_path / "out"), "--detector", "whole-image", "--cycles", "1", "--no-progress", "--json"]
    assert main(["predict", str(tmp_path / "cut.mp4"), *common]) == 0
    err = capsys.readouterr().err
    frames = json.loads((tmp_path / "out" / "cut_frames.json").read_text())
    assert 0 < frames["frames_written"] < 12 and len(frames["frames"]) == frames["frames_written"]
    assert f"ended after {frames['frames_written']} of the 12 frames" in err
    assert len(list(iter_video_frames(tmp_path / "out" / "cut_pose.mp4"))) == frames["frames_written"]
    assert main(["predict", str(tmp_path / "header_only.mp4"), *common]) == 2
    assert "no frame could be decoded" in capsys.readouterr().err.strip().splitlines()[-1]


def test_predict_with_ann_writes_results_that_eval_preds_scores(shared_data: Path, tmp_path: Path,
                                                                 untrained_default, capsys) -> None:
    """`--ann` gives each image its id in the annotations (by file name), so the pipeline's own
    coco_results.json scores against the dataset it came from (ids 0, 1, 2... would be refused)."""
    folder = shared_data / "coco" / "mmpose_coco"
    gt = json.loads((folder / "person_keypoints.json").read_text())
    id_of = {entry["file_name"]: entry["id"] for entry in gt["images"]}
    out = tmp_path / "out"
    assert main(["predict", str(folder / "images"), "--ann", str(folder / "person_keypoints.json"),
                 "--out", str(out), "--cycles", "1", "--no-progress"]) == 0  # --ann implies --json
    summary = json.loads((out / "predictions.json").read_text())
    assert {Path(i["file"]).name: i["id"] for i in summary["images"]} == id_of
    results = json.loads((out / "coco_results.json").read_text())
    people = {i["id"]: len(i["people"]) for i in summary["images"]}
    assert {r["image_id"] for r in results} == {k for k, n in people.items() if n} and len(results) == sum(
        people.values())
    capsys.readouterr()
    scored = tmp_path / "metrics.json"
    assert main(["eval-preds", "--ann", str(folder / "person_keypoints.json"), "--preds",
                 str(out / "coco_results.json"), "--out", str(scored)]) == 0
    assert "AP " in capsys.readouterr().out
    metrics = json.loads(scored.read_text())["metrics"]
    assert set(metrics) >= {"AP", "AP50", "AR"} and all(0.0 <= metrics[k] <= 1.0 for k in ("AP", "AP50", "AR"))


def test_predict_with_ann_names_the_images_it_does_not_list(shared_data: Path, tmp_path: Path,
                                                            untrained_default, capsys) -> None:
    folder = shared_data / "coco" / "mmpose_coco"
    stranger = tmp_path / "holiday_photo.jpg"
    stranger.write_bytes((shared_data / IMAGE).read_bytes())
    out = tmp_path / "out"
    code = main(["predict", str(shared_data / IMAGE), str(stranger), "--ann", str(folder / "person_keypoints.json"),
                 "--out", str(out), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 1 image(s) not listed in") and "holiday_photo.jpg" in err
    assert "000000000785.jpg" not in err and not out.exists()  # refused before anything was written
    crowd = shared_data / "crowdpose" / "mmpose_crowdpose"
    assert main(["predict", *map(str, sorted((crowd / "images").glob("*.jpg"))), "--ann", str(crowd / "crowdpose.json"),
                 "--out", str(out), "--no-progress"]) == 2
    assert "14 keypoints per person" in capsys.readouterr().err and not out.exists()
