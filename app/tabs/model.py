"""The Model tab: where the current weights came from, their model card, parameters and GFLOPs per cycle,
loading other weights without a restart; the model family table and scoring a predictions file."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import gradio as gr

from app.components import bind, untrained_banner, user_errors
from app.context import AppContext
from sdpose_core.errors import SDPoseError
from sdpose_core.hub import HF_PREFIX, is_hub_address, parse_hub_address
from sdpose_core.paths import PROJECT_ROOT
from sdpose_core.weights.spec import ONNX_SUFFIX, STATE_FILE_SUFFIXES

if TYPE_CHECKING:
    from sdpose_core.inference.predictor import Predictor
    from sdpose_core.weights.load import WeightsInfo

ASSETS_MODEL_CARD = PROJECT_ROOT / "assets" / "MODEL_CARD.md"
CARD_NAMES = ("MODEL_CARD.md", "README.md")
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MARKDOWN_IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)(\s*(?:\"[^\"]*\")?\))")  # ![alt](target "title")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
CARD_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")  # no .svg: it could carry script
_SERVED_CARD_IMAGES: set[Path] = set()
SOURCE_TEXT = {
    "embedded": "the default weights shipped with the studio (assets/sdpose-t-default)",
    "local": "a local weights folder (config.json + model.safetensors)",
    "official": "an official SDPose checkpoint (.pth), converted to this implementation on load",
    "state-dict": "a state-dict file",
    "training-state": "a training run's last.pt",
    "hub": "the Hugging Face Hub",
    "onnx": "an ONNX export (onnxruntime)",
    "module": "a model handed to the studio in code",
    "untrained": "nowhere: random initialisation",
}


def normalise_spec(text: str | None) -> str:
    """What the user typed -> a weights spec: 'org/repo' that is not a local path becomes hf://org/repo."""
    spec = (text or "").strip().strip('"').strip("'")
    if spec and not is_hub_address(spec) and HUB_REPO_ID.match(spec) and not Path(spec).expanduser().exists():
        return HF_PREFIX + spec
    return spec


def name_upload(message: str, uploaded: str) -> str:
    """`message` with the path of gradio's copy of an uploaded file (/tmp/gradio/<hash>/NAME) replaced by
    "the uploaded file NAME", the name the user knows it by."""
    return message.replace(uploaded, f"the uploaded file {Path(uploaded).name}")


def served_images(card: str, folder: Path) -> str:
    """`card` with its relative image links (`![..](crowd_samples.jpg)`) made URLs that the running app serves:
    in the page they would resolve against the page's own address and 404. Only image files inside `folder`
    (the card's own) are served, each added once to gradio's static paths; other links stay as written."""
    root = folder.resolve()

    def serve(match: re.Match) -> str:
        target = match.group(2)
        if URL_SCHEME.match(target) or target.startswith(("/", "#")):
            return match.group(0)  # an absolute URL, a data: URI or an anchor resolves as it is
        path = (root / unquote(target)).resolve()
        if path.suffix.lower() not in CARD_IMAGE_SUFFIXES or not path.is_file() or not path.is_relative_to(root):
            return match.group(0)
        if path not in _SERVED_CARD_IMAGES:
            gr.set_static_paths([path])
            _SERVED_CARD_IMAGES.add(path)
        # relative to the page (no leading "/"), so it also works when the app is served under a sub-path
        return f"{match.group(1)}gradio_api/file={quote(str(path))}{match.group(3)}"

    return MARKDOWN_IMAGE.sub(serve, card)


def model_card(info: WeightsInfo) -> str:
    """The model card of the current weights: MODEL_CARD.md / README.md beside them (a local folder or the
    Hub snapshot already downloaded), else assets/MODEL_CARD.md for the embedded default; '' when none."""
    candidates: list[Path] = []
    location = info.location or ""
    if info.source == "hub" and is_hub_address(location):
        try:
            from huggingface_hub import try_to_load_from_cache

            repo, revision, sub, repo_type = parse_hub_address(location)
            for name in CARD_NAMES:
                cached = try_to_load_from_cache(repo, f"{sub}/{name}" if sub else name, revision=revision,
                                                repo_type=repo_type)
                if isinstance(cached, str):
                    candidates.append(Path(cached))
        except Exception:  # noqa: BLE001 - a card is a nicety; the weights themselves loaded
            pass
    elif location:
        folder = Path(location).expanduser()
        folder = folder if folder.is_dir() else folder.parent
        candidates += [folder / name for name in CARD_NAMES]
    if info.source in ("embedded", "untrained"):
        candidates.append(ASSETS_MODEL_CARD)
    for path in candidates:
        if path.is_file():
            return served_images(path.read_text(encoding="utf-8", errors="replace"), path.parent)
    if location and not is_hub_address(location):
        record = Path(location).expanduser() / "training.json"  # what `sdpose train` records beside the weights
        if record.is_file():
            text = record.read_text(encoding="utf-8", errors="replace")
            return f"_No model card; the training record beside the weights ({record.name}):_\n\n```json\n{text}\n```"
    return ""


def flops_rows(predictor: Predictor) -> tuple[int | None, list[list[Any]]]:
    """(trainable params, one row per cycle: GFLOPs of that cycle, cumulative, cumulative with attention)."""
    from types import SimpleNamespace

    from sdpose_core.models.flops import count_flops

    config = predictor.config
    model = predictor.model if predictor.model is not None else SimpleNamespace(config=config)
    params = sum(p.numel() for p in predictor.model.parameters() if p.requires_grad) if predictor.model else None
    rows, previous = [], 0
    for cycles in range(1, int(config.cycles) + 1):
        total = count_flops(model, cycles)
        with_attention = count_flops(model, cycles, include_attention=True)
        rows.append([cycles, round((total - previous) / 1e9, 3), round(total / 1e9, 3), round(with_attention / 1e9, 3)])
        previous = total
    return params, rows


def describe_weights(ctx: AppContext) -> tuple[str, str, str, list[list[Any]], str]:
    """(banner, weights summary markdown, model card markdown, GFLOPs rows, weights spec) of the current weights."""
    predictor = ctx.predictor()
    info = predictor.weights_info
    config = predictor.config
    params, rows = flops_rows(predictor)
    size = "x".join(str(v) for v in config.image_size)
    lines = [
        f"**Weights:** {'trained' if info.trained else '**UNTRAINED (random)**'} — {info.description}",
        f"**From:** {SOURCE_TEXT.get(info.source, info.source)}" + (f": `{info.location}`" if info.location else "")
        + (" (chosen by the SDPOSE_WEIGHTS environment variable)" if info.from_env else ""),
        f"**Model:** {config.name}, input {size} (height x width), {config.num_keypoints} keypoints, "
        f"trained with {config.cycles} cycles; device {predictor.device}",
        f"**Backend:** {predictor.backend_status()}",
        f"**Trainable parameters:** {params:,}" if params is not None else "**Parameters:** (not available for ONNX)",
    ]
    selection = predictor.planner.selection
    if selection is not None:  # every candidate's speed and difference from fp32, as measured on this machine
        lines.append(f"<details><summary>How the backend was chosen</summary>\n\n```\n{selection.summary()}\n```\n"
                     "</details>")
    card = model_card(info) or "_No model card found for these weights (MODEL_CARD.md / README.md beside them)._"
    return untrained_banner(info), "\n\n".join(lines), card, rows, ctx.current_weights or ""


@functools.cache
def model_family_rows() -> list[list]:
    """One row per variant: parameters and GFLOPs, counted from the models themselves (once, then cached)."""
    from sdpose_core.models.flops import flops_table

    return [[r["model"], f"{r['params']:,}", round(r["gflops_single_pass"], 2), r["paper_gflops"],
             round(r["gflops_all_cycles"], 2), r["cycles"]] for r in flops_table()]


def score_predictions(ann_file: str | None, preds_file: str | None, dataset: str) -> tuple[list[list], str]:
    """Score an uploaded predictions file against an uploaded annotation file."""
    from sdpose_core.evaluation import eval_preds

    if not ann_file or not preds_file:
        raise gr.Error("Upload both files: the ground-truth annotation JSON and the predictions JSON.")
    try:
        metrics = eval_preds(Path(ann_file), Path(preds_file), dataset)
    except SDPoseError as exc:
        raise gr.Error(str(exc)) from None
    rows = [[k, round(float(v), 5)] for k, v in metrics.items()]
    return rows, json.dumps(metrics, indent=1)


@dataclass
class ModelView:
    """The Model tab's components that its callbacks fill (`weights`: the current weights, in API order)."""

    banner: gr.HTML
    summary: gr.Markdown
    card: gr.Markdown
    flops: gr.Dataframe
    spec: gr.Textbox
    family: gr.Dataframe
    table: gr.Dataframe
    raw: gr.Code

    @property
    def weights(self) -> list[Any]:
        return [self.banner, self.summary, self.card, self.flops, self.spec]


# ------------------------------------------------------------------------------------------ callbacks
def described(ctx: AppContext, view: ModelView) -> dict[Any, Any]:
    """On page load (not while the page is built: that would load the model before the server starts), so a
    reload also shows weights another user switched to; a weights problem becomes a readable line."""
    return dict(zip(view.weights, _described(ctx), strict=True))


@user_errors
def load_weights(ctx: AppContext, view: ModelView, typed: str | None, uploaded: str | None) -> dict[Any, Any]:
    """Make the typed or uploaded weights the current ones (the old ones stay when they fail to load)."""
    chosen = uploaded or normalise_spec(typed)
    taken = ctx.take_upload(uploaded, "weights") if uploaded else None  # public mode: into the session's folder
    try:
        ctx.use_weights(taken or chosen or None)
    except SDPoseError as exc:
        if uploaded:  # the message names the server's copy of the upload; say the name the user picked
            raise gr.Error(name_upload(name_upload(str(exc), taken), uploaded)) from None
        raise
    shown = describe_weights(ctx)
    gr.Info(f"Loaded: {ctx.weights_info.description}")
    return dict(zip(view.weights, (*shown[:4], chosen), strict=True))


@user_errors
def reset_weights(ctx: AppContext, view: ModelView) -> dict[Any, Any]:
    ctx.use_weights(None)
    return dict(zip(view.weights, describe_weights(ctx), strict=True))


def family(view: ModelView) -> dict[Any, Any]:
    return {view.family: model_family_rows()}


def score(view: ModelView, ann_file: str | None, preds_file: str | None, dataset: str) -> dict[Any, Any]:
    """Score an uploaded predictions file against an uploaded annotation file."""
    rows, raw = score_predictions(ann_file, preds_file, dataset)
    return {view.table: rows, view.raw: raw}


def build_tab(ctx: AppContext) -> ModelView:
    """The Model tab's components and events (call inside `with gr.Tab(...)`)."""
    banner = gr.HTML()
    summary = gr.Markdown("_loading the model description..._")
    with gr.Row():
        with gr.Column(scale=2):
            flops = gr.Dataframe(headers=["cycle", "GFLOPs of this cycle", "GFLOPs, cycles 1..c",
                                          "GFLOPs 1..c incl. attention matmuls"], interactive=False,
                                 label="cost per person crop (mmcv rules, as the paper; cycle 1 includes the conv stem)")
        with gr.Column(scale=2):
            gr.Markdown("#### Load other weights (no restart)")
            spec = gr.Textbox(label="weights", placeholder="runs/t/final · sdpose_t_coco.pth · hf://org/repo/subdir "
                              "· org/repo · model.onnx — empty: the default", max_lines=1)
            upload = gr.File(label="or upload a checkpoint (.pth / .pt / .safetensors / .onnx)", type="filepath",
                             file_types=[*STATE_FILE_SUFFIXES, ONNX_SUFFIX])
            with gr.Row():
                load = gr.Button("Load weights", variant="primary")
                reset = gr.Button("Back to the default weights")
    with gr.Accordion("Model card", open=False):
        card = gr.Markdown()
    gr.Markdown("#### The model family")
    family_table = gr.Dataframe(interactive=False,
                 headers=["model", "params", "GFLOPs (1 pass)", "paper GFLOPs", "GFLOPs (all cycles)", "cycles"],
                 label="trainable parameters and multiply-accumulates for one 256x192 crop (`sdpose flops`)")
    with gr.Accordion("Score a predictions file (COCO / CrowdPose AP)", open=False):
        gr.Markdown("COCO keypoint AP (pycocotools rules) or CrowdPose AP (easy / medium / hard).")
        with gr.Row():
            ann = gr.File(label="ground truth (COCO-format JSON)", type="filepath")
            preds = gr.File(label="predictions (COCO results JSON)", type="filepath")
        dataset = gr.Radio(["coco", "crowdpose"], value="coco", label="dataset")
        score_button = gr.Button("Score", variant="primary")
        table = gr.Dataframe(headers=["metric", "value"], interactive=False)
        raw = gr.Code(language="json", label="metrics.json")
    view = ModelView(banner, summary, card, flops, spec, family_table, table, raw)
    ctx.on_page_load(bind(described, ctx, view), view.weights)
    load.click(bind(load_weights, ctx, view), [spec, upload], view.weights, api_name="load_weights",
               concurrency_id="pose")
    reset.click(bind(reset_weights, ctx, view), None, view.weights, api_name="reset_weights", concurrency_id="pose")
    ctx.on_page_load(bind(family, view), [family_table])
    score_button.click(bind(score, view), [ann, preds, dataset], [table, raw], api_name="score")
    return view


def _described(ctx: AppContext) -> tuple:
    """describe_weights for page loads: a weights problem becomes a readable line instead of a broken page."""
    try:
        return describe_weights(ctx)
    except SDPoseError as exc:
        return ("", f"**The current weights could not be loaded:** {exc}", "", [], ctx.current_weights or "")
