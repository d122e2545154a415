"""Pieces every tab uses: binding a module-level callback to the shared context (`bind`), an image input
that rejects bad files clearly, the UNTRAINED banner, and turning core errors into messages in the page
instead of tracebacks (`user_errors`)."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import os
import tempfile
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import gradio as gr
import numpy as np

from app.context import CURRENT_SESSION
from sdpose_core.errors import SDPoseError
from sdpose_core.hosting.limits import Limits

if TYPE_CHECKING:
    from sdpose_core.weights.load import WeightsInfo

LOG = logging.getLogger("sdpose_studio")
MAX_IMAGE_PIXELS = Limits().image_pixels  # above this an upload is refused before it is decoded (--max-image-mp)
Fn = TypeVar("Fn", bound=Callable[..., Any])
SESSION_PARAMETER = "sdpose_request"  # the gr.Request that `bind` adds to every callback's signature


def bind(callback: Callable[..., Any], *bound: Any) -> Callable[..., Any]:
    """`functools.partial(callback, *bound)` (the context, the tab's components) as gradio can read it.

    Every tab callback is a module-level function `callback(ctx, view, *inputs) -> {component: value}`;
    its event gets `bind(callback, ctx, view)`. gradio reads the callback's signature (a `gr.Progress`
    default) and its type hints (a `gr.SelectData` parameter), and takes no type hints from a bare
    partial, so this function carries the callback's name, annotations and the partial's signature.
    It also asks gradio for the event's gr.Request (an extra parameter the callback does not see) and makes its
    browser session the current one while the callback runs (`app.context.CURRENT_SESSION`)."""
    partial = functools.partial(callback, *bound)
    signature = inspect.signature(partial)
    wants_request = any(p.annotation in (gr.Request, "gr.Request") for p in signature.parameters.values())

    @functools.wraps(callback)
    def bound_callback(*args: Any, **kwargs: Any) -> Any:
        # the browser session of this event, for AppContext.session_id() (public mode keeps state per session);
        # gradio inserts the gr.Request positionally where our extra parameter sits, so it is found by type
        request = next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)
        if not wants_request:
            args = tuple(a for a in args if not isinstance(a, gr.Request))
            kwargs = {k: v for k, v in kwargs.items() if not isinstance(v, gr.Request)}
        token = CURRENT_SESSION.set(getattr(request, "session_hash", None))
        try:
            return partial(*args, **kwargs)
        finally:
            CURRENT_SESSION.reset(token)

    parameters = list(signature.parameters.values())
    if not wants_request:  # gradio fills a gr.Request parameter by its annotation; it is not an API input
        at = next((i for i, p in enumerate(parameters)
                   if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)), len(parameters))
        parameters.insert(at, inspect.Parameter(SESSION_PARAMETER, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                default=None, annotation=gr.Request))
    bound_callback.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    bound_callback.__annotations__ = {**getattr(callback, "__annotations__", {}), SESSION_PARAMETER: gr.Request}
    return bound_callback


def image_too_large_message(width: int, height: int, max_pixels: int = MAX_IMAGE_PIXELS) -> str:
    return (f"The image is {width}x{height} pixels ({width * height / 1e6:.0f} MP); the studio accepts up to "
            f"{max_pixels / 1e6:.0f} MP. Downscale it (people need only a few hundred pixels) and upload again.")


def _checked_preprocess(component: gr.Image, payload: Any) -> Any:
    """gr.Image.preprocess with the file checked first: opened lazily with PIL to read its header (format
    and size, nothing decoded) and refused with a clear gr.Error when it is not an image or too large."""
    if payload is None or getattr(payload, "path", None) is None or (payload.url or "").startswith("data:"):
        return gr.Image.preprocess(component, payload)
    import PIL.Image

    name = payload.orig_name or os.path.basename(payload.path)
    max_pixels = getattr(component, "sdpose_max_pixels", MAX_IMAGE_PIXELS)
    try:
        with PIL.Image.open(payload.path) as image:
            width, height = image.size
    except PIL.Image.DecompressionBombError:
        raise gr.Error(f"{name} is far too large to open safely (the studio accepts up to {max_pixels / 1e6:.0f} "
                       "MP); downscale it and upload again.") from None
    except (PIL.UnidentifiedImageError, OSError, ValueError):
        raise gr.Error(f"{name} is not an image this app can read (JPEG, PNG, BMP, TIFF, WebP, GIF...). "
                       "Upload a photo instead.") from None
    if width * height > max_pixels:
        raise gr.Error(image_too_large_message(width, height, max_pixels))
    return gr.Image.preprocess(component, payload)


def checked_image(max_pixels: int = MAX_IMAGE_PIXELS, **kwargs: Any) -> gr.Image:
    """A gr.Image input whose uploads are checked before decoding (see `_checked_preprocess`), refused above
    `max_pixels`.

    The check is bound to the instance rather than put in a gr.Image subclass: gradio writes a .pyi stub
    next to the source file of every component class defined outside gradio."""
    component = gr.Image(**kwargs)
    component.sdpose_max_pixels = int(max_pixels)
    component.preprocess = types.MethodType(_checked_preprocess, component)  # type: ignore[method-assign]
    return component


def untrained_banner(info: WeightsInfo | None) -> str:
    """A prominent HTML warning when the weights are untrained; empty when they are trained."""
    if info is None or getattr(info, "trained", True):
        return ""
    text = html.escape(str(getattr(info, "description", "UNTRAINED weights")))
    return (
        '<div class="sdpose-untrained" style="background:#b91c1c;color:white;padding:12px 16px;'
        'border-radius:8px;font-size:1.05em;margin-bottom:8px">'
        "<b>&#9888; UNTRAINED WEIGHTS: these poses are random and mean nothing.</b><br>"
        f"{text}<br>Load trained weights in the <b>Model</b> tab (a weights folder, an official SDPose "
        "<code>.pth</code> or <code>hf://org/repo</code>), or start the app with <code>--weights</code>.</div>"
    )


def weights_line(info: WeightsInfo | None) -> str:
    """One Markdown line saying which weights made a result."""
    if info is None:
        return ""
    flag = "trained" if info.trained else "**UNTRAINED**"
    where = f" `{info.location}`" if info.location else ""
    return f"Weights: {info.source}{where} ({flag}) — {info.description}"


def user_errors(fn: Fn) -> Fn:
    """Run a callback; SDPoseError -> gr.Error with its message, anything unexpected -> gr.Error naming
    it (the traceback goes to the server log, not to the page). gr.Error passes through."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except SDPoseError as exc:
            raise gr.Error(str(exc)) from None
        except MemoryError:
            raise gr.Error("Out of memory for this input; try a smaller image or video.") from None
        except Exception as exc:  # noqa: BLE001 - the page shows a message, the log keeps the traceback
            LOG.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}). The app keeps running; "
                           "see the server log for details.") from None

    return wrapper  # type: ignore[return-value]


OUTPUT_DIR = os.path.join(tempfile.gettempdir(), "sdpose-studio-outputs")
OUTPUT_MAX_AGE_S = 900


def image_output_file(rgb: np.ndarray, quality: int = 90) -> str:
    """A JPEG of the RGB array under a unique name, to hand to an output gr.Image.

    gradio caches numpy outputs under a hash of their bytes and rewrites that file in place on every
    call, so two users receiving the same picture at once can download a half-written file (the load
    test saw "Too little data for declared Content-Length"). A file path is instead copied into the
    cache under a temporary name and renamed, which is safe. Files older than 15 minutes are removed.
    """
    import time
    import uuid

    import cv2

    os.makedirs(OUTPUT_DIR, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise gr.Error("could not encode the drawn image")
    path = os.path.join(OUTPUT_DIR, f"{uuid.uuid4().hex}.jpg")
    with open(path, "wb") as fh:
        fh.write(encoded.tobytes())
    cutoff = time.time() - OUTPUT_MAX_AGE_S
    with os.scandir(OUTPUT_DIR) as entries:
        for entry in entries:
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:  # another request removed it first
                pass
    return path
