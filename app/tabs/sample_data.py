"""The labelled sets the Samples and Review tabs read, through the context's caches (app.context: loaded sets,
predictions, analyses): predictions for a whole set are computed once per (set, weights, cycles, boxes,
flip) and kept in memory; sorting, filtering and switching the shown cycle reuse them, and the Review tab
ranks people from the same analyses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from app.components import untrained_banner
from app.context import AnalysisKey, AppContext, PredictionKey, SetFileKey
from sdpose_core.analysis import (
    SampleSet,
    SetAnalysis,
    SetPredictions,
    analyse_set,
    describe_set,
    download_dataset,
    find_sample_sets,
    first_cycles,
    load_sample_set,
    predict_set,
)
from sdpose_core.errors import SDPoseError
from sdpose_core.hub import is_hub_address

DEFAULT_SAMPLE = 200  # images analysed by default (a seeded sample of a larger set)


def as_gradio_error(error: Exception) -> gr.Error:
    return gr.Error(str(error) if isinstance(error, SDPoseError) else f"{type(error).__name__}: {error}")


def set_choices(spec: str | None, ctx: AppContext | None = None) -> tuple[list[tuple[str, str]], str]:
    """(dropdown choices (label, annotation path), a Markdown note) for a folder, JSON or hf:// address; with a
    public-mode `ctx` only inside what the operator allowed or this session uploaded."""
    if ctx is not None and ctx.policy is not None and not str(spec or "").strip():
        return public_choices(ctx)
    if not spec or not str(spec).strip():
        return [], "No sample folder chosen: enter a folder or annotation JSON above (or start with --samples)."
    spec = str(spec).strip()
    if ctx is not None and ctx.public:
        root = ctx.check_sample_path(spec)
    else:
        root = download_dataset(spec) if is_hub_address(spec) else Path(spec).expanduser()
    entries = find_sample_sets(root)
    note = f"{len(entries)} labelled set(s) under `{root}`" + (f" (from the Hub: {spec})" if root != Path(spec) else "")
    return [(entry.label, str(entry.ann_path)) for entry in entries], note


def public_choices(ctx: AppContext) -> tuple[list[tuple[str, str]], str]:
    """Public mode, nothing typed: every set the operator offers and this session's uploaded sets."""
    choices: list[tuple[str, str]] = []
    folders = [*ctx.policy.sample_roots, ctx.policy.uploads_folder(ctx.session_id())]
    for folder in folders:
        try:
            choices += [(entry.label, str(entry.ann_path)) for entry in find_sample_sets(folder)]
        except SDPoseError:  # a folder without sets (e.g. no upload yet) offers nothing
            continue
    return choices, f"{len(choices)} labelled set(s) offered here (the operator's and the ones you uploaded)"


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


def open_samples(ctx: AppContext, spec: str) -> tuple[Any, str]:
    """Samples / Review: (the set dropdown's update, a note) for a folder, JSON file or hf:// dataset."""
    try:
        choices, note = set_choices(spec, ctx)
    except SDPoseError as error:
        gr.Warning(str(error))
        return gr.update(choices=[], value=None), f"⚠️ {error}"
    return gr.update(choices=choices, value=choices[0][1] if choices else None), note


def load_set(ctx: AppContext, ann_path: str) -> SampleSet:
    """The SampleSet of an annotation file (re-read when the file changes)."""
    if not ann_path:
        raise gr.Error("Pick a labelled set first (open a folder, then choose a set).")
    try:
        path = ctx.check_sample_path(ann_path)  # public mode: only the allowed roots and this session's uploads
        stat = path.stat()
    except SDPoseError as error:
        raise as_gradio_error(error) from None
    except OSError:
        raise gr.Error(f"annotation file {path} does not exist; open the sample folder again") from None
    name = f"{path.parent.parent.name}/{path.parent.name}"
    sample_set = ctx.sample_sets.get_or_compute(SetFileKey(str(path.resolve()), stat.st_mtime_ns, stat.st_size),
                                                lambda: load_sample_set(path, name=name))
    if ctx.policy is not None:  # a visitor's annotation file may name images anywhere: they must stay inside too
        try:
            ctx.policy.check_set_files([i.path for i in sample_set.images if i.path is not None], ctx.session_id())
        except SDPoseError as error:
            raise as_gradio_error(error) from None
    return sample_set


def describe(ctx: AppContext, ann_path: str | None) -> str:
    """A Markdown description of the chosen set ('' before one is chosen)."""
    if not ann_path:
        return ""
    try:
        return describe_set(load_set(ctx, ann_path))
    except SDPoseError as error:
        gr.Warning(str(error))
        return f"⚠️ {error}"


def prediction_key(ctx: AppContext, sample_set: SampleSet, cycles: int, box_source: str, flip: bool) -> PredictionKey:
    info = ctx.predictor().weights_info
    try:
        changed = sample_set.ann_path.stat().st_mtime_ns  # an edited annotation file gets new predictions
    except OSError:
        changed = 0
    return PredictionKey(f"{sample_set.ann_path}@{changed}#{len(sample_set.images)}", ctx.current_weights or "",
                         info.description, int(cycles), box_source, bool(flip))


def analysis_for(ctx: AppContext, ann_path: str, cycles: int, box_source: str, head_neck: str, flip: bool,
                 progress: gr.Progress | None = None, compute: bool = True,
                 sample_size: int = DEFAULT_SAMPLE) -> tuple[SampleSet, SetAnalysis | None]:
    """The set (a seeded sample of `sample_size` images; 0 = all) and its analysis, computed (once) when
    `compute`, else only what the caches hold."""
    if ctx.public:  # bounded work: "all" and larger samples become the limit's seeded sample
        sample_size = min(int(sample_size) or ctx.limits.set_images, ctx.limits.set_images)
    sample_set = load_set(ctx, ann_path).sample(int(sample_size) or None)
    key = AnalysisKey(prediction_key(ctx, sample_set, cycles, box_source, flip), head_neck)
    cached = ctx.analyses.get(key)
    if cached is not None or not compute:
        return sample_set, cached

    def run() -> SetPredictions:
        for other_key, other in ctx.predictions.items():  # a longer run with the same settings holds these cycles
            if other_key.with_cycles(int(cycles)) == key.predictions and other.cycles > int(cycles):
                return first_cycles(other, int(cycles))
        report = (lambda share, text: progress(share, desc=text)) if progress is not None else None
        return predict_set(sample_set, ctx.predictor(), int(cycles), box_source, bool(flip), progress=report)

    predictions = ctx.predictions.get_or_compute(key.predictions, run)
    analysis = ctx.analyses.get_or_compute(key, lambda: analyse_set(sample_set, predictions, head_neck))
    return sample_set, analysis


def banner_html(ctx: AppContext) -> str:
    """The shared UNTRAINED banner for the current weights (empty for trained ones)."""
    try:
        return untrained_banner(ctx.weights_info)
    except SDPoseError as error:
        return f"<p>⚠️ the current weights cannot be loaded: {error}</p>"
