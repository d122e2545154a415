"""The Gradio page: tabs Compare, Webcam & video, Samples & failure analysis, Review, Model.

    demo = build_demo(AppContext())      # one context: models and detectors shared by all users
    launch(demo.queue(default_concurrency_limit=CONCURRENCY))

Every tab is built by the `build_tab(ctx)` function of its module in app/tabs/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gradio as gr

from app.context import AppContext
from app.tabs import compare, model, review, samples, webcam
from sdpose_core.hosting.policy import PublicPolicy

LOG = logging.getLogger("sdpose_studio")

INTRO = """# SDPose Studio
Multi-Cycled Transformers for human pose (SDPose, CVPR 2024, *Tokenized Pose Estimation via
Circulation-Guide Self-Distillation*), re-implemented in PyTorch. The same transformer layers run several
times (cycles); self-distillation teaches cycle 1 — the single pass you deploy — what later cycles know.
Compare them on your photos, live on a webcam, and on labelled data.
"""

# (tab title, builder)
TABS: tuple[tuple[str, Callable[[AppContext], object]], ...] = (
    ("Compare", compare.build_tab),
    ("Webcam & video", webcam.build_tab),
    ("Samples & failure analysis", samples.build_tab),
    ("Review", review.build_tab),
    ("Model", model.build_tab),
)

CSS = """
.sdpose-untrained, .sdpose-untrained * { color: #fff !important; }
.sdpose-untrained code { background: rgba(255, 255, 255, 0.18) !important; padding: 0 4px; border-radius: 4px; }
"""
MAX_UPLOAD = "300mb"  # videos; images are further limited by their pixel count (app.components)
CONCURRENCY = 2  # events run at once per event group: the machine has 2 cores and models are shared


def build_demo(ctx: AppContext | None = None) -> gr.Blocks:
    """The whole studio page for `ctx` (default: a context with the default weights and data)."""
    ctx = ctx or AppContext()
    with gr.Blocks(title="SDPose Studio") as demo:
        gr.Markdown(INTRO)
        if ctx.policy is not None:
            gr.Markdown(public_notice(ctx.policy), elem_id="public-notice")
        views = {}
        for title, build_tab in TABS:
            with gr.Tab(title):
                views[title] = build_tab(ctx)
        for fn, outputs in ctx.page_load_hooks:
            demo.load(fn, None, outputs, api_visibility="private", show_progress="hidden")
    demo.sdpose_context = ctx  # tests and scripts reach the shared state through the demo
    demo.sdpose_views = views  # tab title -> the components its callbacks fill (e.g. compare.CompareView)
    return demo


def launch(demo: gr.Blocks, attempts: int = 3, **kwargs: object) -> object:
    """`demo.launch(**launch_options(), **kwargs)`, retried: after starting the server gradio checks it with
    one HTTP request that gives up after 3 s, and on a saturated CPU that check can fail although the server
    is fine ("When localhost is not accessible, a shareable link must be created")."""
    for attempt in range(1, attempts + 1):
        try:
            return demo.launch(**{**launch_options(), **kwargs})
        except ValueError as exc:
            if "localhost is not accessible" not in str(exc) or attempt == attempts:
                raise
            LOG.warning("gradio could not reach its own server in time (busy CPU?); starting again")
            demo.close()
    raise AssertionError("unreachable")


def public_notice(policy: PublicPolicy) -> str:
    hours = f"{policy.limits.session_hours:g}"
    return (f"**Public demo:** your uploads and reviews are private to this browser session and deleted after "
            f"{hours} hours without use. Server folders cannot be opened here: use the listed sample sets or "
            f"upload your own (images up to {policy.limits.image_megapixels:g} MP, files up to "
            f"{policy.limits.upload_mb:g} MB, videos up to {policy.limits.video_seconds:g} s).")


def public_launch_options(policy: PublicPolicy | None) -> dict:
    """Extra `demo.launch` options of the public mode: the upload cap (local mode keeps MAX_UPLOAD), and the
    sessions folder as servable (a visitor's exports live in their own session folder, under a random name)."""
    if policy is None:
        return {}
    return {"max_file_size": f"{policy.limits.upload_mb:g}mb", "allowed_paths": [str(policy.sessions.root)]}


def launch_options() -> dict:
    """Keyword arguments for `demo.launch` that belong to the page itself (style, upload limit)."""
    return {"css": CSS, "max_file_size": MAX_UPLOAD, "show_error": True}
