"""ONNX export of SDPose heatmaps, checked against torch (the runtime is `deploy.onnx_runtime`).

    from sdpose_core.deploy.export import export_onnx
    from sdpose_core.deploy.onnx_runtime import OnnxPoseModel
    report = export_onnx(model, "sdpose_t.onnx")        # single pass; checked against torch
    onnx_model = OnnxPoseModel("sdpose_t.onnx", threads=2)
    [heatmaps_cycle1] = onnx_model(crops)              # crops: float32 (B, 3, H, W), RGB, ImageNet-normalised

The graph has one input `images` (B, 3, H, W) and one output per cycle, `heatmaps_cycle1` ...
`heatmaps_cycle{k}` (B, K, Hh, Wh): the cycles share one trace, so exporting k cycles computes the
first k passes once (a 1-cycle export is exactly the deployed single pass). The ModelConfig JSON,
the number of exported cycles and the precision are stored in the ONNX `metadata_props`, so
`OnnxPoseModel` needs nothing but the file. int8 quantization lives in `sdpose_core.deploy.quantize`.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdpose_core.deploy.crops import load_real_crops
from sdpose_core.deploy.onnx_runtime import (
    FORMAT_VERSION,
    INPUT_NAME,
    META_CONFIG,
    META_CYCLES,
    META_FORMAT,
    META_PRECISION,
    META_WEIGHTS,
    OnnxPoseModel,
    output_names,
    write_metadata,
)
from sdpose_core.errors import SDPoseError
from sdpose_core.models.config import ModelConfig, check_cycles
from sdpose_core.paths import data_root

DEFAULT_ATOL = 1e-4


class ExportError(SDPoseError):
    """The exported graph does not reproduce the torch model."""


class _HeatmapsPerCycle(nn.Module):
    """Exposes only the heatmaps of cycles 1..cycles, as a tuple (one graph output each)."""

    def __init__(self, model: nn.Module, cycles: int) -> None:
        super().__init__()
        self.model = model
        self.cycles = cycles

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(output.heatmaps for output in self.model.iter_cycles(images, self.cycles))


@dataclass
class ExportReport:
    """What was written and how closely onnxruntime reproduces torch (max abs heatmap difference)."""

    path: Path
    cycles: int
    opset: int
    dynamic_batch: bool
    output_names: list[str]
    size_bytes: int
    export_s: float
    checks: dict[str, float] = field(default_factory=dict)  # check name -> max abs diff over all cycles
    tolerance: float = DEFAULT_ATOL
    notes: list[str] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max(self.checks.values(), default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["max_abs_diff"] = self.max_abs_diff
        return data

    def summary(self) -> str:
        checks = ", ".join(f"{name}: {diff:.2e}" for name, diff in self.checks.items()) or "not checked"
        lines = [f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, opset {self.opset}, cycles 1..{self.cycles}, "
                 f"{'dynamic' if self.dynamic_batch else 'fixed'} batch) in {self.export_s:.1f} s",
                 f"max |onnxruntime - torch| heatmaps: {checks} (tolerance {self.tolerance:g})"]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def max_abs_diff(reference: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
               for a, b in zip(reference, other, strict=True))


def torch_heatmaps(model: nn.Module, images: np.ndarray, cycles: int) -> list[np.ndarray]:
    """Heatmaps of cycles 1..cycles from the torch model (float32, CPU, inference mode)."""
    with torch.inference_mode():
        outputs = model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)), cycles=cycles)
    return [output.heatmaps.float().numpy() for output in outputs]


def export_onnx(
    model: nn.Module,
    out_path: str | os.PathLike,
    cycles: int = 1,
    opset: int = 17,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = DEFAULT_ATOL,
    real_crops: int = 8,
    weights_info: str | None = None,
) -> ExportReport:
    """Export heatmaps of cycles 1..`cycles` to ONNX and check them against torch.

    The check runs random inputs and (where the shared data exists) `real_crops` real person crops
    through both and raises ExportError when any heatmap differs by more than `atol`. The model itself
    is not modified (a CPU copy in eval mode is traced). `weights_info` is stored in the metadata
    (e.g. where the weights came from).
    """
    import onnx

    config: ModelConfig = model.config
    cycles = check_cycles(cycles)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a private CPU copy in eval mode: export toggles training flags on the traced module tree
    traced_model = copy.deepcopy(model).cpu().float().eval()
    from sdpose_core.deploy.cpu_speedups import prepare_for_onnx

    # the graph the benchmark times: patch embedding as one strided convolution (same outputs)
    traced_model = prepare_for_onnx(traced_model, copy_model=False)
    wrapper = _HeatmapsPerCycle(traced_model, cycles).eval()
    names = output_names(cycles)
    # trace with batch 2 so that no reshape can specialise on a batch of one
    example = torch.zeros(2 if dynamic_batch else 1, 3, *config.image_size)
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if dynamic_batch else None
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the TorchScript exporter is what runs without onnxscript; its trace warnings are about the
        # input-shape check, which is constant for a fixed image size
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example,), str(out), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=names, dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    proto = onnx.load(str(out))
    proto.doc_string = f"SDPose {config.name}: heatmaps of cycles 1..{cycles}"
    metadata = {META_FORMAT: FORMAT_VERSION, META_CONFIG: json.dumps(config.to_dict()),
                META_CYCLES: str(cycles), META_PRECISION: "fp32"}
    if weights_info:
        metadata[META_WEIGHTS] = weights_info
    write_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    report = ExportReport(path=out, cycles=cycles, opset=opset, dynamic_batch=dynamic_batch, output_names=names,
                          size_bytes=out.stat().st_size, export_s=time.perf_counter() - start, tolerance=atol)
    if check:
        check_against_torch(traced_model, report, real_crops)
    return report


def check_against_torch(model: nn.Module, report: ExportReport, real_crops: int = 8) -> None:
    """Fill `report.checks`; raise ExportError when onnxruntime and torch differ by more than the tolerance."""
    session = OnnxPoseModel(report.path)
    height, width = model.config.image_size
    generator = np.random.default_rng(0)
    inputs = {f"random x{n}": generator.standard_normal((n, 3, height, width)).astype(np.float32)
              for n in ((1, 3) if report.dynamic_batch else (1,))}
    crops, source = load_real_crops((height, width), limit=real_crops) if real_crops > 0 else (None, None)
    if source:
        inputs[source] = crops
    elif real_crops > 0:
        report.notes.append(f"no real crops: shared data not found under {data_root()}; checked random inputs only")
    else:
        report.notes.append("real-crop check skipped (real_crops=0); checked random inputs only")
    for name, images in inputs.items():
        report.checks[name] = max_abs_diff(torch_heatmaps(model, images, report.cycles), session(images))
    if report.max_abs_diff > report.tolerance:
        raise ExportError(f"{report.path}: onnxruntime heatmaps differ from torch by {report.max_abs_diff:.2e} "
                          f"> {report.tolerance:g} ({report.checks}); try another opset or report the model config")


def run_export(
    out: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    model: str | None = None,
    cycles: int = 1,
    opset: int = 17,
    dynamic_batch: bool = True,
    int8: str | None = None,
    int8_out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """CLI-shaped export: load the weights like the Predictor does (`sdpose_core.weights.load_model`), export to
    `out`, optionally quantize (`int8` = "hybrid" / "dynamic" / "static") to `int8_out` (default:
    `<out stem>.int8.onnx`), print the reports and return them as a dict. The weights' description
    (UNTRAINED for random weights) is stored in the ONNX metadata."""
    from sdpose_core.weights.load import load_model

    torch_model, info = load_model(weights, model)
    report = export_onnx(torch_model, out, cycles=cycles, opset=opset, dynamic_batch=dynamic_batch,
                         weights_info=info.description)
    print(f"weights: {info.description}")
    print(report.summary())
    result: dict[str, Any] = {"weights": info.to_dict(), "export": report.to_dict()}
    if int8:
        from sdpose_core.deploy.quantize import quantize_int8

        target = Path(int8_out) if int8_out else Path(out).with_suffix(".int8.onnx")
        quant = quantize_int8(out, target, method=int8)
        print(quant.summary())
        result["int8"] = quant.to_dict()
    return result
