"""What the Samples tab shows, built from a `SetAnalysis`: Markdown summaries, tables, the plotly chart and
the pictures. Pure functions (no Gradio), so the tab's callbacks stay thin and these stay testable."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sdpose_core.analysis import (
    CLASS_COLORS,
    ERROR_CLASSES,
    ImageRecord,
    SampleSet,
    SetAnalysis,
    brighten_if_dark,
    fit_to,
    render_comparison,
)

SHORT_CLASS = {"good": "good", "jitter": "jit", "inversion": "inv", "swap": "swap", "miss": "miss"}
IMAGE_COLUMNS = ["file", "people", "poses", "AP", "min OKS", "mean OKS", "crowd index", "bucket", *ERROR_CLASSES,
                 "unmatched people"]
LEGEND = (
    "**Error classes** (Ronchi & Perona, ICCV 2017; per joint, from ks = exp(-d² / (2 s² k²)), the joint's "
    "term of OKS): "
    + " · ".join(f"<span style='color:rgb{CLASS_COLORS[c]}'>●</span> **{c}**" for c in ERROR_CLASSES)
    + ". *good*: ks ≥ 0.85 to its own joint; *jitter*: 0.5 ≤ ks < 0.85 to it; *inversion*: nearest (ks ≥ 0.5) "
    "to the mirrored joint of the same person (left ↔ right); *swap*: nearest (ks ≥ 0.5) to a joint of another "
    "person; *miss*: ks < 0.5 to all of them. The predicted joint goes to whichever candidate it is most similar "
    "to, as the authors' coco-analyze code does. Predictions are matched to people greedily by score at OKS ≥ 0.1; "
    "a person nobody matched is an *unmatched person*. In the pictures: ground truth white (hollow joints), "
    "prediction coloured by body side (person's left orange, right blue); a joint with an error gets a ring in its "
    "class colour and a line to the true joint (good joints get none)."
)


def weights_banner(analysis_or_predictor_info: Any) -> str:
    """A loud line when the weights are untrained, else the weights' description."""
    trained = getattr(analysis_or_predictor_info, "trained", False)
    description = getattr(analysis_or_predictor_info, "description", None) or getattr(
        analysis_or_predictor_info, "weights_description", "")
    if not trained:
        return ("⚠️ **UNTRAINED weights**: the poses are random, so these numbers say nothing about SDPose "
                "(the analysis itself is real).")
    return f"Weights: {description}"


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if value < 0:
        return "n/a"
    return f"{value:.{digits}f}"


def cycle_table(analysis: SetAnalysis) -> str:
    """Markdown: per cycle AP, mean OKS, people matched and the share of each error class."""
    lines = ["| cycle | AP | mean OKS | people matched | " + " | ".join(ERROR_CLASSES) + " |",
             "|---|---|---|---|" + "---|" * len(ERROR_CLASSES)]
    for cycle, people in analysis.people.items():
        counts = analysis.counts[cycle - 1].sum(axis=0)
        total = max(1, int(counts.sum()))
        matched = sum(r.prediction >= 0 for r in people)
        mean_oks = float(np.mean([r.oks for r in people])) if people else float("nan")
        shares = " | ".join(f"{100 * c / total:.1f}%" for c in counts)
        lines.append(f"| {cycle} | {_fmt(analysis.set_ap[cycle])} | {_fmt(mean_oks)} | {matched}/{len(people)} | "
                     f"{shares} |")
    return "\n".join(lines)


def status_markdown(sample_set: SampleSet, analysis: SetAnalysis) -> str:
    predictions = analysis.predictions
    parts = [
        weights_banner(predictions),
        f"**{sample_set.name}**: {len(predictions.images)} images predicted with {predictions.model_name}, "
        f"{predictions.cycles} cycle(s){' + flip test' if predictions.flip else ''}, {predictions.boxes_note}; "
        f"{predictions.seconds:.1f} s, cached until the settings change.",
        f"**Scoring:** {analysis.scoring_note}.",
        cycle_table(analysis),
    ]
    parts += [f"Skipped {image_id}: {reason}" for image_id, reason in predictions.skipped.items()]
    parts += [f"Note: {note}" for note in sample_set.notes + predictions.notes + analysis.notes]
    return "\n\n".join(parts)


def summary_figure(analysis: SetAnalysis, joint_names: list[str], cycle: int) -> go.Figure:
    """Left: share of each error class per joint at `cycle`; right: the same over all joints per cycle."""
    figure = make_subplots(rows=1, cols=2, column_widths=[0.74, 0.26], horizontal_spacing=0.08,
                           subplot_titles=(f"per joint, cycle {cycle}", "all joints, per cycle"))
    per_joint = analysis.counts[cycle - 1].astype(float)  # (K, classes)
    joint_totals = per_joint.sum(axis=1, keepdims=True)
    scored = analysis.scored
    shares = np.divide(per_joint, joint_totals, out=np.zeros_like(per_joint), where=joint_totals > 0)
    names = [n for n, s in zip(joint_names, scored, strict=True) if s]
    per_cycle = analysis.counts.sum(axis=1).astype(float)  # (C, classes)
    cycle_shares = per_cycle / np.maximum(per_cycle.sum(axis=1, keepdims=True), 1)
    cycles = [f"cycle {c}" for c in range(1, len(per_cycle) + 1)]
    for index, name in enumerate(ERROR_CLASSES):
        color = "rgb" + str(CLASS_COLORS[name])
        figure.add_bar(x=names, y=100 * shares[scored, index], name=name, marker_color=color, legendgroup=name,
                       customdata=per_joint[scored, index], hovertemplate="%{x}: %{y:.1f}% (%{customdata:.0f})",
                       row=1, col=1)
        figure.add_bar(x=cycles, y=100 * cycle_shares[:, index], name=name, marker_color=color, legendgroup=name,
                       showlegend=False, customdata=per_cycle[:, index],
                       hovertemplate="%{x}: %{y:.1f}% (%{customdata:.0f})", row=1, col=2)
    if not per_joint.any():
        figure.add_annotation(text=f"no person matched at cycle {cycle} (OKS ≥ 0.1): no joint to classify",
                              xref="x domain", yref="y domain", x=0.5, y=0.5, showarrow=False, font=dict(size=14))
    figure.update_layout(barmode="stack", height=340, margin=dict(l=40, r=10, t=40, b=60), template="plotly_white",
                         legend=dict(orientation="h", y=1.18, x=0), yaxis_title="% of labelled joints")
    figure.update_yaxes(range=[0, 100])
    return figure


def image_rows(records: list[ImageRecord]) -> pd.DataFrame:
    rows = [[r.file_name, r.num_people, r.num_poses, _fmt(r.ap), _fmt(r.min_oks), _fmt(r.mean_oks),
             round(r.crowd_index, 2), r.bucket, *[r.counts[c] for c in ERROR_CLASSES], r.unmatched_people]
            for r in records]
    return pd.DataFrame(rows, columns=IMAGE_COLUMNS)


def people_rows(analysis: SetAnalysis, image_id: Any, cycle: int, joint_names: list[str]) -> pd.DataFrame:
    """One row per labelled person: tag, annotation id, OKS, then each joint's error class."""
    rows = []
    records = [r for r in analysis.people[cycle] if r.image_id == image_id]
    for record in records:
        classes = ["" if c < 0 else SHORT_CLASS[ERROR_CLASSES[c]] for c in record.classes.tolist()]
        oks = f"{record.oks:.3f}" if record.prediction >= 0 else "unmatched"
        rows.append([f"#{record.person_index + 1}", record.ann_id, oks, *classes])
    return pd.DataFrame(rows, columns=["person", "ann id", "OKS", *joint_names])


def style_people(frame: pd.DataFrame) -> Any:
    """Colour the class cells (pandas Styler, which gr.Dataframe renders)."""
    colors = {SHORT_CLASS[c]: "rgba({},{},{},0.35)".format(*CLASS_COLORS[c]) for c in ERROR_CLASSES}
    return frame.style.map(lambda value: f"background-color: {colors[value]}" if value in colors else "")


def render_image(sample_set: SampleSet, analysis: SetAnalysis | None, image_id: Any, cycle: int, show_gt: bool,
                 show_pred: bool, show_errors: bool, brighten: bool, max_side: int) -> tuple[np.ndarray, bool]:
    """(picture with the overlays, whether it was brightened for display)."""
    image = sample_set.read_image(image_id)
    lifted = False
    if brighten:
        image, lifted = brighten_if_dark(image)
    gt, _, boxes, _ = sample_set.people_arrays(image_id)
    poses = np.zeros((0, sample_set.layout.num_keypoints, 3))
    matches: list = []
    if analysis is not None:
        poses = analysis.poses(image_id, cycle)
        matches = [(r.person_index, r.prediction, r.classes) for r in analysis.people[cycle]
                   if r.image_id == image_id and r.prediction >= 0]
    labels = [f"#{i + 1}" for i in range(len(gt))]
    drawn = render_comparison(image, sample_set.layout, gt, poses, matches, show_gt, show_pred and analysis is not None,
                              show_errors and analysis is not None, boxes, labels)
    return fit_to(drawn, max_side)[0], lifted


def caption(record: ImageRecord) -> str:
    return f"AP {_fmt(record.ap, 2)} · min OKS {_fmt(record.min_oks, 2)} · {record.bucket} · {record.file_name}"
