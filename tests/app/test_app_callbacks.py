"""The studio's callback pattern and what the webcam runs, without a server: each tab's `build_tab(ctx)` inside
a gr.Blocks, its module-level callbacks called the way gradio calls them (bound to the context and the tab's
components), on a tiny random SDPose-T saved by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4, cycles=2)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):
    import torch

    from app.context import AppContext
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("weights")
    weights = save_pretrained(build_model("sdpose-t", **TINY), folder / "tiny")
    return AppContext(weights=str(weights), samples=str(folder), num_threads=1)


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> str:
    import cv2

    path = tmp_path_factory.mktemp("photo") / "noise.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8))
    return str(path)


def _outputs(blocks: gr.Blocks, api_name: str) -> list[int]:
    return next(d["outputs"] for d in blocks.config["dependencies"] if d.get("api_name") == api_name)


def test_the_compare_callback_returns_every_output_keyed_by_its_component(ctx, photo: str) -> None:
    from app.tabs import compare

    with gr.Blocks() as blocks:
        view = compare.build_tab(ctx)
    assert _outputs(blocks, "compare") == [component._id for component in view.results]
    shown = compare.compare_image(ctx, view, photo, compare.CURRENT_WEIGHTS, 2, "whole-image", False, False, 0.3,
                                  "columns")
    assert set(shown) == set(view.results)  # every output of the event, nothing else
    assert len(shown[view.state].result.people) == 1 and shown[view.heatmaps] is not None
    assert "detector (whole-image)" in shown[view.timing] and "pose cycle 2" in shown[view.timing]
    redrawn = compare.redraw(view, shown[view.state], 0.5)
    assert set(redrawn) == {view.single, view.final} and Path(redrawn[view.single]).is_file()


def test_the_webcam_and_model_callbacks_return_dicts_keyed_by_their_components(ctx) -> None:
    from app.tabs import model, webcam

    with gr.Blocks() as blocks:
        live = webcam.build_tab(ctx)
        weights = model.build_tab(ctx)
    assert _outputs(blocks, "webcam_frame") == [live.live._id, live.live_stats._id, live.session._id]
    frame = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    shown = webcam.stream_frame(ctx, live, frame, "single pass (cycle 1)", 3, False, 5, 0.3, None)
    assert set(shown) == {live.live, live.live_stats, live.session}
    assert shown[live.live].shape == (96, 128, 3) and "people" in shown[live.live_stats]
    described = model.load_weights(ctx, weights, ctx.current_weights, None)
    assert list(described) == weights.weights and "trained with 2 cycles" in described[weights.summary]
    assert described[weights.spec] == ctx.current_weights


def test_live_fast_model_false_runs_the_unfolded_model(ctx) -> None:
    """The context's Predictor runs its BatchNorm-folded copy (Predictor(cpu_speedups=True)); a live session
    with fast_model=False runs the loaded module itself: its BatchNorm layers see every frame."""
    from torch import nn

    from sdpose_core.inference.live import LiveSession, LiveSettings

    predictor = ctx.predictor()
    assert predictor.backend == "torch" and predictor.cpu_speedups  # the tests pin torch (conftest)
    norms = [m for m in predictor.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms, "the tiny SDPose-T stem has BatchNorm layers"
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda *_: calls.append("bn")) for m in norms]
    frame = np.random.default_rng(2).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    try:
        keypoints = {}
        for fast in (True, False):
            calls.clear()
            session = LiveSession(LiveSettings(detector="whole-image", fast_model=fast, bf16=False))
            ran = session.pose_predictor(ctx)
            keypoints[fast] = ran.predict(frame, boxes=[[0, 0, 128, 96]], cycles=2).keypoints()
            session.process(frame, ctx)
            assert (len(calls) > 0) is (not fast), (fast, len(calls))
            assert ran.model is predictor.model and ran.cpu_speedups is fast
        np.testing.assert_allclose(keypoints[True], keypoints[False], atol=1e-3)  # folding keeps the poses
    finally:
        for hook in hooks:
            hook.remove()
