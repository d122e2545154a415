"""Checkpoints: official key mapping, strict loading with clear errors, our safetensors format, the Hub."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from sdpose_core.errors import CheckpointError
from sdpose_core.models import build_model
from sdpose_core.weights.checkpoint import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    convert_official,
    infer_variant,
    load_checkpoint,
    official_key_to_ours,
    save_pretrained,
)
from sdpose_core.weights.load import load_pretrained

TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4)


def read_official_keys(path: Path) -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, _dtype = line.split("\t")
        keys[name] = tuple(int(v) for v in shape.split(",")) if shape else ()
    return keys


@pytest.fixture(scope="module")
def golden_t(reference_dir: Path) -> dict:
    return torch.load(reference_dir / "golden_sdpose_t.pt", weights_only=True)


@pytest.fixture(scope="module")
def golden_tiny(reference_dir: Path) -> dict:
    return torch.load(reference_dir / "golden_tiny.pt", weights_only=True)


@pytest.mark.parametrize("name", ["sdpose-t", "sdpose-s-v1", "sdpose-s-v2"])
def test_every_official_key_maps_one_to_one(reference_dir: Path, name: str) -> None:
    official = read_official_keys(reference_dir / f"official_keys_{name.replace('-', '_')}.txt")
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in build_model(name).state_dict().items()}
    mapped = {official_key_to_ours(k, four_layer_head=True): shape for k, shape in official.items()}
    assert None not in mapped
    assert len(mapped) == len(official)  # injective
    assert mapped == ours  # every name and shape, BN num_batches_tracked included


def test_official_mmcv_file_loads_and_reproduces(tmp_path: Path, golden_tiny: dict) -> None:
    path = tmp_path / "official.pth"
    torch.save(
        {"meta": {"epoch": 210, "mmcv_version": "1.7.0"}, "state_dict": golden_tiny["state_dict"]}, path
    )
    model = load_checkpoint(build_model("sdpose-t", **TINY), path).eval()
    with torch.no_grad():
        out = model(golden_tiny["tensors"]["input"], cycles=1)[0]
    assert (out.heatmaps - golden_tiny["tensors"]["heatmap_cycle0"]).abs().max() <= 2e-5
    # a DDP-saved bare state dict ("module." prefix) is the same weights
    ddp = {f"module.{k}": v for k, v in golden_tiny["state_dict"].items()}
    reloaded = load_checkpoint(build_model("sdpose-t", **TINY), ddp)
    torch.testing.assert_close(reloaded.state_dict(), model.state_dict())


def test_other_variant_is_named_in_the_error(golden_t: dict) -> None:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(build_model("sdpose-s-v1"), golden_t["state_dict"])
    message = str(info.value)
    assert "looks like sdpose-t" in message and "depth=6" in message
    assert "missing (66)" in message and "blocks.6.attn.qkv.weight" in message
    with torch.device("meta"):
        s_v2 = build_model("sdpose-s-v2").state_dict()
    with pytest.raises(CheckpointError, match="looks like sdpose-s-v2") as info:
        load_checkpoint(build_model("sdpose-s-v1"), s_v2)
    assert "pos_embedding: checkpoint (1, 768, 192) vs model (1, 256, 192)" in str(info.value)
    assert infer_variant(golden_t["state_dict"]) == "sdpose-t"


def test_keypoint_count_mismatch(golden_t: dict) -> None:
    with pytest.raises(
        CheckpointError, match=r"keypoint_token: checkpoint \(1, 17, 192\) vs model \(1, 14, 192\)"
    ):
        load_checkpoint(build_model("sdpose-t", num_keypoints=14), golden_t["state_dict"])


def test_nothing_is_ignored(golden_tiny: dict) -> None:
    state = dict(golden_tiny["state_dict"])
    state["keypoint_head.tokenpose.to_pos.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected \(1\).*to_pos"):
        load_checkpoint(build_model("sdpose-t", **TINY), state)
    state = dict(golden_tiny["state_dict"])
    del state["backbone.layer1.0.bn1.num_batches_tracked"]
    with pytest.raises(CheckpointError, match=r"missing \(1\).*backbone.layer1.0.bn1.num_batches_tracked \(ours"):
        load_checkpoint(build_model("sdpose-t", **TINY), state)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(build_model("sdpose-t", **TINY), "/nonexistent/model")


def test_save_and_load_pretrained_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("sdpose-t", num_keypoints=14, cycles=2, **TINY).eval()
    folder = save_pretrained(model, tmp_path / "tiny")
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert (
        config["format"] == FORMAT_VERSION
        and config["num_keypoints"] == 14
        and config["patch_size"] == [2, 2]
    )
    loaded = load_pretrained(folder)
    assert loaded.config == model.config and not loaded.training
    images = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        for a, b in zip(model(images), loaded(images), strict=True):
            assert torch.equal(a.heatmaps, b.heatmaps)
    # loading into an existing model from the folder or the file
    fresh = build_model("sdpose-t", num_keypoints=14, cycles=2, **TINY)
    load_checkpoint(fresh, folder)
    torch.testing.assert_close(fresh.state_dict(), model.state_dict(), rtol=0, atol=0)
    (folder / CONFIG_NAME).write_text(json.dumps({**config, "format": "other/9"}))
    with pytest.raises(CheckpointError, match="format"):
        load_pretrained(folder)


def test_convert_official_infers_variant(tmp_path: Path, golden_t: dict) -> None:
    source = tmp_path / "sdpose_t_coco.pth"
    torch.save({"state_dict": golden_t["state_dict"]}, source)
    folder = convert_official(source, tmp_path / "converted")
    assert json.loads((folder / CONFIG_NAME).read_text())["name"] == "sdpose-t"
    model = load_pretrained(folder)
    with torch.no_grad():
        out = model(golden_t["tensors"]["input"], cycles=1)[0]
    assert (out.heatmaps - golden_t["tensors"]["heatmap_cycle0"]).abs().max() <= 2e-5
    with pytest.raises(CheckpointError, match="does not fit model sdpose-s-v1"):
        convert_official(source, tmp_path / "wrong", variant="sdpose-s-v1")


def test_convert_official_refuses_unknown_architecture(tmp_path: Path, golden_tiny: dict) -> None:
    source = tmp_path / "tiny.pth"
    torch.save(golden_tiny["state_dict"], source)
    with pytest.raises(CheckpointError, match="cannot tell the variant.*depth=2"):
        convert_official(source, tmp_path / "out")


def make_hub_cache(cache: Path, repo_id: str, model_dir: Path, subdir: str = "") -> None:
    """The Hugging Face cache layout: models--org--repo/{refs/main, snapshots/<rev>/...}."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    target = repo / "snapshots" / revision / subdir
    target.mkdir(parents=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        (target / name).write_bytes((model_dir / name).read_bytes())


def test_load_pretrained_from_hub_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_model("sdpose-t", **TINY).eval()
    folder = save_pretrained(model, tmp_path / "local")
    cache = tmp_path / "hub"
    make_hub_cache(cache, "sdpose-org/sdpose-tiny", folder)
    make_hub_cache(cache, "sdpose-org/zoo", folder, subdir="coco/tiny")
    for spec in ("hf://sdpose-org/sdpose-tiny", "hf://sdpose-org/zoo/coco/tiny"):
        loaded = load_pretrained(spec, cache_dir=cache)
        torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)


def test_missing_hub_repo_fails_fast_and_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"'sdpose-org/missing'.*offline mode"):
        load_pretrained("hf://sdpose-org/missing", cache_dir=tmp_path)
    assert time.monotonic() - start < 5
    with pytest.raises(CheckpointError, match="hf://org/repo"):
        load_pretrained("hf://just-org", cache_dir=tmp_path)


def test_missing_official_keys_are_named_the_official_way(reference_dir: Path) -> None:
    from sdpose_core.weights.checkpoint import official_key_to_ours, ours_key_to_official

    for name in ("sdpose_t", "sdpose_s_v1", "sdpose_s_v2"):
        lines = (reference_dir / f"official_keys_{name}.txt").read_text().splitlines()
        for key in (line.split("\t")[0] for line in lines if not line.startswith("#")):
            assert ours_key_to_official(official_key_to_ours(key, True), True) == key


def test_half_precision_file_is_half_the_size_and_loads_into_fp32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("sdpose-t", **TINY).eval()
    full = save_pretrained(model, tmp_path / "full")
    half = save_pretrained(model, tmp_path / "half", half=True)
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.6
    loaded = load_pretrained(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    images = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        a, b = model(images)[-1].heatmaps, loaded(images)[-1].heatmaps
    assert (a - b).abs().max() <= 1e-3 * a.abs().max() + 1e-6


def test_a_stalled_hub_download_is_cut_off_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that never answers must not hang the app: the wait is bounded (3 x timeout)."""
    import time

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: time.sleep(5))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"'org/stalled': no answer within 0 s"):
        load_pretrained("hf://org/stalled", timeout_s=0.05)
    assert time.perf_counter() - start < 2
