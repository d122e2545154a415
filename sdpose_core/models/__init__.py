"""SDPose models: `build_model("sdpose-t")`, the Multi-Cycled Transformer and its building blocks."""

from sdpose_core.models.config import CycleOutput, ModelConfig
from sdpose_core.models.registry import build_model, get_config, list_models, normalise_model_name
from sdpose_core.models.sdpose import SDPose

__all__ = ["SDPose", "build_model", "list_models", "get_config", "normalise_model_name", "ModelConfig",
           "CycleOutput"]
