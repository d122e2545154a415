"""Where a model's weights come from: our Hugging Face style folders, official SDPose checkpoints (key maps that
assert every name and shape), training states, and the `WeightsInfo` record that travels with every result.

    from sdpose_core.weights import load_model, parse_weights_spec
    parse_weights_spec("hf://org/repo").kind             # "hub" / "folder" / "state" / "onnx" / "default"
    model, info = load_model("runs/t/final")             # the one entry point (sdpose_core.weights.load)

Modules: `spec` (what a spec is), `load` (load_model, load_pretrained, load_onnx_model, WeightsInfo),
`checkpoint` (reading / writing our folder, official key maps, strict loading, convert_official),
`training_state` (a run's last.pt), `files` (what a file that is no checkpoint is).
"""

from sdpose_core.weights.checkpoint import convert_official, load_checkpoint, read_state_dict, save_pretrained
from sdpose_core.weights.load import (
    EMBEDDED_DEFAULT_DIR,
    WEIGHTS_ENV,
    WeightsInfo,
    load_model,
    load_onnx_model,
    load_pretrained,
    module_info,
    untrained_model,
)
from sdpose_core.weights.spec import WEIGHTS_KINDS, WeightsSpec, parse_weights_spec
from sdpose_core.weights.training_state import read_training_state

__all__ = [
    "EMBEDDED_DEFAULT_DIR", "WEIGHTS_ENV", "WEIGHTS_KINDS", "WeightsInfo", "WeightsSpec", "convert_official",
    "load_checkpoint", "load_model", "load_onnx_model", "load_pretrained", "module_info", "parse_weights_spec",
    "read_state_dict", "read_training_state", "save_pretrained", "untrained_model",
]
