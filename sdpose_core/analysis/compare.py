"""Comparing the cycles of one Multi-Cycled Transformer forward: tables, drawings and heatmap figures.

    result = Predictor().predict(image, cycles=3)         # ONE forward, every cycle in the result
    shifts = joint_shifts_px(result.people[0])             # (cycles - 1, K) image px between cycles
    headers, rows = cycle_table(result)                    # per person and joint: score per cycle, shifts
    drawn = draw_cycle(image, result, cycle=1)             # boxes, person ids, colour-coded skeletons
    figure = heatmap_figure(result.people[0], joint=0, joint_names=result.layout.joints)   # plotly
    figure = overlay_figure(result.people[0], result.layout.joints)   # all joints' heatmaps per cycle

Cycle 1 of an N-cycle forward IS the single deployed pass (each cycle's output is a by-product of the
next), so the "single pass" picture needs no second run. Shifts are measured in full-resolution image
pixels between the decoded keypoints of consecutive cycles (the Predictor's own `cycle_shifts` are the
per-person maxima in heatmap pixels). With dynamic cycles a person may stop early: cycles it did not run
show as blanks in the tables, and drawings of a later cycle show its final one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sdpose_core.media.draw import draw_pose, joint_colors

if TYPE_CHECKING:  # inference.results imports torch; drawing and tables need no torch
    from sdpose_core.inference.results import PersonPrediction, PredictionResult

LABEL_COLOR = (255, 215, 0)  # RGB, as the boxes (media.draw.BOX_COLOR)
HEATMAP_COLORSCALE = "Inferno"


def joint_shifts_px(person: PersonPrediction) -> np.ndarray:
    """(cycles_used - 1, K): how far each joint moved between cycle c and c + 1, in image pixels."""
    xy = np.stack([k[:, :2] for k in person.cycle_keypoints])
    return np.linalg.norm(np.diff(xy, axis=0), axis=-1)


def cycle_table(result: PredictionResult, decimals: int = 2) -> tuple[list[str], list[list[Any]]]:
    """Per person (1-based id) and joint: score of every cycle, shift between consecutive cycles (px) and
    from cycle 1 to the person's final cycle. Cycles a person did not run (dynamic) are blank ("")."""
    cycles = result.cycles
    headers = ["person", "joint"] + [f"score c{c}" for c in range(1, cycles + 1)]
    headers += [f"shift c{c}->c{c + 1} (px)" for c in range(1, cycles)]
    if cycles > 2:
        headers.append("shift c1->final (px)")
    rows: list[list[Any]] = []
    for number, person in enumerate(result.people, start=1):
        shifts = joint_shifts_px(person)
        first_to_last = np.linalg.norm(person.cycle_keypoints[-1][:, :2] - person.cycle_keypoints[0][:, :2], axis=-1)
        for joint, name in enumerate(result.layout.joints):
            row: list[Any] = [number, name]
            row += [round(float(person.cycle_keypoints[c][joint, 2]), decimals) if c < person.cycles_used else ""
                    for c in range(cycles)]
            row += [round(float(shifts[c][joint]), decimals) if c < len(shifts) else "" for c in range(cycles - 1)]
            if cycles > 2:
                row.append(round(float(first_to_last[joint]), decimals))
            rows.append(row)
    return headers, rows


def person_table(result: PredictionResult, decimals: int = 3) -> tuple[list[str], list[list[Any]]]:
    """One row per person: box, detector score, instance score at cycle 1 and at its final cycle, the
    largest joint shift between cycle 1 and the final cycle (px), cycles run (and converged, dynamic)."""
    headers = ["id", "box x, y, w, h", "box score", "score c1", "score final", "final cycle",
               "max shift c1->final (px)", "converged"]
    rows = []
    for number, person in enumerate(result.people, start=1):
        moved = np.linalg.norm(person.keypoints[:, :2] - person.cycle_keypoints[0][:, :2], axis=-1)
        rows.append([
            number, ", ".join(f"{v:.0f}" for v in person.box_xywh), round(person.box_score, decimals),
            round(person.score(1), decimals), round(person.score(), decimals), person.final_cycle,
            round(float(moved.max()), 2), "" if person.converged is None else ("yes" if person.converged else "no"),
        ])
    return headers, rows


def display_scale(image_shape: Sequence[int], max_side: int | None) -> float:
    """Factor that shrinks an image so its long side is at most `max_side` (1.0: unchanged)."""
    if not max_side:
        return 1.0
    return min(1.0, float(max_side) / float(max(image_shape[0], image_shape[1])))


def _scaled_points(keypoints: np.ndarray, scale: float) -> np.ndarray:
    """Image pixel coordinates (pixel centres at integers) -> the same points after resizing by `scale`."""
    scaled = np.array(keypoints, dtype=np.float64, copy=True)
    scaled[..., :2] = (scaled[..., :2] + 0.5) * scale - 0.5
    return scaled


def _put_label(canvas: np.ndarray, text: str, corner: tuple[int, int], font_scale: float) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, int(round(font_scale * 2)))
    (width, height), baseline = cv2.getTextSize(text, font, font_scale, thickness)
    x = int(np.clip(corner[0], 0, max(0, canvas.shape[1] - width - 4)))
    y = int(np.clip(corner[1] - height - baseline - 4, 0, max(0, canvas.shape[0] - height - baseline - 4)))
    cv2.rectangle(canvas, (x, y), (x + width + 4, y + height + baseline + 4), LABEL_COLOR, -1)
    cv2.putText(canvas, text, (x + 2, y + height + 2), font, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)


def draw_people(
    image_rgb: np.ndarray,
    keypoints: np.ndarray,
    boxes_xywh: np.ndarray | None = None,
    score_threshold: float = 0.3,
    max_side: int | None = None,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Skeletons (N, K, 3) and boxes (N, 4) drawn on a copy of the image, shrunk to `max_side` first
    (drawing on the display-sized copy keeps lines readable on huge photos); `labels` go on the boxes."""
    scale = display_scale(image_rgb.shape, max_side)
    canvas = image_rgb
    if scale < 1.0:
        size = (max(1, round(image_rgb.shape[1] * scale)), max(1, round(image_rgb.shape[0] * scale)))
        canvas = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
    people = np.asarray(keypoints, dtype=np.float64).reshape(-1, *np.shape(keypoints)[-2:])
    if len(people) == 0:
        return np.array(canvas, dtype=np.uint8, copy=True)
    boxes = None if boxes_xywh is None else np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4) * scale
    drawn = draw_pose(canvas, _scaled_points(people, scale), score_threshold=score_threshold, boxes_xywh=boxes)
    if labels is not None and boxes is not None:
        font_scale = max(0.4, min(drawn.shape[:2]) / 900)
        for text, (x, y, _, _) in zip(labels, boxes, strict=True):
            _put_label(drawn, text, (int(x), int(y)), font_scale)
    return drawn


def draw_cycle(image_rgb: np.ndarray, result: PredictionResult, cycle: int | None, score_threshold: float = 0.3,
               max_side: int | None = 1600) -> np.ndarray:
    """Every person of `result` at `cycle` (None or beyond a person's last cycle: its final cycle), with
    its box and id label (#1, #2, ... as in the tables)."""
    if not result.people:
        return draw_people(image_rgb, np.zeros((0, result.layout.num_keypoints, 3)), max_side=max_side)
    keypoints = np.stack([p.cycle_keypoints[min(cycle or p.cycles_used, p.cycles_used) - 1] for p in result.people])
    boxes = np.stack([p.box_xywh for p in result.people])
    labels = [f"#{i}" for i in range(1, len(result.people) + 1)]
    return draw_people(image_rgb, keypoints, boxes, score_threshold, max_side, labels)


def side_by_side(left: np.ndarray, right: np.ndarray, titles: Sequence[str] = ("", ""), gap: int = 8) -> np.ndarray:
    """Two RGB images next to each other on one canvas (same height), each with an optional title bar."""
    height = max(left.shape[0], right.shape[0])
    panels = []
    for image, title in zip((left, right), titles, strict=True):
        if image.shape[0] != height:
            width = max(1, round(image.shape[1] * height / image.shape[0]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if title:
            bar = np.full((max(24, height // 18), image.shape[1], 3), 255, dtype=np.uint8)
            scale = bar.shape[0] / 40
            cv2.putText(bar, title, (6, int(bar.shape[0] * 0.72)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                        max(1, int(round(scale * 2))), cv2.LINE_AA)
            image = np.concatenate([bar, image], axis=0)
        panels.append(image)
    spacer = np.full((panels[0].shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], spacer, panels[1]], axis=1)


# ----------------------------------------------------------------------------------------- figures
def _crop_points(person: PersonPrediction, cycle: int) -> np.ndarray:
    """Keypoints of `cycle` in crop pixels (the network input) with their scores: (K, 3)."""
    keypoints = person.keypoints_at(cycle)
    matrix = np.asarray(person.crop_matrix, dtype=np.float64)
    xy = keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    return np.concatenate([xy, keypoints[:, 2:3]], axis=1)


def _heatmap_axes(person: PersonPrediction) -> tuple[np.ndarray, np.ndarray]:
    """Crop-pixel positions of the heatmap pixels' columns and rows (heatmap (u, v) = crop (u sx, v sy))."""
    height, width = person.cycle_heatmaps[0].shape[-2:]
    sx, sy = person.heatmap_stride
    return np.arange(width) * sx, np.arange(height) * sy


def _figure_grid(columns: int, titles: Sequence[str], height: int) -> Any:
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=columns, subplot_titles=list(titles), horizontal_spacing=0.02)
    figure.update_layout(height=height, margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white")
    figure.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    figure.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
                        scaleanchor="x", constrain="domain")
    for column in range(2, columns + 1):
        figure.update_yaxes(scaleanchor=f"x{column}", row=1, col=column)
    return figure


def _add_slider(figure: Any, traces_per_cycle: list[list[int]], always: list[int], labels: Sequence[str]) -> None:
    """A slider that shows one cycle's traces at a time (the `always` traces stay visible)."""
    total = len(figure.data)
    steps = []
    for label, shown in zip(labels, traces_per_cycle, strict=True):
        visible = [index in always or index in shown for index in range(total)]
        steps.append(dict(method="update", label=label, args=[{"visible": visible}]))
    for index in range(total):
        figure.data[index].visible = index in always or index in traces_per_cycle[0]
    figure.update_layout(sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="cycle: "),
                                       pad=dict(t=30))])


def heatmap_figure(person: PersonPrediction, joint: int, joint_names: Sequence[str], layout: str = "columns",
                   person_label: str = "", height: int = 420) -> Any:
    """Plotly figure: joint `joint`'s heatmap of every cycle over the person crop, cycles as columns
    (`layout="columns"`) or one at a time on a slider (`"slider"`). One colour scale for all cycles
    (0..the largest value of any cycle), so the cycles' confidence can be compared; the decoded keypoint
    of each cycle is marked, with its score and its shift from cycle 1 in the hover text."""
    import plotly.graph_objects as go

    if layout not in ("columns", "slider"):
        raise ValueError(f"layout must be 'columns' or 'slider', got {layout!r}")
    if not 0 <= joint < len(joint_names):
        raise ValueError(f"joint index {joint} outside 0..{len(joint_names) - 1}")
    cycles = person.cycles_used
    name = joint_names[joint]
    xs, ys = _heatmap_axes(person)
    peak = max(float(h[joint].max()) for h in person.cycle_heatmaps) or 1.0
    first = _crop_points(person, 1)[joint]
    titles = [f"cycle {c}" + (" (single pass)" if c == 1 else "") for c in range(1, cycles + 1)]
    columns = cycles if layout == "columns" else 1
    figure = _figure_grid(columns, titles if layout == "columns" else [""], height)
    per_cycle: list[list[int]] = []
    for cycle in range(1, cycles + 1):
        column = cycle if layout == "columns" else 1
        shown = []
        if layout == "columns" or cycle == 1:
            figure.add_trace(go.Image(z=person.crop_rgb, hoverinfo="skip"), row=1, col=column)
        crop_layer = len(figure.data) - 1
        point = _crop_points(person, cycle)[joint]
        figure.add_trace(go.Heatmap(
            z=person.cycle_heatmaps[cycle - 1][joint], x=xs, y=ys, zmin=0.0, zmax=peak, opacity=0.55,
            colorscale=HEATMAP_COLORSCALE, zsmooth="best", showscale=cycle == 1, name=f"cycle {cycle}",
            colorbar=dict(title="heatmap", len=0.8), hovertemplate="x %{x:.0f}, y %{y:.0f}: %{z:.3f}<extra></extra>",
        ), row=1, col=column)
        shown.append(len(figure.data) - 1)
        moved = float(np.hypot(*(point[:2] - first[:2])))
        figure.add_trace(go.Scatter(
            x=[point[0]], y=[point[1]], mode="markers", marker=dict(symbol="x", size=11, color="cyan",
                                                                    line=dict(width=1, color="black")),
            name=f"{name}, cycle {cycle}", showlegend=False,
            hovertemplate=(f"{name}, cycle {cycle}<br>score {point[2]:.3f}<br>"
                           f"moved {moved:.2f} crop px from cycle 1<extra></extra>"),
        ), row=1, col=column)
        shown.append(len(figure.data) - 1)
        per_cycle.append(shown if layout == "slider" else shown + [crop_layer])
    title = f"{person_label} {name}: heatmap per cycle over the {person.crop_rgb.shape[1]}x{person.crop_rgb.shape[0]} crop"
    figure.update_layout(title=dict(text=title.strip(), x=0.01, font=dict(size=14)))
    if layout == "slider":
        _add_slider(figure, per_cycle, always=[0], labels=[str(c) for c in range(1, cycles + 1)])
    return figure


def overlay_figure(person: PersonPrediction, joint_names: Sequence[str], person_label: str = "",
                   height: int = 420) -> Any:
    """Plotly figure: per cycle (columns), all joints' heatmaps at once (the maximum over joints, hover
    says which joint is strongest there) over the crop, with every decoded keypoint marked in its body-side
    colour (hover: joint, score)."""
    import plotly.graph_objects as go

    cycles = person.cycles_used
    xs, ys = _heatmap_axes(person)
    peak = max(float(h.max()) for h in person.cycle_heatmaps) or 1.0
    names = np.asarray(joint_names, dtype=object)
    colors = [f"rgb{c}" for c in joint_colors(None if len(joint_names) not in (14, 17) else _layout_for(joint_names),
                                              len(joint_names))]
    titles = [f"cycle {c}" + (" (single pass)" if c == 1 else "") for c in range(1, cycles + 1)]
    figure = _figure_grid(cycles, titles, height)
    for cycle in range(1, cycles + 1):
        maps = person.cycle_heatmaps[cycle - 1]
        figure.add_trace(go.Image(z=person.crop_rgb, hoverinfo="skip"), row=1, col=cycle)
        strongest = names[np.argmax(maps, axis=0)]
        figure.add_trace(go.Heatmap(
            z=maps.max(axis=0), x=xs, y=ys, zmin=0.0, zmax=peak, opacity=0.55, colorscale=HEATMAP_COLORSCALE,
            zsmooth="best", showscale=cycle == 1, customdata=strongest, colorbar=dict(title="max", len=0.8),
            hovertemplate="%{customdata}: %{z:.3f}<extra></extra>",
        ), row=1, col=cycle)
        points = _crop_points(person, cycle)
        figure.add_trace(go.Scatter(
            x=points[:, 0], y=points[:, 1], mode="markers", showlegend=False,
            marker=dict(size=7, color=colors, line=dict(width=1, color="white")),
            customdata=np.stack([names, np.round(points[:, 2], 3)], axis=1),
            hovertemplate="%{customdata[0]}<br>score %{customdata[1]}<extra></extra>",
        ), row=1, col=cycle)
    title = f"{person_label} all {len(joint_names)} joints' heatmaps per cycle (max over joints)"
    figure.update_layout(title=dict(text=title.strip(), x=0.01, font=dict(size=14)))
    return figure


def _layout_for(joint_names: Sequence[str]) -> Any:
    from sdpose_core.keypoints import get_layout

    layout = get_layout(len(joint_names))
    return layout if tuple(layout.joints) == tuple(joint_names) else None
