"""The Samples & failure analysis tab: a labelled set's images with ground truth against predictions, OKS per
person, AP per image, crowd buckets and the Ronchi & Perona error class of every joint, for every cycle.

The sets, predictions and analyses come through the context's caches (app.tabs.sample_data, shared with the
Review tab); the logic lives in `sdpose_core.analysis`, the pictures and tables in `app.tabs.samples_views`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np

from app.components import bind, user_errors
from app.context import AnalysisKey, AppContext, ThumbnailKey
from app.tabs.sample_data import (
    DEFAULT_SAMPLE,
    analysis_for,
    as_gradio_error,
    banner_html,
    describe,
    initial_choices,
    load_set,
    open_samples,
    prediction_key,
)
from app.tabs.samples_views import (
    LEGEND,
    caption,
    image_rows,
    people_rows,
    render_image,
    status_markdown,
    style_people,
    summary_figure,
)
from sdpose_core.analysis import (
    BUCKET_FILTERS,
    CLASS_FILTERS,
    SORT_KEYS,
    ImageRecord,
    SampleSet,
    SetAnalysis,
    select_images,
)
from sdpose_core.errors import SDPoseError

BOX_CHOICES = [("ground-truth boxes (evaluation convention)", "gt"),
               ("detected boxes (the set's detections file, else the person detector)", "detected")]
HEAD_NECK_CHOICES = [("drop: score the 12 shared joints", "drop"),
                     ("synthesize: neck & head_top from COCO joints, score 14", "synthesize")]
MAX_CYCLES = 4
DETAIL_SIDE, THUMB_SIDE = 1100, 360
# A large set (lsp_extended: 10,000 people) is analysed on a seeded sample, and the gallery shows one page of
# thumbnails at a time, so opening and analysing it stays within seconds; "all" is there for patient users.
SAMPLE_CHOICES = [("50 images", 50), ("200 images", 200), ("1,000 images", 1000), ("all images", 0)]
PAGE_SIZE = 48


def _gallery(ctx: AppContext, sample_set: SampleSet, analysis: SetAnalysis, cycle: int,
             records: list[ImageRecord]) -> list[tuple[np.ndarray, str]]:
    items = []
    predictions = analysis.predictions
    key = AnalysisKey(prediction_key(ctx, sample_set, predictions.cycles, predictions.box_source, predictions.flip),
                      analysis.head_neck)
    for record in records:
        picture = ctx.thumbnails.get_or_compute(
            ThumbnailKey(key, cycle, record.image_id),
            lambda r=record: render_image(sample_set, analysis, r.image_id, cycle, True, True, True, True,
                                          THUMB_SIDE)[0])
        items.append((picture, caption(record)))
    return items


def _joint_names(sample_set: SampleSet) -> list[str]:
    return [name.replace("left_", "l_").replace("right_", "r_") for name in sample_set.layout.joints]


def sample_count(value: Any) -> int:
    """The sample size a user chose or typed (0 = every image); gr.Error naming the problem otherwise."""
    try:
        count = int(float(str(value).replace(",", "").strip() or 0))
    except ValueError:
        raise gr.Error(f"images to analyse must be a whole number (0 = all), got {value!r}") from None
    if count < 0:
        raise gr.Error(f"images to analyse must be 0 (all) or more, got {count}")
    return count


def page_of(records: list, page: float) -> tuple[list, str]:
    """The records of gallery page `page` (1-based, clipped to the pages there are) and a line saying which."""
    pages = max(1, -(-len(records) // PAGE_SIZE))
    page = min(max(1, int(page or 1)), pages)
    shown = records[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    if pages == 1:
        return shown, ""
    first = (page - 1) * PAGE_SIZE + 1
    return shown, (f"Gallery page {page} of {pages}: images {first}-{first + len(shown) - 1} of {len(records)} "
                   "in this order (change **page**).")


def analyse(ctx: AppContext, ann_path: str, cycles: float, box_source: str, head_neck: str, flip: bool,
            cycle: float, sort: str, bucket: str, error_class: str, sample_size: float = DEFAULT_SAMPLE,
            page: float = 1, compute: bool = True,
            progress: gr.Progress | None = None) -> tuple[str, Any, list, Any, list[str]]:
    """(status, chart, gallery, image table, image ids in gallery order) for the chosen settings; the gallery
    and the table hold one page of the sorted images."""
    cycles, cycle = int(cycles), int(cycle)
    try:
        sample_set, analysis = analysis_for(ctx, ann_path, cycles, box_source, head_neck, bool(flip), progress,
                                            compute, sample_count(sample_size))
        if analysis is None:
            return ("Press **Analyse set** to run the model over this set.", None, [], None, [])
        cycle = min(max(1, cycle), analysis.predictions.cycles)
        records, page_note = page_of(select_images(analysis, cycle, sort, bucket, error_class), page)
        gallery = _gallery(ctx, sample_set, analysis, cycle, records)
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    figure = summary_figure(analysis, _joint_names(sample_set), cycle)
    status = status_markdown(sample_set, analysis) + (f"\n\n{page_note}" if page_note else "")
    return (status, figure, gallery, image_rows(records), [str(r.image_id) for r in records])


def show_image(ctx: AppContext, ann_path: str, cycles: float, box_source: str, head_neck: str, flip: bool,
               image_ref: str, cycle: float, show_gt: bool, show_pred: bool, show_errors: bool,
               brighten: bool, sample_size: float = DEFAULT_SAMPLE) -> tuple[Any, Any, str]:
    """(picture, per-person table, caption) of one image; ground truth only until the set is analysed."""
    if image_ref is None or str(image_ref) == "":
        raise gr.Error("Choose an image (click one in the gallery).")
    try:
        sample_set, analysis = analysis_for(ctx, ann_path, int(cycles), box_source, head_neck, bool(flip),
                                            compute=False, sample_size=sample_count(sample_size))
        try:
            image = sample_set.image(image_ref)
        except SDPoseError:  # an image outside the analysed sample: its ground truth alone
            sample_set, analysis = load_set(ctx, ann_path), None
            image = sample_set.image(image_ref)
        cycle = min(max(1, int(cycle)), analysis.predictions.cycles if analysis else 1)
        picture, lifted = render_image(sample_set, analysis, image.id, cycle, show_gt, show_pred, show_errors,
                                       brighten, DETAIL_SIDE)
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    text = (f"**{image.file_name}** — {len(image.people)} labelled people, crowd index {image.crowd_index:.2f} "
            f"({image.bucket})")
    if analysis is None:
        text += ". Ground truth only: press **Analyse set** for predictions."
        return picture, None, text
    record = next((r for r in analysis.images[cycle] if r.image_id == image.id), None)
    if record is not None:
        text += f", AP {record.ap:.3f} at cycle {cycle}" if record.ap >= 0 else f", no AP at cycle {cycle}"
    if lifted:
        text += " · brightened for display"
    return picture, style_people(people_rows(analysis, image.id, cycle, _joint_names(sample_set))), text


@dataclass
class SamplesView:
    """The Samples tab's components that its callbacks fill (`results`: an analysis, in API order)."""

    banner: gr.HTML
    chosen: gr.Dropdown
    set_info: gr.Markdown
    status: gr.Markdown
    chart: gr.Plot
    gallery: gr.Gallery
    table: gr.Dataframe
    image_ids: gr.State
    image_ref: gr.Textbox
    picture: gr.Image
    people: gr.Dataframe
    image_text: gr.Markdown

    @property
    def results(self) -> list[Any]:
        return [self.status, self.chart, self.gallery, self.table, self.image_ids]

    @property
    def detail(self) -> list[Any]:
        return [self.picture, self.people, self.image_text]


# ------------------------------------------------------------------------------------------ callbacks
def show_banner(ctx: AppContext, view: SamplesView) -> dict[Any, Any]:
    return {view.banner: banner_html(ctx)}


def open_sets(ctx: AppContext, view: SamplesView, spec: str) -> dict[Any, Any]:
    """List the labelled sets of a folder, JSON file or hf:// dataset."""
    chosen, note = open_samples(ctx, spec)
    return {view.chosen: chosen, view.set_info: note}


@user_errors
def upload_set(ctx: AppContext, view: SamplesView, zipped: str | None) -> dict[Any, Any]:
    """Unpack an uploaded zip (a COCO / CrowdPose annotation JSON with its images) and list its sets."""
    if not zipped:
        return {}
    folder = ctx.unpack_set(zipped)
    chosen, note = open_samples(ctx, folder)
    return {view.chosen: chosen, view.set_info: note}


def describe_chosen(ctx: AppContext, view: SamplesView, ann_path: str | None) -> dict[Any, Any]:
    return {view.set_info: describe(ctx, ann_path)}


@user_errors
def run_analysis(ctx: AppContext, view: SamplesView, labelled_set: str, cycles: float, boxes: str, head_neck: str,
                 flip: bool, cycle: float, sort: str, bucket: str, error_class: str,
                 sample_size: float = DEFAULT_SAMPLE, page: float = 1,
                 progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008 - Gradio's idiom
    """Predict and analyse the set (once per settings), then show the chosen page."""
    shown = analyse(ctx, labelled_set, cycles, boxes, head_neck, flip, cycle, sort, bucket, error_class,
                    sample_size, page, compute=True, progress=progress)
    return dict(zip(view.results, shown, strict=True))


@user_errors
def refresh(ctx: AppContext, view: SamplesView, labelled_set: str, cycles: float, boxes: str, head_neck: str,
            flip: bool, cycle: float, sort: str, bucket: str, error_class: str,
            sample_size: float = DEFAULT_SAMPLE, page: float = 1) -> dict[Any, Any]:
    """Another cycle, order, filter or page of what the caches hold (nothing is computed)."""
    shown = analyse(ctx, labelled_set, cycles, boxes, head_neck, flip, cycle, sort, bucket, error_class,
                    sample_size, page, compute=False)
    return dict(zip(view.results, shown, strict=True))


def first_image(view: SamplesView, ids: list[str]) -> dict[Any, Any]:
    return {view.image_ref: ids[0] if ids else ""}


def on_select(view: SamplesView, ids: list[str], evt: gr.SelectData) -> dict[Any, Any]:
    return {view.image_ref: ids[evt.index] if evt.index is not None and evt.index < len(ids) else ""}


@user_errors
def image_view(ctx: AppContext, view: SamplesView, labelled_set: str, cycles: float, boxes: str, head_neck: str,
               flip: bool, image: str, cycle: float, show_gt: bool, show_pred: bool, show_errors: bool,
               brighten: bool, sample_size: float = DEFAULT_SAMPLE) -> dict[Any, Any]:
    shown = show_image(ctx, labelled_set, cycles, boxes, head_neck, flip, image, cycle, show_gt, show_pred,
                       show_errors, brighten, sample_size)
    return dict(zip(view.detail, shown, strict=True))


def redraw_image(ctx: AppContext, view: SamplesView, labelled_set: str, cycles: float, boxes: str, head_neck: str,
                 flip: bool, image: str, cycle: float, show_gt: bool, show_pred: bool, show_errors: bool,
                 brighten: bool, sample_size: float = DEFAULT_SAMPLE) -> dict[Any, Any]:
    """The chosen image with other overlays (empty while no image is chosen)."""
    if not image:
        return {view.picture: None, view.people: None, view.image_text: ""}
    return image_view(ctx, view, labelled_set, cycles, boxes, head_neck, flip, image, cycle, show_gt, show_pred,
                      show_errors, brighten, sample_size)


def build_tab(ctx: AppContext) -> SamplesView:
    """The tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown("### Samples & failure analysis\nGround truth against predictions on a labelled COCO-17 or "
                "CrowdPose-14 set, with OKS per person, AP per image, CrowdPose's crowd index and the error class "
                "of every joint, for every cycle of the Multi-Cycled Transformer.")
    banner = gr.HTML()
    with gr.Row():
        spec = gr.Textbox(value=ctx.samples or "", label="sample folder, annotation JSON or hf://datasets/org/name",
                          scale=3)
        open_button = gr.Button("Open", scale=0, min_width=90)
        zipped = gr.File(label="or upload a labelled set (.zip: annotation JSON + images)", file_types=[".zip"],
                         type="filepath", scale=2, height=90)
    choices, note = initial_choices(ctx.samples)
    chosen = gr.Dropdown(label="labelled set", choices=choices, value=choices[0][1] if choices else None,
                         allow_custom_value=True)
    set_info = gr.Markdown(note)
    with gr.Row():
        cycles = gr.Slider(1, MAX_CYCLES, value=3, step=1, label="cycles to run (SDPose-T is trained with 3)")
        box_source = gr.Radio(BOX_CHOICES, value="gt", label="person boxes")
        head_neck = gr.Radio(HEAD_NECK_CHOICES, value="drop",
                             label="CrowdPose with a COCO-17 model: head_top and neck")
        flip = gr.Checkbox(value=False, label="flip test")
        sample_size = gr.Dropdown(SAMPLE_CHOICES, value=DEFAULT_SAMPLE, allow_custom_value=True,
                                  label="images to analyse (seeded sample; type any number, 0 = all)")
    run = gr.Button("Analyse set", variant="primary")
    status = gr.Markdown()
    chart = gr.Plot(label="error classes")
    gr.Markdown(LEGEND)
    with gr.Row():
        cycle = gr.Slider(1, MAX_CYCLES, value=1, step=1, label="cycle shown")
        sort = gr.Dropdown(list(SORT_KEYS), value="worst OKS", label="sort by")
        bucket = gr.Radio(list(BUCKET_FILTERS), value="all", label="crowd bucket")
        error_class = gr.Dropdown(list(CLASS_FILTERS), value="any", label="with error class")
        page = gr.Number(value=1, precision=0, minimum=1, label=f"page ({PAGE_SIZE} images each)")
    gallery = gr.Gallery(label="images (click one)", columns=4, height=420, object_fit="contain", allow_preview=False)
    image_ids = gr.State([])
    with gr.Accordion("table of images", open=False):
        table = gr.Dataframe(interactive=False, wrap=True)
    with gr.Row():
        with gr.Column(scale=3):
            picture = gr.Image(label="ground truth (white) vs prediction", type="numpy", interactive=False)
        with gr.Column(scale=1):
            image_ref = gr.Textbox(label="image id or file name", placeholder="click a gallery image")
            show_gt = gr.Checkbox(value=True, label="ground truth")
            show_pred = gr.Checkbox(value=True, label="prediction")
            show_errors = gr.Checkbox(value=True, label="error classes")
            brighten = gr.Checkbox(value=True, label="brighten dark images")
            image_text = gr.Markdown()
    people = gr.Dataframe(label="people: OKS and the error class of every joint", interactive=False, wrap=True)

    view = SamplesView(banner, chosen, set_info, status, chart, gallery, table, image_ids, image_ref, picture,
                       people, image_text)
    settings = [chosen, cycles, box_source, head_neck, flip]
    controls = [*settings, cycle, sort, bucket, error_class, sample_size, page]
    detail = [*settings, image_ref, cycle, show_gt, show_pred, show_errors, brighten, sample_size]
    ctx.on_page_load(bind(show_banner, ctx, view), [banner])
    open_button.click(bind(open_sets, ctx, view), [spec], [chosen, set_info], api_name="samples_open")
    zipped.upload(bind(upload_set, ctx, view), [zipped], [chosen, set_info], api_name="samples_upload")
    chosen.change(bind(describe_chosen, ctx, view), [chosen], [set_info], api_name=False)
    run.click(bind(run_analysis, ctx, view), controls, view.results, api_name="samples_analyze").then(
        bind(first_image, view), [image_ids], [image_ref], api_name=False)
    for control in (cycle, sort, bucket, error_class, sample_size, page):
        control.change(bind(refresh, ctx, view), controls, view.results, api_name=False)
    gallery.select(bind(on_select, view), [image_ids], [image_ref], api_name=False)
    image_ref.change(bind(image_view, ctx, view), detail, view.detail, api_name="samples_image")
    for control in (show_gt, show_pred, show_errors, brighten, cycle):
        control.change(bind(redraw_image, ctx, view), detail, view.detail, api_name=False)
    return view
