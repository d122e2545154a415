"""The Review tab: step through a labelled set's people, worst ground truth <-> prediction agreement first;
flag each one ("ok", "gt wrong", "prediction wrong", "ambiguous"), fix a joint by choosing it and clicking
the picture, and export the corrected COCO JSON and a CSV of flags.

Every change is saved at once, atomically, in the review file (`sdpose_core.analysis.review_store`); reopening the set
(also after a restart) continues where it stopped. The people are ranked by the predictions of the
current weights at their trained cycle count with ground-truth boxes (shared with the Samples tab's
cache); the ranking does not move while you edit.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from app.components import bind, user_errors
from app.context import AppContext
from app.tabs.sample_data import analysis_for, as_gradio_error, initial_choices, load_set, open_samples
from app.tabs.samples_views import SHORT_CLASS, weights_banner
from sdpose_core.analysis import (
    ERROR_CLASSES,
    DisplayTransform,
    PersonRecord,
    SampleSet,
    SetAnalysis,
    crop_view,
    rank_disagreement,
    render_comparison,
)
from sdpose_core.analysis.review_store import REVIEW_FLAGS, ReviewStore
from sdpose_core.errors import SDPoseError

VISIBILITY_CHOICES = [("visible (v=2)", 2), ("occluded (v=1)", 1)]
SELECTED_COLOR = (0, 229, 255)


def store_for(ctx: AppContext, ann_path: str) -> tuple[ReviewStore, str]:
    """The review store of a set (opened once per process; a corrupt file is moved aside with a warning)."""
    store, where, opened = ctx.review_store(load_set(ctx, ann_path).ann_path)
    if opened:
        for note in store.notes:
            gr.Warning(note)
    return store, where


def ranked_people(ctx: AppContext, ann_path: str,
                  progress: gr.Progress | None = None) -> tuple[SampleSet, SetAnalysis, list[PersonRecord]]:
    """(set, analysis, people worst first) at the current weights' trained cycles, GT boxes."""
    cycles = int(ctx.predictor().config.cycles)
    sample_set, analysis = analysis_for(ctx, ann_path, cycles, "gt", "drop", False, progress)
    return sample_set, analysis, rank_disagreement(analysis, cycles)


def _person(ctx: AppContext, ann_path: str, position: float,
            ) -> tuple[SampleSet, SetAnalysis, PersonRecord, int, int]:
    sample_set, analysis, ranked = ranked_people(ctx, ann_path)
    if not ranked:
        raise gr.Error(f"{sample_set.name} has no labelled people to review")
    index = int(np.clip(int(position or 1), 1, len(ranked)))
    return sample_set, analysis, ranked[index - 1], index, len(ranked)


def _joint_index(sample_set: SampleSet, joint: str | int) -> int:
    names = list(sample_set.layout.joints)
    if isinstance(joint, (int, float)) or str(joint).isdigit():
        index = int(joint)
    elif joint in names:
        index = names.index(joint)
    else:
        raise gr.Error(f"unknown joint {joint!r}; choose one of {names}")
    if not 0 <= index < len(names):
        raise gr.Error(f"joint {joint} is out of range 0..{len(names) - 1}")
    return index


def person_view(ctx: AppContext, ann_path: str, position: float, joint: str,
                show_pred: bool) -> tuple[np.ndarray, str, list[list[str]], int, DisplayTransform, str]:
    """(picture, description, joint table, position, display transform, saved note) of the person at
    `position`; the note box shows that person's saved note, so a note never carries over to the next one."""
    try:
        sample_set, analysis, record, index, total = _person(ctx, ann_path, position)
        store, where = store_for(ctx, ann_path)
        image = sample_set.image(record.image_id)
        annotation = image.people[record.person_index]
        gt = np.asarray(store.corrected_keypoints(annotation), dtype=np.float64).reshape(-1, 3)
        rgb = sample_set.read_image(image.id)
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    view, transform = crop_view(rgb, annotation["bbox"])
    to_view = np.array([[*transform.to_display(x, y), v] for x, y, v in gt])
    poses = np.zeros((0, len(gt), 3))
    matches: list = []
    if show_pred and record.pred_keypoints is not None:
        pred = record.pred_keypoints
        poses = np.array([[[*transform.to_display(x, y), s] for x, y, s in pred]])
        matches = [(0, 0, record.classes)]
    picture = render_comparison(view, sample_set.layout, to_view[None], poses, matches)
    selected = _joint_index(sample_set, joint) if joint else None
    if selected is not None and gt[selected, 2] > 0:
        center = tuple(int(round(c)) for c in to_view[selected, :2])
        cv2.circle(picture, center, 16, SELECTED_COLOR, 2, cv2.LINE_AA)
    flag = store.flag_of(record.ann_id) or "not reviewed"
    edited = sorted(store.edits.get(record.ann_id, {}))
    oks = f"OKS {record.oks:.3f}" if record.prediction >= 0 else "no prediction matched"
    text = (f"{weights_banner(analysis.predictions)}\n\n**Person {index} of {total}** (worst agreement first) — "
            f"`{image.file_name}`, annotation {record.ann_id}, {oks} at cycle {record.cycle}. **Flag: {flag}**"
            + (f"; edited joints: {', '.join(sample_set.layout.joints[j] for j in edited)}" if edited else "")
            + f"\n\nReview file: `{store.path}` ({where})."
            + "".join(f"\n\nNote: {note}" for note in sample_set.notes if note.startswith("a seeded sample")))
    rows = []
    for j, name in enumerate(sample_set.layout.joints):
        predicted = "" if record.pred_keypoints is None or not np.isfinite(record.pred_keypoints[j, 0]) else (
            f"{record.pred_keypoints[j, 0]:.1f}, {record.pred_keypoints[j, 1]:.1f}")
        klass = "" if record.classes[j] < 0 else SHORT_CLASS[ERROR_CLASSES[record.classes[j]]]
        truth = f"{gt[j, 0]:.1f}, {gt[j, 1]:.1f} (v={int(gt[j, 2])})" if gt[j, 2] > 0 else "unlabelled"
        rows.append([name, truth + (" ✎" if j in edited else ""), predicted, klass])
    return picture, text, rows, index, transform, store.note_of(record.ann_id)


def flag_person(ctx: AppContext, ann_path: str, position: float, flag: str, note: str) -> str:
    """Flag the person at `position`; returns the flag now stored."""
    try:
        _, _, record, _, _ = _person(ctx, ann_path, position)
        store, _ = store_for(ctx, ann_path)
        store.set_flag(record.ann_id, flag, note or "")
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    return store.flag_of(record.ann_id) or ""


def set_joint(ctx: AppContext, ann_path: str, position: float, joint: str, x: float, y: float, visibility: int) -> None:
    """Move `joint` of the person at `position` to image pixel (x, y) (visibility 0 removes its label)."""
    try:
        sample_set, _, record, _, _ = _person(ctx, ann_path, position)
        image = sample_set.image(record.image_id)
        if visibility and not (0 <= x <= image.width - 1 and 0 <= y <= image.height - 1):
            raise gr.Error(f"({x:.1f}, {y:.1f}) lies outside the {image.width}x{image.height} image")
        store, _ = store_for(ctx, ann_path)
        store.set_keypoint(record.ann_id, _joint_index(sample_set, joint), x, y, int(visibility))
    except SDPoseError as error:
        raise as_gradio_error(error) from None


def reset_person(ctx: AppContext, ann_path: str, position: float) -> None:
    try:
        _, _, record, _, _ = _person(ctx, ann_path, position)
        store_for(ctx, ann_path)[0].reset_person(record.ann_id)
    except SDPoseError as error:
        raise as_gradio_error(error) from None


def export_review(ctx: AppContext, ann_path: str) -> tuple[str, str, str]:
    """(corrected COCO JSON path, flags CSV path, summary) written beside the review file."""
    try:
        sample_set = load_set(ctx, ann_path)
        store, _ = store_for(ctx, ann_path)
        stem = store.path.name.removesuffix(".review.json")
        coco = store.export_coco(sample_set.data, store.path.parent / f"{stem}.corrected.json")
        rows = store.flag_rows(sample_set.data)
        flags = store.export_flags_csv(sample_set.data, store.path.parent / f"{stem}.flags.csv")
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    counts = {flag: sum(r["flag"] == flag for r in rows) for flag in REVIEW_FLAGS}
    summary = (f"Exported {len(store.edits)} corrected people to `{coco}` and {len(rows)} flagged/edited people "
               f"to `{flags}` (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ").")
    return str(coco), str(flags), summary


def _export_files(ctx: AppContext, ann_path: str) -> tuple[list[str], str]:
    """The exports for the download box: copies in a fresh folder under the system temp dir, which gradio
    serves (the review folder, e.g. next to the data, is outside the folders it may serve)."""
    coco, flags, summary = export_review(ctx, ann_path)
    folder = ctx.export_folder()
    return [str(shutil.copy2(file, folder / Path(file).name)) for file in (coco, flags)], summary


def person_summary(ctx: AppContext, ann_path: str, position: float) -> dict[str, Any]:
    """JSON-ready: the person's annotation id, image, flag and corrected keypoints (for API clients)."""
    try:
        sample_set, _, record, index, total = _person(ctx, ann_path, position)
        store, _ = store_for(ctx, ann_path)
        annotation = sample_set.image(record.image_id).people[record.person_index]
        keypoints = store.corrected_keypoints(annotation)
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    return {"position": index, "people": total, "ann_id": record.ann_id, "image_id": record.image_id,
            "oks": record.oks if record.prediction >= 0 else None, "flag": store.flag_of(record.ann_id),
            "keypoints": keypoints, "review_file": store.path.name if ctx.public else str(store.path)}


@dataclass
class ReviewView:
    """The Review tab's components that its callbacks fill (`person`: one person shown, in API order)."""

    chosen: gr.Dropdown
    set_note: gr.Markdown
    joint: gr.Dropdown
    picture: gr.Image
    info: gr.Markdown
    joints_table: gr.Dataframe
    position: gr.Number
    transform: gr.State
    flag_note: gr.Textbox
    exported: gr.File
    export_note: gr.Markdown

    @property
    def person(self) -> list[Any]:
        return [self.picture, self.info, self.joints_table, self.position, self.transform, self.flag_note]


# ------------------------------------------------------------------------------------------ callbacks
def _shown(view: ReviewView, ctx: AppContext, ann_path: str, position: float, joint_name: str,
           show_pred: bool) -> dict[Any, Any]:
    return dict(zip(view.person, person_view(ctx, ann_path, position, joint_name, show_pred), strict=True))


def open_sets(ctx: AppContext, view: ReviewView, spec: str) -> dict[Any, Any]:
    """List the labelled sets of a folder or JSON file."""
    chosen, note = open_samples(ctx, spec)
    return {view.chosen: chosen, view.set_note: note}


@user_errors
def show(ctx: AppContext, view: ReviewView, labelled_set: str, person: float, joint_name: str,
         prediction: bool) -> dict[Any, Any]:
    """The person at rank `person`."""
    return _shown(view, ctx, labelled_set, person, joint_name, prediction)


@user_errors
def show_previous(ctx: AppContext, view: ReviewView, labelled_set: str, person: float, joint_name: str,
                  prediction: bool) -> dict[Any, Any]:
    return _shown(view, ctx, labelled_set, max(1, int(person or 1) - 1), joint_name, prediction)


@user_errors
def show_next(ctx: AppContext, view: ReviewView, labelled_set: str, person: float, joint_name: str,
              prediction: bool) -> dict[Any, Any]:
    return _shown(view, ctx, labelled_set, int(person or 1) + 1, joint_name, prediction)


def show_if_chosen(ctx: AppContext, view: ReviewView, labelled_set: str, person: float, joint_name: str,
                   prediction: bool) -> dict[Any, Any]:
    """Another joint or the prediction toggled: the same person again (nothing before a set and joint)."""
    if labelled_set and joint_name:
        return show(ctx, view, labelled_set, person, joint_name, prediction)
    return dict(zip(view.person, (None, "", None, person, DisplayTransform(), ""), strict=True))


@user_errors
def begin(ctx: AppContext, view: ReviewView, labelled_set: str,
          progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008 - Gradio's idiom
    """Rank the set's people (predicting it once) and show the worst one."""
    try:
        sample_set, _, _ = ranked_people(ctx, labelled_set, progress)
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    names = list(sample_set.layout.joints)
    return {view.joint: gr.update(choices=names, value=names[0])} | _shown(view, ctx, labelled_set, 1, names[0], True)


@user_errors
def flag(ctx: AppContext, view: ReviewView, which: str, labelled_set: str, person: float, text: str, joint_name: str,
         prediction: bool) -> dict[Any, Any]:
    """Flag, then move on to the next person (the flag shows when you step back)."""
    stored = flag_person(ctx, labelled_set, person, which, text)
    gr.Info(f"person {int(person or 1)}: {stored} (saved)")
    return _shown(view, ctx, labelled_set, int(person or 1) + 1, joint_name, prediction)


@user_errors
def click(ctx: AppContext, view: ReviewView, labelled_set: str, person: float, joint_name: str, visibility: int,
          prediction: bool, shown: DisplayTransform, evt: gr.SelectData) -> dict[Any, Any]:
    """A click on the picture places the chosen joint there (picture pixels -> image pixels)."""
    x, y = shown.to_image(float(evt.index[0]), float(evt.index[1]))
    set_joint(ctx, labelled_set, person, joint_name, x, y, int(visibility))
    return _shown(view, ctx, labelled_set, person, joint_name, prediction)


@user_errors
def clear_joint(ctx: AppContext, view: ReviewView, labelled_set: str, person: float, joint_name: str,
                prediction: bool) -> dict[Any, Any]:
    set_joint(ctx, labelled_set, person, joint_name, 0.0, 0.0, 0)
    return _shown(view, ctx, labelled_set, person, joint_name, prediction)


@user_errors
def undo(ctx: AppContext, view: ReviewView, labelled_set: str, person: float, joint_name: str,
         prediction: bool) -> dict[Any, Any]:
    reset_person(ctx, labelled_set, person)
    return _shown(view, ctx, labelled_set, person, joint_name, prediction)


@user_errors
def export(ctx: AppContext, view: ReviewView, labelled_set: str) -> dict[Any, Any]:
    files, summary = _export_files(ctx, labelled_set)
    return {view.exported: files, view.export_note: summary}


@user_errors
def review_flag(ctx: AppContext, labelled_set: str, person: int, flag: str, note: str = "") -> dict:
    """Flag the person at rank `person` (1 = worst agreement) as ok / gt wrong / prediction wrong / ambiguous."""
    stored = flag_person(ctx, labelled_set, person, flag, note)
    return person_summary(ctx, labelled_set, person) | {"flag": stored}


@user_errors
def review_set_joint(ctx: AppContext, labelled_set: str, person: int, joint: str, x: float, y: float,
                     visibility: int = 2) -> dict:
    """Move a joint (name or index) of the person at rank `person` to image pixel (x, y); visibility 0 unlabels."""
    set_joint(ctx, labelled_set, person, joint, x, y, visibility)
    return person_summary(ctx, labelled_set, person)


def build_tab(ctx: AppContext) -> ReviewView:
    """The tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown("### Review annotations\nPeople in order of ground truth ↔ prediction disagreement (unmatched and "
                "lowest OKS first). Flag each one, or fix a joint: choose it below, then click where it belongs "
                "in the picture. Every change is saved at once in the review file and survives a restart.")
    choices, note = initial_choices(ctx.samples)
    with gr.Row():
        spec = gr.Textbox(value=ctx.samples or "", label="sample folder or annotation JSON", scale=3)
        open_button = gr.Button("Open", scale=0, min_width=90)
    chosen = gr.Dropdown(label="labelled set", choices=choices, value=choices[0][1] if choices else None,
                         allow_custom_value=True)
    set_note = gr.Markdown(note)
    start = gr.Button("Rank people and start", variant="primary")
    transform = gr.State(DisplayTransform())
    with gr.Row():
        with gr.Column(scale=3):
            picture = gr.Image(label="click to place the chosen joint", type="numpy", interactive=False)
        with gr.Column(scale=2):
            with gr.Row():
                previous = gr.Button("◀ previous")
                position = gr.Number(value=1, precision=0, label="person", minimum=1)
                following = gr.Button("next ▶")
            info = gr.Markdown()
            with gr.Row():
                flag_buttons = [gr.Button(name, size="sm", variant="secondary") for name in REVIEW_FLAGS]
            flag_note = gr.Textbox(label="note (optional, saved with the flag)")
            joint = gr.Dropdown(label="joint to place", choices=[], allow_custom_value=True)
            visibility = gr.Radio(VISIBILITY_CHOICES, value=2, label="placed joint is")
            show_pred = gr.Checkbox(value=True, label="show prediction")
            with gr.Row():
                unlabel = gr.Button("remove this joint's label", size="sm")
                reset = gr.Button("undo all edits of this person", size="sm")
    joints_table = gr.Dataframe(headers=["joint", "ground truth (x, y)", "prediction (x, y)", "class"],
                                interactive=False, wrap=True)
    with gr.Row(equal_height=True):
        export_button = gr.Button("Export corrected COCO JSON + flags CSV", scale=1)
        exported = gr.File(label="exports", file_count="multiple", scale=2, height=120)
    export_note = gr.Markdown()

    view = ReviewView(chosen, set_note, joint, picture, info, joints_table, position, transform, flag_note,
                      exported, export_note)
    current = [chosen, position, joint, show_pred]
    open_button.click(bind(open_sets, ctx, view), [spec], [chosen, set_note], api_name="review_sets")
    start.click(bind(begin, ctx, view), [chosen], [joint, *view.person], api_name="review_start")
    position.submit(bind(show, ctx, view), current, view.person, api_name="review_show")
    previous.click(bind(show_previous, ctx, view), current, view.person, api_name=False)
    following.click(bind(show_next, ctx, view), current, view.person, api_name=False)
    for control in (joint, show_pred):
        control.change(bind(show_if_chosen, ctx, view), current, view.person, api_name=False)
    for button, name in zip(flag_buttons, REVIEW_FLAGS, strict=True):
        button.click(bind(flag, ctx, view, name), [chosen, position, flag_note, joint, show_pred], view.person,
                     api_name=False)
    picture.select(bind(click, ctx, view), [chosen, position, joint, visibility, show_pred, transform], view.person,
                   api_name=False)
    unlabel.click(bind(clear_joint, ctx, view), current, view.person, api_name=False)
    reset.click(bind(undo, ctx, view), current, view.person, api_name=False)
    export_button.click(bind(export, ctx, view), [chosen], [exported, export_note], api_name="review_export")
    gr.api(bind(review_flag, ctx), api_name="review_flag")
    gr.api(bind(review_set_joint, ctx), api_name="review_set_joint")
    return view
