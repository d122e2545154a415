"""Video reading / writing, One-Euro smoothing, skeleton drawing and predict_media."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sdpose_core.errors import ConfigError, DataError
from sdpose_core.inference.media import DEFAULT_SMOOTHING
from sdpose_core.keypoints import COCO17
from sdpose_core.media.draw import LEFT_COLOR, LOW_CONFIDENCE_COLOR, RIGHT_COLOR, draw_pose
from sdpose_core.media.video import (
    KeypointSmoother,
    OneEuroFilter,
    VideoWriter,
    iter_video_frames,
    transcode_for_browser,
    video_info,
)

FPS = 30.0


def moving_square_frames(count: int, size: tuple[int, int] = (64, 96)) -> list[np.ndarray]:
    height, width = size
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 30, np.uint8)
        x = 8 + index * 4
        frame[20:40, x:x + 16] = (240, 200, 40)
        frames.append(frame)
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_written_video_reads_back(tmp_path, suffix):
    frames = moving_square_frames(15)
    with VideoWriter(tmp_path / f"clip{suffix}", fps=FPS) as writer:
        for frame in frames:
            writer.write(frame)
    if suffix == ".webm":
        assert writer.codec in ("VP80", "VP90") and writer.browser_playable
    else:  # H.264 through PyAV; without PyAV OpenCV's fallback, which says why (see the fallback test)
        assert writer.codec == ("h264" if importlib.util.find_spec("av") else "mp4v"), writer.fallback_reason
    assert writer.frames_written == 15
    decoded = list(iter_video_frames(writer.path))
    assert [f.index for f in decoded] == list(range(15))
    assert all(f.image.shape == (64, 96, 3) and f.image.dtype == np.uint8 for f in decoded)
    assert decoded[3].time_s == pytest.approx(3 / FPS)
    # content survives the codec: the square sits where it was drawn, in the colour it was drawn (RGB order)
    for index in (0, 7, 14):
        image = decoded[index].image.astype(float)
        columns = np.flatnonzero(image[30, :, 0] > 135)
        assert abs(columns.mean() - (8 + index * 4 + 7.5)) < 2.0
        assert image[30, int(columns.mean())].tolist() == pytest.approx([240, 200, 40], abs=25)
    info = video_info(writer.path)
    assert (info.width, info.height) == (96, 64) and info.fps == pytest.approx(FPS)


def test_writer_checks_frames_and_codec(tmp_path):
    with pytest.raises(ConfigError, match="no codec known"):
        VideoWriter(tmp_path / "clip.gif", fps=10)
    with pytest.raises(ConfigError, match="fps"):
        VideoWriter(tmp_path / "clip.mp4", fps=0)
    writer = VideoWriter(tmp_path / "clip.mp4", fps=10)
    with pytest.raises(DataError, match="uint8 RGB"):
        writer.write(np.zeros((8, 8), np.uint8))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.write(np.zeros((100, 80, 3), np.uint8))  # another size is resized to the first
    writer.close()
    assert [f.image.shape for f in iter_video_frames(writer.path)] == [(48, 64, 3)] * 2


def probe_video(path) -> tuple[str, int, int, int]:
    """(codec, decoded frames, width, height) as FFmpeg itself (PyAV) sees the file."""
    av = pytest.importorskip("av", reason="PyAV not installed (pip install av)")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, decoded, stream.width, stream.height


def test_mp4_is_h264_with_the_index_first_and_odd_sizes_padded(tmp_path):
    pytest.importorskip("av", reason="PyAV not installed (pip install av)")
    frames = moving_square_frames(12, size=(63, 95))
    with VideoWriter(tmp_path / "clip.mp4", fps=29.97) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.codec == "h264" and writer.browser_playable and writer.fallback_reason is None
    assert probe_video(writer.path) == ("h264", 12, 96, 64)  # yuv420p needs even sides
    data = writer.path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: a browser can play while downloading
    decoded = [f.image for f in iter_video_frames(writer.path)]  # OpenCV decodes it too
    assert len(decoded) == 12 and decoded[5][:63, :95].astype(int).mean() == pytest.approx(
        frames[5].astype(int).mean(), abs=3)
    assert video_info(writer.path).fps == pytest.approx(29.97, abs=0.01)


def test_without_pyav_mp4_falls_back_to_opencv_and_says_so(tmp_path, monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with VideoWriter(tmp_path / "clip.mp4", fps=FPS) as writer:
        for frame in moving_square_frames(5):
            writer.write(frame)
    assert writer.codec in ("avc1", "mp4v") and "pip install av" in writer.fallback_reason
    if writer.codec == "mp4v":
        assert not writer.browser_playable and "browsers do not play" in caplog.text
    assert len(list(iter_video_frames(writer.path))) == 5
    with pytest.raises(DataError, match="pip install av"):
        VideoWriter(tmp_path / "only.mp4", fps=FPS, codecs=("h264",)).write(moving_square_frames(1)[0])


def test_transcode_for_browser_turns_mp4v_into_h264(tmp_path):
    pytest.importorskip("av", reason="PyAV not installed (pip install av)")
    with VideoWriter(tmp_path / "upload.avi", fps=12.0) as source:
        for frame in moving_square_frames(6):
            source.write(frame)
    writer = transcode_for_browser(source.path, tmp_path / "view.mp4")
    assert writer.browser_playable and probe_video(writer.path) == ("h264", 6, 96, 64)
    assert video_info(writer.path).fps == pytest.approx(12.0)


def test_shared_video_with_stride(shared_data):
    path = shared_data / "unlabeled" / "videos" / "sports2d_demo.mp4"
    info = video_info(path)
    assert (info.frame_count, info.width, info.height) == (230, 1768, 994)
    frames = list(iter_video_frames(path, stride=25))
    assert [f.index for f in frames] == list(range(0, 230, 25))
    assert frames[2].time_s == pytest.approx(50 / info.fps)
    assert all(f.image.shape == (994, 1768, 3) for f in frames)
    assert frames[0].image.std() > 10  # a real picture, not a blank frame
    first_three = list(iter_video_frames(path, stride=2, max_frames=3))
    assert [f.index for f in first_three] == [0, 2, 4]
    np.testing.assert_array_equal(first_three[0].image, frames[0].image)


def test_non_video_files_raise_data_error(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(DataError, match="notes.mp4"):
        list(iter_video_frames(fake))
    with pytest.raises(DataError, match="notes.mp4"):
        video_info(fake)
    with pytest.raises(DataError, match="not found"):
        list(iter_video_frames(tmp_path / "missing.mp4"))
    with pytest.raises(ConfigError, match="stride"):
        list(iter_video_frames(fake, stride=0))


def run_filter(filter_: OneEuroFilter, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.stack([filter_(v, t) for v, t in zip(values, times, strict=True)])


def test_one_euro_reduces_jitter_on_a_noisy_track():
    times = np.arange(0, 4, 1 / FPS)
    phase = np.linspace(0, np.pi, 34).reshape(17, 2)
    truth = 200 + 20 * np.sin(2 * np.pi * 0.5 * times[:, None, None] + phase)  # (T, 17, 2), 0.5 Hz motion
    noisy = truth + np.random.default_rng(0).normal(0, 3.0, truth.shape)
    smoothed = run_filter(OneEuroFilter(**DEFAULT_SMOOTHING), noisy, times)
    settle = int(FPS // 2)
    raw_error = np.sqrt(((noisy - truth)[settle:] ** 2).mean())
    smooth_error = np.sqrt(((smoothed - truth)[settle:] ** 2).mean())
    # closer to the truth despite the lag a low-pass filter adds on a moving joint (measured 0.75x)
    assert smooth_error < 0.85 * raw_error, (smooth_error, raw_error)
    # jitter = frame-to-frame movement beyond the true motion (measured 0.40x)
    assert np.abs(np.diff(smoothed - truth, axis=0)).mean() < 0.5 * np.abs(np.diff(noisy - truth, axis=0)).mean()


def test_one_euro_follows_a_step_with_bounded_lag():
    times = np.arange(0, 2, 1 / FPS)
    step = np.where(times >= 1.0, 100.0, 0.0)[:, None]

    def frames_to_90_percent(beta: float) -> int:
        out = run_filter(OneEuroFilter(min_cutoff=1.0, beta=beta), step, times)[:, 0]
        after = out[times >= 1.0]
        assert after.max() <= 100.0 + 1e-9 and out[times < 1.0].max() == 0.0  # no overshoot, no anticipation
        return int(np.argmax(after >= 90.0))

    fast, slow = frames_to_90_percent(beta=0.05), frames_to_90_percent(beta=0.0)
    assert fast <= 3  # at most 0.1 s behind a 100 px jump at 30 fps
    assert slow > fast  # the speed term is what removes the lag


def test_one_euro_is_vectorised_and_skips_nan():
    times = np.arange(0, 1, 1 / FPS)
    rng = np.random.default_rng(1)
    values = rng.normal(0, 5, (len(times), 17, 2)).cumsum(axis=0)
    together = run_filter(OneEuroFilter(beta=0.02), values, times)
    alone = run_filter(OneEuroFilter(beta=0.02), values[:, 4:5, 1:2], times)
    np.testing.assert_allclose(together[:, 4:5, 1:2], alone, atol=1e-12)
    gappy = values.copy()
    gappy[10:15, 3] = np.nan
    out = run_filter(OneEuroFilter(beta=0.02), gappy, times)
    assert np.isnan(out[10:15, 3]).all() and np.isfinite(out[15:, 3]).all()
    np.testing.assert_allclose(out[:, 5], together[:, 5], atol=1e-12)  # other joints are untouched by the gap
    # after the gap the joint continues from its last state instead of jumping to the raw input
    assert abs(out[15, 3, 0] - together[9, 3, 0]) < abs(gappy[15, 3, 0] - together[9, 3, 0]) + 1e-9


def person_at(x: float, y: float, score: float = 0.9) -> np.ndarray:
    keypoints = np.zeros((17, 3))
    keypoints[:, 0] = x + np.linspace(-10, 10, 17)
    keypoints[:, 1] = y + np.linspace(-40, 40, 17)
    keypoints[:, 2] = score
    return keypoints


def test_smoother_keeps_identities_and_resets_on_count_change():
    smoother = KeypointSmoother(min_cutoff=0.5, beta=0.0)
    rng = np.random.default_rng(2)
    for frame in range(30):
        a = person_at(100, 100) + np.r_[rng.normal(0, 2, 2), 0.0]
        b = person_at(400, 120) + np.r_[rng.normal(0, 2, 2), 0.0]
        people = [a, b] if frame % 2 else [b, a]  # the detector's order flips every frame
        out = smoother(people, frame / FPS)
        for raw, smooth in zip(people, out, strict=True):
            assert abs(smooth[:, 0].mean() - raw[:, 0].mean()) < 10  # never mixed up with the other person
            np.testing.assert_array_equal(smooth[:, 2], raw[:, 2])
    assert smoother.resets == 0
    alone = person_at(250, 100)
    out = smoother([alone], 1.0)
    assert smoother.resets == 1
    np.testing.assert_array_equal(out[0], alone)  # a fresh track starts at the input


def stick_figure() -> np.ndarray:
    """A standing COCO-17 person in a 200x160 image."""
    xy = [(80, 30), (75, 25), (85, 25), (70, 28), (90, 28), (60, 55), (100, 55), (50, 85), (110, 85),
          (45, 115), (115, 115), (68, 115), (92, 115), (65, 150), (95, 150), (63, 185), (97, 185)]
    return np.concatenate([np.array(xy, float), np.full((17, 1), 0.9)], axis=1)


def color_pixels(image: np.ndarray, color: tuple[int, int, int], tol: int = 10) -> int:
    return int((np.abs(image.astype(int) - np.array(color)).max(axis=2) <= tol).sum())


def test_draw_pose_draws_colour_coded_limbs():
    image = np.full((200, 160, 3), 40, np.uint8)
    drawn = draw_pose(image, stick_figure())
    assert drawn.shape == image.shape and (image == 40).all()  # drawn on a copy
    assert (drawn != image).any(axis=2).sum() > 500
    assert color_pixels(drawn, LEFT_COLOR) > 50 and color_pixels(drawn, RIGHT_COLOR) > 50
    # left wrist (9) to left elbow (7): drawn in the left colour
    mid = ((stick_figure()[7, :2] + stick_figure()[9, :2]) / 2).round().astype(int)
    assert np.abs(drawn[mid[1], mid[0]].astype(int) - LEFT_COLOR).max() <= 30


def test_draw_pose_marks_low_confidence_and_skips_nan():
    image = np.full((200, 160, 3), 40, np.uint8)
    uncertain = stick_figure()
    uncertain[:, 2] = 0.1
    drawn = draw_pose(image, uncertain, score_threshold=0.3)
    assert color_pixels(drawn, LEFT_COLOR) == 0 and color_pixels(drawn, RIGHT_COLOR) == 0
    assert color_pixels(drawn, LOW_CONFIDENCE_COLOR, tol=20) > 50

    missing = stick_figure()
    missing[9, :2] = np.nan  # left wrist not found
    drawn = draw_pose(image, missing)
    mid = ((missing[7, :2] + stick_figure()[9, :2]) / 2).round().astype(int)
    assert (drawn[mid[1], mid[0]] == 40).all()  # no limb towards the missing joint
    assert color_pixels(drawn, LEFT_COLOR) > 30  # the rest of the person is still drawn


def test_draw_pose_many_people_and_bad_input():
    image = np.zeros((200, 320, 3), np.uint8)
    second = stick_figure()
    second[:, 0] += 160
    drawn = draw_pose(image, np.stack([stick_figure(), second]), boxes_xywh=[[40, 20, 80, 170], [200, 20, 80, 170]])
    assert (drawn[:, :160] != 0).any() and (drawn[:, 160:] != 0).any()
    assert len(COCO17.skeleton) == 19  # the default skeleton for 17 joints
    draw_pose(image, np.full((17, 3), np.inf))  # nothing finite: nothing drawn, no error
    with pytest.raises(DataError, match="keypoints must be"):
        draw_pose(image, np.zeros((17,)))
    with pytest.raises(DataError, match="skeleton pairs"):
        draw_pose(image, stick_figure(), skeleton=[(0, 17)])


@pytest.fixture(scope="module")
def tiny_predictor():
    from sdpose_core.inference.predictor import Predictor
    from sdpose_core.models import build_model

    model = build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=32,
                        depth=2, heads=4).eval()
    return Predictor(model=model, detector="whole-image")


def test_predict_media_on_images_and_video(tmp_path, shared_data, tiny_predictor):
    from sdpose_core.inference.media import predict_media

    image = shared_data / "coco" / "mmpose_coco" / "images" / "000000000785.jpg"
    video = shared_data / "unlabeled" / "videos" / "sports2d_demo.mp4"
    report = predict_media(tiny_predictor, [image, video], tmp_path / "out", cycles=2, smooth=True, stride=50,
                           max_frames=3, progress=False)
    [entry] = report.images
    drawn = cv2.imread(entry["output"])
    original = cv2.imread(str(image))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).max() > 100
    results = json.loads((tmp_path / "out" / "coco_results.json").read_text())
    assert len(results) == 1 and len(results[0]["keypoints"]) == 51 and results[0]["image_id"] == entry["id"]

    [clip] = report.videos
    assert clip["frames"] == 3 and clip["stride"] == 50
    frames = list(iter_video_frames(clip["output"]))
    assert len(frames) == 3 and frames[0].image.shape == (994, 1768, 3)
    detail = json.loads(Path(clip["frames_json"]).read_text())
    assert [f["frame"] for f in detail["frames"]] == [0, 50, 100]
    person = detail["frames"][1]["people"][0]
    assert np.array(person["keypoints"]).shape == (17, 3) and "raw_keypoints" in person
    assert {r["image_id"] for r in json.loads(Path(clip["coco_results"]).read_text())} == {0, 50, 100}
    summary = json.loads(report.summary_json.read_text())
    assert summary["weights"]["trained"] is False and summary["cycles"] == 2


def test_predict_media_rejects_unknown_inputs(tmp_path, tiny_predictor):
    from sdpose_core.inference.media import predict_media

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(DataError, match="unknown media type"):
        predict_media(tiny_predictor, notes, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="input not found"):
        predict_media(tiny_predictor, tmp_path / "missing.jpg", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
