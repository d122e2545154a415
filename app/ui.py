"""The Gradio page: tabs Compare, Webcam & video, Samples & failure analysis, Review, Model.

    demo = build_demo(AppContext())      # one context: models and detectors shared by all users
    launch(demo.queue(default_concurrency_limit=CONCURRENCY))

Every tab is built by a `build_x_tab(ctx)` function in its own module; a tab whose module is missing
(or fails to import) shows a line saying so, and the rest of the app still starts.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import gradio as gr

from app.context import AppContext

LOG = logging.getLogger("sdpose_studio")

INTRO = """# SDPose Studio
Multi-Cycled Transformers for human pose (SDPose, CVPR 2024, *Tokenized Pose Estimation via
Circulation-Guide Self-Distillation*), re-implemented in PyTorch. The same transformer layers run several
times (cycles); self-distillation teaches cycle 1 — the single pass you deploy — what later cycles know.
Compare them on your photos, live on a webcam, and on labelled data.
"""

# (tab title, module, builder function)
TABS: tuple[tuple[str, str, str], ...] = (
    ("Compare", "app.compare", "build_compare_tab"),
    ("Webcam & video", "app.webcam", "build_webcam_tab"),
    ("Samples & failure analysis", "app.samples", "build_samples_tab"),
    ("Review", "app.review", "build_review_tab"),
    ("Model", "app.model_tab", "build_model_tab"),
)

CSS = """
.sdpose-untrained, .sdpose-untrained * { color: #fff !important; }
.sdpose-untrained code { background: rgba(255, 255, 255, 0.18) !important; padding: 0 4px; border-radius: 4px; }
"""
MAX_UPLOAD = "300mb"  # videos; images are further limited by their pixel count (app.components)
CONCURRENCY = 2  # events run at once per event group: the machine has 2 cores and models are shared


def _builder(module_name: str, function: str) -> tuple[Callable[[AppContext], None] | None, str]:
    """The tab's builder, or None and the reason it is not available."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None, f"`{module_name}` is not part of this build yet."
        LOG.exception("tab module %s failed to import", module_name)
        return None, f"`{module_name}` could not be imported ({exc})."
    except Exception as exc:  # noqa: BLE001 - one broken tab must not take the whole studio down
        LOG.exception("tab module %s failed to import", module_name)
        return None, f"`{module_name}` could not be imported ({type(exc).__name__}: {exc})."
    builder = getattr(module, function, None)
    if builder is None:
        return None, f"`{module_name}` has no `{function}`."
    return builder, ""


def build_demo(ctx: AppContext | None = None) -> gr.Blocks:
    """The whole studio page for `ctx` (default: a context with the default weights and data)."""
    ctx = ctx or AppContext()
    with gr.Blocks(title="SDPose Studio") as demo:
        gr.Markdown(INTRO)
        for title, module_name, function in TABS:
            builder, reason = _builder(module_name, function)
            with gr.Tab(title):
                if builder is None:
                    gr.Markdown(f"**This tab is missing:** {reason}")
                else:
                    builder(ctx)
        for fn, outputs in ctx.page_load_hooks:
            demo.load(fn, None, outputs, api_visibility="private", show_progress="hidden")
    demo.sdpose_context = ctx  # tests and scripts reach the shared state through the demo
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


def launch_options() -> dict:
    """Keyword arguments for `demo.launch` that belong to the page itself (style, upload limit)."""
    return {"css": CSS, "max_file_size": MAX_UPLOAD, "show_error": True}
