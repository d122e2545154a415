"""Where the Predictor's weights come from: untrained default, embedded default, SDPOSE_WEIGHTS, our folder,
an official .pth (converted on load), a run's last.pt, and the Hugging Face Hub cache (offline, fail fast)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sdpose_core.errors import CheckpointError, ConfigError
from sdpose_core.inference.predictor import Predictor
from sdpose_core.models import build_model
from sdpose_core.weights.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from sdpose_core.weights.load import WEIGHTS_ENV, load_model, untrained_model

TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture()
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


@pytest.fixture()
def tiny_folder(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(3)
    model = build_model("sdpose-t", **TINY).eval()
    return model, save_pretrained(model, tmp_path / "tiny")


def test_untrained_default_says_so_and_is_reproducible(tmp_path: Path, no_env: None) -> None:
    rng_before = torch.random.get_rng_state()
    model, info = load_model(None, embedded_dir=tmp_path / "absent")
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the global RNG is left alone
    assert info.source == "untrained" and not info.trained and info.location is None
    assert info.description.startswith("UNTRAINED") and "meaningless" in info.description
    assert info.config["name"] == "sdpose-t" and not model.training
    again, _ = load_model(None, embedded_dir=tmp_path / "absent")
    assert same_weights(model, again)
    other, info_b = load_model(None, "sdpose-s-v1", embedded_dir=tmp_path / "absent")
    assert info_b.config["name"] == "sdpose-s-v1" and not info_b.trained


def test_predictor_without_weights_marks_every_result_untrained(no_env: None) -> None:
    from sdpose_core.weights.load import EMBEDDED_DEFAULT_DIR

    if (EMBEDDED_DEFAULT_DIR / WEIGHTS_NAME).is_file():
        pytest.skip("embedded default weights exist now; the untrained path is covered with embedded_dir")
    predictor = Predictor(detector=None)
    result = predictor.predict(np.full((64, 48, 3), 90, np.uint8), boxes=[[0, 0, 48, 64]], cycles=1)
    assert result.weights_info is predictor.weights_info and not result.weights_info.trained
    assert result.to_dict()["weights"]["description"].startswith("UNTRAINED")


def test_embedded_default_and_environment_override(tmp_path: Path, tiny_folder, monkeypatch) -> None:
    model, folder = tiny_folder
    loaded, info = load_model(None, environ={}, embedded_dir=folder)
    assert info.source == "embedded" and info.trained and same_weights(loaded, model)
    # an explicit other variant does not get the sdpose-t default
    _, other = load_model(None, "sdpose-s-v1", environ={}, embedded_dir=folder)
    assert other.source == "untrained"
    # SDPOSE_WEIGHTS beats the embedded default
    torch.manual_seed(4)
    env_model = build_model("sdpose-t", **TINY)
    env_folder = save_pretrained(env_model, tmp_path / "from_env")
    loaded, info = load_model(None, environ={WEIGHTS_ENV: str(env_folder)}, embedded_dir=folder)
    assert info.from_env and info.source == "local" and WEIGHTS_ENV in info.description
    assert same_weights(loaded, env_model)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_ENV}=.*nowhere"):
        Predictor(detector=None)


def test_local_folder_and_model_name_checks(tiny_folder, no_env: None) -> None:
    model, folder = tiny_folder
    loaded, info = load_model(folder)
    assert info.source == "local" and info.location == str(folder) and info.trained
    assert same_weights(loaded, model) and info.config["dim"] == 12
    with pytest.raises(ConfigError, match="'sdpose-b' was requested.*'sdpose-t'"):
        load_model(folder, "sdpose-b")
    predictor = Predictor(weights=folder, detector=None)
    assert predictor.weights_info.source == "local" and predictor.config.image_size == (64, 48)


def test_config_can_declare_weights_untrained(tmp_path: Path, no_env: None) -> None:
    model = build_model("sdpose-t", **TINY, extra={"trained": False, "description": "smoke test, 3 steps"})
    folder = save_pretrained(model, tmp_path / "smoke")
    _, info = load_model(folder)
    assert not info.trained and info.description == "UNTRAINED: smoke test, 3 steps"


def test_official_pth_is_converted_on_load(tmp_path: Path, reference_dir: Path, no_env: None) -> None:
    golden = torch.load(reference_dir / "golden_sdpose_t.pt", weights_only=True)
    path = tmp_path / "sdpose_t_official.pth"
    torch.save({"state_dict": golden["state_dict"]}, path)  # mmcv layout
    model, info = load_model(path)
    assert info.source == "official" and info.config["name"] == "sdpose-t" and info.trained
    with torch.no_grad():
        heatmaps = model(golden["tensors"]["input"], cycles=1)[0].heatmaps
    assert (heatmaps - golden["tensors"]["heatmap_cycle0"]).abs().max() <= 2e-5
    named, named_info = load_model(path, "sdpose-t")  # variant given instead of inferred
    assert same_weights(named, model) and named_info.source == "official"
    with pytest.raises(CheckpointError, match="does not fit model sdpose-s-v1"):
        load_model(path, "sdpose-s-v1")


def test_unknown_architecture_and_bad_paths(tmp_path: Path, reference_dir: Path, no_env: None) -> None:
    golden_tiny = torch.load(reference_dir / "golden_tiny.pt", weights_only=True)
    path = tmp_path / "tiny.pth"
    torch.save(golden_tiny["state_dict"], path)
    with pytest.raises(CheckpointError, match="cannot tell which SDPose variant.*depth=2"):
        load_model(path)
    with pytest.raises(CheckpointError, match="weights not found"):
        load_model(tmp_path / "missing")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(CheckpointError, match="backend='onnx'"):
        load_model(tmp_path / "model.onnx")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="training run"):
        load_model(run)


def test_files_that_are_no_checkpoint_say_what_they_are_and_what_is_expected(tmp_path: Path, tiny_folder,
                                                                             no_env: None) -> None:
    """Random bytes, an empty file, an LFS pointer or a saved web page named .pth are not unpickling-security
    questions: the message says what the file is and what weights are expected, without torch's text."""
    expected = ["expected an official SDPose .pth", "model.safetensors + config.json", "hf://org/repo", ".onnx"]
    cases = {
        "random.pth": (np.random.default_rng(0).bytes(5000), "not a zip/pickle checkpoint: 5,000 bytes starting with"),
        "empty.pth": (b"", "an empty file (0 bytes)"),
        "pointer.pth": (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n", "git lfs pull"),
        "page.pt": (b"<!DOCTYPE html><html><body>Sign in</body></html>", "a web page"),
        "random.safetensors": (np.random.default_rng(1).bytes(300), "not a readable safetensors file"),
    }
    for name, (content, what) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as caught:
            load_model(tmp_path / name)
        message = str(caught.value)
        assert message.startswith(str(tmp_path / name)) and what in message, message
        if name.endswith((".pth", ".pt")):
            assert "is not a readable PyTorch checkpoint" in message
        assert all(part in message for part in expected) and "weights_only" not in message, message
    _, folder = tiny_folder
    whole = tmp_path / "whole.pth"
    torch.save(load_model(folder)[0].state_dict(), whole)
    (tmp_path / "cut.pth").write_bytes(whole.read_bytes()[:2000])  # a zip that stops part-way
    with pytest.raises(CheckpointError, match="cut.pth: a truncated or damaged zip archive"):
        load_model(tmp_path / "cut.pth")
    torch.save({"state_dict": load_model(folder)[0].state_dict(), "meta": np.float64(1.0)}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match=r"stores Python objects besides tensors \(numpy") as caught:
        load_model(tmp_path / "meta.pth")
    assert "weights_only" not in str(caught.value) and "allow_pickle=True" in str(caught.value)


def test_training_state_last_pt(tmp_path: Path, no_env: None) -> None:
    from sdpose_core.train.state import save_train_state

    torch.manual_seed(5)
    model = build_model("sdpose-t", **TINY)
    path = save_train_state(tmp_path / "last.pt", {"model_config": model.config.to_dict(),
                                                   "model": model.state_dict(), "epoch": 2})
    loaded, info = load_model(path)
    assert info.source == "training-state" and same_weights(loaded, model)


def make_hub_cache(cache: Path, repo_id: str, model_dir: Path, subdir: str = "") -> None:
    """The Hugging Face cache layout: models--org--repo/{refs/main, snapshots/<revision>/...}."""
    revision = "89abcdef0123456789abcdef0123456789abcdef"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    target = repo / "snapshots" / revision / subdir
    target.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        (target / name).write_bytes((model_dir / name).read_bytes())


def test_hub_cache_offline(tmp_path: Path, tiny_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, folder = tiny_folder
    cache = tmp_path / "hub"
    make_hub_cache(cache, "studio-org/sdpose-tiny", folder)
    make_hub_cache(cache, "studio-org/zoo", folder, subdir="coco/tiny")
    for spec in ("hf://studio-org/sdpose-tiny", "hf://studio-org/zoo/coco/tiny"):
        loaded, info = load_model(spec, cache_dir=cache)
        assert info.source == "hub" and info.location == spec and same_weights(loaded, model)
    # through SDPOSE_WEIGHTS and the Predictor
    monkeypatch.setenv(WEIGHTS_ENV, "hf://studio-org/zoo/coco/tiny")
    predictor = Predictor(detector=None, cache_dir=cache)
    assert predictor.weights_info.source == "hub" and predictor.weights_info.from_env


def test_missing_hub_repo_offline_fails_fast_naming_repo_and_mode(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match=r"'studio-org/not-cached'.*offline mode"):
        Predictor(weights="hf://studio-org/not-cached", detector=None, cache_dir=tmp_path)
    assert time.monotonic() - start < 5


def test_untrained_model_helper_is_seeded() -> None:
    a = untrained_model("sdpose-t", seed=1, **TINY)
    b = untrained_model("sdpose-t", seed=1, **TINY)
    c = untrained_model("sdpose-t", seed=2, **TINY)
    assert same_weights(a, b) and not same_weights(a, c)
