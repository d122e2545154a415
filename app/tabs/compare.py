"""The Compare tab: one N-cycle forward on an image, cycle 1 (the single pass) next to cycle N.

Everything shown comes from ONE `Predictor.predict(cycles=N)` call, detection included (the detector chosen
here, timed by the Predictor): cycle 1's keypoints and heatmaps are a by-product of that forward, and they
are exactly what a single-pass run would give.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app.components import bind, checked_image, image_output_file, untrained_banner, user_errors, weights_line
from app.context import DEFAULT_DETECTOR, DETECTOR_CHOICES, AppContext
from sdpose_core.analysis import compare
from sdpose_core.detection.factory import DETECTOR_HELP as DETECTOR_TEXT
from sdpose_core.inference.results import PredictionResult
from sdpose_core.media.images import load_image
from sdpose_core.paths import data_root

CURRENT_WEIGHTS = "current (Model tab)"
MAX_CYCLES = 8
DISPLAY_MAX_SIDE = 1600
LAYOUTS = ("columns", "slider")
DETECTOR_HELP = "; ".join(f"{name}: {text}" for name, text in DETECTOR_TEXT.items())


@dataclass
class CompareState:
    """What one Compare run keeps per browser session, so pickers and the threshold redraw without rerunning."""

    image: np.ndarray
    result: PredictionResult


@dataclass
class CompareView:
    """The Compare tab's components that its callbacks fill (`results`: the outputs of a run, in API order)."""

    weights: gr.Dropdown
    banner: gr.HTML
    single: gr.Image
    final: gr.Image
    people: gr.Dataframe
    joints: gr.Dataframe
    heatmaps: gr.Plot
    overlay: gr.Plot
    timing: gr.Markdown
    notes: gr.Markdown
    person: gr.Dropdown
    joint: gr.Dropdown
    state: gr.State

    @property
    def results(self) -> list[Any]:
        return [self.banner, self.single, self.final, self.people, self.joints, self.heatmaps, self.overlay,
                self.timing, self.notes, self.person, self.joint, self.state]


def example_images() -> list[str]:
    """Example photos that need nothing downloaded: scikit-image ships public-domain / CC0 photos of people
    (the astronaut Eileen Collins, NASA; the grayscale "camera" man, CC0). Where the shared data folder
    exists (development machines), two of its COCO / CrowdPose images are offered too; they are read in
    place, never copied into the project."""
    paths: list[str] = []
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "data"
        paths += [str(folder / name) for name in ("astronaut.png", "camera.png") if (folder / name).is_file()]
    root = data_root()
    for relative in ("coco/mmpose_coco/images/000000196141.jpg", "crowdpose/mmpose_crowdpose/images"):
        candidate = root / relative
        if candidate.is_dir():
            candidate = next(iter(sorted(candidate.glob("*.jpg"))), candidate)
        if candidate.is_file():
            paths.append(str(candidate))
    return paths


def timing_markdown(result: PredictionResult, detector: str, draw_ms: float) -> str:
    """The stages of one run in ms; detection and everything after it as the Predictor timed them."""
    timings = result.timings
    detector_ms = timings.detector_ms or 0.0
    rows = [f"| detector ({detector}) | {detector_ms:.0f} |", f"| crop people | {timings.preprocess_ms:.0f} |"]
    for cycle, (ms, batch) in enumerate(zip(timings.cycle_ms, timings.cycle_batch_sizes, strict=False), start=1):
        extra = " (incl. conv stem + embedding)" if cycle == 1 else ""
        rows.append(f"| pose cycle {cycle}{extra}, {batch} crop(s){' x2 flip' if result.flip else ''} | {ms:.0f} |")
    if not timings.cycle_ms and result.people:
        rows.append(f"| pose, all cycles | {timings.pose_ms:.0f} |")
    rows += [f"| decode heatmaps (all cycles) | {timings.decode_ms:.0f} |", f"| drawing | {draw_ms:.0f} |",
             f"| **total** | **{timings.total_ms + draw_ms:.0f}** |"]
    return "| stage | ms |\n|---|---|\n" + "\n".join(rows) + f"\n\n{result.backend_line}"


def _choices(result: PredictionResult) -> tuple[Any, Any]:
    people = [f"#{i}" for i in range(1, len(result.people) + 1)]
    joints = list(result.layout.joints)
    return (gr.update(choices=people, value=people[0] if people else None),
            gr.update(choices=joints, value=joints[0]))


def figures(state: CompareState | None, person: str | None, joint: str | None, layout: str) -> tuple[Any, Any]:
    """The per-cycle heatmap figure of one person and joint, and the all-joints overlay of that person."""
    if state is None or not state.result.people:
        return None, None
    result = state.result
    index = int(str(person).lstrip("#")) - 1 if person and str(person).lstrip("#").isdigit() else 0
    index = min(max(index, 0), len(result.people) - 1)
    joints = list(result.layout.joints)
    joint_index = joints.index(joint) if joint in joints else 0
    label = f"person #{index + 1}:"
    chosen = result.people[index]
    return (compare.heatmap_figure(chosen, joint_index, joints, layout if layout in LAYOUTS else "columns", label),
            compare.overlay_figure(chosen, joints, label))


def _drawings(state: CompareState, threshold: float) -> tuple[str, str]:
    """Cycle 1 and the final cycle drawn, as files (see `image_output_file` for why not arrays)."""
    result = state.result
    single = compare.draw_cycle(state.image, result, 1, threshold, DISPLAY_MAX_SIDE)
    final = compare.draw_cycle(state.image, result, None, threshold, DISPLAY_MAX_SIDE)
    return image_output_file(single), image_output_file(final)


# ------------------------------------------------------------------------------------------ callbacks
@user_errors
def compare_image(ctx: AppContext, view: CompareView, image: str | None, weights: str, cycles: float,
                  detector: str, flip: bool, dynamic: bool, threshold: float, layout: str) -> dict[Any, Any]:
    """Detect people, run ONE forward of `cycles` cycles, and show cycle 1 next to the last cycle."""
    if not image:
        raise gr.Error("Upload an image first (drag and drop, paste, or pick an example).")
    cycles = int(cycles)
    if not 1 <= cycles <= min(MAX_CYCLES, ctx.limits.cycles):
        raise gr.Error(f"cycles must be between 1 and {min(MAX_CYCLES, ctx.limits.cycles)}, got {cycles}")
    if detector not in DETECTOR_CHOICES:
        raise gr.Error(f"unknown detector {detector!r}; choose one of {', '.join(DETECTOR_CHOICES)}")
    spec = None if not weights or weights == CURRENT_WEIGHTS else weights
    predictor = ctx.predictor(spec)
    image_rgb = load_image(image)
    person_detector = ctx.detector(detector)
    result = predictor.predict(image_rgb, cycles=cycles, flip=bool(flip), dynamic=bool(dynamic),
                               detector=person_detector)
    state = CompareState(image_rgb, result)
    start = time.perf_counter()
    single, final = _drawings(state, float(threshold))
    draw_ms = (time.perf_counter() - start) * 1e3
    fallback = getattr(person_detector, "fallback_note", None)
    notes = [weights_line(result.weights_info)] + [f"- {note}" for note in result.notes]
    notes += [f"- {fallback}"] if fallback else []
    person_choice, joint_choice = _choices(result)
    shown = {view.banner: untrained_banner(result.weights_info), view.single: single, view.final: final,
             view.timing: timing_markdown(result, ctx.detector_label(detector), draw_ms),
             view.notes: "\n".join(notes), view.person: person_choice, view.joint: joint_choice, view.state: state}
    if not result.people:
        gr.Warning("No people found in this image. Try the 'whole-image' detector for a photo of one person "
                   "filling the frame.")
        return shown | {view.people: [], view.joints: [], view.heatmaps: None, view.overlay: None}
    person_headers, person_rows = compare.person_table(result)
    joint_headers, joint_rows = compare.cycle_table(result)
    heatmaps, overlay = figures(state, "#1", result.layout.joints[0], layout)
    return shown | {view.people: gr.update(value=person_rows, headers=person_headers),
                    view.joints: gr.update(value=joint_rows, headers=joint_headers),
                    view.heatmaps: heatmaps, view.overlay: overlay}


def cleared_results(view: CompareView) -> dict[Any, Any]:
    """Every Compare output emptied: run after a failed Compare, so the previous image's pictures, timing table
    and weights line do not stay on screen as if they belonged to the input that failed."""
    nobody = gr.update(choices=[], value=None)
    return {view.banner: "", view.single: None, view.final: None, view.people: [], view.joints: [],
            view.heatmaps: None, view.overlay: None, view.timing: "", view.notes: "", view.person: nobody,
            view.joint: nobody, view.state: None}


@user_errors
def pick_figures(view: CompareView, state: CompareState | None, person: str | None, joint: str | None,
                 layout: str) -> dict[Any, Any]:
    """Another person, joint or layout of the last run: its figures, without running the model again."""
    heatmaps, overlay = figures(state, person, joint, layout)
    return {view.heatmaps: heatmaps, view.overlay: overlay}


@user_errors
def redraw(view: CompareView, state: CompareState | None, threshold: float) -> dict[Any, Any]:
    """Both drawings again at a new keypoint score threshold (nothing to draw before the first run)."""
    if state is None:
        return {view.single: gr.update(), view.final: gr.update()}
    single, final = _drawings(state, float(threshold))
    return {view.single: single, view.final: final}


def weights_choices(ctx: AppContext, view: CompareView) -> dict[Any, Any]:
    """On page load: the weights dropdown offers the weights this process has loaded."""
    return {view.weights: gr.update(choices=[CURRENT_WEIGHTS] + [w for w in ctx.loaded_weights() if w])}


def build_tab(ctx: AppContext) -> CompareView:
    """The Compare tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown(
        "Upload a photo: people are detected, and **one** forward pass of N cycles runs on all of them. "
        "The left picture is **cycle 1 — the single deployed pass** (taken from that same forward: each "
        "cycle's output is a by-product of the next), the right one is cycle N. Hollow grey rings and thin "
        "grey limbs mark joints scoring below the threshold."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = checked_image(ctx.limits.image_pixels, label="image", type="filepath", image_mode=None,
                                  elem_id="compare-input", sources=["upload", "clipboard"], height=320)
            run = gr.Button("Compare cycles", variant="primary", elem_id="compare-run")
            weights = gr.Dropdown([CURRENT_WEIGHTS], value=CURRENT_WEIGHTS, label="weights", allow_custom_value=True,
                                  info="the Model tab's weights, or type a weights folder / .pth / hf://org/repo")
            cycles = gr.Slider(1, MAX_CYCLES, value=3, step=1, label="cycles N",
                               info="cycles beyond the model's training cycles were never trained")
            detector = gr.Radio(list(DETECTOR_CHOICES), value=DEFAULT_DETECTOR, label="person detector",
                                info=DETECTOR_HELP)
            with gr.Row():
                flip = gr.Checkbox(False, label="flip test")
                dynamic = gr.Checkbox(False, label="dynamic cycles",
                                      info="stop a person once two cycles agree (0.5 heatmap px)")
            threshold = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="keypoint score threshold")
            examples = example_images()
            if examples:
                gr.Examples(examples, inputs=[image], label="examples (public-domain / CC0; shared data when present)",
                            elem_id="compare-examples")
        with gr.Column(scale=3):
            banner = gr.HTML(elem_id="compare-banner")
            with gr.Row():
                single = gr.Image(label="cycle 1 = the single pass", type="numpy", format="jpeg", elem_id="compare-single",
                                  interactive=False, buttons=["download", "fullscreen"])
                final = gr.Image(label="cycle N (each person's final cycle)", type="numpy", format="jpeg", elem_id="compare-final",
                                 interactive=False, buttons=["download", "fullscreen"])
            with gr.Row():
                timing = gr.Markdown(label="timing", elem_id="compare-timing")
                notes = gr.Markdown(elem_id="compare-notes")
            people = gr.Dataframe(label="people", interactive=False, wrap=True)
            with gr.Row():
                person = gr.Dropdown([], label="person", interactive=True)
                joint = gr.Dropdown([], label="joint", interactive=True)
                layout = gr.Radio(list(LAYOUTS), value="columns", label="cycles as")
            heatmap_plot = gr.Plot(label="heatmap per cycle", elem_id="compare-heatmaps")
            overlay_plot = gr.Plot(label="all joints per cycle", elem_id="compare-overlay")
            joints = gr.Dataframe(label="per joint: score per cycle and shift between cycles (image px)",
                                  interactive=False, max_height=420)
    view = CompareView(weights, banner, single, final, people, joints, heatmap_plot, overlay_plot, timing, notes,
                       person, joint, gr.State(None, time_to_live=3600))
    ctx.on_page_load(bind(weights_choices, ctx, view), [weights])
    run.click(bind(compare_image, ctx, view), [image, weights, cycles, detector, flip, dynamic, threshold, layout],
              view.results, api_name="compare", concurrency_id="pose").failure(
        bind(cleared_results, view), None, view.results, api_visibility="private", show_progress="hidden",
        queue=False)
    pickers = [view.state, person, joint, layout]
    for trigger in (person.input, joint.input, layout.input):
        trigger(bind(pick_figures, view), pickers, [heatmap_plot, overlay_plot], api_visibility="private",
                show_progress="minimal")
    threshold.release(bind(redraw, view), [view.state, threshold], [single, final], api_visibility="private",
                      show_progress="minimal")
    return view
