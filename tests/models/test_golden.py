"""Our model vs the official SDPose code: golden tensors made by the official modules (float32, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdpose_core.models import SDPose, build_model
from sdpose_core.models.layers import sine_position_embedding
from sdpose_core.weights.checkpoint import load_checkpoint

HEATMAP_TOL = 2e-5
TOKEN_TOL = 1e-4
ATTENTION_TOL = 1e-6

TINY_OVERRIDES = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4)


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def load_golden(reference_dir: Path, name: str) -> dict:
    return torch.load(reference_dir / f"golden_{name}.pt", weights_only=True)


@pytest.fixture(scope="module")
def tiny(reference_dir: Path) -> tuple[SDPose, dict]:
    golden = load_golden(reference_dir, "tiny")
    model = load_checkpoint(build_model("sdpose-t", **TINY_OVERRIDES), golden["state_dict"]).eval()
    return model, golden


@pytest.fixture(scope="module")
def sdpose_t(reference_dir: Path) -> tuple[SDPose, dict]:
    golden = load_golden(reference_dir, "sdpose_t")
    model = load_checkpoint(build_model("sdpose-t"), golden["state_dict"]).eval()
    return model, golden


def check_cycles(model: SDPose, tensors: dict, num_cycles: int) -> None:
    with torch.no_grad():
        outputs = model(tensors["input"])
    assert len(outputs) == num_cycles
    for c, out in enumerate(outputs):
        assert max_abs(out.heatmaps, tensors[f"heatmap_cycle{c}"]) <= HEATMAP_TOL, f"heatmaps cycle {c}"
        assert max_abs(out.keypoint_tokens, tensors[f"kpt_token_cycle{c}"]) <= TOKEN_TOL, (
            f"kpt tokens cycle {c}"
        )
        assert max_abs(out.visual_tokens, tensors[f"vis_token_cycle{c}"]) <= TOKEN_TOL, (
            f"vis tokens cycle {c}"
        )
    # fewer cycles = the first entries of the longer run, computed from scratch
    for cycles in (1, 2):
        with torch.no_grad():
            short = model(tensors["input"], cycles=cycles)
        assert len(short) == cycles
        for c, out in enumerate(short):
            assert max_abs(out.heatmaps, tensors[f"heatmap_cycle{c}"]) <= HEATMAP_TOL
            assert max_abs(out.visual_tokens, tensors[f"vis_token_cycle{c}"]) <= TOKEN_TOL


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "explicit"])
def test_tiny_matches_official_every_cycle(tiny: tuple[SDPose, dict], fused: bool) -> None:
    model, golden = tiny
    model.fused_attention = fused
    try:
        check_cycles(model, golden["tensors"], golden["config"]["cycle_num"])
    finally:
        model.fused_attention = True


def test_tiny_intermediates_localise(tiny: tuple[SDPose, dict]) -> None:
    """Stem output, transformer input and every block output of every cycle (before the pos re-add)."""
    model, golden = tiny
    tensors = golden["tensors"]
    with torch.no_grad():
        assert max_abs(model.stem(tensors["input"]), tensors["backbone_feature"]) <= TOKEN_TOL
        assert max_abs(model.embed(tensors["input"]), tensors["transformer_input_cycle0"]) <= TOKEN_TOL
    block_outputs: list[torch.Tensor] = []
    handles = [
        b.register_forward_hook(lambda m, i, o: block_outputs.append(o.detach())) for b in model.blocks
    ]
    try:
        with torch.no_grad():
            model(tensors["input"])
    finally:
        for h in handles:
            h.remove()
    depth = golden["config"]["depth"]
    assert len(block_outputs) == depth * golden["config"]["cycle_num"]
    for i, out in enumerate(block_outputs):
        cycle, layer = divmod(i, depth)
        assert max_abs(out, tensors[f"layer_out_cycle{cycle}_layer{layer}"]) <= TOKEN_TOL, (cycle, layer)


def test_tiny_attention_maps(tiny: tuple[SDPose, dict]) -> None:
    model, golden = tiny
    tensors = golden["tensors"]
    maps = model.attention_maps(tensors["input"])
    assert len(maps) == 3
    assert max_abs(maps[0], tensors["attn_lastlayer_cycle0"]) <= ATTENTION_TOL
    assert max_abs(maps[2], tensors["attn_lastlayer_cycle2"]) <= ATTENTION_TOL
    torch.testing.assert_close(maps[0].sum(-1), torch.ones_like(maps[0][..., 0]))


def test_sine_position_embedding_matches_official(reference_dir: Path) -> None:
    for name, grid, dim in (("tiny", (8, 6), 12), ("sdpose_t", (16, 16), 192)):
        stored = load_golden(reference_dir, name)["state_dict"]["keypoint_head.tokenpose.pos_embedding"]
        assert max_abs(sine_position_embedding(grid, dim), stored) <= 1e-6, name


def test_sdpose_t_matches_official_every_cycle(sdpose_t: tuple[SDPose, dict]) -> None:
    model, golden = sdpose_t
    tensors = golden["tensors"]
    with torch.no_grad():
        feature = model.stem(tensors["input"])
    assert max_abs(feature[:, ::16, ::8, ::8], tensors["backbone_feature_subsample"]) <= TOKEN_TOL
    check_cycles(model, tensors, golden["config"]["cycle_num"])


def test_sdpose_t_explicit_attention_matches_too(sdpose_t: tuple[SDPose, dict]) -> None:
    model, golden = sdpose_t
    tensors = golden["tensors"]
    model.fused_attention = False
    try:
        with torch.no_grad():
            out = model(tensors["input"], cycles=1)[0]
    finally:
        model.fused_attention = True
    assert max_abs(out.heatmaps, tensors["heatmap_cycle0"]) <= HEATMAP_TOL
