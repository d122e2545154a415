"""One weights vocabulary: what a spec is (`parse_weights_spec`), what an hf:// address says
(`parse_hub_address`), loading into a given model, the ONNX hand-off, the device and model-name rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdpose_core.errors import CheckpointError, ConfigError, DataError
from sdpose_core.hub import HubAddress, HubAddressError, is_hub_address, parse_hub_address
from sdpose_core.models import build_model, normalise_model_name
from sdpose_core.precision import resolve_device
from sdpose_core.weights import (
    WEIGHTS_KINDS,
    load_model,
    load_onnx_model,
    parse_weights_spec,
    read_training_state,
    save_pretrained,
)

TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(7)
    model = build_model("sdpose-t", **TINY).eval()
    return model, save_pretrained(model, tmp_path / "tiny")


# ------------------------------------------------------------------------------------------ hf:// addresses
def test_hub_addresses_of_models_and_datasets() -> None:
    assert parse_hub_address("hf://org/repo") == HubAddress("org/repo", None, "", "model")
    assert parse_hub_address("hf://org/repo@v1.0/coco/tiny") == HubAddress("org/repo", "v1.0", "coco/tiny", "model")
    assert parse_hub_address("hf://datasets/org/name@main/val") == HubAddress("org/name", "main", "val", "dataset")
    # without datasets/ the caller says what the repo is: sample sets live in dataset repos
    assert parse_hub_address(" hf://org/name/ ", default_repo_type="dataset").repo_type == "dataset"
    assert is_hub_address("hf://org/repo") and not is_hub_address("org/repo")
    assert not is_hub_address(Path("hf://org/repo")) and not is_hub_address(None)


@pytest.mark.parametrize("spec", ["hf://justone", "hf://", "hf://datasets/org", "hf://org/repo@", "hf://org/@rev",
                                  "hf://org@x/repo", "org/repo"])
def test_malformed_hub_addresses_name_the_address_and_the_forms(spec: str) -> None:
    with pytest.raises(HubAddressError) as caught:
        parse_hub_address(spec)
    message = str(caught.value)
    assert repr(spec) in message and "hf://org/repo[@revision][/subfolder]" in message
    # weights callers catch it as a CheckpointError, sample-set callers as a DataError
    assert isinstance(caught.value, CheckpointError) and isinstance(caught.value, DataError)


# ------------------------------------------------------------------------------------------ weights specs
def test_every_kind_of_spec(tmp_path: Path, tiny) -> None:
    _, folder = tiny
    files = {name: tmp_path / name for name in ("t.pth", "last.pt", "s.safetensors", "m.bin", "x.ckpt", "e.ONNX")}
    for path in files.values():
        path.write_bytes(b"not read by the parser")
    kinds = {spec: parse_weights_spec(spec).kind for spec in [None, "", "  ", "hf://org/repo/sub", str(folder),
                                                                folder, *map(str, files.values())]}
    assert kinds == {None: "default", "": "default", "  ": "default", "hf://org/repo/sub": "hub",
                     str(folder): "folder", folder: "folder", str(files["t.pth"]): "state",
                     str(files["last.pt"]): "state", str(files["s.safetensors"]): "state",
                     str(files["m.bin"]): "state", str(files["x.ckpt"]): "state", str(files["e.ONNX"]): "onnx"}
    assert set(kinds.values()) == set(WEIGHTS_KINDS)
    hub = parse_weights_spec("hf://org/repo@v2/sub")
    assert hub.hub == HubAddress("org/repo", "v2", "sub", "model") and hub.path is None and hub.text == "hf://org/repo@v2/sub"
    local = parse_weights_spec(str(folder))
    assert local.path == folder and local.hub is None
    assert parse_weights_spec(local) is local  # parsed once, passed on as it is


def test_bad_specs_say_what_is_wrong_and_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"weights not found: .*nowhere \(expected an official SDPose .pth"):
        parse_weights_spec(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"weights not found: SDPOSE_WEIGHTS=x"):
        parse_weights_spec(tmp_path / "x", origin="SDPOSE_WEIGHTS=x")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes.txt is not a checkpoint \(expected .pth, .pt, .*\.onnx"):
        parse_weights_spec(tmp_path / "notes.txt")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match=r"has no config.json$"):
        parse_weights_spec(run)
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"a training run\? pass .*final or .*best \(weights\) or .*last.pt"):
        parse_weights_spec(run)
    with pytest.raises(CheckpointError, match="bad Hub address 'hf://org'"):
        parse_weights_spec("hf://org")


# ------------------------------------------------------------------------------------------ loading
def test_load_into_a_given_model_from_folder_state_and_training_state(tmp_path: Path, tiny) -> None:
    from sdpose_core.inference.predictor import Predictor
    from sdpose_core.train.state import save_train_state

    source, folder = tiny
    state_file = tmp_path / "tiny_state.pt"
    torch.save(source.state_dict(), state_file)
    last = save_train_state(tmp_path / "run" / "last.pt", {"model_config": source.config.to_dict(),
                                                            "model": source.state_dict()})
    for spec, kind in ((folder, "local"), (state_file, "state-dict"), (last, "training-state")):
        target = build_model("sdpose-t", **TINY)
        loaded, info = load_model(spec, into=target)
        assert loaded is target and same_weights(target, source) and not target.training
        assert info.source == kind and info.location == str(spec)
    with pytest.raises(CheckpointError, match="does not fit model sdpose-t"):
        load_model(folder, into=build_model("sdpose-t", **{**TINY, "depth": 3}))
    with pytest.raises(ConfigError, match="not both"):
        load_model(folder, "sdpose-t", into=build_model("sdpose-t", **TINY))
    with pytest.raises(ConfigError, match="needs weights"):
        load_model(None, into=build_model("sdpose-t", **TINY))
    # the Predictor given a module and weights goes the same way, and says where the weights came from
    predictor = Predictor(build_model("sdpose-t", **TINY), weights=state_file, detector=None)
    assert same_weights(predictor.model, source) and predictor.weights_info.source == "state-dict"


def test_official_file_built_by_name_with_overrides(tmp_path: Path, tiny) -> None:
    """`sdpose evaluate --model NAME --override ...`: a state file at a size no registered variant has is
    built as asked; without the name the variant cannot be told and the message says to pass it."""
    source, _ = tiny
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    with pytest.raises(CheckpointError, match="cannot tell which SDPose variant"):
        load_model(path)
    model, info = load_model(path, "sdpose_t", model_overrides=TINY)  # the official spelling of the name
    assert same_weights(model, source) and info.source == "state-dict" and model.config.name == "sdpose-t"
    with pytest.raises(ConfigError, match="unknown model 'sdpose-xl'"):
        load_model(path, "sdpose-xl")  # before the file is read


def test_onnx_exports_go_to_onnxruntime(tmp_path: Path, tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    source, folder = tiny
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"onnx")
    with pytest.raises(CheckpointError, match=r"ONNX export: it runs on onnxruntime.*backend='onnx'"):
        load_model(fake)
    with pytest.raises(ConfigError, match="backend='onnx' runs an exported .onnx file.*folder"):
        load_onnx_model(folder)
    with pytest.raises(ConfigError, match="needs weights="):
        load_onnx_model(None)
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from sdpose_core.deploy.export import export_onnx
    from sdpose_core.inference.predictor import Predictor

    path = export_onnx(source, tmp_path / "tiny.onnx", cycles=1, check=False, weights_info="test weights").path
    onnx_model, info = load_onnx_model(path, "SDPose_T")
    assert onnx_model.config == source.config and info.source == "onnx" and info.trained
    with pytest.raises(ConfigError, match="'sdpose-b' was requested"):
        load_onnx_model(path, "sdpose-b")
    # an export is its own backend even when SDPOSE_BACKEND names a torch one (the tests pin torch)
    monkeypatch.setenv("SDPOSE_BACKEND", "torch")
    assert Predictor(weights=str(path), detector=None).backend == "onnx"
    with pytest.raises(CheckpointError, match="ONNX export"):
        Predictor(weights=str(path), backend="torch", detector=None)


def test_hub_revision_from_the_cache_offline(tmp_path: Path, tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hf://org/repo@tag`: the tag resolves through the Hub cache's refs (no network: HF_HUB_OFFLINE)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source, folder = tiny
    repo = tmp_path / "hub" / "models--studio-org--tagged"
    for ref, commit in (("main", "0" * 40), ("v1", "1" * 40)):
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        (repo / "snapshots" / commit).mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (repo / "snapshots" / ("1" * 40) / name).write_bytes((folder / name).read_bytes())
    model, info = load_model("hf://studio-org/tagged@v1", cache_dir=tmp_path / "hub")
    assert same_weights(model, source) and info.source == "hub" and info.location == "hf://studio-org/tagged@v1"
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_model("hf://studio-org/tagged", cache_dir=tmp_path / "hub")  # main holds nothing


# ------------------------------------------------------------------------------------------ shared rules
def test_training_state_reader_says_why_a_file_is_not_one(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"format": "something/else"}, other)
    with pytest.raises(CheckpointError, match="not an SDPose training state"):
        read_training_state(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_training_state(tmp_path / "missing.pt")


def test_model_names_and_devices_have_one_rule() -> None:
    assert normalise_model_name("SDPose_S_V1") == normalise_model_name("sdpose-s-v1") == "sdpose-s-v1"
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match=r"'cuda:1' requested but CUDA is not available here"):
            resolve_device("cuda:1")
