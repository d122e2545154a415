"""int8 quantization of an exported SDPose ONNX graph (onnxruntime.quantization), with an accuracy check.

    from sdpose_core.deploy.quantize import quantize_int8
    report = quantize_int8("sdpose_t.onnx", "sdpose_t.int8.onnx")      # method="hybrid" by default
    print(report.summary())     # max heatmap difference and keypoint shift against the fp32 graph

Methods (weights int8, per output channel where the operator allows it):
- "dynamic": MatMul/Gemm weights int8, their activations quantised at run time (`quantize_dynamic`);
  the convolutional stem stays fp32. No calibration data needed.
- "static": Conv and weight MatMul/Gemm with activation ranges calibrated on real person crops (QDQ,
  `quantize_static`, MinMax). Attention's activation x activation products stay fp32.
- "hybrid": the stem's Conv static (calibrated, QDQ) and the transformer's MatMul/Gemm dynamic: the stem
  is about half of SDPose-T's multiply-adds, and per-batch activation ranges suit the token MLPs, whose
  ranges vary most from crop to crop.
The shared crops used for calibration (coco_mini_train) are not the ones used for the check
(mmpose_coco, other images).

Why "hybrid" is the default: the conv stem is about half of SDPose-T's multiply-adds, so quantizing only
the MatMuls barely helps; static and hybrid are both about twice as fast as fp32, and hybrid keeps per-batch
ranges for the transformer (`sdpose benchmark` prints the speed, scripts/measure_int8_ap.py the AP change).

Integer types: u8 x s8 products where the CPU has VNNI / AMX, u8 x u8 elsewhere (`default_int8_types`),
because u8 x s8 saturates on CPUs without a 32-bit integer dot product.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.deploy.crops import CALIBRATION_SPLIT, CHECK_SPLIT, load_real_crops
from sdpose_core.deploy.onnx_runtime import (
    META_PRECISION,
    META_QUANTIZATION,
    OnnxPoseModel,
    read_metadata,
    write_metadata,
)
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.precision import cpu_has_int8_dot

QUANT_METHODS = ("dynamic", "static", "hybrid")
DEFAULT_METHOD = "hybrid"
INT8_TYPES = ("u8s8", "u8u8")  # activation x weight types of the integer products
CALIBRATION_BATCH = 8


@dataclass
class QuantReport:
    """How the int8 graph differs from its fp32 source on held-out inputs."""

    path: Path
    source: Path
    method: str
    types: str  # activation x weight integer types, "u8s8" or "u8u8" (see default_int8_types)
    size_bytes: int
    source_size_bytes: int
    quantize_s: float
    calibration: str | None  # what the activation ranges were calibrated on (None for "dynamic")
    check_inputs: str  # what the check below ran on
    max_abs_diff: float  # max |int8 - fp32| over all heatmaps of all cycles
    heatmap_peak: float  # max |fp32 heatmap|, the scale `max_abs_diff` is relative to
    mean_keypoint_shift_px: float  # argmax+quarter-offset peaks, in input-crop pixels, cycle 1
    max_keypoint_shift_px: float
    keypoints_within_4px: float  # share of keypoints moved by at most 4 crop pixels (one heatmap pixel)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"], data["source"] = str(self.path), str(self.source)
        return data

    def summary(self) -> str:
        lines = [
            f"wrote {self.path} ({self.method} int8 {self.types}, {self.size_bytes / 1e6:.1f} MB from {self.source_size_bytes / 1e6:.1f} MB) "
            f"in {self.quantize_s:.1f} s" + (f"; calibrated on {self.calibration}" if self.calibration else ""),
            f"vs fp32 on {self.check_inputs}: max heatmap diff {self.max_abs_diff:.4f} (peak {self.heatmap_peak:.3f}), "
            f"keypoint shift mean {self.mean_keypoint_shift_px:.2f} px, max {self.max_keypoint_shift_px:.2f} px, "
            f"{100 * self.keypoints_within_4px:.1f}% within 4 px",
        ]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


class _CropReader:
    """onnxruntime CalibrationDataReader over an array of crops, in batches."""

    def __init__(self, input_name: str, crops: np.ndarray, batch: int, fixed_batch: int | None) -> None:
        step = fixed_batch or batch
        self._feeds = iter([{input_name: crops[i:i + step]} for i in range(0, len(crops), step)
                            if fixed_batch is None or len(crops[i:i + step]) == fixed_batch])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def weight_nodes(model_path: str | os.PathLike, op_types: Sequence[str]) -> list[str]:
    """Names of nodes of `op_types` whose second input is a weight (an initializer); attention's
    activation x activation MatMuls are left out, their ranges change with every crop."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    initializers = {init.name for init in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type in op_types and len(node.input) > 1 and node.input[1] in initializers]


def _calibration_crops(calibration: np.ndarray | Iterable[np.ndarray] | None,
                       input_size: tuple[int, int]) -> tuple[np.ndarray, str]:
    if calibration is None:
        crops, source = load_real_crops(input_size, limit=64, split=CALIBRATION_SPLIT)
        if source is None:
            raise DataError(f"static int8 calibration needs real person crops: the shared split {CALIBRATION_SPLIT} "
                            "was not found (set SDPOSE_DATA) — pass calibration=crops or use method='dynamic'")
        return crops, source
    crops = np.asarray(calibration if isinstance(calibration, np.ndarray) else np.stack(list(calibration)),
                       dtype=np.float32)
    if crops.ndim != 4 or crops.shape[1:] != (3, *input_size) or len(crops) == 0:
        raise DataError(f"calibration must be crops of shape (N, 3, {input_size[0]}, {input_size[1]}), got {crops.shape}")
    return crops, f"{len(crops)} given crops"


def default_int8_types(flags: set[str] | None = None) -> str:
    """"u8s8" where the CPU has VNNI / AMX, else "u8u8".

    Without VNNI, onnxruntime's x86 u8 x s8 kernels add pairs of products in 16-bit lanes (vpmaddubsw),
    which saturate, so the int8 heatmaps can be far from fp32; its u8 x u8 kernels widen to 16 bits before
    multiplying and cannot saturate. `python scripts/measure_int8_types.py` compares the two on the current
    CPU (README, "Speed on a 2-core CPU"). A graph made here records its types (`sdpose.quantization`), and
    loading a u8s8 graph on a CPU without VNNI warns.
    """
    return "u8s8" if cpu_has_int8_dot(flags) else "u8u8"


def quantize_int8(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration: np.ndarray | Iterable[np.ndarray] | None = None,
    method: str = DEFAULT_METHOD,
    check_images: np.ndarray | None = None,
    types: str | None = None,
) -> QuantReport:
    """Quantize an fp32 graph from `export_onnx` to int8 and compare the two.

    `calibration`: crops (N, 3, H, W) for the static parts; None = 64 real crops of the shared
    coco_mini_train split. `check_images`: inputs of the comparison; None = the held-out shared
    mmpose_coco crops (random inputs, with a note, when the shared data is absent). `types`: "u8s8" or
    "u8u8"; None = `default_int8_types()` for this CPU.
    """
    if method not in QUANT_METHODS:
        raise ConfigError(f"unknown int8 method {method!r}; choose one of {QUANT_METHODS}")
    types = types or default_int8_types()
    if types not in INT8_TYPES:
        raise ConfigError(f"unknown int8 types {types!r}; choose one of {INT8_TYPES}")
    source = Path(onnx_path)
    fp32 = OnnxPoseModel(source, threads=1)
    if fp32.precision != "fp32":
        raise ConfigError(f"{source} is already {fp32.precision}; quantize the fp32 export")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # the quantizer logs a multi-line warning for every integer tensor it cannot quantize (shapes, indices):
    # expected here, and noise for the user
    previous_disable = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        calibration_source = _quantize(source, out, fp32, method, calibration, types)
    finally:
        logging.disable(previous_disable)
    _carry_metadata(source, out, method, calibration_source, types)
    quantize_s = time.perf_counter() - start
    return compare_to_fp32(fp32, OnnxPoseModel(out, threads=1), method, quantize_s, calibration_source, check_images,
                           types)


def _quantize(source: Path, out: Path, fp32: OnnxPoseModel, method: str,
              calibration: np.ndarray | Iterable[np.ndarray] | None, types: str) -> str | None:
    """Write the int8 graph; returns what the static parts were calibrated on (None for dynamic)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    weight_type = QuantType.QInt8 if types == "u8s8" else QuantType.QUInt8

    calibration_source = None
    with tempfile.TemporaryDirectory(prefix="sdpose_int8_") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph fusions first, as onnxruntime recommends before quantizing
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
        dynamic_input = prepared
        if method in ("static", "hybrid"):
            crops, calibration_source = _calibration_crops(calibration, fp32.input_size)
            op_types = ["Conv"] if method == "hybrid" else ["Conv", "MatMul", "Gemm"]
            nodes = weight_nodes(prepared, op_types)
            static_out = Path(tmp) / "static.onnx" if method == "hybrid" else out
            quantize_static(
                str(prepared), str(static_out),
                _CropReader(fp32.input_name, crops, CALIBRATION_BATCH, fp32.fixed_batch),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types, nodes_to_quantize=nodes,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=weight_type,
            )
            dynamic_input = static_out
        if method in ("dynamic", "hybrid"):
            nodes = weight_nodes(dynamic_input, ["MatMul", "Gemm"])
            quantize_dynamic(str(dynamic_input), str(out), op_types_to_quantize=["MatMul", "Gemm"],
                             nodes_to_quantize=nodes, per_channel=True, weight_type=weight_type,
                             extra_options={"MatMulConstBOnly": True})
    return calibration_source


def _carry_metadata(source: Path, out: Path, method: str, calibration: str | None, types: str) -> None:
    """The quantizer drops or keeps metadata depending on its path: always copy it, and say how it was made."""
    import onnx

    proto = onnx.load(str(out))
    values = dict(read_metadata(source))
    values[META_PRECISION] = f"int8-{method}"
    values[META_QUANTIZATION] = json.dumps({"method": method, "calibration": calibration, "types": types})
    write_metadata(proto, values)
    onnx.save(proto, str(out))


def keypoint_shift_px(reference: np.ndarray, other: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Distance (N, K) between the heatmap peaks (argmax + quarter offset) in input-crop pixels."""
    from sdpose_core.heatmaps import heatmap_peaks

    ref_xy, _ = heatmap_peaks(reference, method="argmax")
    other_xy, _ = heatmap_peaks(other, method="argmax")
    stride = np.array([input_size[1] / reference.shape[3], input_size[0] / reference.shape[2]])
    return np.linalg.norm((ref_xy - other_xy) * stride, axis=-1)


def compare_to_fp32(fp32: OnnxPoseModel, int8: OnnxPoseModel, method: str, quantize_s: float,
                    calibration: str | None, check_images: np.ndarray | None = None,
                    types: str = "u8s8") -> QuantReport:
    notes = []
    if check_images is None:
        check_images, check_source = load_real_crops(fp32.input_size, limit=None, split=CHECK_SPLIT)
        if check_source is None:
            check_images = np.random.default_rng(0).standard_normal((4, 3, *fp32.input_size)).astype(np.float32)
            check_source = "4 random inputs"
            notes.append("shared data not found: compared on random inputs, which says little about real crops")
    else:
        check_source = f"{len(check_images)} given crops"
    reference, quantized = fp32(check_images), int8(check_images)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(reference, quantized, strict=True))
    shift = keypoint_shift_px(reference[0], quantized[0], fp32.input_size)
    return QuantReport(
        path=int8.path, source=fp32.path, method=method, types=types, size_bytes=int8.path.stat().st_size,
        source_size_bytes=fp32.path.stat().st_size, quantize_s=quantize_s, calibration=calibration,
        check_inputs=check_source, max_abs_diff=diff, heatmap_peak=float(max(np.abs(r).max() for r in reference)),
        mean_keypoint_shift_px=float(shift.mean()), max_keypoint_shift_px=float(shift.max()),
        keypoints_within_4px=float((shift <= 4.0).mean()), notes=notes,
    )
