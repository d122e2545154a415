"""Save and load SDPose weights: our Hugging Face style folder and official SDPose/mmpose checkpoints.

Our format is a folder with `model.safetensors` (our parameter names) and `config.json`
(`ModelConfig.to_dict()` plus a "format" version). Official checkpoints (`{"state_dict": ...}` from
mmcv, or a bare state dict with `backbone.*` and `keypoint_head.tokenpose.*` keys) are converted with an
explicit key mapping and then loaded STRICTLY: every name and shape must match, BN `num_batches_tracked`
included, and a mismatch raises CheckpointError that lists missing / unexpected / wrong-shape keys and
names the variant the checkpoint most likely belongs to.

Building a model from a weights spec (a folder, a file, hf://, the default order) is
`sdpose_core.weights.load.load_model`; this module reads and writes the files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sdpose_core.errors import CheckpointError
from sdpose_core.models.config import ModelConfig
from sdpose_core.models.registry import get_config, list_models, model_from_config
from sdpose_core.models.sdpose import STEMS, SDPose
from sdpose_core.weights.files import EXPECTED_WEIGHTS, not_a_torch_file, torch_load_problem

FORMAT_VERSION = "sdpose-studio/1"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

_HEAD = "keypoint_head.tokenpose."
# official -> ours; block-level and head-level names (nanoGPT from_pretrained style: explicit, no guessing)
_BLOCK_KEYS = {
    "0.fn.norm": "norm1",
    "0.fn.fn.to_qkv": "attn.qkv",
    "0.fn.fn.to_out.0": "attn.proj",
    "1.fn.norm": "norm2",
    "1.fn.fn.net.0": "mlp.fc1",
    "1.fn.fn.net.3": "mlp.fc2",
}
_HEAD_KEYS_FOUR_LAYER = {"0": "norm_in", "1": "fc_hidden", "2": "norm_hidden", "3": "fc_out"}
_HEAD_KEYS_TWO_LAYER = {"0": "norm_in", "1": "fc_out"}
_TOP_KEYS = {"keypoint_token": "keypoint_token", "pos_embedding": "pos_embedding"}
_BLOCK_RE = re.compile(r"transformer_layer1\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_HEAD_RE = re.compile(r"mlp_head\.(\d+)\.(weight|bias)$")
_PATCH_RE = re.compile(r"patch_to_embedding\.(weight|bias)$")


# ----------------------------------------------------------------------------- key conversion
def is_official_state_dict(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(("backbone.", "keypoint_head.")) for k in state)


def official_key_to_ours(key: str, four_layer_head: bool) -> str | None:
    """Our name for one official key, or None when the key has no counterpart (reported, never dropped)."""
    if key.startswith("backbone."):
        return "stem." + key[len("backbone.") :]
    if not key.startswith(_HEAD):
        return None
    rest = key[len(_HEAD) :]
    if rest in _TOP_KEYS:
        return _TOP_KEYS[rest]
    if m := _PATCH_RE.fullmatch(rest):
        return f"patch_embed.proj.{m.group(1)}"
    if m := _BLOCK_RE.fullmatch(rest):
        index, inner, kind = m.groups()
        return f"blocks.{index}.{_BLOCK_KEYS[inner]}.{kind}" if inner in _BLOCK_KEYS else None
    if m := _HEAD_RE.fullmatch(rest):
        table = _HEAD_KEYS_FOUR_LAYER if four_layer_head else _HEAD_KEYS_TWO_LAYER
        return f"heatmap_head.{table[m.group(1)]}.{m.group(2)}" if m.group(1) in table else None
    return None


def ours_key_to_official(key: str, four_layer_head: bool) -> str:
    """The official name of one of our keys (the inverse of `official_key_to_ours`), for error messages."""
    if key.startswith("stem."):
        return "backbone." + key[len("stem.") :]
    if key in _TOP_KEYS.values():
        return _HEAD + key
    module, _, kind = key.rpartition(".")
    if module == "patch_embed.proj":
        return f"{_HEAD}patch_to_embedding.{kind}"
    if m := re.fullmatch(r"blocks\.(\d+)\.(.+)", module):
        inner = {v: k for k, v in _BLOCK_KEYS.items()}.get(m.group(2))
        if inner:
            return f"{_HEAD}transformer_layer1.layers.{m.group(1)}.{inner}.{kind}"
    if module.startswith("heatmap_head."):
        table = _HEAD_KEYS_FOUR_LAYER if four_layer_head else _HEAD_KEYS_TWO_LAYER
        index = {v: k for k, v in table.items()}.get(module[len("heatmap_head.") :])
        if index:
            return f"{_HEAD}mlp_head.{index}.{kind}"
    return key


def convert_official_state_dict(
    state: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename official keys to ours. Returns (converted, keys that have no counterpart in our model)."""
    four_layer_head = any(k.startswith(_HEAD + "mlp_head.3.") for k in state)
    converted: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        ours = official_key_to_ours(key, four_layer_head)
        if ours is None:
            unmapped.append(key)
        else:
            converted[ours] = value
    return converted, unmapped


# ----------------------------------------------------------------------------- variant inference
def describe_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture facts readable from weights alone (either naming): stem, depth, dim, patches, K."""
    if is_official_state_dict(state):
        state, _ = convert_official_state_dict(state)
    facts: dict[str, Any] = {}
    if any(k.startswith("stem.") for k in state):
        facts["stem"] = "hrnet_w32" if any(k.startswith("stem.transition1.") for k in state) else "stemnet"
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    if blocks:
        facts["depth"] = max(blocks) + 1
    if (token := state.get("keypoint_token")) is not None and token.ndim == 3:
        facts["num_keypoints"], facts["dim"] = int(token.shape[1]), int(token.shape[2])
    if (pos := state.get("pos_embedding")) is not None and pos.ndim == 3:
        facts["num_patches"] = int(pos.shape[1])
    weight = state.get("patch_embed.proj.weight")
    if weight is not None and "stem" in facts:
        facts["patch_area"] = int(weight.shape[1]) // STEMS[facts["stem"]].out_channels
    return facts


def _facts_of_config(config: ModelConfig) -> dict[str, Any]:
    grid = [config.image_size[i] // 4 // config.patch_size[i] for i in (0, 1)]
    return {
        "stem": config.stem,
        "depth": config.depth,
        "num_keypoints": config.num_keypoints,
        "dim": config.dim,
        "num_patches": grid[0] * grid[1],
        "patch_area": config.patch_size[0] * config.patch_size[1],
    }


def infer_variant(state: Mapping[str, torch.Tensor]) -> str | None:
    """The registered variant (default 256x192 sizes) whose architecture the weights fit, else None."""
    facts = describe_state_dict(state)
    for name in list_models():
        expected = _facts_of_config(get_config(name, num_keypoints=facts.get("num_keypoints", 17)))
        if all(facts.get(k) == v for k, v in expected.items()):
            return name
    return None


def _describe(facts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in facts.items()) or "no recognisable SDPose weights"


# ----------------------------------------------------------------------------- reading files
def _read_state_file(path: Path, allow_pickle: bool) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for a bad header
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); {EXPECTED_WEIGHTS}") from None
    problem = not_a_torch_file(path)
    if problem is not None:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({problem}); {EXPECTED_WEIGHTS}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # unpickling errors come in several types; all mean "cannot read safely"
        raise CheckpointError(f"cannot read checkpoint {path}: {torch_load_problem(exc)}") from exc


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside an mmcv/our checkpoint dict; drop a DDP 'module.' prefix."""
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{source}: expected a state dict or a dict with 'state_dict', got {type(obj).__name__}"
        )
    non_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        raise CheckpointError(f"{source}: entries that are not tensors: {non_tensors[:10]}")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_state_dict(
    path_or_state: str | os.PathLike | Mapping[str, Any], allow_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """A state dict (our names or official names) from a folder, a file or a dict."""
    if isinstance(path_or_state, Mapping):
        return _unwrap(path_or_state, "state dict")
    path = Path(path_or_state).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path} (expected our folder with {WEIGHTS_NAME}, or a .pth file)"
        )
    return _unwrap(_read_state_file(path, allow_pickle), str(path))


# ----------------------------------------------------------------------------- loading
def _mismatch_report(
    model: SDPose, state: Mapping[str, torch.Tensor], unmapped: list[str], source: str, official: bool = False
) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if official:  # name what the official file lacks in its own naming
        four_layer_head = model.heatmap_head.two_stage
        missing = [f"{ours_key_to_official(k, four_layer_head)} (ours: {k})" for k in missing]
    unexpected = sorted(set(state) - set(expected)) + unmapped
    wrong_shape = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return None

    def listing(title: str, items: list[str]) -> str:
        more = f" ... (+{len(items) - 15} more)" if len(items) > 15 else ""
        return f"\n  {title} ({len(items)}): {items[:15]}{more}" if items else ""

    facts = describe_state_dict(state)
    variant = infer_variant(state)
    likely = f"it looks like {variant}" if variant else "it matches no registered variant"
    return (
        f"{source} does not fit model {model.config.name} "
        f"({_describe(_facts_of_config(model.config))}): {likely} ({_describe(facts)})."
        + listing("missing", missing)
        + listing("unexpected", unexpected)
        + listing("wrong shape", wrong_shape)
        + "\nBuild the matching variant (build_model(name, num_keypoints=...)) or use load_model()."
    )


def load_checkpoint(
    model: SDPose, path_or_state: str | os.PathLike | Mapping[str, Any], allow_pickle: bool = False
) -> SDPose:
    """Load our folder/file, an official .pth or a state dict into `model`, strictly. Returns `model`."""
    source = "state dict" if isinstance(path_or_state, Mapping) else str(path_or_state)
    state = read_state_dict(path_or_state, allow_pickle)
    unmapped: list[str] = []
    official = is_official_state_dict(state)
    if official:
        state, unmapped = convert_official_state_dict(state)
    report = _mismatch_report(model, state, unmapped, source, official)
    if report:
        raise CheckpointError(report)
    model.load_state_dict(state, strict=True)
    return model


def save_pretrained(model: SDPose, out_dir: str | os.PathLike, half: bool = False) -> Path:
    """Write `model.safetensors` + `config.json` into `out_dir` (created); returns the folder.

    `half=True` stores floating-point tensors as fp16 (half the file; loading casts them back to the
    model's dtype, and the outputs move by ~1e-3 of the heatmap peak: see tests/weights/test_checkpoint.py)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": FORMAT_VERSION})
    config = {"format": FORMAT_VERSION, **model.config.to_dict()}
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return out


def read_config(folder: Path) -> ModelConfig:
    path = folder / CONFIG_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    version = data.pop("format", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format {version!r} is not {FORMAT_VERSION!r}; re-save with save_pretrained"
        )
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from exc


def convert_official(
    in_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    variant: str | None = None,
    allow_pickle: bool = False,
) -> Path:
    """Official SDPose .pth -> our folder. `variant` None: inferred from the weights."""
    state = read_state_dict(in_path, allow_pickle)
    if not is_official_state_dict(state):
        raise CheckpointError(f"{in_path}: no official keys (backbone.*, keypoint_head.tokenpose.*) found")
    facts = describe_state_dict(state)
    name = variant or infer_variant(state)
    if name is None:
        raise CheckpointError(
            f"{in_path}: cannot tell the variant ({_describe(facts)}); pass variant= one of {list_models()}"
        )
    model = model_from_config(get_config(name, num_keypoints=facts.get("num_keypoints", 17)))
    load_checkpoint(model, state)
    return save_pretrained(model, out_dir)
