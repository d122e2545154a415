"""sdpose_core.analysis.compare: shifts between cycles, the per-joint table, drawings with ids, heatmap figures.

Exact numbers come from hand-built predictions; one test runs a real (small, untrained) model on a shared
COCO image and checks the tables and figures against the Predictor's own per-cycle outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sdpose_core.analysis import compare
from sdpose_core.inference.results import PersonPrediction, PredictionResult, Timings
from sdpose_core.keypoints import COCO17
from sdpose_core.weights.load import WeightsInfo

pytest.importorskip("plotly")

K = 17
HEAT_H, HEAT_W = 16, 12  # heatmaps of a 64x48 crop at stride 4


def make_person(keypoints_per_cycle: list[np.ndarray], box=(10.0, 20.0, 40.0, 80.0), seed: int = 0,
                converged: bool | None = None) -> PersonPrediction:
    rng = np.random.default_rng(seed)
    cycles = len(keypoints_per_cycle)
    heatmaps = [rng.random((K, HEAT_H, HEAT_W)).astype(np.float32) * (c + 1) for c in range(cycles)]
    crop_matrix = np.array([[0.5, 0.0, -2.0], [0.0, 0.5, -4.0]])  # image -> crop: scale 1/2, shifted
    return PersonPrediction(
        box_xywh=np.array(box), box_score=0.9, center=np.array([30.0, 60.0]), scale=np.array([50.0, 100.0]),
        crop_matrix=crop_matrix, heatmap_stride=(4.0, 4.0), cycle_keypoints=list(keypoints_per_cycle),
        cycle_heatmaps=heatmaps, cycle_shifts=[0.0] * (cycles - 1), converged=converged,
        crop_rgb=rng.integers(0, 255, (HEAT_H * 4, HEAT_W * 4, 3), dtype=np.uint8), source_index=0)


def make_result(people: list[PersonPrediction], cycles: int) -> PredictionResult:
    info = WeightsInfo("untrained", None, False, "UNTRAINED: test")
    return PredictionResult(people=people, image_size=(200, 160), model_name="sdpose-t", layout=COCO17,
                            backend="torch", cycles=cycles, dynamic=False, dynamic_tolerance=None, flip=False,
                            decode="dark", weights_info=info, timings=Timings())


def keypoints(offset: float, score: float = 0.9) -> np.ndarray:
    base = np.stack([np.linspace(20, 60, K), np.linspace(30, 150, K), np.full(K, score)], axis=1)
    base[:, 0] += offset
    return base


def test_shifts_are_image_pixel_distances_between_consecutive_cycles() -> None:
    first, second, third = keypoints(0.0), keypoints(3.0), keypoints(3.0)
    third[4, :2] += [0.0, 4.0]  # joint 4 moves 4 px down in cycle 3
    person = make_person([first, second, third])
    shifts = compare.joint_shifts_px(person)
    assert shifts.shape == (2, K)
    np.testing.assert_allclose(shifts[0], 3.0)
    np.testing.assert_allclose(shifts[1], np.where(np.arange(K) == 4, 4.0, 0.0))


def test_cycle_table_has_scores_per_cycle_shifts_and_blanks_for_stopped_people() -> None:
    moved = keypoints(3.0, score=0.5)
    moved[4, :2] += [0.0, 4.0]
    full = make_person([keypoints(0.0, 0.8), keypoints(3.0, 0.6), moved])
    stopped = make_person([keypoints(0.0, 0.7), keypoints(1.0, 0.7)], converged=True)  # dynamic: stopped at 2
    headers, rows = compare.cycle_table(make_result([full, stopped], cycles=3))
    assert headers == ["person", "joint", "score c1", "score c2", "score c3", "shift c1->c2 (px)",
                       "shift c2->c3 (px)", "shift c1->final (px)"]
    assert len(rows) == 2 * K
    first_person_joint_4 = rows[4]
    assert first_person_joint_4[:2] == [1, "right_ear"]
    assert first_person_joint_4[2:5] == [0.8, 0.6, 0.5]
    assert first_person_joint_4[5:] == [3.0, 4.0, 5.0]  # 3 px right then 4 px down: 5 px from cycle 1
    second_person_nose = rows[K]
    assert second_person_nose[:2] == [2, "nose"]
    assert second_person_nose[4] == "" and second_person_nose[6] == ""  # cycle 3 never ran for this person
    assert second_person_nose[7] == 1.0  # cycle 1 -> its final cycle (2)
    person_headers, person_rows = compare.person_table(make_result([full, stopped], cycles=3))
    assert [row[5] for row in person_rows] == [3, 2] and person_rows[1][7] == "yes" and person_rows[0][7] == ""


def test_drawings_mark_people_with_ids_and_follow_the_chosen_cycle() -> None:
    image = np.full((200, 160, 3), 40, dtype=np.uint8)
    person = make_person([keypoints(0.0), keypoints(30.0)])
    result = make_result([person], cycles=2)
    first = compare.draw_cycle(image, result, 1, max_side=None)
    last = compare.draw_cycle(image, result, None, max_side=None)
    assert not np.array_equal(first, last)
    np.testing.assert_array_equal(compare.draw_cycle(image, result, 2, max_side=None), last)
    label = np.all(first == np.array(compare.LABEL_COLOR, dtype=np.uint8), axis=-1)
    assert label[:20, :60].sum() > 20  # the "#1" label sits above the box's top-left corner (10, 20)
    # beyond a person's last cycle the drawing shows its final cycle
    np.testing.assert_array_equal(compare.draw_cycle(image, result, 5, max_side=None), last)


def test_display_scaling_keeps_joints_on_the_same_image_content() -> None:
    image = np.zeros((1000, 800, 3), dtype=np.uint8)
    point = np.array([[[400.0, 600.0, 1.0]] + [[np.nan, np.nan, 0.0]] * (K - 1)])
    drawn = compare.draw_people(image, point, max_side=500)
    assert drawn.shape == (500, 400, 3)
    ys, xs = np.nonzero(drawn.any(axis=-1))
    assert abs(xs.mean() - 199.75) < 1.0 and abs(ys.mean() - 299.75) < 1.0  # (x + 0.5) * 0.5 - 0.5


def test_side_by_side_puts_two_panels_on_one_canvas() -> None:
    left, right = np.zeros((100, 80, 3), np.uint8), np.zeros((50, 50, 3), np.uint8)
    canvas = compare.side_by_side(left, right, ("cycle 1", "cycle 3"), gap=8)
    assert canvas.shape[1] == 80 + 8 + 100 and canvas.shape[0] > 100  # right panel scaled to 100 high


@pytest.mark.parametrize("layout", ["columns", "slider"])
def test_heatmap_figure_shows_every_cycle_of_one_joint_over_the_crop(layout: str) -> None:
    person = make_person([keypoints(0.0), keypoints(2.0), keypoints(4.0)])
    figure = compare.heatmap_figure(person, 5, COCO17.joints, layout=layout)
    heatmaps = [trace for trace in figure.data if trace.type == "heatmap"]
    images = [trace for trace in figure.data if trace.type == "image"]
    assert len(heatmaps) == 3 and len(images) == (3 if layout == "columns" else 1)
    peak = max(float(person.cycle_heatmaps[c][5].max()) for c in range(3))
    for cycle, trace in enumerate(heatmaps):
        np.testing.assert_array_equal(np.asarray(trace.z), person.cycle_heatmaps[cycle][5])
        assert trace.zmin == 0 and trace.zmax == pytest.approx(peak)  # one colour scale for all cycles
        np.testing.assert_array_equal(np.asarray(trace.x), np.arange(HEAT_W) * 4.0)
    np.testing.assert_array_equal(np.asarray(images[0].z), person.crop_rgb)
    markers = [trace for trace in figure.data if trace.type == "scatter"]
    # the marker of cycle 2 is joint 5 mapped into the crop: x' = 0.5 x - 2, y' = 0.5 y - 4
    x, y = keypoints(2.0)[5, :2]
    assert (markers[1].x[0], markers[1].y[0]) == pytest.approx((0.5 * x - 2, 0.5 * y - 4))
    if layout == "slider":
        steps = figure.layout.sliders[0].steps
        assert len(steps) == 3
        visible = steps[2].args[0]["visible"]
        assert visible[0] and [figure.data[i].name for i, v in enumerate(visible) if v and i > 0] == [
            "cycle 3", f"{COCO17.joints[5]}, cycle 3"]
    else:
        assert len(figure.layout.annotations) == 3  # one subplot title per cycle
    with pytest.raises(ValueError, match="joint index"):
        compare.heatmap_figure(person, K, COCO17.joints)


def test_overlay_figure_takes_the_strongest_joint_per_pixel() -> None:
    person = make_person([keypoints(0.0), keypoints(2.0)])
    figure = compare.overlay_figure(person, COCO17.joints)
    heatmaps = [trace for trace in figure.data if trace.type == "heatmap"]
    assert len(heatmaps) == 2
    np.testing.assert_array_equal(np.asarray(heatmaps[1].z), person.cycle_heatmaps[1].max(axis=0))
    strongest = np.asarray(heatmaps[0].customdata)
    assert strongest[3, 2] == COCO17.joints[int(np.argmax(person.cycle_heatmaps[0][:, 3, 2]))]
    points = [trace for trace in figure.data if trace.type == "scatter"]
    assert len(points) == 2 and len(points[0].x) == K


def test_real_prediction_tables_match_the_predictors_cycles(shared_data: Path, one_torch_thread) -> None:
    from sdpose_core.inference.predictor import Predictor, load_image
    from sdpose_core.models import build_model

    torch.manual_seed(0)
    model = build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2,
                        heads=4)
    predictor = Predictor(model, detector=None)
    image = load_image(shared_data / "coco" / "mmpose_coco" / "images" / "000000196141.jpg")
    boxes = [[245, 76, 148, 292], [456, 209, 172, 198]]
    result = predictor.predict(image, boxes=boxes, cycles=3)
    headers, rows = compare.cycle_table(result, decimals=6)
    for person_index, person in enumerate(result.people):
        for joint in range(K):
            row = rows[person_index * K + joint]
            assert row[2:5] == [round(float(person.cycle_keypoints[c][joint, 2]), 6) for c in range(3)]
            moved = np.linalg.norm(person.cycle_keypoints[2][joint, :2] - person.cycle_keypoints[1][joint, :2])
            assert row[6] == pytest.approx(moved, abs=1e-6)
    single = predictor.predict(image, boxes=boxes, cycles=1)
    for person, alone in zip(result.people, single.people, strict=True):
        np.testing.assert_allclose(person.cycle_keypoints[0], alone.cycle_keypoints[0], atol=1e-4)
    figure = compare.heatmap_figure(result.people[1], 0, result.layout.joints)
    np.testing.assert_array_equal(np.asarray(figure.data[0].z), result.people[1].crop_rgb)
    drawn = compare.draw_cycle(image, result, 1, max_side=400)
    assert max(drawn.shape[:2]) == 400
