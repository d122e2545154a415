"""SDPose in PyTorch: Multi-Cycled Transformers with self-distillation for human pose estimation.

    from sdpose_core import build_model, load_pretrained
    model = build_model("sdpose-t")          # 3 cycles in training
    outputs = model(images, cycles=1)        # the deployed single pass

Names are imported lazily so that `import sdpose_core` stays cheap for the CLI and the app.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "build_model": "sdpose_core.models",
    "list_models": "sdpose_core.models",
    "get_config": "sdpose_core.models",
    "SDPose": "sdpose_core.models",
    "ModelConfig": "sdpose_core.models",
    "CycleOutput": "sdpose_core.models",
    "load_model": "sdpose_core.weights",
    "load_checkpoint": "sdpose_core.weights",
    "load_pretrained": "sdpose_core.weights",
    "save_pretrained": "sdpose_core.weights",
    "convert_official": "sdpose_core.weights",
    "count_flops": "sdpose_core.models.flops",
    "SDPoseLoss": "sdpose_core.losses",
    "JointsMSELoss": "sdpose_core.losses",
    "TopDownDataset": "sdpose_core.data",
    "decode_heatmaps": "sdpose_core.heatmaps",
    "evaluate_predictions": "sdpose_core.evaluation",
    "SDPoseError": "sdpose_core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sdpose_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
