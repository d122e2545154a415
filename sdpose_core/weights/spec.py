"""What a weights spec is, decided in one place: `parse_weights_spec(spec) -> WeightsSpec`.

    parse_weights_spec(None).kind                    # "default": SDPOSE_WEIGHTS, else the embedded default, ...
    parse_weights_spec("hf://org/repo/sub").kind     # "hub" (.hub: the parsed HubAddress)
    parse_weights_spec("runs/t/final").kind          # "folder": our config.json + model.safetensors
    parse_weights_spec("sdpose_t.pth").kind          # "state": a state file (.pth .pt .bin .ckpt .safetensors)
    parse_weights_spec("t.onnx").kind                # "onnx": an export, run by onnxruntime

Parsing looks at the spec's form and the file system only (no file is read), so it is cheap enough for a
start-up check. A state file is an official SDPose / mmpose checkpoint, one of our state dicts or a run's
last.pt: which one is known only from its contents, so loading decides it (`WeightsInfo.source` says
"official", "state-dict" or "training-state"). Bad specs (missing paths, a folder without config.json,
an unknown suffix, a malformed hf:// address) raise CheckpointError naming the spec and what is expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sdpose_core.errors import CheckpointError
from sdpose_core.hub import HubAddress, is_hub_address, parse_hub_address
from sdpose_core.weights.checkpoint import CONFIG_NAME
from sdpose_core.weights.files import EXPECTED_WEIGHTS

WEIGHTS_KINDS = ("default", "hub", "folder", "state", "onnx")
STATE_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
ONNX_SUFFIX = ".onnx"
RUN_STATE_NAME = "last.pt"  # what a training run directory holds beside its weights folders


@dataclass(frozen=True)
class WeightsSpec:
    """A parsed weights spec.

    kind: one of WEIGHTS_KINDS. text: the spec as given ("" for the default). origin: how messages name it
    (the text, or "SDPOSE_WEIGHTS=<text>" when the environment chose it). path: the local folder or file
    (folder / state / onnx). hub: the parsed address (hub).
    """

    kind: str
    text: str
    origin: str
    path: Path | None = None
    hub: HubAddress | None = None


def _run_directory_hint(path: Path) -> str:
    if not (path / RUN_STATE_NAME).is_file():
        return ""
    return (f" (a training run? pass {path / 'final'} or {path / 'best'} (weights) "
            f"or {path / RUN_STATE_NAME} (training state))")


def parse_weights_spec(spec: str | os.PathLike | WeightsSpec | None, origin: str | None = None) -> WeightsSpec:
    """The kind of `spec` and where it is (see the module docstring); a WeightsSpec comes back as it is.

    None or a blank string is the default resolution order; `origin` names the spec in error messages
    (default: the spec itself)."""
    if isinstance(spec, WeightsSpec):
        return spec
    text = "" if spec is None else str(spec)
    where = origin or text
    if not text.strip():
        return WeightsSpec("default", "", where)
    if is_hub_address(spec):
        return WeightsSpec("hub", text, where, hub=parse_hub_address(text, default_repo_type="model"))
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise CheckpointError(f"weights folder {path} has no {CONFIG_NAME}{_run_directory_hint(path)}")
        return WeightsSpec("folder", text, where, path=path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ONNX_SUFFIX:
            return WeightsSpec("onnx", text, where, path=path)
        if suffix in STATE_FILE_SUFFIXES:
            return WeightsSpec("state", text, where, path=path)
        raise CheckpointError(f"weights file {path} is not a checkpoint (expected {', '.join(STATE_FILE_SUFFIXES)},"
                              f" or {ONNX_SUFFIX} for an ONNX export)")
    raise CheckpointError(f"weights not found: {where} ({EXPECTED_WEIGHTS})")
