"""Tracking people between detections in a live stream: boxes from keypoints, and re-detecting when a tracked
box shrinks or its person loses joints (sdpose_core.inference.tracking, sdpose_core.inference.live.LiveSession)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdpose_core.inference.tracking import BoxTracker, boxes_from_keypoints, confident_joints

SHAPE = (400, 300, 3)


def standing_person(x: float = 150.0, top: float = 60.0, height: float = 280.0, score: float = 0.9) -> np.ndarray:
    """(17, 3) COCO keypoints of an upright person: head at `top`, ankles at `top + height`."""
    rows = np.linspace(top, top + height, 9)
    ys = [rows[0]] * 5 + [rows[2]] * 2 + [rows[3]] * 2 + [rows[4]] * 2 + [rows[5]] * 2 + [rows[6]] * 2 + [rows[8]] * 2
    xs = [x, x - 5, x + 5, x - 10, x + 10] + [x - 30, x + 30] * 6
    return np.stack([xs, ys, np.full(17, score)], axis=1)


def test_a_box_that_shrinks_to_the_torso_asks_for_a_detection() -> None:
    tracker = BoxTracker()
    person = standing_person()
    detected = boxes_from_keypoints(person[None], SHAPE, 0.3)
    assert len(tracker.update(person[None], SHAPE, 0.3, detected, detected=True)) == 1 and tracker.reason is None
    walking = person.copy()
    walking[11:, 2] = 0.2  # legs blurred for a frame: only the upper body is confident
    assert confident_joints(walking[None], 0.3).tolist() == [11]
    assert len(tracker.update(walking[None], SHAPE, 0.3, detected, detected=False)) == 0
    assert "shrank" in tracker.reason and "of the detected height" in tracker.reason
    thin = person.copy()
    thin[:, 0] = 150 + (thin[:, 0] - 150) * 0.2  # all joints on the centre line: a strip
    assert len(tracker.update(thin[None], SHAPE, 0.3, detected, detected=False)) == 0
    assert "of its width" in tracker.reason


def test_losing_joints_or_people_asks_for_a_detection() -> None:
    tracker = BoxTracker()
    person = standing_person()
    used = boxes_from_keypoints(person[None], SHAPE, 0.3)
    tracker.update(person[None], SHAPE, 0.3, used, detected=True)
    arms_gone = person.copy()
    arms_gone[[7, 8, 9, 10, 1, 2], 2] = 0.1  # 11 of 17 confident: the box keeps its size
    assert len(tracker.update(arms_gone[None], SHAPE, 0.3, used, detected=False)) == 0
    assert "lost joints: 11 confident, 17 on the detection frame" in tracker.reason
    faint = person.copy()
    faint[5:, 2] = 0.1
    assert len(tracker.update(faint[None], SHAPE, 0.3, used, detected=False)) == 0
    assert "under 5 confident joints" in tracker.reason
    two = np.stack([person, standing_person(x=60.0)])
    assert len(tracker.update(two, SHAPE, 0.3, boxes_from_keypoints(two, SHAPE, 0.3), detected=False)) == 0
    assert "people changed" in tracker.reason
    moved = standing_person(x=170.0, top=70.0)  # walked a little: still the same size
    tracker.update(person[None], SHAPE, 0.3, used, detected=True)
    assert len(tracker.update(moved[None], SHAPE, 0.3, used, detected=False)) == 1 and tracker.reason is None
    assert len(tracker.update(np.zeros((0, 17, 3)), SHAPE, 0.3, np.zeros((0, 4)), detected=True)) == 0


def test_walking_people_in_the_shared_video_keep_full_boxes(shared_data: Path) -> None:
    """sports2d_demo.mp4 (parkour on a roof, a man walking) through LiveSession with the embedded default weights:
    the weak model puts a walking person's joints on a line, so its keypoint box is a strip around the torso.
    Without the checks many tracked boxes were such strips (under 0.6 of the detected height or 0.4 of its
    width); with them the next frame detects again instead."""
    pytest.importorskip("gradio", reason="the app needs gradio")
    from app.context import AppContext
    from sdpose_core.inference.live import LiveSession, LiveSettings
    from sdpose_core.media.video import iter_video_frames

    ctx = AppContext(num_threads=1)
    if not ctx.weights_info.trained:
        pytest.skip("no trained weights (assets/sdpose-t-default): random poses say nothing about tracking")
    used: list[np.ndarray] = []
    predict = ctx.predictor().predict

    def recording(image: np.ndarray, boxes: np.ndarray | None = None, **options: object) -> object:
        used.append(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        return predict(image, boxes=boxes, **options)

    ctx.predictor().predict = recording
    strips = {}
    for checks in (False, True):
        session = LiveSession(LiveSettings(detect_every=5))
        if not checks:
            session._tracker.min_height_ratio = session._tracker.min_width_ratio = 0.0
            session._tracker.min_joint_ratio = 0.0
        detected, count = np.zeros((0, 4)), 0
        for frame in iter_video_frames(shared_data / "unlabeled/videos/sports2d_demo.mp4", max_frames=30):
            _, stats = session.process(frame.image, ctx, time_s=frame.time_s)
            if stats.detected:
                detected = used[-1]
                continue
            for box in used[-1]:
                nearest = detected[np.argmin(np.linalg.norm(detected[:, :2] + detected[:, 2:] / 2
                                                            - box[:2] - box[2:] / 2, axis=1))]
                count += int(box[3] < 0.6 * nearest[3] or box[2] < 0.4 * nearest[2])
        strips[checks] = count
    assert strips[False] >= 5 and strips[True] == 0, strips
