"""Which models `sdpose benchmark` times: the embedded default's configuration and the paper's 256x192,
or one given by weights / input size."""

from __future__ import annotations

import torch

DEFAULT_IMAGE_SIZE = (128, 96)  # the embedded default's input (heatmaps 32x24) until its config.json is there
QUICK_MODEL = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=32, depth=2, heads=4)


def embedded_default_model() -> tuple[torch.nn.Module, str]:
    """The embedded default's configuration: assets/sdpose-t-default (with its weights when they are there),
    else SDPose-T at DEFAULT_IMAGE_SIZE, the configuration being trained for it (random init)."""
    from sdpose_core.models import build_model
    from sdpose_core.models.registry import model_from_config
    from sdpose_core.weights.checkpoint import read_config
    from sdpose_core.weights.load import EMBEDDED_DEFAULT_DIR, load_model

    if (EMBEDDED_DEFAULT_DIR / "model.safetensors").is_file():
        return load_model(EMBEDDED_DEFAULT_DIR)[0], f"embedded default {EMBEDDED_DEFAULT_DIR.name}"
    torch.manual_seed(0)
    if (EMBEDDED_DEFAULT_DIR / "config.json").is_file():
        return (model_from_config(read_config(EMBEDDED_DEFAULT_DIR)).eval(),
                f"random init (seed 0) in the config of {EMBEDDED_DEFAULT_DIR.name} (its weights are not there)")
    height, width = DEFAULT_IMAGE_SIZE
    return (build_model("sdpose-t", image_size=DEFAULT_IMAGE_SIZE, heatmap_size=(height // 4, width // 4)).eval(),
            "random init (seed 0): the embedded default's configuration, its weights are not bundled yet")


def benchmark_models(quick: bool = False, weights: str | None = None, image_size: tuple[int, int] | None = None,
                     model_name: str = "sdpose-t") -> dict[str, tuple[torch.nn.Module, str]]:
    """label -> (model, where its weights come from) of every configuration to time; the first is the primary
    one (speed-up and int8 sections). Default: the embedded default's configuration and the paper's 256x192."""
    from sdpose_core.models import build_model
    from sdpose_core.weights.load import load_model

    def label(model: torch.nn.Module, what: str) -> str:
        height, width = model.config.image_size
        return f"{model.config.name} {height}x{width} ({what})"

    if weights:
        model, _ = load_model(weights)
        return {label(model, "given weights"): (model, str(weights))}
    torch.manual_seed(0)
    if quick:  # at `image_size` when given (e.g. 128x96, to be compared with PP-TinyPose of that size)
        size = dict(image_size=tuple(image_size), heatmap_size=(image_size[0] // 4, image_size[1] // 4)) \
            if image_size else {}
        model = build_model(model_name, **{**QUICK_MODEL, **size}).eval()
        return {label(model, "tiny, plumbing check"): (model, "random init (seed 0)")}
    random_note = f"random init (seed 0) {model_name}: timings are weight-independent, int8 accuracy is not"
    if image_size:
        height, width = image_size
        model = build_model(model_name, image_size=image_size, heatmap_size=(height // 4, width // 4)).eval()
        return {label(model, "--image-size"): (model, random_note)}
    embedded, source = embedded_default_model()
    torch.manual_seed(0)
    paper = build_model(model_name).eval()
    return {label(embedded, "embedded default"): (embedded, source), label(paper, "paper"): (paper, random_note)}
