"""The Samples & failure analysis tab: a labelled set's images with ground truth against predictions, OKS per
person, AP per image, crowd buckets and the Ronchi & Perona error class of every joint, for every cycle.

Predictions for a whole set are computed once per (set, weights, cycles, boxes, flip) and kept in memory
(`PREDICTIONS`); sorting, filtering and switching the shown cycle reuse them. The Review tab shares the
same caches (`analysis_for`). The logic lives in `sdpose_core.analysis`; the pictures and tables in
`app.samples_views`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.components import untrained_banner, user_errors
from app.samples_views import (
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
    ResultCache,
    SampleSet,
    SetAnalysis,
    analyse_set,
    describe_set,
    download_dataset,
    find_sample_sets,
    first_cycles,
    is_hub_address,
    load_sample_set,
    predict_set,
    select_images,
)
from sdpose_core.errors import SDPoseError

SETS = ResultCache(size=8)  # loaded SampleSets by (path, mtime, size)
PREDICTIONS = ResultCache(size=4)  # SetPredictions by (set, weights, cycles, boxes, flip)
ANALYSES = ResultCache(size=8)  # SetAnalysis by the predictions' key + head/neck mode
THUMBNAILS = ResultCache(size=160)
BOX_CHOICES = [("ground-truth boxes (evaluation convention)", "gt"),
               ("detected boxes (the set's detections file, else the person detector)", "detected")]
HEAD_NECK_CHOICES = [("drop: score the 12 shared joints", "drop"),
                     ("synthesize: neck & head_top from COCO joints, score 14", "synthesize")]
MAX_CYCLES = 4
DETAIL_SIDE, THUMB_SIDE = 1100, 360
# A large set (lsp_extended: 10,000 people) is analysed on a seeded sample, and the gallery shows one page of
# thumbnails at a time, so opening and analysing it stays within seconds; "all" is there for patient users.
SAMPLE_CHOICES = [("50 images", 50), ("200 images", 200), ("1,000 images", 1000), ("all images", 0)]
DEFAULT_SAMPLE = 200
PAGE_SIZE = 48


def as_gradio_error(error: Exception) -> gr.Error:
    return gr.Error(str(error) if isinstance(error, SDPoseError) else f"{type(error).__name__}: {error}")


def set_choices(spec: str | None) -> tuple[list[tuple[str, str]], str]:
    """(dropdown choices (label, annotation path), a Markdown note) for a folder, JSON or hf:// address."""
    if not spec or not str(spec).strip():
        return [], "No sample folder chosen: enter a folder or annotation JSON above (or start with --samples)."
    spec = str(spec).strip()
    root = download_dataset(spec) if is_hub_address(spec) else Path(spec).expanduser()
    entries = find_sample_sets(root)
    note = f"{len(entries)} labelled set(s) under `{root}`" + (f" (from the Hub: {spec})" if root != Path(spec) else "")
    return [(entry.label, str(entry.ann_path)) for entry in entries], note


def load_set(ann_path: str) -> SampleSet:
    """The SampleSet of an annotation file (re-read when the file changes)."""
    if not ann_path:
        raise gr.Error("Pick a labelled set first (open a folder, then choose a set).")
    path = Path(ann_path).expanduser()
    try:
        stat = path.stat()
    except OSError:
        raise gr.Error(f"annotation file {path} does not exist; open the sample folder again") from None
    name = f"{path.parent.parent.name}/{path.parent.name}"
    return SETS.get_or_compute((str(path.resolve()), stat.st_mtime_ns, stat.st_size),
                               lambda: load_sample_set(path, name=name))


def analysis_key(ctx: Any, sample_set: SampleSet, cycles: int, box_source: str, flip: bool) -> tuple:
    info = ctx.predictor().weights_info
    try:
        changed = sample_set.ann_path.stat().st_mtime_ns  # an edited annotation file gets new predictions
    except OSError:
        changed = 0
    return (f"{sample_set.ann_path}@{changed}#{len(sample_set.images)}", ctx.current_weights or "",
            info.description, int(cycles), box_source, bool(flip))


def analysis_for(ctx: Any, ann_path: str, cycles: int, box_source: str, head_neck: str, flip: bool,
                 progress: Any = None, compute: bool = True,
                 sample_size: int = DEFAULT_SAMPLE) -> tuple[SampleSet, SetAnalysis | None]:
    """The set (a seeded sample of `sample_size` images; 0 = all) and its analysis, computed (once) when
    `compute`, else only what the caches hold."""
    sample_set = load_set(ann_path).sample(int(sample_size) or None)
    key = analysis_key(ctx, sample_set, cycles, box_source, flip)
    cached = ANALYSES.get((*key, head_neck))
    if cached is not None or not compute:
        return sample_set, cached

    def run() -> Any:
        for other_key, other in PREDICTIONS.items():  # a longer run with the same settings holds these cycles
            if other_key[:3] + other_key[4:] == key[:3] + key[4:] and other.cycles > int(cycles):
                return first_cycles(other, int(cycles))
        report = (lambda share, text: progress(share, desc=text)) if progress is not None else None
        return predict_set(sample_set, ctx.predictor(), int(cycles), box_source, bool(flip), progress=report)

    predictions = PREDICTIONS.get_or_compute(key, run)
    analysis = ANALYSES.get_or_compute((*key, head_neck), lambda: analyse_set(sample_set, predictions, head_neck))
    return sample_set, analysis


def _gallery(ctx: Any, sample_set: SampleSet, analysis: SetAnalysis, cycle: int, records: list) -> list:
    items = []
    key = analysis_key(ctx, sample_set, analysis.predictions.cycles, analysis.predictions.box_source,
                       analysis.predictions.flip)
    for record in records:
        picture = THUMBNAILS.get_or_compute(
            (*key, analysis.head_neck, cycle, record.image_id),
            lambda r=record: render_image(sample_set, analysis, r.image_id, cycle, True, True, True, True,
                                          THUMB_SIDE)[0])
        items.append((picture, caption(record)))
    return items


def _joint_names(sample_set: SampleSet) -> list[str]:
    return [name.replace("left_", "l_").replace("right_", "r_") for name in sample_set.layout.joints]


def open_samples(spec: str) -> tuple[Any, str]:
    """Samples / Review: list the labelled sets of a folder, JSON file or hf:// dataset."""
    try:
        choices, note = set_choices(spec)
    except SDPoseError as error:
        gr.Warning(str(error))
        return gr.update(choices=[], value=None), f"⚠️ {error}"
    return gr.update(choices=choices, value=choices[0][1] if choices else None), note


def describe(ann_path: str | None) -> str:
    if not ann_path:
        return ""
    try:
        return describe_set(load_set(ann_path))
    except SDPoseError as error:
        gr.Warning(str(error))
        return f"⚠️ {error}"


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


def analyse(ctx: Any, ann_path: str, cycles: float, box_source: str, head_neck: str, flip: bool, cycle: float,
            sort: str, bucket: str, error_class: str, sample_size: float = DEFAULT_SAMPLE, page: float = 1,
            compute: bool = True, progress: Any = None) -> tuple[str, Any, list, Any, list]:
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


def show_image(ctx: Any, ann_path: str, cycles: float, box_source: str, head_neck: str, flip: bool,
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
            sample_set, analysis = load_set(ann_path), None
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


def initial_choices(samples: str | None) -> tuple[list[tuple[str, str]], str]:
    """The sets of the startup sample folder (a Hub address waits for the Open button: no network at build)."""
    if not samples:
        return [], "No sample folder given (start with `--samples DIR_OR_JSON` or enter one above)."
    if is_hub_address(samples):
        return [], f"Press **Open** to fetch `{samples}` from the Hugging Face Hub."
    try:
        return set_choices(samples)
    except SDPoseError as error:
        return [], f"⚠️ {error}"


def banner_html(ctx: Any) -> str:
    """The shared UNTRAINED banner for the current weights (empty for trained ones)."""
    try:
        return untrained_banner(ctx.weights_info)
    except SDPoseError as error:
        return f"<p>⚠️ the current weights cannot be loaded: {error}</p>"


def build_samples_tab(ctx: Any) -> None:
    """The tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown("### Samples & failure analysis\nGround truth against predictions on a labelled COCO-17 or "
                "CrowdPose-14 set, with OKS per person, AP per image, CrowdPose's crowd index and the error class "
                "of every joint, for every cycle of the Multi-Cycled Transformer.")
    banner = gr.HTML()
    ctx.on_page_load(lambda: banner_html(ctx), [banner])
    with gr.Row():
        spec = gr.Textbox(value=ctx.samples or "", label="sample folder, annotation JSON or hf://datasets/org/name",
                          scale=3)
        open_button = gr.Button("Open", scale=0, min_width=90)
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

    settings = [chosen, cycles, box_source, head_neck, flip]
    view = [cycle, sort, bucket, error_class, sample_size, page]
    outputs = [status, chart, gallery, table, image_ids]
    detail = [*settings, image_ref, cycle, show_gt, show_pred, show_errors, brighten, sample_size]

    @user_errors
    def run_analysis(labelled_set: str, cycles: float, boxes: str, head_neck: str, flip: bool, cycle: float,
                     sort: str, bucket: str, error_class: str, sample_size: float = DEFAULT_SAMPLE,
                     page: float = 1, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - Gradio's idiom
        return analyse(ctx, labelled_set, cycles, boxes, head_neck, flip, cycle, sort, bucket, error_class,
                       sample_size, page, compute=True, progress=progress)

    @user_errors
    def refresh(*args: Any) -> tuple:
        return analyse(ctx, *args, compute=False)

    @user_errors
    def image_view(labelled_set: str, cycles: float, boxes: str, head_neck: str, flip: bool, image: str,
                   cycle: float, show_gt: bool, show_pred: bool, show_errors: bool, brighten: bool,
                   sample_size: float = DEFAULT_SAMPLE) -> tuple:
        return show_image(ctx, labelled_set, cycles, boxes, head_neck, flip, image, cycle, show_gt, show_pred,
                          show_errors, brighten, sample_size)

    def on_select(ids: list, evt: gr.SelectData) -> str:
        return ids[evt.index] if evt.index is not None and evt.index < len(ids) else ""

    open_button.click(open_samples, [spec], [chosen, set_info], api_name="samples_open")
    chosen.change(describe, [chosen], [set_info], api_name=False)
    run.click(run_analysis, [*settings, *view], outputs, api_name="samples_analyze").then(
        lambda ids: ids[0] if ids else "", [image_ids], [image_ref], api_name=False)
    for control in view:
        control.change(refresh, [*settings, *view], outputs, api_name=False)
    gallery.select(on_select, [image_ids], [image_ref], api_name=False)
    image_ref.change(image_view, detail, [picture, people, image_text], api_name="samples_image")
    for control in (show_gt, show_pred, show_errors, brighten, cycle):
        control.change(lambda *a: image_view(*a) if a[5] else (None, None, ""), detail,
                       [picture, people, image_text], api_name=False)
