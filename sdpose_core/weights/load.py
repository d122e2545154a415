"""Where the Predictor's weights come from, and a record of it (`WeightsInfo`) that travels with every result.

    model, info = resolve_weights(None)                     # SDPOSE_WEIGHTS, else the embedded default,
                                                            # else an UNTRAINED random model (info says so)
    model, info = resolve_weights("runs/demo/final")        # our folder: config.json + model.safetensors
    model, info = resolve_weights("sdpose_t.pth")           # official checkpoint, variant inferred
    model, info = resolve_weights("hf://org/repo/sub")      # Hugging Face Hub (cached; offline-aware)

Resolution order for `weights=None`: the `SDPOSE_WEIGHTS` environment variable (a path or hf:// address),
then the embedded default `assets/sdpose-t-default/` (when it exists and the requested model is sdpose-t),
then a randomly initialised model. Random weights are seeded (`UNTRAINED_SEED`) without touching the
global RNG, so untrained outputs are at least reproducible; `WeightsInfo.trained` is False and its
description starts with "UNTRAINED" so any UI or report can say that the poses are meaningless.

Loaded weights count as trained unless their config.json says otherwise: a training run may record
`"extra": {"trained": false, "description": "..."}` in the model config (e.g. a smoke-test run), and
`WeightsInfo` takes both from there.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdpose_core.errors import CheckpointError, ConfigError
from sdpose_core.paths import PROJECT_ROOT

WEIGHTS_ENV = "SDPOSE_WEIGHTS"
EMBEDDED_DEFAULT_DIR = PROJECT_ROOT / "assets" / "sdpose-t-default"
DEFAULT_MODEL = "sdpose-t"
UNTRAINED_SEED = 0
HUB_PREFIX = "hf://"
STATE_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")

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


def _normalise_name(name: str) -> str:
    return name.lower().replace("_", "-")


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
    from sdpose_core.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(model, **overrides).eval()


def _check_requested(model_name: str | None, model: nn.Module, where: str) -> None:
    if model_name is None:
        return
    actual = getattr(model.config, "name", None)
    if actual is not None and _normalise_name(model_name) != _normalise_name(actual):
        raise ConfigError(
            f"model {model_name!r} was requested but the weights at {where} are {actual!r}; "
            "leave the model out (config.json says what to build) or pass matching weights"
        )


def _read_training_state(path: Path) -> dict[str, Any] | None:
    """A run's last.pt (our training state), or None when the file is something else."""
    from sdpose_core.train.state import STATE_FORMAT

    if path.suffix != ".pt":
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a plain-tensor file: the state-dict reader reports on it
        return None
    return state if isinstance(state, Mapping) and state.get("format") == STATE_FORMAT else None


def _load_state_file(path: Path, model_name: str | None, allow_pickle: bool) -> tuple[nn.Module, str]:
    """An official .pth / other state-dict file: the variant is `model_name` or inferred."""
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import (
        describe_state_dict,
        infer_variant,
        is_official_state_dict,
        load_checkpoint,
        read_state_dict,
    )

    state = read_state_dict(path, allow_pickle=allow_pickle)
    source = "official" if is_official_state_dict(state) else "state-dict"
    facts = describe_state_dict(state)
    name = model_name or infer_variant(state)
    if name is None:
        raise CheckpointError(
            f"{path}: cannot tell which SDPose variant these weights belong to "
            f"({', '.join(f'{k}={v}' for k, v in facts.items()) or 'no SDPose weights found'}); "
            "pass the model name (e.g. model='sdpose-s-v1')"
        )
    model = build_model(name, num_keypoints=int(facts.get("num_keypoints", 17)))
    return load_checkpoint(model, state), source


def load_weights(
    spec: str | os.PathLike,
    model_name: str | None = None,
    device: str | torch.device = "cpu",
    *,
    allow_pickle: bool = False,
    cache_dir: str | os.PathLike | None = None,
    hub_timeout_s: float | None = None,
    from_env: bool = False,
) -> tuple[nn.Module, WeightsInfo]:
    """Load `spec` (our folder, hf:// address, official .pth, state-dict file or a run's last.pt)."""
    from sdpose_core.models.config import ModelConfig
    from sdpose_core.models.registry import model_from_config
    from sdpose_core.weights.checkpoint import CONFIG_NAME, HUB_TIMEOUT_S, load_pretrained

    text = str(spec)
    origin = f"{WEIGHTS_ENV}={text}" if from_env else text
    if text.startswith(HUB_PREFIX):
        model = load_pretrained(text, device="cpu", cache_dir=cache_dir,
                                timeout_s=HUB_TIMEOUT_S if hub_timeout_s is None else hub_timeout_s)
        _check_requested(model_name, model, origin)
        source = "hub"
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            if not (path / CONFIG_NAME).is_file():
                hint = f" (a training run? pass {path / 'final'} or {path / 'last.pt'})" if (
                    path / "last.pt").is_file() else ""
                raise CheckpointError(f"weights folder {path} has no {CONFIG_NAME}{hint}")
            model = load_pretrained(path, device="cpu")
            _check_requested(model_name, model, origin)
            source = "embedded" if path.resolve() == EMBEDDED_DEFAULT_DIR.resolve() else "local"
        elif path.is_file():
            training_state = _read_training_state(path)
            if training_state is not None:
                model = model_from_config(ModelConfig.from_dict(dict(training_state["model_config"])))
                model.load_state_dict(training_state["model"], strict=True)
                _check_requested(model_name, model, origin)
                source = "training-state"
            elif path.suffix in STATE_FILE_SUFFIXES:
                model, source = _load_state_file(path, model_name, allow_pickle)
            else:
                raise CheckpointError(
                    f"weights file {path} is not a checkpoint (expected {', '.join(STATE_FILE_SUFFIXES)}); "
                    "ONNX files need backend='onnx'"
                )
        else:
            raise CheckpointError(
                f"weights not found: {origin} (expected our folder with config.json + model.safetensors, "
                "an official .pth, a run's last.pt or hf://org/repo[/subdir])"
            )
    model = model.to(device).eval()
    return model, _loaded_info(model, source, text, from_env)


def resolve_weights(
    weights: str | os.PathLike | None = None,
    model_name: str | None = None,
    device: str | torch.device = "cpu",
    *,
    allow_pickle: bool = False,
    cache_dir: str | os.PathLike | None = None,
    hub_timeout_s: float | None = None,
    environ: Mapping[str, str] | None = None,
    embedded_dir: str | os.PathLike | None = None,
) -> tuple[nn.Module, WeightsInfo]:
    """The model to predict with and where its weights came from (see the module docstring for the order).

    `model_name` None means "whatever the weights are" (sdpose-t when nothing is loaded); a name that
    contradicts a folder's config.json raises ConfigError; for official .pth files it names the variant.
    `environ` / `embedded_dir` default to os.environ / assets/sdpose-t-default (tests override them).
    """
    if weights is not None and str(weights).strip():
        return load_weights(weights, model_name, device, allow_pickle=allow_pickle, cache_dir=cache_dir,
                            hub_timeout_s=hub_timeout_s)
    env = os.environ if environ is None else environ
    from_env = env.get(WEIGHTS_ENV, "").strip()
    if from_env:
        return load_weights(from_env, model_name, device, allow_pickle=allow_pickle, cache_dir=cache_dir,
                            hub_timeout_s=hub_timeout_s, from_env=True)
    embedded = Path(embedded_dir) if embedded_dir is not None else EMBEDDED_DEFAULT_DIR
    wants_default = model_name is None or _normalise_name(model_name) == DEFAULT_MODEL
    if wants_default and (embedded / "model.safetensors").is_file():
        model, info = load_weights(embedded, None, device)
        return model, dataclasses.replace(info, source="embedded")
    model = untrained_model(model_name or DEFAULT_MODEL).to(device)
    return model, WeightsInfo("untrained", None, False, UNTRAINED_DESCRIPTION, _config_dict(model))


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
