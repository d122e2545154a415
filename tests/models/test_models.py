"""Model registry, parameter counts, the multi-cycle forward contract, init, bad input and FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sdpose_core.errors import ConfigError
from sdpose_core.models import CycleOutput, ModelConfig, SDPose, build_model, get_config, list_models
from sdpose_core.models.flops import count_flops, flops_table
from sdpose_core.models.hrnet import HRNetStem
from sdpose_core.models.registry import OFFICIAL_NAMES

TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4)
TRAINABLE = {
    "sdpose-t": 4_398_528,
    "sdpose-s-v1": 6_620_736,
    "sdpose-s-v2": 6_227_520,
    "sdpose-b": 13_145_984,
}


@pytest.fixture(scope="module")
def models() -> dict[str, SDPose]:
    """Every variant built on the meta device: real structure and shapes, no memory or init cost."""
    with torch.device("meta"):
        return {name: build_model(name) for name in list_models()}


def test_registry_names_and_configs() -> None:
    assert list_models() == ["sdpose-t", "sdpose-s-v1", "sdpose-s-v2", "sdpose-b"]
    t, s1, s2, b = (get_config(n) for n in list_models())
    assert (t.stem, t.patch_size, t.depth, t.cycles) == ("stemnet", (4, 3), 6, 3)
    assert (s1.stem, s1.patch_size, s1.depth, s1.cycles) == ("stemnet", (4, 3), 12, 2)
    assert (s2.stem, s2.patch_size, s2.depth, s2.cycles) == ("stemnet", (2, 2), 12, 2)
    assert (b.stem, b.patch_size, b.depth, b.cycles) == ("hrnet_w32", (4, 3), 12, 2)
    for cfg in (t, s1, s2, b):
        assert (cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.num_keypoints) == (192, 8, 3, 17)
        assert (cfg.image_size, cfg.heatmap_size) == ((256, 192), (64, 48))
    assert get_config("sdpose-t", num_keypoints=14, cycles=2).num_keypoints == 14
    assert ModelConfig.from_dict(get_config("sdpose-b").to_dict()) == get_config("sdpose-b")


def test_unknown_name_and_field_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="sdpose-t, sdpose-s-v1, sdpose-s-v2, sdpose-b"):
        build_model("sdpose-xl")
    with pytest.raises(ConfigError, match="dimension"):
        build_model("sdpose-t", dimension=10)
    with pytest.raises(ConfigError, match="patch_size"):
        build_model("sdpose-t", patch_size=(5, 3))


@pytest.mark.parametrize("name", list(TRAINABLE))
def test_trainable_parameter_counts(models: dict[str, SDPose], name: str) -> None:
    model = models[name]
    assert model.num_trainable_parameters() == TRAINABLE[name]
    # the sine positional embedding is saved with the weights but never trained
    assert "pos_embedding" in model.state_dict()
    assert all(n != "pos_embedding" for n, _ in model.named_parameters())


@pytest.mark.parametrize("name", ["sdpose-t", "sdpose-s-v1", "sdpose-s-v2"])
def test_counts_agree_with_official_summary(
    models: dict[str, SDPose], reference_dir: Path, name: str
) -> None:
    summary = json.loads((reference_dir / "official_variants_summary.json").read_text())
    official = summary["variants"][OFFICIAL_NAMES[name]]
    model = models[name]
    assert model.num_trainable_parameters() == official["params_trainable"]
    assert len(model.state_dict()) == official["num_state_dict_tensors"]
    assert sum(v.numel() for v in model.state_dict().values()) == official["state_dict_elements"]
    assert model.pos_embedding.numel() == official["frozen_pos_embedding"]


def test_forward_contract_and_cycles() -> None:
    model = build_model("sdpose-t", **TINY).eval()
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        outputs = model(images)
        one = model(images, cycles=1)
    assert len(outputs) == 3 and len(one) == 1
    assert all(isinstance(o, CycleOutput) for o in outputs)
    assert outputs[0].heatmaps.shape == (2, 17, 16, 12)
    assert outputs[0].keypoint_tokens.shape == (2, 17, 12)
    assert outputs[0].visual_tokens.shape == (2, 48, 12)
    torch.testing.assert_close(one[0].heatmaps, outputs[0].heatmaps)
    # later cycles differ from the first (the MCT refines), through the same shared layers
    assert not torch.allclose(outputs[0].heatmaps, outputs[2].heatmaps)


def test_one_cycle_costs_one_pass_and_iter_cycles_is_lazy() -> None:
    model = build_model("sdpose-t", **TINY).eval()
    calls: list[int] = []
    handles = [b.register_forward_hook(lambda m, i, o: calls.append(1)) for b in model.blocks]
    images = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        model(images, cycles=1)
        assert len(calls) == model.config.depth
        calls.clear()
        first = next(model.iter_cycles(images, cycles=5))
        assert len(calls) == model.config.depth and first.heatmaps.shape == (1, 17, 16, 12)
        calls.clear()
        model(images)
        assert len(calls) == model.config.depth * model.config.cycles
    for h in handles:
        h.remove()


def test_tokens_flow_from_cycle_to_cycle() -> None:
    """Cycle c+1 = the same blocks applied to the tokens cycle c produced (nothing re-embedded)."""
    model = build_model("sdpose-t", **TINY).eval()
    images = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        first, second = model(images, cycles=2)
        tokens = torch.cat((first.keypoint_tokens, first.visual_tokens), dim=1)
        again = model.run_cycle(tokens)
    torch.testing.assert_close(again[:, :17], second.keypoint_tokens)
    torch.testing.assert_close(again[:, 17:], second.visual_tokens)


def test_crowdpose_keypoints_and_sdpose_b_forward() -> None:
    model = build_model(
        "sdpose-b", num_keypoints=14, image_size=(128, 96), heatmap_size=(32, 24), depth=2
    ).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 128, 96), cycles=2)
    assert outputs[1].heatmaps.shape == (1, 14, 32, 24)
    assert outputs[1].visual_tokens.shape == (1, 64, 192)
    assert model.stem.out_channels == 32


def test_wrong_input_size_names_expected_and_got() -> None:
    model = build_model("sdpose-t", **TINY)
    with pytest.raises(ConfigError, match=r"\(B, 3, 64, 48\).*\(1, 3, 256, 192\)"):
        model(torch.zeros(1, 3, 256, 192))
    with pytest.raises(ConfigError, match="expected images"):
        model(torch.zeros(3, 64, 48))
    with pytest.raises(ConfigError, match="cycles"):
        model(torch.zeros(1, 3, 64, 48), cycles=0)


def test_fused_attention_equals_explicit() -> None:
    model = build_model("sdpose-t", **TINY).eval()
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        fused = model(images)
        model.fused_attention = False
        explicit = model(images)
    for a, b in zip(fused, explicit, strict=True):
        torch.testing.assert_close(a.heatmaps, b.heatmaps, atol=1e-5, rtol=1e-5)


def test_official_initialisation() -> None:
    torch.manual_seed(0)
    model = build_model("sdpose-t")
    convs = [m for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    stds = torch.tensor([c.weight.std().item() for c in convs])
    assert torch.all((stds > 0.0008) & (stds < 0.0012))
    bns = [m for m in model.stem.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(abs(lin.weight.std().item() - 0.02) < 0.003 for lin in linears)
    assert all(lin.bias is None or torch.all(lin.bias == 0) for lin in linears)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(torch.all(n.weight == 1) and torch.all(n.bias == 0) for n in norms)
    assert abs(model.keypoint_token.std().item() - 0.02) < 0.003
    assert model.blocks[0].attn.qkv.bias is None


def test_backward_reaches_every_trainable_parameter() -> None:
    model = build_model("sdpose-t", **TINY).train()
    outputs = model(torch.randn(2, 3, 64, 48))
    sum(o.heatmaps.square().mean() + o.visual_tokens.square().mean() for o in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", ["sdpose-t", "sdpose-s-v1", "sdpose-s-v2"])
def test_flops_reproduce_official_mmcv_counts(
    models: dict[str, SDPose], reference_dir: Path, name: str
) -> None:
    summary = json.loads((reference_dir / "official_variants_summary.json").read_text())
    official = summary["variants"][OFFICIAL_NAMES[name]]
    model = models[name]
    single = count_flops(model, cycles=1)
    assert single == official["mmcv_style_flops_single_cycle"]
    assert count_flops(model, cycles=model.config.cycles) == official["mmcv_style_flops_all_cycles"]
    tokens, dim = official["analytic_head_macs"]["num_tokens"], model.config.dim
    with_attention = count_flops(model, cycles=1, include_attention=True)
    assert with_attention - single == 2 * tokens * tokens * dim * model.config.depth


def test_flops_table_has_every_variant() -> None:
    rows = {row["model"]: row for row in flops_table()}
    assert list(rows) == list_models()
    for name, row in rows.items():
        assert row["params"] == TRAINABLE[name]
        assert abs(row["gflops_single_pass"] - row["paper_gflops"]) < 0.05  # paper rounds to 0.1 G
        assert row["gflops_all_cycles"] > row["gflops_single_pass"]
        assert row["gflops_single_pass_with_attention"] > row["gflops_single_pass"]


def test_sdpose_b_hrnet_stem_follows_official_config(models: dict[str, SDPose]) -> None:
    """HRNet_3stage of sdpose_b_hr32_coco_256x192.py with mmpose key names (so official weights map)."""
    stem = models["sdpose-b"].stem
    assert sum(p.numel() for p in stem.parameters()) == 7_366_400
    keys = {k: tuple(v.shape) for k, v in stem.state_dict().items()}
    assert keys["layer1.0.conv3.weight"] == (128, 32, 1, 1)  # stage 1: bottlenecks of inner width 32
    assert keys["transition1.0.0.weight"] == (32, 128, 3, 3)
    assert keys["transition1.1.0.0.weight"] == (64, 128, 3, 3)
    assert keys["transition2.2.0.0.weight"] == (128, 64, 3, 3)
    assert keys["stage2.0.fuse_layers.0.1.0.weight"] == (32, 64, 1, 1)
    assert keys["stage3.2.fuse_layers.2.0.1.0.weight"] == (128, 32, 3, 3)
    assert keys["stage3.3.branches.2.3.bn2.running_var"] == (128,)
    assert not any(
        k.startswith("stage3.3.fuse_layers.1.") for k in keys
    )  # last module fuses into branch 0 only
    assert len(stem.stage3) == 4 and len(stem.stage3[3].fuse_layers) == 1
    assert isinstance(stem, HRNetStem) and stem.out_channels == 32
