"""The Webcam & video tab: live skeletons on the webcam stream, and annotated copies of uploaded videos.

Both run `sdpose_core.inference.live.LiveSession.process` frame by frame (the function scripts/measure_webcam_fps.py
times). Annotated videos are H.264 mp4 when PyAV is installed (sdpose_core.media.video writes it through PyAV's
libx264), else WebM (VP8, which OpenCV's pip wheels write): both play in browsers.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app.components import bind, user_errors
from app.context import AppContext
from sdpose_core.errors import DataError, SDPoseError
from sdpose_core.inference.live import MODES, LiveSession, LiveSettings

MODE_LABELS = {"single pass (cycle 1)": "single", "N cycles (draws cycle N)": "cycles"}
MAX_VIDEO_FRAMES = 600
STREAM_EVERY_S = 0.05  # the browser sends a frame at most every 50 ms (20 fps); slower processing drops frames
STREAM_TIME_LIMIT_S = 600  # one streaming session; the user presses record again after that


def browser_video_suffix() -> str:
    """.mp4 (H.264) when sdpose_core.media.video can write it through PyAV, else .webm (VP8 through OpenCV)."""
    from sdpose_core.media import video

    return ".mp4" if getattr(video, "H264", None) and importlib.util.find_spec("av") else ".webm"


def _settings(mode: str, cycles: float, smoothing: bool, detect_every: float, threshold: float,
              max_side: float = 480) -> LiveSettings:
    return LiveSettings(mode=MODE_LABELS.get(mode, mode if mode in MODES else "single"), cycles=int(cycles),
                        smoothing=bool(smoothing), detect_every=int(detect_every), score_threshold=float(threshold),
                        max_side=int(max_side)).checked()


@dataclass
class WebcamView:
    """The Webcam & video tab's components that its callbacks fill."""

    live: gr.Image
    live_stats: gr.Markdown
    session: gr.State
    annotated: gr.Video
    video_stats: gr.Markdown


def stream_frame(ctx: AppContext, view: WebcamView, frame: np.ndarray | None, mode: str, cycles: float,
                 smoothing: bool, detect_every: float, threshold: float,
                 session: LiveSession | None) -> dict[Any, Any]:
    """One webcam frame: detect (every k-th frame) or track, pose, draw; returns the drawing and timings."""
    if frame is None:
        return {view.live: gr.skip(), view.live_stats: "waiting for the webcam...", view.session: session}
    try:
        settings = _settings(mode, cycles, smoothing, detect_every, threshold)
        if session is None:
            session = LiveSession(settings)
        else:
            session.update(settings)
        annotated, stats = session.process(frame, ctx)
        session.last_error = None
    except SDPoseError as exc:
        # a stream keeps going: say what is wrong under the picture (and once as a toast) instead of stopping
        if session is None or session.last_error != str(exc):
            gr.Warning(str(exc))
        if session is not None:
            session.last_error = str(exc)
        return {view.live: gr.skip(), view.live_stats: f"**Frame skipped:** {exc}", view.session: session}
    return {view.live: annotated, view.live_stats: stats.markdown(), view.session: session}


@user_errors
def annotate_video(ctx: AppContext, view: WebcamView, video: str | None, mode: str, cycles: float, smoothing: bool,
                   detect_every: float, threshold: float, max_frames: float, max_side: float,
                   progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008 - gradio's API
    """Draw the skeletons on every frame of a video (up to `max_frames`); returns a browser-playable video."""
    from sdpose_core.media.video import VideoWriter, iter_video_frames, video_info

    if not video:
        raise gr.Error("Upload a video first (mp4, mov, avi, mkv, webm).")
    video = ctx.take_upload(video, "video")  # public mode: size and length limits
    info = video_info(video)
    settings = _settings(mode, cycles, smoothing, detect_every, threshold, max_side)
    session = LiveSession(settings)
    limit = max(1, min(int(max_frames), MAX_VIDEO_FRAMES))
    total = min(limit, info.frame_count) if info.frame_count > 0 else limit
    out_dir = ctx.export_folder() if ctx.public else Path(tempfile.mkdtemp(prefix="sdpose_video_"))  # public: TTL
    out_path = out_dir / f"{Path(video).stem}_pose{browser_video_suffix()}"
    sums = {"detect_ms": 0.0, "pose_ms": 0.0, "draw_ms": 0.0, "total_ms": 0.0}
    frames = people = detections = 0
    backends: dict[str, int] = {}  # what ran the pose model -> frames (auto may finish choosing mid-video)
    start = time.perf_counter()
    with VideoWriter(out_path, fps=info.fps) as writer:
        for frame in progress.tqdm(iter_video_frames(video, max_frames=limit), total=total, desc="frames"):
            annotated, stats = session.process(frame.image, ctx, time_s=frame.time_s)
            writer.write(annotated)
            for key in sums:
                sums[key] += getattr(stats, key)
            frames += 1
            people += stats.people
            detections += int(stats.detected)
            backends[stats.backend] = backends.get(stats.backend, 0) + 1
    if frames == 0:
        raise DataError(f"{Path(video).name}: no frame could be decoded")
    wall = time.perf_counter() - start
    trained = ctx.weights_info.trained
    summary = (
        ("**UNTRAINED weights: the poses are random.** Load trained weights in the Model tab.\n\n" if not trained
         else "")
        + f"{frames} frames of {info.width}x{info.height} at {info.fps:.1f} fps"
        + (f" (the first {frames} of {info.frame_count})" if info.frame_count > frames else "")
        + f"; processed at {frames / wall:.1f} fps ({wall:.1f} s), {people / frames:.1f} people per frame, "
        f"detector on {detections} frames.\n\n| stage | mean ms |\n|---|---|\n"
        + "".join(f"| {key[:-3]} | {value / frames:.1f} |\n" for key, value in sums.items())
        + "".join(f"\n{line} ({count} frames)\n" for line, count in backends.items() if line)
        + f"\nWritten as {out_path.suffix[1:]} ({writer.codec}), {out_path.stat().st_size / 1e6:.1f} MB."
    )
    return {view.annotated: str(out_path), view.video_stats: summary}


def build_tab(ctx: AppContext) -> WebcamView:
    """The Webcam & video tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown(
        "Live pose on your webcam (the browser asks for permission; press the record button). Frames are "
        "shrunk to 480 px, the person detector runs every k-th frame and people are tracked from their "
        "keypoints in between. The same settings apply to uploaded videos below."
    )
    with gr.Row():
        mode = gr.Radio(list(MODE_LABELS), value="single pass (cycle 1)", label="mode")
        cycles = gr.Slider(2, 8, value=3, step=1, label="cycles N (N-cycle mode)")
        detect_every = gr.Slider(1, 15, value=5, step=1, label="detector every k frames")
        threshold = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="keypoint score threshold")
        smoothing = gr.Checkbox(False, label="temporal smoothing (One-Euro)")
    with gr.Row():
        webcam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="webcam")
        live = gr.Image(label="skeletons", type="numpy", format="jpeg", interactive=False, elem_id="webcam-output")
    live_stats = gr.Markdown("fps and ms per stage appear here once the webcam streams.", elem_id="webcam-stats")
    session = gr.State(None, time_to_live=900)
    # The same callback on one frame as a plain request: gradio_client cannot follow a streaming event,
    # so API users and the tests send single frames here.
    one_frame = gr.Button("one frame", visible=False)

    gr.Markdown("### Video file\nAn annotated copy of an uploaded video (plays in the browser; download it with "
                "the button on the player).")
    with gr.Row():
        with gr.Column():
            video = gr.Video(sources=["upload"], label="video", height=360)
            with gr.Row():
                max_frames = gr.Slider(10, MAX_VIDEO_FRAMES, value=150, step=10, label="frames (at most)")
                max_side = gr.Slider(240, 1280, value=640, step=40, label="long side (px)")
            run = gr.Button("Annotate video", variant="primary")
        with gr.Column():
            annotated = gr.Video(label="annotated", height=360, interactive=False)
            video_stats = gr.Markdown()

    view = WebcamView(live, live_stats, session, annotated, video_stats)
    stream_inputs = [webcam, mode, cycles, smoothing, detect_every, threshold, session]
    frame_outputs = [live, live_stats, session]
    # trigger_mode stays gradio's default for streams ("multiple"): "always_last" answers the first frame
    # and then nothing more (tests/app/test_app_browser.py counts the frames of a 15 s stream).
    webcam.stream(bind(stream_frame, ctx, view), stream_inputs, frame_outputs, stream_every=STREAM_EVERY_S,
                  time_limit=STREAM_TIME_LIMIT_S, concurrency_limit=2, concurrency_id="live",
                  api_name="webcam_stream", api_visibility="undocumented", show_progress="hidden")
    one_frame.click(bind(stream_frame, ctx, view), stream_inputs, frame_outputs, api_name="webcam_frame",
                    concurrency_id="live")
    run.click(bind(annotate_video, ctx, view),
              [video, mode, cycles, smoothing, detect_every, threshold, max_frames, max_side],
              [annotated, video_stats], api_name="annotate_video", concurrency_id="pose")
    return view
