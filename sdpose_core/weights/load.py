"""The one way to get a model from a weights spec (`load_model`) and the record of where its weights came from
(`WeightsInfo`), which travels with every result.

    model, info = load_model(None)                       # SDPOSE_WEIGHTS, else the embedded default,
                                                         # else an UNTRAINED random model (info says so)
    model, info = load_model("runs/demo/final")          # our folder: config.json + model.safetensors
    model, info = load_model("sdpose_t.pth")             # official checkpoint, variant inferred
    model, info = load_model("runs/demo/last.pt")        # a run's training state
    model, info = load_model("hf://org/repo/sub")        # Hugging Face Hub (cached; offline-aware)
    load_model("sdpose_t.pth", into=model)               # strictly into a model you built (init weights)
    onnx_model, info = load_onnx_model("t.onnx")         # an ONNX export runs on onnxruntime, not in torch

What a spec is, is decided once by `parse_weights_spec` (sdpose_core.weights.spec); `load_pretrained` is
`load_model` for callers that only want the model.

Resolution order for no weights: the `SDPOSE_WEIGHTS` environment variable (a path or hf:// address),
then the embedded default `assets/sdpose-t-default/` (when it exists and the requested model is sdpose-t),
then a randomly initialised model. Random weights are seeded (`UNTRAINED_SEED`) without touching the
global RNG, so untrained outputs are at least reproducible; `WeightsInfo.trained` is False and its
description starts with "UNTRAINED" so any UI or report can say that the poses are meaningless.

Loaded weights count as trained unless their config.json says otherwise: a training run may record
`"extra": {"trained": false, "description": "..."}` in the model config (e.g. a smoke-test run), and
`WeightsInfo` takes both from there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdpose_core.errors import CheckpointError, ConfigError
from sdpose_core.hub import HubAddress, HubFetchError, fetch_snapshot
from sdpose_core.models.config import ModelConfig
from sdpose_core.models.registry import build_model, get_config, model_from_config, normalise_model_name
from sdpose_core.models.sdpose import SDPose
from sdpose_core.paths import PROJECT_ROOT
from sdpose_core.precision import resolve_device
from sdpose_core.weights.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    describe_state_dict,
    infer_variant,
    is_official_state_dict,
    load_checkpoint,
    read_config,
    read_state_dict,
)
from sdpose_core.weights.files import EXPECTED_WEIGHTS
from sdpose_core.weights.spec import WeightsSpec, parse_weights_spec
from sdpose_core.weights.training_state import training_state_or_none

WEIGHTS_ENV = "SDPOSE_WEIGHTS"
EMBEDDED_DEFAULT_DIR = PROJECT_ROOT / "assets" / "sdpose-t-default"
DEFAULT_MODEL = "sdpose-t"
UNTRAINED_SEED = 0
HUB_TIMEOUT_S = 10.0

UNTRAINED_DESCRIPTION = (
    "UNTRAINED: random weights, poses are meaningless (no trained SDPose weights are bundled yet; "
    f"pass weights=..., or set {WEIGHTS_ENV} to a weights folder, an official .pth or hf://org/repo)"
)


@dataclass(frozen=True)
class WeightsInfo:
    """What produced a prediction.

    source: "embedded" (assets/sdpose-t-default), "local" (our folder), "official" (an official SDPose
        .pth converted on load), "state-dict" (another state-dict file), "training-state" (a run's
        last.pt), "hub" (Hugging Face Hub), "onnx" (an exported ONNX file), "module" (an nn.Module passed
        in by the caller) or "untrained" (random init).
    location: the path or hf:// address; None for untrained / caller modules.
    trained: False for random weights (and for weights whose config says so).
    description: one human-readable line; starts with "UNTRAINED" when `trained` is False.
    config: the model config (`ModelConfig.to_dict()`).
    from_env: the weights were chosen by the SDPOSE_WEIGHTS environment variable.
    """

    source: str
    location: str | None
    trained: bool
    description: str
    config: dict[str, Any] = field(default_factory=dict)
    from_env: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "location": self.location, "trained": self.trained,
            "description": self.description, "config": dict(self.config), "from_env": self.from_env,
        }


def _config_dict(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else {}


def _loaded_info(model: nn.Module, source: str, location: str, from_env: bool) -> WeightsInfo:
    """WeightsInfo for weights read from a file/hub; honours config.extra {"trained", "description"}."""
    extra = dict(getattr(getattr(model, "config", None), "extra", None) or {})
    trained = bool(extra.get("trained", True))
    name = getattr(getattr(model, "config", None), "name", "model")
    description = str(extra.get("description") or f"{name} weights from {location}")
    if not trained and not description.startswith("UNTRAINED"):
        description = "UNTRAINED: " + description
    if from_env:
        description += f" (chosen by {WEIGHTS_ENV})"
    return WeightsInfo(source, location, trained, description, _config_dict(model), from_env)


def untrained_model(model: str = DEFAULT_MODEL, seed: int = UNTRAINED_SEED, **overrides: Any) -> nn.Module:
    """A randomly initialised variant (eval mode), seeded without disturbing the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(model, **overrides).eval()


def module_info(model: nn.Module, trained: bool | None = None, description: str | None = None) -> WeightsInfo:
    """WeightsInfo for an nn.Module handed to the Predictor directly (its training state is unknown)."""
    name = type(model).__name__
    if trained is None or not trained:
        text = description or (f"UNTRAINED or unknown: weights of a caller-supplied {name}; "
                               "SDPose Studio cannot tell whether they are trained")
        if not text.startswith("UNTRAINED"):
            text = "UNTRAINED or unknown: " + text
        return WeightsInfo("module", None, False, text, _config_dict(model))
    return WeightsInfo("module", None, True, description or f"caller-supplied {name} (declared trained)",
                       _config_dict(model))


# ----------------------------------------------------------------------------- reading one spec
def _checked(model: SDPose, model_name: str | None, where: str) -> SDPose:
    """`model` (built from the weights' own config), unless it contradicts the `model_name` asked for."""
    if model_name is not None and normalise_model_name(model_name) != normalise_model_name(model.config.name):
        raise ConfigError(
            f"model {model_name!r} was requested but the weights at {where} are {model.config.name!r}; "
            "leave the model out (config.json says what to build) or pass matching weights"
        )
    return model


def _hub_folder(address: HubAddress, cache_dir: str | os.PathLike | None, timeout_s: float) -> Path:
    """The local snapshot folder of a Hub model, holding config.json and model.safetensors."""
    repo_id, revision, subdir, repo_type = address
    prefix = f"{subdir}/" if subdir else ""
    try:
        snapshot = fetch_snapshot(repo_id, timeout_s, revision=revision, repo_type=repo_type, cache_dir=cache_dir,
                                  allow_patterns=[prefix + CONFIG_NAME, prefix + WEIGHTS_NAME])
    except HubFetchError as exc:
        if exc.cause is None:
            raise CheckpointError(
                f"hub repo {repo_id!r}: no answer within {exc.waited_s:.0f} s ({exc.mode}); check the network"
            ) from None
        raise CheckpointError(
            f"cannot get hub repo {repo_id!r}{' revision ' + revision if revision else ''} ({exc.mode}): "
            f"{exc.reason()}. Check the name, your network or login, "
            "or download it once while online so the cache has it."
        ) from exc.cause
    folder = snapshot / subdir
    if not (folder / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"hub repo {repo_id!r} has no {prefix}{WEIGHTS_NAME} (looked in {folder})")
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_NAME}; save models with save_pretrained()")
    return folder


def _built_for_state(state: Mapping[str, torch.Tensor], model_name: str | None, overrides: Mapping[str, Any],
                     where: Path) -> SDPose:
    """The model an official / state-dict file goes into: `model_name` (+ overrides), else the variant the
    weights fit; the keypoint count is the weights' unless the overrides name one."""
    facts = describe_state_dict(state)
    name = model_name or infer_variant(state)
    if name is None:
        raise CheckpointError(
            f"{where}: cannot tell which SDPose variant these weights belong to "
            f"({', '.join(f'{k}={v}' for k, v in facts.items()) or 'no SDPose weights found'}); "
            "pass the model name (e.g. model='sdpose-s-v1')"
        )
    return build_model(name, **{"num_keypoints": int(facts.get("num_keypoints", 17)), **overrides})


def _load_spec(parsed: WeightsSpec, model_name: str | None, into: nn.Module | None, overrides: Mapping[str, Any],
               allow_pickle: bool, cache_dir: str | os.PathLike | None, hub_timeout_s: float | None,
               ) -> tuple[nn.Module, str]:
    """(model with the weights of a hub / folder / state spec loaded strictly, WeightsInfo.source)."""
    where = parsed.origin
    if parsed.kind == "onnx":
        raise CheckpointError(
            f"{where} is an ONNX export: it runs on onnxruntime (sdpose_core.deploy.onnx_runtime.OnnxPoseModel, "
            "load_onnx_model), not as a torch model; use backend='onnx' (Predictor(weights=..., backend='onnx'))"
        )
    if parsed.kind in ("hub", "folder"):
        if parsed.kind == "hub":
            folder = _hub_folder(parsed.hub, cache_dir, HUB_TIMEOUT_S if hub_timeout_s is None else hub_timeout_s)
            source = "hub"
        else:
            folder = parsed.path
            source = "embedded" if folder.resolve() == EMBEDDED_DEFAULT_DIR.resolve() else "local"
        model = into if into is not None else _checked(model_from_config(read_config(folder)), model_name, where)
        return load_checkpoint(model, folder / WEIGHTS_NAME), source
    training = training_state_or_none(parsed.path)
    if training is not None:
        model = into if into is not None else _checked(
            model_from_config(ModelConfig.from_dict(dict(training["model_config"]))), model_name, where)
        return load_checkpoint(model, training["model"]), "training-state"
    state = read_state_dict(parsed.path, allow_pickle=allow_pickle)
    model = into if into is not None else _built_for_state(state, model_name, overrides, parsed.path)
    return load_checkpoint(model, state), "official" if is_official_state_dict(state) else "state-dict"


# ----------------------------------------------------------------------------- the entry points
def load_model(
    spec: str | os.PathLike | WeightsSpec | None = None,
    model_name: str | None = None,
    device: str | torch.device = "cpu",
    *,
    into: nn.Module | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    allow_pickle: bool = False,
    cache_dir: str | os.PathLike | None = None,
    hub_timeout_s: float | None = None,
    environ: Mapping[str, str] | None = None,
    embedded_dir: str | os.PathLike | None = None,
) -> tuple[nn.Module, WeightsInfo]:
    """The model of `spec` (eval mode, on `device`) and where its weights came from.

    spec: None / "" (the default order, module docstring), our folder, hf://org/repo[@revision][/subfolder],
        an official .pth, a state-dict file or a run's last.pt (`parse_weights_spec`); an .onnx export is
        refused with a pointer to `load_onnx_model`.
    model_name: None means "whatever the weights are" (sdpose-t when nothing is loaded); a name that
        contradicts the weights' config.json raises ConfigError; for official / state-dict files it names
        the variant to build (with `model_overrides`, ModelConfig fields such as image_size).
    into: load strictly into this model instead of building one (training's --init-weights, a Predictor
        given a module); its config is the caller's, so `model_name` must be None.
    allow_pickle: let torch.load run pickle code (trusted official checkpoints with Python metadata only).
    cache_dir / hub_timeout_s: the Hub cache and how long to wait for the Hub (default HUB_TIMEOUT_S).
    environ / embedded_dir: default os.environ / assets/sdpose-t-default (tests override them).
    """
    parsed = parse_weights_spec(spec)
    torch_device = resolve_device(device)
    if into is not None and model_name is not None:
        raise ConfigError("load_model: pass model_name or into=, not both (into= has its own config)")
    if model_name is not None:
        get_config(model_name)  # an unknown name fails here, before any file is read
    options = dict(into=into, overrides=dict(model_overrides or {}), allow_pickle=allow_pickle, cache_dir=cache_dir,
                   hub_timeout_s=hub_timeout_s)
    if parsed.kind != "default":
        model, source = _load_spec(parsed, model_name, **options)
        model = model.to(torch_device).eval()
        return model, _loaded_info(model, source, parsed.text, from_env=False)
    if into is not None:
        raise ConfigError(f"load_model(into=...) needs weights to load: {EXPECTED_WEIGHTS}")
    env = os.environ if environ is None else environ
    chosen = env.get(WEIGHTS_ENV, "").strip()
    if chosen:
        model, source = _load_spec(parse_weights_spec(chosen, origin=f"{WEIGHTS_ENV}={chosen}"), model_name,
                                   **options)
        model = model.to(torch_device).eval()
        return model, _loaded_info(model, source, chosen, from_env=True)
    embedded = Path(embedded_dir) if embedded_dir is not None else EMBEDDED_DEFAULT_DIR
    wants_default = model_name is None or normalise_model_name(model_name) == DEFAULT_MODEL
    if wants_default and (embedded / WEIGHTS_NAME).is_file():
        model, _ = _load_spec(parse_weights_spec(embedded), None, **options)
        model = model.to(torch_device).eval()
        return model, _loaded_info(model, "embedded", str(embedded), from_env=False)
    model = untrained_model(model_name or DEFAULT_MODEL).to(torch_device)
    return model, WeightsInfo("untrained", None, False, UNTRAINED_DESCRIPTION, _config_dict(model))


def load_pretrained(
    path_or_hub: str | os.PathLike,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    timeout_s: float = HUB_TIMEOUT_S,
    allow_pickle: bool = False,
) -> SDPose:
    """The model of a weights spec, without its WeightsInfo (`load_model` with the spec required).

    Accepts our folder, `hf://org/repo[/subdir]` (honours HF_HUB_OFFLINE; fails fast with CheckpointError
    when the repo cannot be reached), a run's last.pt, or an official .pth whose variant is inferred from
    its weights."""
    parsed = parse_weights_spec(path_or_hub)
    if parsed.kind == "default":
        raise CheckpointError(f"load_pretrained needs weights: {EXPECTED_WEIGHTS}")
    return load_model(parsed, device=device, cache_dir=cache_dir, hub_timeout_s=timeout_s,
                      allow_pickle=allow_pickle)[0]


def load_onnx_model(spec: str | os.PathLike | WeightsSpec | None, model_name: str | None = None,
                    threads: int | None = None) -> tuple[Any, WeightsInfo]:
    """(OnnxPoseModel of an exported .onnx file, its WeightsInfo): what backend='onnx' runs."""
    parsed = parse_weights_spec(spec)
    if parsed.kind == "default":
        raise ConfigError("backend='onnx' needs weights= the path of an exported .onnx file")
    if parsed.kind != "onnx":
        raise ConfigError(f"backend='onnx' runs an exported .onnx file, and {parsed.origin} is a {parsed.kind} "
                          "weights spec; export it first (sdpose export) or use another backend")
    try:
        from sdpose_core.deploy.onnx_runtime import OnnxPoseModel
    except ImportError as exc:
        raise ConfigError(f"backend='onnx' needs sdpose_core.deploy.onnx_runtime.OnnxPoseModel, which is not available "
                          f"({exc}); use backend='torch'") from exc
    onnx_model = OnnxPoseModel(parsed.path, threads=threads)
    config = onnx_model.config
    if model_name is not None and normalise_model_name(model_name) != normalise_model_name(config.name):
        raise ConfigError(f"model {model_name!r} was requested but {parsed.text} holds {config.name!r}")
    # the export stores a free-text weights description; without one, nothing says the weights are trained
    described = getattr(onnx_model, "weights_info", None)
    trained = bool(described) and not str(described).startswith("UNTRAINED")
    description = str(described) if described else (
        "UNTRAINED or unknown: the ONNX file does not say where its weights came from")
    return onnx_model, WeightsInfo("onnx", parsed.text, trained,
                                   f"{description} ({config.name} on onnxruntime, {parsed.text})", config.to_dict())
