"""onnxruntime CPU backend for exported SDPose graphs: `OnnxPoseModel` needs nothing but the file.

    model = OnnxPoseModel("sdpose_t.onnx", threads=2)
    [heatmaps_cycle1] = model(crops)       # crops: float32 (B, 3, H, W), RGB, ImageNet-normalised
    predict_dataset(model, dataset)        # sdpose_core.evaluation.loop: the torch path's dataset loop and scoring

The graph has one input `images` and one output per exported cycle (`heatmaps_cycle1` ...); the
ModelConfig JSON, the number of exported cycles, the precision and (int8) the quantization are read
from the graph's `metadata_props`, which `sdpose_core.deploy.export` writes.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpose_core.errors import CheckpointError, DataError
from sdpose_core.models.config import ModelConfig, check_cycles
from sdpose_core.precision import cpu_has_int8_dot

INPUT_NAME = "images"
OUTPUT_PREFIX = "heatmaps_cycle"
META_FORMAT = "sdpose.format"
META_CONFIG = "sdpose.config"
META_CYCLES = "sdpose.cycles"
META_PRECISION = "sdpose.precision"
META_QUANTIZATION = "sdpose.quantization"  # int8 graphs: JSON {method, calibration, types}
META_WEIGHTS = "sdpose.weights"
FORMAT_VERSION = "1"
# held-out people for checks (COCO val images); coco_mini_train is kept for int8 calibration


def output_names(cycles: int) -> list[str]:
    return [f"{OUTPUT_PREFIX}{c}" for c in range(1, cycles + 1)]


def write_metadata(onnx_model: Any, values: dict[str, str]) -> None:
    """Set (replace) string entries of an onnx.ModelProto's metadata_props."""
    kept = [(p.key, p.value) for p in onnx_model.metadata_props if p.key not in values]
    del onnx_model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file (without loading its weights into a session)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for unreadable files
        raise CheckpointError(f"cannot read ONNX file {path}: {exc}") from exc
    return {p.key: p.value for p in proto.metadata_props}


def session_options(threads: int | None = None, spin: bool = False) -> Any:
    """onnxruntime CPU options: `threads` intra-op threads (None: all cores), sequential execution.

    `spin=False` lets the worker threads sleep as soon as a run ends instead of busy-waiting for the
    next one: on a 2-core CPU spinning workers take the cores that decode the heatmaps, run the
    detector or torch (measured: torch calls right after a spinning session ran several times slower).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.intra_op_num_threads = int(threads) if threads else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the quantized graphs' shape warnings are noise
    return options


class OnnxPoseModel:
    """An exported SDPose graph on onnxruntime's CPU provider.

    `__call__(images)` takes float32 (B, 3, H, W) crops (RGB, ImageNet-normalised) and returns the
    per-cycle heatmaps [(B, K, Hh, Wh), ...] for the exported cycles (`cycles` limits how many are
    returned; all exported cycles are computed by the graph regardless). A graph exported with a fixed
    batch of one is run image by image. `threads`: intra-op threads (None: all cores); `spin`: see
    `session_options`.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spin: bool = False) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model not found: {self.path}")
        self.metadata = read_metadata(self.path)
        missing = [key for key in (META_CONFIG, META_CYCLES) if key not in self.metadata]
        if missing:
            raise CheckpointError(f"{self.path} has no SDPose metadata ({', '.join(missing)} missing); "
                                  "export it with sdpose_core.deploy.export.export_onnx")
        try:
            self.config = ModelConfig.from_dict(json.loads(self.metadata[META_CONFIG]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.path}: unreadable {META_CONFIG} metadata: {exc}") from exc
        self.cycles = int(self.metadata[META_CYCLES])
        self.precision = self.metadata.get(META_PRECISION, "fp32")
        self.weights_info = self.metadata.get(META_WEIGHTS)
        self.notes = [] if self.int8_types != "u8s8" or cpu_has_int8_dot() else [
            f"{self.path.name} is int8 with u8 x s8 products, which saturate on this CPU (no VNNI / AMX): its "
            "heatmaps can be far from fp32; quantize it again on this machine (sdpose export --int8 picks u8 x u8)"]
        for note in self.notes:
            warnings.warn(note, stacklevel=2)
        self.threads = threads
        self.session = ort.InferenceSession(str(self.path), session_options(threads, spin),
                                            providers=["CPUExecutionProvider"])
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.fixed_batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.output_names != output_names(self.cycles):
            raise CheckpointError(f"{self.path}: outputs {self.output_names} do not match the "
                                  f"{self.cycles} cycles in its metadata")

    @property
    def int8_types(self) -> str | None:
        """"u8s8" / "u8u8" for an int8 graph (graphs made before the types were recorded are u8s8), else None."""
        if not self.precision.startswith("int8"):
            return None
        try:
            return str(json.loads(self.metadata.get(META_QUANTIZATION, "{}")).get("types", "u8s8"))
        except ValueError:
            return "u8s8"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the crops the graph takes."""
        return tuple(self.config.image_size)  # type: ignore[return-value]

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return tuple(self.config.heatmap_size)  # type: ignore[return-value]

    @property
    def num_keypoints(self) -> int:
        return int(self.config.num_keypoints)

    def __call__(self, images: np.ndarray | torch.Tensor, cycles: int | None = None) -> list[np.ndarray]:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.ascontiguousarray(images, dtype=np.float32)
        expected = (3, *self.input_size)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise DataError(f"{self.path.name} expects float32 crops of shape (B, {', '.join(map(str, expected))}), "
                            f"got {images.shape}")
        count = check_cycles(cycles, self.cycles, available=self.cycles,
                             available_from=f"{self.path.name} was exported with",
                             fix=f"re-export with export_onnx(..., cycles={cycles})")
        names = self.output_names[:count]
        if self.fixed_batch is None or images.shape[0] == self.fixed_batch:
            return self.session.run(names, {self.input_name: images})
        parts = [self.session.run(names, {self.input_name: images[i:i + 1]}) for i in range(images.shape[0])]
        return [np.concatenate([p[c] for p in parts]) for c in range(count)]

    def __repr__(self) -> str:
        return (f"OnnxPoseModel({self.path.name}: {self.config.name}, {self.precision}, cycles 1..{self.cycles}, "
                f"input {self.input_size}, threads {self.threads or 'all'})")
